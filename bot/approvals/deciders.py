"""Who may ask and who may decide a request: roles from `[access]`, the request's approval rule
(its groups and break-glass group, bot/approvals/rules.py), four eyes, and the audited refusal.

Requesters must be in `[access] responders`. Deciders are the rule's `groups`, else `[access]
approvers` (user ids, or `S…` user groups read through the Directory); a rule's break-glass group may
approve (never deny). Nobody approves their own request, and the target person (the identity's email
matched to a Slack user) never decides about their own account. Every refusal is audited `refused`
with the rule that refused it, in its own transaction (never rolled back with a write it refused).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Optional

from .. import audit
from ..config import AccessSettings
from ..store import Store
from .records import ApprovalRequest, Decision, Directory, PolicyError
from .rules import Click, Rule, deciders, who_text


class Deciders:
    """The role and four-eyes checks of the approval service (a base of `Policy`)."""

    db: Store
    access: AccessSettings
    directory: Directory
    clock: Callable[[], datetime]

    async def _member(self, user_id: str, entries: list[str]) -> bool:
        if user_id in entries:
            return True
        for entry in entries:
            # Slack user group ids start with S; anything else listed is a user id
            if entry.startswith("S") and user_id in await self.directory.group_members(entry):
                return True
        return False

    async def is_responder(self, user_id: str) -> bool:
        """Listed in [access] responders, directly or through a user group (S…)."""
        return await self._member(user_id, self.access.responders)

    async def is_approver(self, user_id: str) -> bool:
        """Listed in [access] approvers, directly or through a user group (S…)."""
        return await self._member(user_id, self.access.approvers)

    async def _require_role(
        self,
        role: str,
        user_id: str,
        *,
        request: Optional[ApprovalRequest] = None,
        where: Optional[dict[str, Any]] = None,
    ) -> None:
        """Refuse unless `user_id` is in [access] `role` (responders or approvers); empty denies all."""
        entries: list[str] = getattr(self.access, role)
        doing = "request actions" if role == "responders" else "decide requests"
        if not entries:
            message = f"Nobody may {doing} yet: no {role} are configured ([access] {role})."
            raise self._refuse(message, actor=user_id, rule=f"no_{role}", request=request, where=where)
        if not await self._member(user_id, entries):
            message = f"Only {role} can {doing}, and you are not one ([access] {role})."
            raise self._refuse(message, actor=user_id, rule=f"not_{role}", request=request, where=where)

    async def _is_target(self, request: ApprovalRequest, user_id: str) -> bool:
        """The Slack user is the person the action is aimed at (matched by the identity's email)."""
        email = request.target.get("email")
        return bool(email) and await self.directory.user_id_for_email(str(email)) == user_id

    def _refuse(
        self,
        message: str,
        *,
        actor: str,
        rule: str,
        request: Optional[ApprovalRequest] = None,
        where: Optional[dict[str, Any]] = None,
    ) -> PolicyError:
        """Audit a refused attempt (who tried what) and return the error to raise."""
        fields = request.audit_fields() if request else (where or {})
        with audit.transaction(self.db):
            audit.append(
                self.db, at=self.clock(), actor=actor, event="refused", detail={"rule": rule}, **fields
            )
        return PolicyError(message, request=request)

    async def _check_decider(self, request: ApprovalRequest, user_id: str, decision: Decision) -> Click:
        click = await self._check_approver(request, user_id)
        if decision is Decision.APPROVE and user_id == request.requested_by:
            raise self._refuse(
                "You can't approve your own request.", actor=user_id, rule="own_request", request=request
            )
        if decision is Decision.DENY and not click.regular:
            raise self._refuse(
                f"Only {who_text(click.rule)} can deny this request (rule {click.rule.name}); the"
                f" break-glass group {click.rule.break_glass} may only approve, at critical risk.",
                actor=user_id,
                rule="not_in_rule_groups",
                request=request,
            )
        return click

    def rule_of(self, request: ApprovalRequest) -> Rule:
        """The approval rule the request carries (one made before rules: `default`)."""
        return Rule.from_stored(request.rule, request.approvals_needed)

    async def _click(self, rule: Rule, user_id: str) -> Click:
        """This user's part under `rule`: a regular decider (its groups, else [access] approvers)
        and/or a member of its break-glass group."""
        regular = await self._member(user_id, deciders(rule, self.access))
        glass = bool(rule.break_glass) and await self._member(user_id, [str(rule.break_glass)])
        return Click(rule, regular, glass)

    async def _check_approver(self, request: ApprovalRequest, user_id: str) -> Click:
        """Refuse whoever the request's rule does not let decide (its groups, else [access] approvers;
        its break-glass group may approve) and the target person (never about their own account)."""
        rule = self.rule_of(request)
        click = await self._click(rule, user_id)
        if not click.glass:
            await self._require_rule_decider(request, user_id)
        if await self._is_target(request, user_id):
            raise self._refuse(
                "You can't decide on an action against your own account.",
                actor=user_id,
                rule="target",
                request=request,
            )
        return click

    async def _require_rule_decider(self, request: ApprovalRequest, user_id: str) -> None:
        """Refuse unless the user is one of the deciders of the request's rule: its groups, else
        [access] approvers (also for Extend and Make permanent on the containment it started)."""
        rule = self.rule_of(request)
        if not rule.groups:
            await self._require_role("approvers", user_id, request=request)
        elif not await self._member(user_id, list(rule.groups)):
            raise self._refuse(
                f"Only {who_text(rule)} can decide this request (rule {rule.name}), and you are not one.",
                actor=user_id,
                rule="not_in_rule_groups",
                request=request,
            )
