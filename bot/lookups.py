"""Answers to what a responder asks: whois, the riskiest identities, pending requests, an identity's
audit trail, an identity card, the App Home; and `request_for`, which resolves a name typed in a
command into one approval request (or a list to choose from).

Identity data is for responders and approvers only: every answer checks `may_look` first. Each
returns a message (or a Home view) for `Replies` to show; none of them talks to Slack itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Optional

from connectors import Action, Identity, RiskLevel

from . import approval_cards, blocks
from .approval_flow import ApprovalFlow
from .approvals import ApprovalService
from .blocks import Message, esc, slack_date, text_message
from .identities import SCAN_CAP, Found, Identities

LOOKUP_REFUSED = text_message(
    ":no_entry: Only responders and approvers can look up identities"
    " ([access] responders, [access] approvers)."
)
NOT_A_MEMBER = (
    "idops shows identity risk to responders and approvers only. Ask an admin to add you to"
    " `[access] responders` or `[access] approvers`."
)
#: pending requests listed when containments share the message (the rest of Slack's 50 blocks is theirs)
PENDING_LINES = 25
BAD_BUTTON = text_message(":warning: That button carries something idops can't read; nothing was done.")


def with_faults(reply: Message, note: str) -> Message:
    """Add a context line about connectors that didn't answer."""
    if note:
        reply.setdefault("blocks", []).append(
            {"type": "context", "elements": [blocks.mrkdwn(note).to_dict()]}
        )
    return reply


def names_exactly(identity: Identity, who: str) -> bool:
    """`who` is the identity's email, id, provider id or full display name (case aside), or one of its
    login names (an address the provider keeps, such as Entra's userPrincipalName), not a fragment."""
    wanted = who.strip().casefold()
    names = {identity.email, identity.id, identity.display_name, identity.provider_id}
    if "@" in wanted:
        for value in (*identity.raw.values(), *_nested_values(identity.raw)):
            if isinstance(value, str) and "@" in value:
                names.add(value)
    return bool(wanted) and wanted in {name.casefold() for name in names if name}


def _nested_values(raw: Mapping[str, Any]) -> list[Any]:
    """The values one level down (Okta keeps `login` under `profile`)."""
    return [v for inner in raw.values() if isinstance(inner, Mapping) for v in inner.values()]


