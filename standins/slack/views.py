"""Views: modals (views.open, push, update, and their submission or cancel) and App Home (views.publish).

Triggers are single-use and expire as Slack's do; the modal stack is at most three deep; a
submission's ack (errors, update, push, clear) is applied to the stack as Slack applies it.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, ClassVar, Optional

from .blocks import view_problems
from .core import Method
from .driver import Driver
from .records import BotReply, SlackError, plain, public_view

MAX_MODAL_STACK = 3


class Views(Driver):
    """The views.* Web API methods, and the driver's submit and close of an open modal."""

    def _view_arg(self, params: dict[str, Any]) -> dict[str, Any]:
        view = params.get("view")
        if isinstance(view, str):
            try:
                view = json.loads(view)
            except ValueError:
                raise SlackError("invalid_arguments", ["[ERROR] view must be a JSON object"]) from None
        problems = view_problems(view)
        if problems:
            code = "invalid_blocks" if any("/blocks" in p for p in problems) else "invalid_arguments"
            raise SlackError(code, problems)
        assert isinstance(view, dict)
        return view

    def _use_trigger(self, trigger_id: Any) -> str:
        trigger = self._triggers.get(trigger_id) if isinstance(trigger_id, str) else None
        if trigger is None:
            raise SlackError("invalid_trigger_id")
        if trigger.used:
            raise SlackError("exchanged_trigger_id")
        if time.monotonic() > trigger.expires:
            raise SlackError("expired_trigger_id")
        trigger.used = True
        return trigger.user

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        view = self._view_arg(params)
        user = self._use_trigger(params.get("trigger_id"))
        if view["type"] != "modal":
            raise SlackError(
                "invalid_arguments", ["[ERROR] views.open needs a modal [json-pointer:/view/type]"]
            )
        stored = self._stored_view(view, user)
        stored["root_view_id"] = stored["id"]
        self._state.modals[user] = [stored]
        self._event(f"modal opened for {user}: {plain(view.get('title'))}")
        return {"view": public_view(stored)}

    def _views_push(self, params: dict[str, Any]) -> dict[str, Any]:
        view = self._view_arg(params)
        user = self._use_trigger(params.get("trigger_id"))
        stack = self._state.modals[user]
        if not stack:
            raise SlackError("not_found")
        if len(stack) >= MAX_MODAL_STACK:
            raise SlackError("push_limit_reached")
        stored = self._stored_view(view, user)
        stored["root_view_id"] = stack[0]["id"]
        stored["previous_view_id"] = stack[-1]["id"]
        stack.append(stored)
        return {"view": public_view(stored)}

    def _views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        view = self._view_arg(params)
        view_id, external_id = params.get("view_id"), params.get("external_id")
        for user, stack in self._state.modals.items():
            for index, current in enumerate(stack):
                if (view_id and current["id"] == view_id) or (
                    external_id and current.get("external_id") == external_id
                ):
                    if params.get("hash") and params["hash"] != current["hash"]:
                        raise SlackError("hash_conflict")
                    stored = self._stored_view(view, user, current["id"])
                    for key in ("root_view_id", "previous_view_id"):
                        if key in current:
                            stored[key] = current[key]
                    stack[index] = stored
                    return {"view": public_view(stored)}
        raise SlackError("not_found")

    def _views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        view = self._view_arg(params)
        user = self._user(params.get("user_id")).id
        if view["type"] != "home":
            raise SlackError("invalid_arguments", ["[ERROR] views.publish needs a home view"])
        current = self._state.home.get(user)
        if current and params.get("hash") and params["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        stored = self._stored_view(view, user, current["id"] if current else None)
        self._state.home[user] = stored
        self._event(f"App Home published for {user}")
        return {"view": public_view(stored)}

    METHODS: ClassVar[dict[str, Method]] = {
        "views.open": _views_open,
        "views.push": _views_push,
        "views.update": _views_update,
        "views.publish": _views_publish,
    }

    # --- the driver: a user submits or closes a modal --------------------------------------------

    async def submit_view(
        self,
        bot_url: str,
        user_id: str,
        view_id: str,
        values: Mapping[str, Mapping[str, Any]],
        **signing: Any,
    ) -> BotReply:
        """Submit the open modal `view_id` with `values` = {block_id: {action_id: value}}.

        A plain string value fills a text input (or picks the option with that value in a select or
        radio group); a dict is used as the Slack state entry itself. Required inputs left out are
        refused here, as Slack's client refuses to submit them.
        """
        user = self._user_or_fail(user_id)
        stack = self._state.modals[user_id]
        view = next((v for v in stack if v["id"] == view_id), None)
        if view is None:
            raise LookupError(f"view {view_id} is not open for {user_id}")
        view["state"] = {"values": _state_values(view, values)}
        trigger_id = self._issue_trigger(user_id)
        payload = {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": self.team_domain},
            "user": {"id": user_id, "username": user.name, "name": user.name, "team_id": self.team_id},
            "api_app_id": self.app_id,
            "token": self.verification_token,
            "trigger_id": trigger_id,
            "view": public_view(view),
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        self._event(f"{user.name} submitted {plain(view.get('title'))!r}")
        body = "payload=" + urllib.parse.quote(json.dumps(payload))
        status, text = await self._send(bot_url, body, "application/x-www-form-urlencoded", **signing)
        reply = BotReply(status, text, trigger_id)
        if status == 200:
            self._apply_submission_ack(user_id, view, reply.json)
        return reply

    def _apply_submission_ack(self, user_id: str, view: dict[str, Any], ack: Any) -> None:
        stack = self._state.modals[user_id]
        action = ack.get("response_action") if isinstance(ack, dict) else None
        if action == "errors":
            view["errors"] = ack.get("errors", {})
        elif action == "update" and not view_problems(ack.get("view")):
            stack[stack.index(view)] = self._stored_view(ack["view"], user_id, view["id"])
        elif action == "push" and not view_problems(ack.get("view")) and len(stack) < MAX_MODAL_STACK:
            stack.append(self._stored_view(ack["view"], user_id))
        elif action == "clear":
            stack.clear()
        else:
            stack.remove(view)
        self._touch()

    async def close_view(
        self, bot_url: str, user_id: str, view_id: str, **signing: Any
    ) -> Optional[BotReply]:
        """Cancel the modal `view_id`; tells the bot (view_closed) only if the view asked for it."""
        stack = self._state.modals[user_id]
        view = next((v for v in stack if v["id"] == view_id), None)
        if view is None:
            raise LookupError(f"view {view_id} is not open for {user_id}")
        stack.remove(view)
        self._touch()
        if not view.get("notify_on_close"):
            return None
        user = self._user_or_fail(user_id)
        payload = {
            "type": "view_closed",
            "team": {"id": self.team_id, "domain": self.team_domain},
            "user": {"id": user_id, "username": user.name, "name": user.name, "team_id": self.team_id},
            "api_app_id": self.app_id,
            "token": self.verification_token,
            "view": public_view(view),
            "is_cleared": False,
        }
        body = "payload=" + urllib.parse.quote(json.dumps(payload))
        status, text = await self._send(bot_url, body, "application/x-www-form-urlencoded", **signing)
        return BotReply(status, text)


def _state_values(view: Mapping[str, Any], values: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Slack's `view.state.values` for a submission, checked against the view's input blocks."""
    inputs = {
        (b.get("block_id", ""), b["element"].get("action_id", "")): b
        for b in view.get("blocks", [])
        if b.get("type") == "input" and isinstance(b.get("element"), dict)
    }
    state: dict[str, dict[str, Any]] = {}
    for block_id, actions in values.items():
        for action_id, value in actions.items():
            block = inputs.get((block_id, action_id))
            if block is None:
                known = ", ".join(f"{b}/{a}" for b, a in inputs) or "none"
                raise LookupError(f"no input {block_id}/{action_id} in this view (inputs: {known})")
            state.setdefault(block_id, {})[action_id] = _state_entry(block["element"], value)
    for (block_id, action_id), block in inputs.items():
        filled = state.get(block_id, {}).get(action_id)
        if not block.get("optional") and (filled is None or filled.get("value") == ""):
            raise ValueError(f"input {block_id}/{action_id} ({plain(block.get('label'))}) is required")
        if filled is None:
            state.setdefault(block_id, {})[action_id] = _state_entry(block["element"], None)
    return state


def _state_entry(element: Mapping[str, Any], value: Any) -> dict[str, Any]:
    kind = element.get("type", "plain_text_input")
    if isinstance(value, dict):
        return {"type": kind, **value}
    if kind in ("static_select", "radio_buttons"):
        key = "selected_option"
        option = next((o for o in element.get("options", []) if o.get("value") == value), None)
        if value is not None and option is None:
            raise LookupError(f"no option {value!r} in {element.get('action_id')}")
        return {"type": kind, key: option}
    return {"type": kind, "value": value}
