"""The SOAR approvals API over real HTTP: auth, validation, creation, state, and the card callback."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from support.approvals import APPROVERS, OUTSIDER, REQUESTER

from bot.api import add_routes
from bot.approvals import Decision, Status
from standins import serving

TOKEN = "api-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Api:
    """The API mounted on a loopback server, plus what its `on_created` callback received."""

    def __init__(self, h, url):
        self.h = h
        self.url = url + "/api/v1/approvals"
        self.created = []

    async def post(self, body=None, *, headers=AUTH, data=None):
        kwargs = {"data": data} if data is not None else {"json": body}
        async with self.h.http.post(self.url, headers=headers, **kwargs) as response:
            return response.status, await response.json(), response.headers

    async def get(self, request_id, *, headers=AUTH):
        async with self.h.http.get(f"{self.url}/{request_id}", headers=headers) as response:
            return response.status, await response.json()

    def body(self, **overrides):
        person = self.h.people["plain"]
        body = {
            "connector": "homebase",
            "identity": person["id"],
            "action": "revoke_sessions",
            "reason": "SOAR playbook 12: impossible travel",
            "requested_by": REQUESTER,
        }
        body.update(overrides)
        return {k: v for k, v in body.items() if v is not None}


def _app(h, api, token=TOKEN, failing_callback=False):
    app = web.Application()

    async def on_created(request):
        api.created.append(request)
        if failing_callback:
            raise RuntimeError("Slack is down")
        h.service.set_message(request.id, "C0APPROVALS", f"{len(api.created)}.000100")  # as the bot does

    mounted = add_routes(app, h.service, token, on_created)
    return app, mounted


@pytest.fixture
async def api(h):
    holder = Api(h, "")
    app, mounted = _app(h, holder)
    assert mounted is True
    async with serving(app) as url:
        holder.url = url + "/api/v1/approvals"
        yield holder


async def test_create_then_read_through_to_executed(api):
    status, body, headers = await api.post(api.body())
    assert status == 201, body
    assert body["status"] == "pending" and body["source"] == "api" and body["requested_by"] == REQUESTER
    assert body["identity_id"] == api.h.people["plain"]["id"] and body["action"] == "revoke_sessions"
    assert body["target"]["name"] == api.h.people["plain"]["display_name"]
    assert "message_ts" not in body
    assert headers["Location"] == f"/api/v1/approvals/{body['id']}"
    assert [r.id for r in api.created] == [body["id"]]  # the card callback got the stored request
    status, state = await api.get(body["id"])
    assert status == 200 and state["status"] == "pending" and state["result"] is None
    await api.h.service.decide(body["id"], user_id=APPROVERS[0], decision=Decision.APPROVE)
    assert (await api.get(body["id"]))[1]["status"] == "approved"
    await api.h.service.execute(body["id"])
    status, state = await api.get(body["id"])
    assert state["status"] == "executed" and state["error"] is None
    assert state["result"]["status"] == "completed" and state["result"]["identity_id"] == body["identity_id"]
    assert len(await api.h.actions()) == 1


async def test_identity_by_email_and_action_alias(api):
    person = api.h.people["plain2"]
    status, body, _ = await api.post(api.body(identity=person["email"], action="reset", reason=None))
    assert status == 201, body
    assert body["identity_id"] == person["id"] and body["action"] == "force_password_reset"


async def test_denied_and_expired_states(api):
    _, first, _ = await api.post(api.body())
    await api.h.service.decide(first["id"], user_id=APPROVERS[0], decision=Decision.DENY, reason="benign")
    _, state = await api.get(first["id"])
    assert state["status"] == "denied" and state["decision_reason"] == "benign"
    _, second, _ = await api.post(api.body(identity=api.h.people["plain2"]["id"]))
    api.h.clock.advance(minutes=31)
    api.h.service.expire_due()
    assert (await api.get(second["id"]))[1]["status"] == "expired"


async def test_failed_state_carries_the_error(api):
    _, body, _ = await api.post(api.body())
    await api.h.service.decide(body["id"], user_id=APPROVERS[0], decision=Decision.APPROVE)
    await api.h.fault(kind="error", code="validation_error", method="POST")  # refused: nothing done
    await api.h.service.execute(body["id"])
    state = (await api.get(body["id"]))[1]
    assert state["status"] == "failed" and "HomeBase" in state["error"] and state["result"] is None


async def test_an_unknown_outcome_is_its_own_state(api):
    _, body, _ = await api.post(api.body())
    await api.h.service.decide(body["id"], user_id=APPROVERS[0], decision=Decision.APPROVE)
    await api.h.fault(kind="error", code="internal_error", method="POST")  # a 5xx: maybe done
    await api.h.service.execute(body["id"])
    state = (await api.get(body["id"]))[1]
    assert state["status"] == "unknown" and "outcome is unknown" in state["error"]
    assert "no way to read" in state["outcome_check"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Bearer"},
    ],
)
async def test_missing_or_wrong_token_is_refused(api, headers):
    status, body, response_headers = await api.post(api.body(), headers=headers)
    assert status == 401 and body["error"] == "Missing or wrong bearer token."
    assert response_headers["WWW-Authenticate"].startswith("Bearer")
    assert (await api.get("apr_x", headers=headers))[0] == 401
    assert api.h.db.count("approvals") == 0 and api.created == []


async def test_without_a_token_the_api_is_not_mounted(h):
    holder = Api(h, "")
    for token in (None, ""):
        app, mounted = _app(h, holder, token=token)
        assert mounted is False
        async with serving(app) as url:
            async with h.http.post(url + "/api/v1/approvals", json={}, headers=AUTH) as response:
                assert response.status == 404
            async with h.http.get(url + "/api/v1/approvals/apr_1", headers=AUTH) as response:
                assert response.status == 404


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"connector": None}, "connector", "Field 'connector' is required."),
        ({"identity": "  "}, "identity", "Field 'identity' is required."),
        ({"action": None}, "action", "Field 'action' is required."),
        ({"requested_by": None}, "requested_by", "Field 'requested_by' is required."),
        ({"reason": 5}, "reason", "Field 'reason' must be a string."),
        ({"connector": ["homebase"]}, "connector", "Field 'connector' must be a string."),
        ({"requested_by": "alice@example.com"}, "requested_by", "must be a Slack user id"),
        ({"playbook": "x"}, "playbook", "Unknown field 'playbook'"),
        ({"connector": "okta"}, "connector", "No connector named 'okta' (known: homebase)."),
        ({"action": "nuke"}, "action", "Unknown action 'nuke'"),
        ({"action": "disable", "reason": ""}, "reason", "Disabling an account needs a reason."),
        ({"action": "enable", "reason": "back"}, "action", "HomeBase has no 'Enable account' action."),
        ({"identity": "idn_0000000000"}, "identity", "HomeBase has no identity 'idn_0000000000'."),
    ],
)
async def test_bad_fields_are_named(api, overrides, field, message):
    status, body, _ = await api.post(api.body(**overrides))
    assert status == 400
    assert body["field"] == field and message in body["error"]
    assert api.h.db.count("approvals") == 0 and api.created == []


@pytest.mark.parametrize(("data", "message"), [(b"{not json", "not valid JSON"), (b"[1, 2]", "JSON object")])
async def test_bad_json_body(api, data, message):
    status, body, _ = await api.post(data=data, headers={**AUTH, "Content-Type": "application/json"})
    assert status == 400 and message in body["error"] and body["field"] == "body"


async def test_requester_must_be_a_responder(api):
    status, body, _ = await api.post(api.body(requested_by=OUTSIDER))
    assert status == 403 and "Only responders" in body["error"]
    assert api.h.db.count("approvals") == 0


async def test_a_duplicate_points_at_the_existing_request(api):
    _, first, _ = await api.post(api.body())
    status, body, _ = await api.post(api.body(reason="again"))
    assert status == 409 and "already waiting" in body["error"]
    assert body["existing"]["id"] == first["id"]
    assert len(api.created) == 1


async def test_provider_fault_is_a_bad_gateway(api):
    await api.h.fault(kind="error", code="internal_error", method="GET", count=5)
    status, body, _ = await api.post(api.body())
    assert status == 502 and "HomeBase" in body["error"]


async def test_unknown_request_id(api):
    status, body = await api.get("apr_doesnotexist")
    assert status == 404 and body["error"] == "No approval request 'apr_doesnotexist'."


async def test_a_failing_card_callback_still_creates_the_request(h):
    holder = Api(h, "")
    app, _ = _app(h, holder, failing_callback=True)
    async with serving(app) as url:
        holder.url = url + "/api/v1/approvals"
        status, body, _ = await holder.post(holder.body())
    assert status == 201 and "could not be posted" in body["warning"]
    assert h.service.get(body["id"]).status.value == "pending"


async def test_an_executing_request_reads_as_approved(api):
    _, body, _ = await api.post(api.body())
    await api.h.service.decide(body["id"], user_id=APPROVERS[0], decision=Decision.APPROVE)
    await api.h.fault(kind="slow", delay=0.5, method="POST")
    running = asyncio.create_task(api.h.service.execute(body["id"]))
    for _ in range(200):  # bounded: the claim happens before the first await
        if api.h.service.get(body["id"]).status is Status.EXECUTING:
            break
        await asyncio.sleep(0.01)
    assert api.h.service.get(body["id"]).status is Status.EXECUTING
    assert (await api.get(body["id"]))[1]["status"] == "approved"
    assert (await asyncio.wait_for(running, timeout=10)).status is Status.EXECUTED
    assert (await api.get(body["id"]))[1]["status"] == "executed"
