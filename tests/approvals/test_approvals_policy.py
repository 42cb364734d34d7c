"""Approval policy, each rule refused and allowed, over the HomeBase simulator and a real SQLite file."""

from __future__ import annotations

import json
from typing import Any, Optional

import pytest
from support.approvals import (
    APPROVERS,
    GROUP_APPROVER,
    GROUP_RESPONDER,
    OUTSIDER,
    REQUESTER,
    TARGET_USER,
    harness,
)

from bot import audit
from bot.approvals import Decision, InvalidRequest, PolicyError, RequestNotFound, Status, parse_action
from connectors import Action, ProviderUnavailableError

A, B, C = APPROVERS


async def _request(h, who="plain", action=Action.REVOKE_SESSIONS, reason="phished", by=REQUESTER):
    return await h.service.request(
        connector="homebase", identity_id=h.people[who]["id"], action=action, reason=reason, requested_by=by
    )


def _refusals(h):
    return [
        (r["actor"], json.loads(r["detail"])["rule"])
        for r in h.db.query("SELECT actor, detail FROM audit WHERE event = 'refused' ORDER BY id")
    ]


# --- requesting -------------------------------------------------------------------------------------


async def test_request_snapshots_the_target_and_is_pending(h):
    person = h.people["plain"]
    request = await _request(h, reason="  phished  ")
    assert request.status is Status.PENDING
    assert request.identity_id == person["id"] and request.action is Action.REVOKE_SESSIONS
    assert request.reason == "phished" and request.requested_by == REQUESTER
    assert request.target["name"] == person["display_name"] and request.target["email"] == person["email"]
    assert request.target["risk_score"] == person["risk_score"]
    assert request.target["provider_label"] == "HomeBase" and request.target["privileged"] is False
    assert request.approvals_needed == 1 and request.approvers == ()
    assert (request.expires_at - request.created_at).total_seconds() == 30 * 60
    assert h.service.get(request.id) == request
    assert h.audit_events(request.id) == ["requested"]


async def test_privileged_target_needs_the_configured_number_of_approvers(h):
    request = await _request(h, who="privileged")
    assert request.target["privileged"] is True and request.approvals_needed == 2


async def test_identity_may_be_given_by_email(h):
    person = h.people["plain2"]
    request = await h.service.request(
        connector="homebase",
        identity_id=person["email"].upper(),
        action=Action.FORCE_PASSWORD_RESET,
        reason="",
        requested_by=REQUESTER,
    )
    assert request.identity_id == person["id"]


async def test_no_responders_configured_refuses_everyone_naming_the_key(tmp_path):
    async with harness(tmp_path, responders=[]) as h:
        with pytest.raises(PolicyError, match=r"\[access\] responders") as caught:
            await _request(h)
        assert "no responders are configured" in caught.value.message
        assert _refusals(h) == [(REQUESTER, "no_responders")]
        assert h.db.count("approvals") == 0


async def test_only_responders_may_request(h):
    with pytest.raises(PolicyError, match="Only responders can request"):
        await _request(h, by=OUTSIDER)
    assert _refusals(h) == [(OUTSIDER, "not_responders")]
    # a member of a responder user group may
    request = await _request(h, by=GROUP_RESPONDER)
    assert request.requested_by == GROUP_RESPONDER


async def test_bad_input_names_the_field(h):
    with pytest.raises(InvalidRequest, match="No connector named 'okta' \\(known: homebase\\)") as caught:
        await h.service.request(
            connector="okta", identity_id="x", action=Action.DISABLE, reason="r", requested_by=REQUESTER
        )
    assert caught.value.field == "connector"
    with pytest.raises(InvalidRequest, match="needs a reason") as caught:
        await _request(h, action=Action.DISABLE, reason="   ")
    assert caught.value.field == "reason"
    with pytest.raises(InvalidRequest, match="longer than 1000") as caught:
        await _request(h, reason="x" * 1001)
    assert caught.value.field == "reason"
    with pytest.raises(InvalidRequest, match="HomeBase has no identity 'idn_0000000000'") as caught:
        await h.service.request(
            connector="homebase",
            identity_id="idn_0000000000",
            action=Action.REVOKE_SESSIONS,
            reason="",
            requested_by=REQUESTER,
        )
    assert caught.value.field == "identity"
    with pytest.raises(InvalidRequest, match=r"no identity 'nobody@nowhere\.example'"):
        await h.service.request(
            connector="homebase",
            identity_id="nobody@nowhere.example",
            action=Action.REVOKE_SESSIONS,
            reason="",
            requested_by=REQUESTER,
        )
    assert h.db.count("approvals") == 0


