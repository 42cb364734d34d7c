"""Socket Mode: the websocket `apps.connections.open` hands out, and envelopes sent over it.

A bot started with `idops serve --socket-mode` holds it open; the driver sends it the payloads it
would otherwise POST, and reads the bot's ack from it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import urllib.parse
from typing import Any, ClassVar

import aiohttp
from aiohttp import web

from .core import Method, SlackCore


class SocketMode(SlackCore):
    """The `/socket` endpoint and `apps.connections.open`."""

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        super()._add_routes(router)
        router.add_get("/socket", self._socket)

    def _apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        ticket = secrets.token_hex(8)
        self._tickets.add(ticket)
        return {"url": f"ws{self._base().removeprefix('http')}/socket?ticket={ticket}"}

    METHODS: ClassVar[dict[str, Method]] = {"apps.connections.open": _apps_connections_open}

    # --- the websocket ----------------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        """The websocket a Socket Mode app holds open: `hello`, then envelopes out and acks back."""
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets or self.refuse_sockets:
            return web.Response(status=401, text="unknown or used ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._socket_ws = ws
        await ws.send_json(
            {"type": "hello", "num_connections": 1, "connection_info": {"app_id": self.app_id}}
        )
        self._event("the bot connected over Socket Mode")
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    ack = json.loads(message.data)
                except ValueError:
                    continue
                waiter = (
                    self._socket_acks.pop(str(ack.get("envelope_id")), None)
                    if isinstance(ack, dict)
                    else None
                )
                if waiter is not None and not waiter.done():
                    waiter.set_result(ack.get("payload"))
        finally:
            if self._socket_ws is ws:
                self._socket_ws = None
        return ws

    @property
    def socket_connected(self) -> bool:
        return self._socket_ws is not None and not self._socket_ws.closed

    async def drop_socket(self) -> None:
        """Close the app's Socket Mode connection, as Slack does now and then (the app reconnects)."""
        if self._socket_ws is not None:
            await self._socket_ws.close()
            self._touch()

    async def _send_socket(self, body: str, content_type: str) -> tuple[int, str]:
        """Deliver what would have been POSTed as a Socket Mode envelope; (200, ack payload as JSON),
        or (503, "") when no app is connected or it does not ack in time (Slack's dispatch_failed)."""
        ws = self._socket_ws
        if ws is None or ws.closed:
            return 503, ""
        envelope_id = secrets.token_hex(8)
        envelope: dict[str, Any] = {"envelope_id": envelope_id, "accepts_response_payload": True}
        if content_type == "application/json":
            envelope.update(type="events_api", payload=json.loads(body), accepts_response_payload=False)
        else:
            form = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
            if "payload" in form:
                envelope.update(type="interactive", payload=json.loads(form["payload"]))
            else:
                envelope.update(type="slash_commands", payload=form)
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._socket_acks[envelope_id] = waiter
        try:
            await ws.send_json(envelope)
            payload = await asyncio.wait_for(waiter, self.ack_timeout)
        except (asyncio.TimeoutError, ConnectionError):
            return 503, ""
        finally:
            self._socket_acks.pop(envelope_id, None)
        return 200, json.dumps(payload) if payload else ""
