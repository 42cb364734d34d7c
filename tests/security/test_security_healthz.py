"""/healthz is open to anyone who reaches the port (a load balancer's probe, a stranger on the network):
it says whether idops is well and nothing else. The details (replica id with host and pid, connectors,
store, claims, alert channels and their errors) need the SOAR API's bearer token. Through the real
server over loopback HTTP."""

from __future__ import annotations

import os
import socket

API_AUTH = {"Authorization": "Bearer test-api-token"}


async def test_healthz_without_a_token_says_only_whether_it_is_well(h):
    async with h.http.get(h.url + "/healthz") as response:
        assert response.status == 200
        text = await response.text()
    assert response.content_type == "application/json" and text == '{"ok": true}'
    holder = h.bot.service.claims.holder
    for secret in (holder, socket.gethostname(), str(os.getpid()), "homebase", "sqlite", "expiry"):
        assert secret not in text


async def test_healthz_with_the_api_token_shows_the_details(h):
    async with h.http.get(h.url + "/healthz", headers=API_AUTH) as response:
        assert response.status == 200
        body = await response.json()
    assert body["ok"] is True and body["connectors"] == ["homebase"]
    assert body["replica"]["id"] == h.bot.service.claims.holder


async def test_healthz_with_a_wrong_token_is_401_and_shows_nothing(h, logged):
    for wrong in ("Bearer nope", "Bearer", "Basic dGVzdC1hcGktdG9rZW4=", "Bearer test-api-token-2"):
        async with h.http.get(h.url + "/healthz", headers={"Authorization": wrong}) as response:
            assert response.status == 401, wrong
            text = await response.text()
        assert "Missing or wrong bearer token." in text
        assert h.bot.service.claims.holder not in text and "homebase" not in text
    assert "test-api-token" not in logged.text
