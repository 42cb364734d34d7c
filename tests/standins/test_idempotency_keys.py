"""Both provider stand-ins honour `Idempotency-Key` on actions as providers that support it do: a repeat
gets the first answer and runs nothing, another request under the same key is refused (422), a key in
use by a request still running is refused (409), and a refused request leaves the key free."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from standins import homebase, sailpoint, serving
from standins.idempotency import IdempotencyKeys


async def _token(http: aiohttp.ClientSession, url: str) -> str:
    form = {"grant_type": "client_credentials", "client_id": "sim-client", "client_secret": "sim-secret"}
    async with http.post(f"{url}/oauth/token", data=form) as answer:
        return str((await answer.json())["access_token"])


async def test_sailpoint_disable_with_a_key_runs_once() -> None:
    app = sailpoint.create_app(identities=5, rate_limit=False)
    state = app[sailpoint.STATE]
    account = state.account_id(1, 0)
    async with serving(app) as url, aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {await _token(http, url)}", "Idempotency-Key": "idops-apr_1:a"}
        answers = []
        for _ in range(2):
            async with http.post(f"{url}/v3/accounts/{account}/disable", json={}, headers=headers) as answer:
                answers.append(
                    (answer.status, await answer.json(), answer.headers.get("Idempotent-Replayed"))
                )
        assert answers[0][0] == answers[1][0] == 202 and answers[0][1] == answers[1][1]
        assert [a[2] for a in answers] == [None, "true"]
        assert len(state.tasks) == 1 and account in state.disabled_accounts
        other = state.account_id(2, 0)
        async with http.post(f"{url}/v3/accounts/{other}/disable", json={}, headers=headers) as answer:
            assert answer.status == 422 and "different request" in await answer.text()
        assert other not in state.disabled_accounts


async def test_homebase_refused_action_leaves_the_key_free() -> None:
    app = homebase.create_app(identities=5, rate_limits=False)
    state = app[homebase.STATE]
    target = state.identity_id(1)
    headers = {"Authorization": "Bearer hld_test_simulator", "Idempotency-Key": "k1"}
    async with serving(app) as url, aiohttp.ClientSession() as http:
        path = f"{url}/v1/identity/{target}/disable"
        async with http.post(path, json={}, headers=headers) as answer:  # no reason: 422, nothing done
            assert answer.status == 422
        async with http.post(path, json={"reason": "phished"}, headers=headers) as answer:
            assert answer.status == 200
        async with http.post(path, json={"reason": "phished"}, headers=headers) as answer:
            assert answer.status == 200 and answer.headers["Idempotent-Replayed"] == "true"
        assert [a["action"] for a in state.actions] == ["disable"]


async def test_a_key_still_in_use_is_refused_with_409() -> None:
    keys = IdempotencyKeys()
    release, started = asyncio.Event(), asyncio.Event()
    runs = 0

    async def slow() -> web.Response:
        nonlocal runs
        runs += 1
        started.set()
        await release.wait()
        return web.json_response({"ok": True})

    async def handle(request: web.Request) -> web.StreamResponse:
        return await keys.run(
            request, "caller", slow, lambda status, text: web.Response(status=status, text=text)
        )

    app = web.Application()
    app.router.add_post("/act", handle)
    async with serving(app) as url, aiohttp.ClientSession() as http:
        first = asyncio.ensure_future(http.post(f"{url}/act", json={}, headers={"Idempotency-Key": "k"}))
        await asyncio.wait_for(started.wait(), 5)
        async with http.post(f"{url}/act", json={}, headers={"Idempotency-Key": "k"}) as second:
            assert second.status == 409
        release.set()
        async with await first as answer:
            assert answer.status == 200
        assert runs == 1 and len(keys) == 1
