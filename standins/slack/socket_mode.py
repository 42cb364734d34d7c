"""Socket Mode: the websockets `apps.connections.open` hands out, and envelopes sent over them.

A bot started with `idops serve --socket-mode` holds a connection open; the driver sends it the
payloads it would otherwise POST, and reads the bot's ack from it. What Slack documents, done here:

- An app may hold several connections at once (each `idops serve` replica opens its own). Each
  envelope goes to *one* open connection; Slack spreads them (which one is not documented: the stand-in
  takes them in turn). `hello` says how many connections the app has open (`num_connections`).
- The app acks an envelope by sending back its `envelope_id` (with a `payload` where the envelope
  `accepts_response_payload`). An envelope not acked within `ack_timeout` (Slack: 3 s) is sent again,
  to another open connection when there is one, with `retry_attempt` (1, 2, ...) and `retry_reason`
  (`timeout`); one whose connection closes before its ack is sent again at once (`connection_failed`).
  Each sending has its own `envelope_id`; an ack of any of them answers the envelope. After
  `socket_retries` re-sends (Slack: 3) the driver gets Slack's dispatch failure (503). Slack
  documents these retries for Events API envelopes, whose first sending carries `retry_attempt: 0` and
  `retry_reason: ""`; the stand-in re-sends commands and clicks too, the harder case for an app.
- A closed connection is dropped from the set at once. `disconnect(reason)` sends the `disconnect`
  message Slack sends before it recycles a connection (`refresh_requested`, `warning`); the app then
  opens a new connection, and the stand-in sends nothing new to the old one while another is open.

`socket_deliveries` records every sending (`SocketDelivery`), so tests count them and their re-sends;
`lost_acks` names connections whose acks never arrive (the app did the work; Slack sends it again).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import urllib.parse
from typing import Any, ClassVar, Optional

import aiohttp
from aiohttp import web

from .core import Method, SlackCore
from .records import InFlight, SocketConnection, SocketDelivery

#: the disconnect reasons Slack documents (`link_disabled`: Socket Mode was turned off for the app)
DISCONNECT_REASONS = ("refresh_requested", "warning", "link_disabled")


class SocketMode(SlackCore):
    """The `/socket` endpoint and `apps.connections.open`."""

    #: re-sends of an envelope nobody acked (Slack retries an event 3 times)
    socket_retries = 3
    #: connections whose acks are lost on the way: the app sent them, Slack never sees them
    lost_acks: frozenset[int] = frozenset()

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
        connection = SocketConnection(
            next(self._socket_numbers), ws, asyncio.get_running_loop().create_future()
        )
        self._sockets.append(connection)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self.socket_connections),
                "debug_info": {"host": "applink-fake", "approximate_connection_time": 18060},
                "connection_info": {"app_id": self.app_id},
            }
        )
        self._event(f"the bot connected over Socket Mode (connection {connection.number})")
        try:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT and connection.number not in self.lost_acks:
                    self._take_ack(message.data)
        finally:
            self._sockets.remove(connection)
            connection.gone.set_result(None)
            self._event(f"Socket Mode connection {connection.number} closed")
        return ws

    def _take_ack(self, data: str) -> None:
        try:
            ack = json.loads(data)
        except ValueError:
            return
        envelope = self._in_flight.get(str(ack.get("envelope_id"))) if isinstance(ack, dict) else None
        if envelope is None:
            return  # an ack of nothing in flight (late, after the driver gave up): Slack ignores it
        for sending in envelope.sendings:
            if sending.envelope_id == ack["envelope_id"]:
                sending.acked = True
        if not envelope.answer.done():
            envelope.answer.set_result(ack.get("payload"))

    @property
    def socket_connections(self) -> list[int]:
        """The numbers of the app's open connections (each connection gets the next number)."""
        return [c.number for c in self._sockets if not c.ws.closed]

    def socket_unacked(self, number: Optional[int] = None) -> list[SocketDelivery]:
        """The sendings the driver still waits to see acked (on connection `number`, or any)."""
        waiting = {id(e): e for e in self._in_flight.values() if not e.answer.done()}.values()
        return [e.sendings[-1] for e in waiting if number is None or e.sendings[-1].connection == number]

    @property
    def socket_connected(self) -> bool:
        return bool(self.socket_connections)

    async def drop_socket(self, number: Optional[int] = None) -> None:
        """Close connection `number` (every one when None), as Slack does now and then (the app
        reconnects)."""
        for connection in list(self._sockets):
            if number is None or connection.number == number:
                await connection.ws.close()
        self._touch()

    async def disconnect(self, reason: str = "refresh_requested", number: Optional[int] = None) -> None:
        """Send Slack's `disconnect` message on connection `number` (every one when None): the app
        should open a new connection; this one takes no new envelopes while another is open."""
        if reason not in DISCONNECT_REASONS:
            raise ValueError(f"disconnect reason must be one of {', '.join(DISCONNECT_REASONS)}")
        for connection in list(self._sockets):
            if number is None or connection.number == number:
                connection.leaving = True
                await connection.ws.send_json(
                    {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}
                )
        self._touch()

    async def _close_sockets(self) -> None:
        await self.drop_socket()

    def _pick(self, avoid: Optional[SocketConnection]) -> Optional[SocketConnection]:
        """The next connection in turn: not one told to disconnect nor `avoid` (the one an envelope
        just failed on) while another is open."""
        open_ = [c for c in self._sockets if not c.ws.closed]
        for choice in (
            [c for c in open_ if not c.leaving and c is not avoid],
            [c for c in open_ if c is not avoid],
            open_,
        ):
            if choice:
                self._socket_turn += 1
                return choice[(self._socket_turn - 1) % len(choice)]
        return None

    async def _send_socket(self, body: str, content_type: str) -> tuple[int, str]:
        """Deliver what would have been POSTed as a Socket Mode envelope; (200, ack payload as JSON),
        or (503, "") when no connection acks it, re-sends included (Slack's dispatch_failed)."""
        message: dict[str, Any] = {"accepts_response_payload": True}
        if content_type == "application/json":
            message.update(type="events_api", payload=json.loads(body), accepts_response_payload=False)
        else:
            form = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
            if "payload" in form:
                message.update(type="interactive", payload=json.loads(form["payload"]))
            else:
                message.update(type="slash_commands", payload=form)
        envelope = InFlight(asyncio.get_running_loop().create_future())
        name = secrets.token_hex(8)
        connection: Optional[SocketConnection] = None
        reason = ""
        try:
            for attempt in range(self.socket_retries + 1):
                connection = self._pick(avoid=connection)
                if connection is None:
                    return 503, ""
                sending = SocketDelivery(
                    name, secrets.token_hex(8), message["type"], connection.number, attempt, reason
                )
                retry = {"retry_attempt": attempt, "retry_reason": reason}
                sent = {
                    **message,
                    "envelope_id": sending.envelope_id,
                    **(retry if attempt or message["type"] == "events_api" else {}),
                }
                envelope.sendings.append(sending)
                self.socket_deliveries.append(sending)
                self._in_flight[sending.envelope_id] = envelope
                self._touch()
                try:
                    await connection.ws.send_json(sent)
                except ConnectionError:
                    reason = "connection_failed"
                    continue
                await asyncio.wait(
                    {envelope.answer, connection.gone},
                    timeout=self.ack_timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if envelope.answer.done():
                    payload = envelope.answer.result()
                    return 200, json.dumps(payload) if payload else ""
                reason = "connection_failed" if connection.gone.done() else "timeout"
            return 503, ""
        finally:
            for sending in envelope.sendings:
                self._in_flight.pop(sending.envelope_id, None)
            self._touch()