def test_parse_action_accepts_names_and_aliases():
    assert parse_action("disable") is Action.DISABLE
    assert parse_action(" Reset ") is Action.FORCE_PASSWORD_RESET
    assert parse_action("revoke") is Action.REVOKE_SESSIONS
    assert parse_action("revoke_sessions") is Action.REVOKE_SESSIONS
    with pytest.raises(InvalidRequest, match="Unknown action 'nuke'") as caught:
        parse_action("nuke")
    assert caught.value.field == "action"


async def test_a_second_request_for_the_same_action_points_at_the_first(h):
    first = await _request(h)
    with pytest.raises(PolicyError, match="already waiting for approval") as caught:
        await _request(h, by=GROUP_RESPONDER)
    assert caught.value.request is not None and caught.value.request.id == first.id
    # a different action on the same person is its own request
    other = await _request(h, action=Action.FORCE_PASSWORD_RESET)
    assert other.id != first.id


async def test_a_command_asking_again_finds_the_request_it_made_by_its_trigger_id(h):
    """A slash command run again (Slack sent it again, or a sweep ran it after its replica stopped)
    carries the same trigger_id: it finds the request it made, in whatever state, and adds none."""

    async def ask(trigger_id: Optional[str]) -> Any:
        return await h.service.request(
            connector="homebase",
            identity_id=h.people["plain"]["id"],
            action=Action.REVOKE_SESSIONS,
            reason="phished",
            requested_by=REQUESTER,
            trigger_id=trigger_id,
        )

    first = await ask("123.T0.abc")
    assert h.service.by_trigger("123.T0.abc").id == first.id and h.service.by_trigger("9.T0.x") is None
    assert (await ask("123.T0.abc")).id == first.id  # pending: the same one, no refusal
    h.db.execute("UPDATE approvals SET status = 'executed' WHERE id = ?", (first.id,))
    again = await ask("123.T0.abc")
    assert (again.id, again.status) == (first.id, Status.EXECUTED) and h.db.count("approvals") == 1
    assert h.audit_events(first.id) == ["requested"]
    # another command (another trigger_id) asking for the same action once the first is done is new
    other = await ask("124.T0.def")
    assert other.id != first.id and h.db.count("approvals") == 2
    # and while that one waits, a third command is refused, pointing at it
    with pytest.raises(PolicyError, match="already waiting for approval") as caught:
        await ask("125.T0.ghi")
    assert caught.value.request is not None and caught.value.request.id == other.id


async def test_provider_fault_while_requesting_is_a_connector_error(h):
    await h.fault(kind="error", code="internal_error", count=5, method="GET")
    with pytest.raises(ProviderUnavailableError) as caught:
        await _request(h)
    assert "HomeBase" in str(caught.value)
    assert h.db.count("approvals") == 0


# --- deciding ---------------------------------------------------------------------------------------


async def test_one_approval_approves_a_plain_target(h):
    request = await _request(h)
    h.clock.advance(minutes=5)
    decided = await h.service.decide(request.id, user_id=A, decision=Decision.APPROVE)
    assert decided.status is Status.APPROVED
    assert decided.approvers == (A,) and decided.decided_by == A and decided.decided_at == h.clock.now
    assert h.audit_events(request.id) == ["requested", "approved"]


async def test_approver_through_a_user_group(h):
    request = await _request(h)
    decided = await h.service.decide(request.id, user_id=GROUP_APPROVER, decision=Decision.APPROVE)
    assert decided.status is Status.APPROVED


async def test_only_approvers_may_decide(h):
    request = await _request(h)
    for decision in Decision:
        with pytest.raises(PolicyError, match="Only approvers can decide"):
            await h.service.decide(request.id, user_id=OUTSIDER, decision=decision, reason="no")
    assert h.service.get(request.id).status is Status.PENDING
    assert _refusals(h) == [(OUTSIDER, "not_approvers")] * 2


async def test_no_approvers_configured_names_the_key(tmp_path):
    async with harness(tmp_path, approvers=[]) as h:
        request = await _request(h)
        with pytest.raises(PolicyError, match=r"no approvers are configured \(\[access\] approvers\)"):
            await h.service.decide(request.id, user_id=A, decision=Decision.APPROVE)