class Lookups:
    """Read-only answers, plus turning a typed name into a request."""

    def __init__(self, identities: Identities, service: ApprovalService, flow: ApprovalFlow) -> None:
        self.identities = identities
        self.service = service
        self.flow = flow

    async def may_look(self, user_id: str) -> bool:
        """Identity data is for responders and approvers only."""
        return await self.service.is_responder(user_id) or await self.service.is_approver(user_id)

    def no_match(self, found: Found, query: str) -> Message:
        """Nothing matched: say which connectors were searched, and which could not be."""
        lines = []
        if found.searched:
            searched = ", ".join(self.identities.source(name) for name in found.searched)
            lines.append(f"No identity matches *{esc(query, 300)}* in {esc(searched, 1000)}.")
        elif not found.faults:
            lines.append(
                f"No identity matches *{esc(query, 300)}*: no connectors are configured ([[connectors]])."
            )
        if found.faults:
            lines.append(found.fault_note())
        return text_message("\n".join(lines))

    async def whois(self, user: str, query: str) -> Message:
        if not await self.may_look(user):
            return LOOKUP_REFUSED
        found = await self.identities.search(query)
        note = found.fault_note()
        if not found.identities and found.limited is not None:
            raise found.limited  # "asked us to wait until …": the answer follows then (Replies.run)
        if not found.identities:
            return self.no_match(found, query)
        if len(found.identities) == 1:
            return with_faults(self.identities.card(found.identities[0]), note)
        title = f"{len(found.identities)} identities match *{esc(query, 300)}*:"
        return with_faults(blocks.identity_list(title, self.identities.labelled(found.identities)), note)

    async def request_for(
        self,
        user: str,
        action: Action,
        who: str,
        reason: str,
        duration: Optional[timedelta] = None,
        trigger_id: Optional[str] = None,
    ) -> Message:
        """Resolve `who` across connectors: one match becomes a request (time-boxed with `duration`),
        several are listed to choose. `trigger_id`: the slash command asking; the request it made
        already (its first run was cut off, or Slack sent it again) is answered for, never made again."""
        if not await self.may_look(user):
            return LOOKUP_REFUSED
        made = self.service.by_trigger(trigger_id)
        if made is not None:
            return await self.flow.requested(made)
        found = await self.identities.search(who)
        if not found.identities:
            return self.no_match(found, who)
        # an action needs its target named exactly (email, id or full name, one identity); a fragment
        # that happens to match one person only ever lists the matches to choose from
        exact = [identity for identity in found.identities if names_exactly(identity, who)]
        if len(exact) == 1:
            identity = exact[0]
            return await self.flow.start_request(
                user=user,
                connector=identity.connector,
                identity_id=identity.id,
                action=action,
                reason=reason,
                duration=duration,
                trigger_id=trigger_id,
            )
        matches = [
            (i, s)
            for i, s in self.identities.labelled(exact or found.identities)
            if action in self.identities.actions_for(i)
        ]
        if not matches:
            return text_message(f"None of the identities matching *{esc(who, 300)}* supports {action.label}.")
        title = f"{len(matches)} identities match *{esc(who, 300)}*; choose who gets *{action.label}*:"
        if not exact:
            title = (
                f"*{esc(who, 300)}* is not an exact email, id or full name, so nothing was requested."
                f" {len(matches)} identit{'y matches' if len(matches) == 1 else 'ies match'}; choose who"
                f" gets *{action.label}*:"
            )
        return with_faults(
            blocks.identity_list(title, matches, row_button=(action.label, f"request:{action.value}")),
            found.fault_note(),
        )

    async def risky(
        self, user: str, level: Optional[RiskLevel], tenant: Optional[str], offset: int = 0
    ) -> Message:
        if not await self.may_look(user):
            return LOOKUP_REFUSED
        found, more = await self.identities.riskiest(level, tenant, offset=offset)
        scope = (level.value if level else "any level") + (f", tenant {esc(tenant, 100)}" if tenant else "")
        if not found.identities:
            return text_message(found.fault_note() or f"No identities at risk ({scope}).")
        first = offset + 1
        title = f"*Riskiest identities* ({scope}), {first}-{offset + len(found.identities)}:"
        notes = [found.fault_note()] if found.faults else []
        if found.capped:
            notes.append(f"Read the first {SCAN_CAP} per connector and level; name a tenant to narrow it.")
        more_button = (
            ("Next page", blocks.page_value(level, tenant, offset + len(found.identities))) if more else None
        )
        return blocks.identity_list(
            title, self.identities.labelled(found.identities), note="\n".join(notes), more=more_button
        )

    async def pending(self, user: str) -> Message:
        if not await self.may_look(user):
            return LOOKUP_REFUSED
        requests = await self.service.pending()
        contained = self.service.open_containments()
        # both lists share one message, which Slack refuses whole past 50 blocks: each gets its share
        reply = blocks.approval_list(
            "*Requests waiting for approval*",
            requests,
            empty="No requests are waiting.",
            limit=PENDING_LINES if contained else 40,
        )
        if contained:
            shown = reply.setdefault("blocks", [])
            room = blocks.MAX_MESSAGE_BLOCKS - len(shown) - 2  # the containments' title and "… more"
            shown.extend(approval_cards.containment_list(contained, limit=room))
        return reply

    async def audit(self, user: str, who: str) -> Message:
        if not await self.may_look(user):
            return LOOKUP_REFUSED
        found = await self.identities.search(who)
        if not found.identities:
            return self.no_match(found, who)
        if len(found.identities) > 1:
            title = f"{len(found.identities)} identities match *{esc(who, 300)}*; be more specific:"
            return blocks.identity_list(title, self.identities.labelled(found.identities))
        identity = found.identities[0]
        rows = self.service.history(identity.connector, identity.id)
        return blocks.audit_list(f"*Audit trail of {esc(identity.name, 200)}* (newest first)", rows)

    async def show(self, user: str, connector: str, identity_id: str) -> Message:
        """The identity card for a `Show` button."""
        if not await self.may_look(user):
            return LOOKUP_REFUSED
        provider = self.identities.connectors.get(connector)
        if provider is None:
            return BAD_BUTTON
        return self.identities.card(await provider.get_identity(identity_id))

    async def home(self, user: str) -> dict[str, Any]:
        """The viewer's Home tab: risk counts, the riskiest identities, approvals waiting on them."""
        if not await self.may_look(user):
            return blocks.home_notice(NOT_A_MEMBER)
        counts, found, swept = await self.identities.risk_counts()
        waiting = await self.service.pending(for_user=user)
        lines = [
            f"{esc(self.identities.source(name), 200)}: as of its last risk sweep, {slack_date(at)}"
            for name, at in swept.items()
        ]
        lines += [f":warning: {esc(fault, 500)}" for fault in found.faults]
        view = blocks.home_view(
            counts, self.identities.labelled(found.identities), waiting, note="\n".join(lines)
        )
        contained = self.service.open_containments()
        if contained:
            view["blocks"] += [{"type": "divider"}, *approval_cards.containment_list(contained)]
        return view
