"""The shape of what Slack sends, checked on a signed request before Bolt dispatches it.

Slack's payloads always have these fields with these types; a body that doesn't (which only someone
holding the signing secret could send) is refused with 400 instead of failing inside Bolt or a listener
with a 500 and a traceback. Only what Bolt and idops's listeners read is checked; anything else passes.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator
from pydantic import ValidationError as PydanticValidationError


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class _User(_Loose):
    id: StrictStr


class _Action(_Loose):
    action_id: StrictStr
    value: Optional[StrictStr] = None


class _Channel(_Loose):
    id: Optional[StrictStr] = None


class _Where(_Loose):
    type: Optional[StrictStr] = None
    channel_id: Optional[StrictStr] = None


class _Actions(_Loose):
    type: Literal["block_actions"]
    user: _User
    actions: list[_Action] = Field(min_length=1)
    channel: Optional[_Channel] = None
    container: Optional[_Where] = None
    view: Optional[_Where] = None
    response_url: Optional[StrictStr] = None
    trigger_id: Optional[StrictStr] = None


class _Option(_Loose):
    value: Optional[StrictStr] = None


class _Input(_Loose):
    """One input's state: typed text (`value`) or a choice (`selected_option`)."""

    value: Optional[StrictStr] = None
    selected_option: Optional[_Option] = None


class _State(_Loose):
    values: dict[str, dict[str, _Input]] = Field(default_factory=dict)


class _View(_Loose):
    type: StrictStr  # Bolt's own matchers read it (`modal`, `home`, `workflow_step`)
    callback_id: StrictStr = ""
    private_metadata: StrictStr = ""
    state: Optional[_State] = None


class _ViewPayload(_Loose):
    type: Literal["view_submission", "view_closed"]
    user: _User
    view: _View


class _Event(_Loose):
    type: StrictStr
    user: Optional[StrictStr] = None

    @model_validator(mode="after")
    def _has_user(self) -> _Event:
        if self.type == "app_home_opened" and not self.user:
            raise ValueError("app_home_opened without a user")
        return self


class _EventCallback(_Loose):
    type: Literal["event_callback"]
    event: _Event


class _Command(_Loose):
    command: StrictStr
    text: StrictStr = ""
    user_id: StrictStr
    # every slash command comes with one: the reason form opens with it, and a command sent again is
    # known by it (bot/command_log.py)
    trigger_id: StrictStr = Field(min_length=1)
    channel_id: Optional[StrictStr] = None


_MODELS: tuple[type[_Loose], ...] = (
    _User,
    _Action,
    _Channel,
    _Where,
    _Actions,
    _Option,
    _Input,
    _State,
    _View,
    _ViewPayload,
    _Event,
    _EventCallback,
    _Command,
)

_BY_TYPE: dict[str, type[_Loose]] = {
    "block_actions": _Actions,
    "view_submission": _ViewPayload,
    "view_closed": _ViewPayload,
    "event_callback": _EventCallback,
}


def problem(body: Any) -> Optional[str]:
    """Why a parsed request body is not shaped as Slack sends it (None when it is, or is a kind idops
    does not handle, which Bolt answers itself). Never includes a value from the body."""
    if not isinstance(body, dict):
        return "not an object"
    kind = body.get("type")
    model = _BY_TYPE.get(kind) if isinstance(kind, str) else None
    if model is None and "command" in body:
        model = _Command
    if model is None:
        return None
    try:
        model.model_validate(body)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        # a key from the body (a block or action id under state.values) is a value too: shown as `*`
        where = ".".join(_shown(part) for part in first["loc"]) or "(top level)"
        return f"{model.__name__.strip('_').lower()} payload: {where}: {first['type']}"
    return None


#: the field names of the models above: the only names a refusal shows
_FIELDS = frozenset(name for model in _MODELS for name in model.model_fields)


def _shown(part: object) -> str:
    return str(part) if isinstance(part, int) or part in _FIELDS else "*"