async def test_nobody_approves_their_own_request(h):
    request = await _request(h)  # REQUESTER is also an approver in this set-up
    with pytest.raises(PolicyError, match="You can't approve your own request"):
        await h.service.decide(request.id, user_id=REQUESTER, decision=Decision.APPROVE)
    assert h.service.get(request.id).status is Status.PENDING
    assert _refusals(h) == [(REQUESTER, "own_request")]


async def test_a_requester_who_is_an_approver_may_withdraw_by_denying(h):
    request = await _request(h)
    denied = await h.service.decide(
        request.id, user_id=REQUESTER, decision=Decision.DENY, reason="wrong person"
    )
    assert denied.status is Status.DENIED and denied.decision_reason == "wrong person"


async def test_the_target_never_decides_about_themselves(h):
    for who in ("plain", "privileged"):
        request = await _request(h, who=who)
        for decision in Decision:
            with pytest.raises(PolicyError, match="against your own account"):
                await h.service.decide(request.id, user_id=TARGET_USER, decision=decision, reason="it's me")
        assert h.service.get(request.id).status is Status.PENDING


async def test_target_without_a_slack_account_does_not_block_others(h):
    request = await _request(h, who="plain2")  # plain2's email maps to no Slack user
    decided = await h.service.decide(request.id, user_id=TARGET_USER, decision=Decision.APPROVE)
    assert decided.status is Status.APPROVED


async def test_privileged_needs_distinct_approvers(h):
    request = await _request(h, who="privileged")
    first = await h.service.decide(request.id, user_id=A, decision=Decision.APPROVE)
    assert first.status is Status.PENDING and first.approvers == (A,) and first.decided_by is None
    with pytest.raises(PolicyError, match="already approved this request; it needs 2 different approvers"):
        await h.service.decide(request.id, user_id=A, decision=Decision.APPROVE)
    second = await h.service.decide(request.id, user_id=B, decision=Decision.APPROVE)
    assert second.status is Status.APPROVED and second.approvers == (A, B) and second.decided_by == B
    with pytest.raises(PolicyError, match="already approved") as caught:
        await h.service.decide(request.id, user_id=C, decision=Decision.APPROVE)
    assert caught.value.request is not None and caught.value.request.status is Status.APPROVED


async def test_three_of_m_when_configured(tmp_path):
    async with harness(tmp_path, privileged_approvals=3) as h:
        request = await _request(h, who="privileged")
        statuses = [
            (await h.service.decide(request.id, user_id=user, decision=Decision.APPROVE)).status
            for user in APPROVERS
        ]
        assert statuses == [Status.PENDING, Status.PENDING, Status.APPROVED]


async def test_deny_needs_a_reason_and_ends_the_request(h):
    request = await _request(h, who="privileged")
    await h.service.decide(request.id, user_id=A, decision=Decision.APPROVE)
    with pytest.raises(InvalidRequest, match="Denying a request needs a reason") as caught:
        await h.service.decide(request.id, user_id=B, decision=Decision.DENY, reason=" ")
    assert caught.value.field == "reason"
    denied = await h.service.decide(
        request.id, user_id=B, decision=Decision.DENY, reason="<!channel> false alarm"
    )
    assert denied.status is Status.DENIED and denied.decided_by == B
    assert denied.decision_reason == "<!channel> false alarm"  # stored as given; escaping is at display
    with pytest.raises(PolicyError, match="This request is already denied"):
        await h.service.decide(request.id, user_id=C, decision=Decision.APPROVE)
    assert h.audit_events(request.id) == ["requested", "approved", "denied", "refused"]


async def test_an_expired_request_cannot_be_approved(h):
    request = await _request(h)
    h.clock.advance(minutes=30)
    with pytest.raises(PolicyError, match="expired at 2026-11-01 09:30 UTC and can't be approved") as caught:
        await h.service.decide(request.id, user_id=A, decision=Decision.APPROVE)
    assert caught.value.request is not None and caught.value.request.status is Status.EXPIRED
    assert h.service.get(request.id).status is Status.EXPIRED
    with pytest.raises(PolicyError, match="already expired"):
        await h.service.decide(request.id, user_id=B, decision=Decision.DENY, reason="late")
    assert h.audit_events(request.id) == ["requested", "expired", "refused", "refused"]


