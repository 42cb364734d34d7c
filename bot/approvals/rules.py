"""Approval rules: how many distinct approvers a request needs, from which Slack user groups, who is
told when nobody decides, and who may approve alone in an emergency.

Order (documented in the README): the `[[approvals.rules]]` tables in file order, then the rule
`privileged_approvals` (the setting from before rules, read as `{privileged = true, approvals = N}`,
left out when N is 1), then `default` (one approver from `[access] approvers`). The **first rule whose
every condition holds** applies; an absent condition always holds. Conditions: `action`, `privileged`,
`risk` (the target's level), `tenant`, `connector`.

The rule chosen is stored with the request (`approvals.rule`, JSON), so a config change never moves a
request already waiting. The approval that would complete a request re-reads the target and chooses
again: a rule asking more approvals than the stored one replaces it (audited `escalated`); one asking
fewer never does.

Escalation: a request still PENDING `escalate_after_minutes` after it was made (step 1, then every
such interval again: step 2, 3, ... while it has not expired) is told in its card's thread, mentioning
`escalate_to` (a user group) or the members of `escalate_oncall` (the user group an on-call rotation
keeps its current person in). Each step is claimed by compare-and-set on `approvals.escalation_step`,
so a restart or a second process never mentions it twice; a sweep that missed steps says only the
latest.

Break-glass: a rule's `break_glass` group lets one of its members approve alone (four eyes still:
never the requester, never the target) when the target's risk, read again at that click, is critical;
audited `approved_break_glass`, and the card says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Optional

from connectors import Action, RiskLevel

from ..config import AccessSettings, ApprovalRule, ApprovalSettings
from .records import ApprovalRequest

DEFAULT = "default"
LEGACY = "privileged_approvals"


@dataclass(frozen=True)
class Rule:
    """What a request asks of its deciders (stored with it); `groups` empty: `[access] approvers`."""

    name: str
    approvals: int = 1
    groups: tuple[str, ...] = ()
    break_glass: Optional[str] = None
    escalate_after_minutes: Optional[int] = None
    escalate_to: Optional[str] = None
    escalate_oncall: Optional[str] = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_stored(cls, data: Optional[Mapping[str, Any]], approvals_needed: int) -> Rule:
        """The rule a stored request carries; a request made before rules gets `default` with the
        approvals it was given."""
        if not data:
            return cls(DEFAULT, approvals=approvals_needed)
        return cls(
            name=str(data["name"]),
            approvals=int(data["approvals"]),
            groups=tuple(data.get("groups") or ()),
            break_glass=data.get("break_glass"),
            escalate_after_minutes=data.get("escalate_after_minutes"),
            escalate_to=data.get("escalate_to"),
            escalate_oncall=data.get("escalate_oncall"),
        )

    def escalation_due(self, created_at: datetime, now: datetime) -> int:
        """The escalation step due at `now` (0: none): one more every `escalate_after_minutes`."""
        if not self.escalate_after_minutes or not (self.escalate_to or self.escalate_oncall):
            return 0
        return int((now - created_at) // timedelta(minutes=self.escalate_after_minutes))


@dataclass(frozen=True)
class _Entry:
    rule: Rule
    actions: frozenset[str] = frozenset()
    privileged: Optional[bool] = None
    risk: frozenset[str] = frozenset()
    tenants: frozenset[str] = frozenset()
    connectors: frozenset[str] = frozenset()

    def matches(self, action: Action, connector: str, target: Mapping[str, Any]) -> bool:
        return (
            (not self.actions or action.value in self.actions)
            and (self.privileged is None or bool(target.get("privileged")) is self.privileged)
            and (not self.risk or target.get("risk_level") in self.risk)
            and (not self.tenants or target.get("tenant_id") in self.tenants)
            and (not self.connectors or connector in self.connectors)
        )


@dataclass(frozen=True)
class Rules:
    """The configured rules in the order they are tried (see the module docstring)."""

    entries: tuple[_Entry, ...] = field(default_factory=tuple)

    @classmethod
    def from_settings(cls, settings: ApprovalSettings) -> Rules:
        def requirement(name: str, source: Optional[ApprovalRule], approvals: int) -> Rule:
            after = (source.escalate_after_minutes if source else None) or settings.escalate_after_minutes
            own_target = source is not None and bool(source.escalate_to or source.escalate_oncall)
            return Rule(
                name=name,
                approvals=approvals,
                groups=tuple(source.groups) if source else (),
                break_glass=source.break_glass if source else None,
                escalate_after_minutes=after,
                escalate_to=source.escalate_to if own_target and source else settings.escalate_to,
                escalate_oncall=source.escalate_oncall if own_target and source else settings.escalate_oncall,
            )

        entries = [
            _Entry(
                rule=requirement(rule.name, rule, rule.approvals),
                actions=frozenset(rule.action),
                privileged=rule.privileged,
                risk=frozenset(level.value for level in rule.risk),
                tenants=frozenset(rule.tenant),
                connectors=frozenset(rule.connector),
            )
            for rule in settings.rules
        ]
        if settings.privileged_approvals > 1:
            entries.append(
                _Entry(rule=requirement(LEGACY, None, settings.privileged_approvals), privileged=True)
            )
        entries.append(_Entry(rule=requirement(DEFAULT, None, 1)))
        return cls(tuple(entries))

    def select(self, action: Action, connector: str, target: Mapping[str, Any]) -> Rule:
        """The first rule whose every condition holds for this action on this target (a snapshot)."""
        for entry in self.entries:
            if entry.matches(action, connector, target):
                return entry.rule
        raise AssertionError("the default rule matches everything")  # pragma: no cover


def deciders(rule: Rule, access: AccessSettings) -> list[str]:
    """Who may decide a request under `rule`: its groups, else `[access] approvers`."""
    return list(rule.groups) if rule.groups else list(access.approvers)


def who_text(rule: Rule) -> str:
    """Plain text naming who may approve under `rule` (no mention: the card must not ping anyone)."""
    return "members of " + ", ".join(rule.groups) if rule.groups else "[access] approvers"


def escalation_reason(rule: Rule) -> str:
    """Why a request's rule was replaced by a stricter one (audit, and the approver's answer)."""
    if rule.name == LEGACY:
        return "the target is now privileged"
    return f"the target now matches rule {rule.name}"


def is_critical(target: Mapping[str, Any]) -> bool:
    return target.get("risk_level") == RiskLevel.CRITICAL.value


@dataclass(frozen=True)
class Click:
    """One person's Approve or Deny under a rule: a regular decider (`regular`) and/or a member of its
    break-glass group (`glass`). `decided` settles it against the target as re-read."""

    rule: Rule
    regular: bool
    glass: bool
    #: this approval completes the request alone, under the rule's break-glass group
    break_glass: bool = False
    #: why the approval does not count (told after writing what `write` says: a rule switch, or nothing)
    refusal: str = ""
    write: bool = True

    def switched(self, current: ApprovalRequest) -> bool:
        """The target now matches a rule asking more approvals than the request's own."""
        return self.rule.approvals > current.approvals_needed

    def decided(self, current: ApprovalRequest, target: Mapping[str, Any]) -> Click:
        """This approval on `current`, with the target as re-read: regular (completing or not), alone
        under break-glass (critical risk only), or refused (`refusal`)."""
        needed = self.rule.approvals if self.switched(current) else current.approvals_needed
        if self.regular and len(current.approvers) + 1 >= needed:
            return self
        if self.glass and is_critical(target):
            return replace(self, break_glass=True)
        if self.regular:
            return self
        level = target.get("risk_level") or "unknown"
        if self.glass:
            return replace(
                self,
                write=False,
                refusal=f"Not approved: break-glass approval (rule {self.rule.name}) is only for critical"
                f" risk, and the target's risk is {level} now. It needs {needed} approvals from"
                f" {who_text(self.rule)}.",
            )
        return replace(
            self,
            refusal=f"Not counted: the target now matches rule {self.rule.name}, which needs {needed}"
            f" approvals from {who_text(self.rule)}, and you are not one of them.",
        )
