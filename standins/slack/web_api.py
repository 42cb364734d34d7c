"""The Slack Web API (`/api/<method>`) and the `/response/<id>` URLs handed out with commands and clicks.

Tokens are checked as Slack checks them (the app-level token only where Slack takes it), injected
faults and outages answer as Slack's do, and every call is recorded in `calls`.
"""

from __future__ import annotations

import copy
import secrets
import time
from typing import Any, ClassVar, Optional

from aiohttp import web

from .core import Method, SlackCore
from .records import Fault, SlackError, as_sent, flag, summary, top_level

RESPONSE_URL_USES = 5
RESPONSE_URL_TTL = 30 * 60
# Web API methods that take the app-level token (xapp-…) instead of the bot token
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})


class WebApi(SlackCore):
    """Chat, conversations, users and user groups; views.* and apps.* come from their own parts."""

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        super()._add_routes(router)
        router.add_route("*", "/api/{method}", self._api)
        router.add_post("/response/{rid}", self._response)

    # --- HTTP: the Web API ----------------------------------------------------------------------

    async def _read_params(self, request: web.Request) -> tuple[dict[str, Any], Optional[str]]:
        params: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    raise SlackError("invalid_json") from None
                if not isinstance(body, dict):
                    raise SlackError("invalid_json")
                params.update(body)
            else:
                params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        token = params.pop("token", None)
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[len("Bearer ") :]
        return params, token

    def _unavailable(self, request: web.Request) -> web.StreamResponse:
        if self._down == "drop" and request.transport is not None:
            request.transport.close()
        return web.Response(status=503, text="Slack is unavailable")

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        if self._down:
            return self._unavailable(request)
        try:
            params, token = await self._read_params(request)
        except SlackError as exc:
            return web.json_response({"ok": False, "error": exc.code})
        self.calls.append((method, copy.deepcopy(params)))
        faults = self._faults.get(method)
        if faults:
            fault = faults[0]
            fault.count -= 1
            if fault.count <= 0:
                faults.popleft()
            return self._fault_response(fault)
        handler = self._methods.get(method)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        if not token:
            return web.json_response({"ok": False, "error": "not_authed"})
        expected = self.app_token if method in APP_TOKEN_METHODS else self.bot_token
        if not secrets.compare_digest(token, expected):
            known = secrets.compare_digest(token, self.bot_token) or secrets.compare_digest(
                token, self.app_token
            )
            return web.json_response(
                {"ok": False, "error": "not_allowed_token_type" if known else "invalid_auth"}
            )
        try:
            result = handler(self, params)
        except SlackError as exc:
            self._touch()
            body: dict[str, Any] = {"ok": False, "error": exc.code}
            if exc.messages:
                body["response_metadata"] = {"messages": exc.messages}
            return web.json_response(body, status=exc.status)
        self._touch()
        body = {"ok": True, **result}
        if body.pop("_warned", False):
            body["warning"] = "missing_text_or_fallback"
            body["response_metadata"] = {"warnings": ["missing_text_or_fallback"]}
        return web.json_response(body)

    @staticmethod
    def _fault_response(fault: Fault) -> web.Response:
        if fault.status is None:
            return web.json_response({"ok": False, "error": fault.error})
        headers = {}
        if fault.status == 429 and fault.retry_after is not None:
            headers["Retry-After"] = str(int(fault.retry_after))
        error = fault.error or ("ratelimited" if fault.status == 429 else "fatal_error")
        return web.json_response({"ok": False, "error": error}, status=fault.status, headers=headers)

    # --- Web API methods ------------------------------------------------------------------------

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_domain,
            "user": "idops",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_param(params)
        content = self._content(params, "chat.postMessage")
        message = self._post(
            channel, content, params.get("thread_ts"), flag(params.get("reply_broadcast", False))
        )
        return {
            "channel": channel,
            "ts": message["ts"],
            "message": as_sent(message),
            "_warned": not content["text"],
        }

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_param(params)
        message = self._find(channel, params.get("ts"))
        if message.get("bot_id") != self.bot_id:
            raise SlackError("cant_update_message")
        merged = {"text": message.get("text", ""), **params}
        if "blocks" not in params and message.get("blocks"):
            merged["blocks"] = message["blocks"]
        content = self._content(merged, "chat.update")
        if params.get("blocks") in ([], "[]"):
            content.pop("blocks", None)
            message.pop("blocks", None)
        if "metadata" not in content and message.get("metadata"):
            content["metadata"] = message["metadata"]
        message.update(content)
        message["edited"] = {"user": self.bot_user_id, "ts": self._ts()}
        self._event(f"bot updated a message in #{self._channel_name(channel)}: {summary(message)}")
        return {
            "channel": channel,
            "ts": message["ts"],
            "text": message["text"],
            "message": as_sent(message),
            "_warned": not content["text"],
        }

    def _chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_param(params)
        message = self._find(channel, params.get("ts"))
        if message.get("bot_id") != self.bot_id:
            raise SlackError("cant_delete_message")
        self._state.channels[channel].remove(message)
        return {"channel": channel, "ts": message["ts"]}

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_param(params)
        user = params.get("user")
        if user not in self.users:
            raise SlackError("user_not_in_channel")
        content = self._content(params, "chat.postEphemeral")
        entry = self._ephemeral(user, channel, content, "chat.postEphemeral", params.get("thread_ts"))
        return {"message_ts": entry["ts"], "_warned": not content["text"]}

    def _chat_get_permalink(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_param(params)
        message = self._find(channel, params.get("message_ts"))
        link = f"https://{self.team_domain}.slack.com/archives/{channel}/p{message['ts'].replace('.', '')}"
        return {"channel": channel, "permalink": link}

    def _history_window(self, params: dict[str, Any], messages: list[dict[str, Any]]) -> list:
        inclusive = flag(params.get("inclusive", False))
        oldest, latest = params.get("oldest"), params.get("latest")

        def inside(ts: str) -> bool:
            if oldest and (float(ts) < float(oldest) or (not inclusive and ts == str(oldest))):
                return False
            return not (latest and (float(ts) > float(latest) or (not inclusive and ts == str(latest))))

        try:
            return [m for m in messages if inside(m["ts"])]
        except ValueError:
            raise SlackError("invalid_ts_oldest") from None

    def _page(self, params: dict[str, Any], items: list, default: int = 100) -> tuple[list, dict]:
        try:
            limit = int(params.get("limit") or default)
            start = int(params.get("cursor") or 0)
        except ValueError:
            raise SlackError("invalid_cursor") from None
        limit = max(1, min(limit, 999))
        page = items[start : start + limit]
        more = start + limit < len(items)
        return page, {
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _shown(self, message: dict[str, Any], with_metadata: bool) -> dict[str, Any]:
        shown = as_sent(copy.deepcopy(message))
        if not with_metadata:
            shown.pop("metadata", None)
        return shown

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_param(params, create=False)
        top = [m for m in self._state.channels.get(channel, []) if top_level(m)]
        window = self._history_window(params, list(reversed(top)))
        page, more = self._page(params, window)
        with_metadata = flag(params.get("include_all_metadata", False))
        return {"messages": [self._shown(m, with_metadata) for m in page], **more}

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_param(params, create=False)
        try:
            parent = self._find(channel, params.get("ts"))
        except SlackError:
            raise SlackError("thread_not_found") from None
        root = parent.get("thread_ts") or parent["ts"]
        thread = [m for m in self._state.channels[channel] if m["ts"] == root or m.get("thread_ts") == root]
        page, more = self._page(params, self._history_window(params, thread))
        with_metadata = flag(params.get("include_all_metadata", False))
        return {"messages": [self._shown(m, with_metadata) for m in page], **more}

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_param(params, create=False)
        return {
            "channel": {
                "id": channel,
                "name": self._channel_name(channel),
                "is_channel": channel.startswith("C"),
                "is_im": channel.startswith("D"),
                "is_member": True,
            }
        }

    def _conversations_open(self, params: dict[str, Any]) -> dict[str, Any]:
        users = [u for u in str(params.get("users") or "").split(",") if u]
        if len(users) != 1 or users[0] not in self.users:
            raise SlackError("user_not_found")
        return {"channel": {"id": "D" + users[0][1:]}}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"user": self._user(params.get("user")).to_api(self.team_id)}

    def _users_lookup_by_email(self, params: dict[str, Any]) -> dict[str, Any]:
        email = str(params.get("email") or "").lower()
        for user in self.users.values():
            if user.email and user.email.lower() == email and not user.deleted:
                return {"user": user.to_api(self.team_id)}
        raise SlackError("users_not_found")

    def _usergroups_list(self, params: dict[str, Any]) -> dict[str, Any]:
        include_users = flag(params.get("include_users", False))
        groups = []
        for gid, members in self.usergroups.items():
            group: dict[str, Any] = {
                "id": gid,
                "team_id": self.team_id,
                "handle": self.usergroup_handles[gid],
                "name": self.usergroup_handles[gid],
                "user_count": len(members),
            }
            if include_users:
                group["users"] = list(members)
            groups.append(group)
        return {"usergroups": groups}

    def _usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        group = params.get("usergroup")
        if group not in self.usergroups:
            raise SlackError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    METHODS: ClassVar[dict[str, Method]] = {
        "auth.test": _auth_test,
        "chat.postMessage": _chat_post_message,
        "chat.update": _chat_update,
        "chat.delete": _chat_delete,
        "chat.postEphemeral": _chat_post_ephemeral,
        "chat.getPermalink": _chat_get_permalink,
        "conversations.history": _conversations_history,
        "conversations.replies": _conversations_replies,
        "conversations.info": _conversations_info,
        "conversations.open": _conversations_open,
        "users.info": _users_info,
        "users.lookupByEmail": _users_lookup_by_email,
        "usergroups.list": _usergroups_list,
        "usergroups.users.list": _usergroups_users_list,
    }

    # --- HTTP: response_url ---------------------------------------------------------------------

    async def _response(self, request: web.Request) -> web.StreamResponse:
        if self._down:
            return self._unavailable(request)
        target = self._response_urls.get(request.match_info["rid"])
        if target is None or time.monotonic() - target.created > RESPONSE_URL_TTL:
            return web.json_response({"ok": False, "error": "expired_url"}, status=404)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"ok": False, "error": "invalid_payload"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"ok": False, "error": "invalid_payload"}, status=400)
        self.calls.append(("response_url", copy.deepcopy(body)))
        target.uses += 1
        if target.uses > RESPONSE_URL_USES:
            return web.json_response({"ok": False, "error": "used_too_many_times"}, status=404)
        try:
            self._respond(target, body)
        except SlackError as exc:
            self._touch()
            payload: dict[str, Any] = {"ok": False, "error": exc.code}
            if exc.messages:
                payload["response_metadata"] = {"messages": exc.messages}
            return web.json_response(payload, status=400)
        self._touch()
        return web.json_response({"ok": True})