async def test_the_expiry_refusal_names_what_was_tried(h):
    denied = await _request(h)
    retried = await _request(h, who="plain2")
    h.clock.advance(minutes=30)
    with pytest.raises(
        PolicyError, match=r"^This request expired at 2026-11-01 09:30 UTC and can't be denied\.$"
    ):
        await h.service.check_decision(denied.id, user_id=A, decision=Decision.DENY)
    assert h.service.get(denied.id).status is Status.EXPIRED
    with pytest.raises(PolicyError, match=r"^This request expired at .* UTC and can't be denied\.$"):
        await h.service.decide(retried.id, user_id=A, decision=Decision.DENY, reason="late")
    with pytest.raises(PolicyError, match=r"^This request expired at .* UTC and can't be retried\.$"):
        await h.service.retry(retried.id, user_id=A)
    assert _refusals(h) == [(A, "expired"), (A, "expired"), (A, "not_failed")]


async def test_just_before_expiry_still_counts(h):
    request = await _request(h)
    h.clock.advance(minutes=29, seconds=59)
    assert (
        await h.service.decide(request.id, user_id=A, decision=Decision.APPROVE)
    ).status is Status.APPROVED


async def test_expire_due_marks_only_overdue_pending_requests(h):
    old = await _request(h)
    decided = await _request(h, who="plain2")
    await h.service.decide(decided.id, user_id=A, decision=Decision.DENY, reason="no")
    h.clock.advance(minutes=20)
    fresh = await _request(h, who="privileged")
    h.clock.advance(minutes=10)
    expired = h.service.expire_due()
    assert [r.id for r in expired] == [old.id] and expired[0].status is Status.EXPIRED
    assert h.service.get(fresh.id).status is Status.PENDING
    assert h.service.get(decided.id).status is Status.DENIED
    assert h.service.expire_due() == []
    # once expired, a new request for the same action is allowed again
    assert (await _request(h)).id != old.id


async def test_unknown_request_id(h):
    with pytest.raises(RequestNotFound, match="No approval request 'apr_nope'"):
        h.service.get("apr_nope")
    with pytest.raises(RequestNotFound):
        await h.service.decide("apr_nope", user_id=A, decision=Decision.APPROVE)


async def test_pending_for_a_user_lists_what_they_may_approve_now(h):
    mine = await _request(h, who="plain2")
    targeted = await _request(h, who="plain")  # its target is TARGET_USER
    half = await _request(h, who="privileged2", by=GROUP_RESPONDER)
    await h.service.decide(half.id, user_id=A, decision=Decision.APPROVE)
    h.clock.advance(minutes=1)
    assert [r.id for r in await h.service.pending()] == [mine.id, targeted.id, half.id]
    assert [r.id for r in await h.service.pending(for_user=A)] == [mine.id, targeted.id]
    assert [r.id for r in await h.service.pending(for_user=B)] == [mine.id, targeted.id, half.id]
    assert [r.id for r in await h.service.pending(for_user=REQUESTER)] == [half.id]
    assert await h.service.pending(for_user=OUTSIDER) == []
    h.clock.advance(minutes=30)
    assert await h.service.pending() == []


async def test_set_message_and_history(h):
    request = await _request(h)
    h.service.set_message(request.id, "C0APPROVALS", "1700000000.000100")
    stored = h.service.get(request.id)
    assert (stored.message_channel, stored.message_ts) == ("C0APPROVALS", "1700000000.000100")
    await h.service.decide(request.id, user_id=A, decision=Decision.DENY, reason="dup")
    history = h.service.history("homebase", request.identity_id)
    assert [row["event"] for row in history] == ["denied", "requested"]
    assert history[0]["actor"] == A and history[0]["detail"]["reason"] == "dup"
    assert h.service.history(None, request.identity_id) == history
    assert h.service.history("homebase", "idn_other") == []


async def test_to_dict_is_json_ready(h):
    request = await _request(h)
    data = request.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["status"] == "pending" and data["action"] == "revoke_sessions"
    assert data["expires_at"] == "2026-11-01T09:30:00.000000+00:00"


async def test_the_trail_of_a_whole_session_verifies(h):
    request = await _request(h, who="privileged")
    with pytest.raises(PolicyError):
        await h.service.decide(request.id, user_id=OUTSIDER, decision=Decision.APPROVE)
    await h.service.decide(request.id, user_id=A, decision=Decision.APPROVE)
    await h.service.decide(request.id, user_id=B, decision=Decision.DENY, reason="no")
    assert audit.verify(h.db)[0] is True
    # no secret ever reaches the trail
    dump = " ".join(str(row) for row in h.db.query("SELECT * FROM audit"))
    assert "hld_test_simulator" not in dump


# --- the target as it is when the last approval comes -----------------------------------------------


async def test_a_target_that_became_privileged_needs_more_approvers_before_it_runs(h):
    person = h.people["plain"]
    request = await _request(h)
    assert request.approvals_needed == 1 and request.target["privileged"] is False
    # from now on HomeBase reports the person as privileged (e.g. just made an admin)
    await h.fault(
        kind="corrupt", field="privileged", value=True, count=2, path=f"/v1/identity/{person['id']}"
    )
    first = await h.service.decide(request.id, user_id=A, decision=Decision.APPROVE)
    assert first.status is Status.PENDING and first.approvals_needed == 2 and first.approvers == (A,)
    assert first.target["privileged"] is True  # the card shows the snapshot as re-read
    assert await h.actions() == []
    escalated = [
        json.loads(r["detail"])
        for r in h.db.query(
            "SELECT detail FROM audit WHERE event = 'escalated' AND request_id = ?", [request.id]
        )
    ]
    assert escalated == [
        {
            "approvals_needed": 2,
            "reason": "the target is now privileged",
            "rule": "privileged_approvals",
            "was": 1,
        }
    ]
    second = await h.service.decide(request.id, user_id=B, decision=Decision.APPROVE)
    assert second.status is Status.APPROVED and second.approvers == (A, B)
    assert h.audit_events(request.id) == ["requested", "escalated", "approved", "approved"]


async def test_the_completing_approval_refreshes_the_snapshot(h):
    person = h.people["plain"]
    request = await _request(h)
    h.sim.set_risk(person["id"], 97)
    decided = await h.service.decide(request.id, user_id=A, decision=Decision.APPROVE)
    assert decided.status is Status.APPROVED
    assert decided.target["risk_score"] == 97 and decided.target["risk_level"] == "critical"
    assert decided.target["provider_label"] == "HomeBase"


async def test_an_approval_that_does_not_complete_reads_nothing(h):
    person = h.people["privileged"]
    request = await _request(h, who="privileged")
    reads = len(h.sim.requests_to(f"/v1/identity/{person['id']}", "GET"))
    await h.service.decide(request.id, user_id=A, decision=Decision.APPROVE)
    assert len(h.sim.requests_to(f"/v1/identity/{person['id']}", "GET")) == reads
    await h.service.decide(request.id, user_id=B, decision=Decision.APPROVE)
    assert len(h.sim.requests_to(f"/v1/identity/{person['id']}", "GET")) == reads + 1


async def test_a_target_gone_at_approval_closes_the_request_without_running(h):
    person = h.people["plain"]
    request = await _request(h)
    await h.fault(
        kind="error", code="resource_not_found", count=1, method="GET", path=f"/v1/identity/{person['id']}"
    )
    with pytest.raises(PolicyError, match="Not approved: HomeBase no longer has") as caught:
        await h.service.decide(request.id, user_id=A, decision=Decision.APPROVE)
    assert "closed without running" in caught.value.message
    closed = h.service.get(request.id)
    assert caught.value.request == closed
    assert closed.status is Status.FAILED and closed.attempts == 0 and not closed.retryable
    assert closed.error is not None and person["id"] in closed.error and closed.approvers == ()
    assert h.audit_events(request.id) == ["requested", "refused", "failed"]
    assert _refusals(h) == [(A, "target_gone")]
    # it can't be retried later (e.g. once the identity is back) and skip the policy
    with pytest.raises(PolicyError, match="closed without running"):
        await h.service.retry(request.id, user_id=B)
    assert h.service.get(request.id).status is Status.FAILED and await h.actions() == []
    # a new request for the same action is allowed
    assert (await _request(h)).id != request.id


async def test_an_unreachable_provider_refuses_the_last_approval_and_keeps_it_pending(h):
    person = h.people["plain"]
    request = await _request(h)
    await h.fault(kind="error", code="internal_error", count=5, method="GET")
    with pytest.raises(PolicyError) as caught:
        await h.service.decide(request.id, user_id=A, decision=Decision.APPROVE)
    assert caught.value.message.startswith(
        "Not approved: idops checks the target again before the last approval, and that failed"
        " (HomeBase: Injected internal_error (request id req_"
    )
    assert caught.value.message.endswith("The request is still waiting; approve again later.")
    pending = h.service.get(request.id)
    assert pending.status is Status.PENDING and pending.approvers == () and await h.actions() == []
    assert _refusals(h) == [(A, "reread_failed")]
    async with h.http.delete(f"{h.sim_url}/_admin/faults") as response:
        assert response.status == 200
    approved = await h.service.decide(request.id, user_id=A, decision=Decision.APPROVE)
    assert approved.status is Status.APPROVED and approved.identity_id == person["id"]
