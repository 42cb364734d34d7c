"""The idops config file (TOML) and the secrets from the environment, validated with pydantic.

Only entry points call `load_config` and `Secrets()`; everything else receives the parsed objects.
Every value is checked by type and shape here (strict types: a boolean is not a number, a string not a
list), so a refusal is one `ConfigError` line naming the file and the key, never a traceback:

- Slack ids have their shape (channels `C…`/`G…`, people `U…`/`W…` or user groups `S…`), numbers
  their ranges, `[store] path` is a file name (whether it can be opened is checked where it is
  opened, by the server), and the file is UTF-8 TOML of sane depth.
- Secrets stay out of the file: a secret-looking key (or a Slack token under any key) is refused
  naming the environment variable it belongs in, and every `*_env` value must look like a variable
  name (capitals, digits and `_`), since what is pasted there by mistake is usually the secret itself.
- No message ever shows a value from the file, and keys in messages are escaped and cut.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import aiohttp
import tomllib
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    Strict,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors import Connector, RiskLevel, build

from .action_names import TABLE as ACTION_TABLE
from .action_names import named_action


class ConfigError(Exception):
    """A config file or environment problem, phrased as one line that names the key."""


def _shaped(pattern: str, what: str) -> AfterValidator:
    """A check that the whole string matches `pattern`; the refusal says what is expected, not the value."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"must be {what}")
        return value

    return AfterValidator(check)


#: ids, not names: the alert sender reads a channel's history by id to find what it already posted
ChannelId = Annotated[
    str, _shaped(r"[CG][A-Z0-9]{2,30}", "a channel id like C0123ABCD (channel name > Copy link: the C… part)")
]
PersonOrGroup = Annotated[
    str,
    _shaped(r"[UWS][A-Z0-9]{2,30}", "a Slack user id (U… or W…) or user group id (S…), not a name or email"),
]
GroupId = Annotated[str, _shaped(r"S[A-Z0-9]{2,30}", "a Slack user group id like S0ONCALL")]
_ENV_NAME = r"[A-Z][A-Z0-9_]{0,99}"
_ENV_WHAT = (
    "the name of an environment variable (capitals, digits and _, like HOMEBASE_API_KEY), "
    "not the secret itself (the value is not shown)"
)
#: what an `*_env` key holds: the name of an environment variable, never the value itself
EnvName = Annotated[str, _shaped(_ENV_NAME, _ENV_WHAT)]
HttpUrl = Annotated[str, _shaped(r"https?://[^\s/]+(/\S*)?", "an http(s) URL like https://slack.com/api/")]
Name = Annotated[str, Field(min_length=1, max_length=200)]
#: enums are given as text in TOML: validated by value although the sections are strict
Level = Annotated[RiskLevel, Strict(False)]


class _Section(BaseModel):
    # strict: TOML has real booleans and numbers, so `true` is never 1 and "300" never 300
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SlackSettings(_Section):
    command: str = Field("/idops", max_length=32)
    api_url: HttpUrl = "https://slack.com/api/"
    alert_channel: ChannelId
    approval_channel: ChannelId

    @field_validator("command")
    @classmethod
    def _slash(cls, value: str) -> str:
        if not re.fullmatch(r"/[a-z0-9_-]+", value):
            raise ValueError("must be '/' and lower-case letters, digits, - or _, e.g. \"/idops\"")
        return value


class AccessSettings(_Section):
    # Empty lists deny everything: the bot refuses requests and names the missing key.
    responders: list[PersonOrGroup] = Field(default_factory=list)
    approvers: list[PersonOrGroup] = Field(default_factory=list)


def _action_word(value: str) -> str:
    action = named_action(value)
    if action is None:
        words = ", ".join(row.word for row in ACTION_TABLE)
        raise ValueError(f"unknown action (expected one of: {words}, or the action's own name)")
    return action.value


ActionWord = Annotated[str, AfterValidator(_action_word)]
WEEK_MINUTES = 7 * 24 * 60


class _Escalation(_Section):
    """Who a request still waiting after `escalate_after_minutes` is shown to (bot/approvals/rules.py):
    `escalate_to` (a user group, mentioned) or `escalate_oncall` (a user group an on-call rotation keeps
    its current person in: that person is mentioned)."""

    escalate_after_minutes: Optional[int] = Field(None, ge=1, le=WEEK_MINUTES)
    escalate_to: Optional[GroupId] = None
    escalate_oncall: Optional[GroupId] = None

    @model_validator(mode="after")
    def _one_target(self) -> _Escalation:
        if self.escalate_to and self.escalate_oncall:
            raise ValueError("escalate_to and escalate_oncall: give one of them, not both")
        return self


class ApprovalRule(_Escalation):
    """One `[[approvals.rules]]` table: when it applies (every condition given must hold; an absent one
    always does) and what it asks for. The first rule that applies, in file order, decides."""

    name: str = Field(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9 _.:-]+$")
    action: list[ActionWord] = Field(default_factory=list, max_length=10)
    privileged: Optional[bool] = None
    risk: list[Level] = Field(default_factory=list, max_length=5)
    tenant: list[Name] = Field(default_factory=list, max_length=1000)
    connector: list[Name] = Field(default_factory=list, max_length=1000)
    approvals: int = Field(1, ge=1, le=5)
    #: who may decide: members of these user groups (empty: [access] approvers)
    groups: list[GroupId] = Field(default_factory=list, max_length=20)
    #: one member of this group may approve alone when the target's risk is critical
    break_glass: Optional[GroupId] = None


class ApprovalSettings(_Escalation):
    expire_minutes: int = Field(30, ge=1, le=WEEK_MINUTES)
    #: kept from before rules: read as a last rule `{name = "privileged_approvals", privileged = true,
    #: approvals = N}` (bot/approvals/rules.py)
    privileged_approvals: int = Field(2, ge=1, le=5)
    #: a time-boxed containment's reminder comes this long before its end (at half time when shorter)
    remind_minutes_before: int = Field(30, ge=1, le=24 * 60)
    rules: list[ApprovalRule] = Field(default_factory=list, max_length=200)

    @model_validator(mode="after")
    def _rules_fit(self) -> ApprovalSettings:
        names: set[str] = set()
        for index, rule in enumerate(self.rules):
            where = f"rules[{index}]"
            if rule.name in names:
                raise ValueError(f"{where}.name: two rules are named '{rule.name}'")
            names.add(rule.name)
            after = rule.escalate_after_minutes or self.escalate_after_minutes
            if (rule.escalate_to or rule.escalate_oncall) and not after:
                raise ValueError(
                    f"{where}: escalate_to and escalate_oncall need escalate_after_minutes (here or in"
                    " [approvals])"
                )
            if rule.escalate_after_minutes and not (
                rule.escalate_to or rule.escalate_oncall or self.escalate_to or self.escalate_oncall
            ):
                raise ValueError(f"{where}.escalate_after_minutes: needs escalate_to or escalate_oncall")
            if after and after >= self.expire_minutes:
                raise ValueError(
                    f"{where}.escalate_after_minutes: must be shorter than expire_minutes"
                    f" ({self.expire_minutes}), or the request expires before anyone is told"
                )
        if self.escalate_after_minutes and not (self.escalate_to or self.escalate_oncall):
            raise ValueError("escalate_after_minutes: needs escalate_to or escalate_oncall")
        if self.escalate_after_minutes and self.escalate_after_minutes >= self.expire_minutes:
            raise ValueError(
                f"escalate_after_minutes: must be shorter than expire_minutes ({self.expire_minutes}),"
                " or the request expires before anyone is told"
            )
        return self


_PG_URL = "a PostgreSQL URL like postgresql://idops@db.example:5432/idops"


class StoreSettings(_Section):
    """Where the store lives: `path`, a SQLite file (the default, `idops.db`), or `url`, a PostgreSQL
    database shared by every replica, with its password from the environment variable `password_env`
    names (a role that owns its database is enough; no superuser)."""

    # "" and ":memory:" would be a temporary database: approvals, audit trail and alert state lost on restart
    path: str = Field("idops.db", min_length=1, max_length=4096)
    url: Optional[str] = Field(None, min_length=1, max_length=4096)
    password_env: Optional[EnvName] = None

    @field_validator("url")
    @classmethod
    def _postgresql(cls, value: str) -> str:
        try:
            parts = urllib.parse.urlsplit(value)
            parts.port  # noqa: B018 - raises on a port that is no number
        except ValueError:
            raise ValueError(f"must be {_PG_URL}") from None
        if parts.scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise ValueError(f"must be {_PG_URL}")
        query = urllib.parse.parse_qs(parts.query)
        if parts.password is not None or "password" in query:
            raise ValueError(
                "must not hold the password: set it in an environment variable named by store.password_env"
            )
        if not parts.username or not parts.hostname or not parts.path.strip("/"):
            raise ValueError(f"must name the user, the host and the database: {_PG_URL}")
        return value

    @model_validator(mode="after")
    def _one_store(self) -> StoreSettings:
        if self.url is not None and "path" in self.model_fields_set:
            raise ValueError(
                "path and url are both set: keep path (a SQLite file) or url (PostgreSQL), not both"
            )
        if self.password_env is not None and self.url is None:
            raise ValueError("password_env is the password of url (PostgreSQL); set url or remove it")
        return self

    @field_validator("path")
    @classmethod
    def _a_file(cls, value: str) -> str:
        if not value.strip() or value == ":memory:" or value.startswith("file:"):
            raise ValueError("must name a database file (an empty or in-memory store is lost on restart)")
        if "\0" in value or value.endswith(("/", os.sep)):
            raise ValueError("must name a database file, not a directory")
        return value


class ReplicaSettings(_Section):
    #: a claim (a sweep scope, a channel's deliveries, the timers) lasts this long unless its replica
    #: renews it (every third of it): a dead replica's work is taken over after at most this long
    lease_seconds: int = Field(30, ge=3, le=3600)


_SECRET_KEY = re.compile(
    r"(?:^|_)(?:secret|password|token|api_key|private_key|service_account_json|certificate_key)$"
)
# secrets idops itself reads from the environment, by the key someone might write them under
_SLACK_SECRETS = {
    "token": "SLACK_BOT_TOKEN",
    "bot_token": "SLACK_BOT_TOKEN",
    "signing_secret": "SLACK_SIGNING_SECRET",
    "app_token": "SLACK_APP_TOKEN",
    "api_token": "IDOPS_API_TOKEN",
}
_TOKEN_VALUES = ((re.compile(r"xox[a-z]-"), "SLACK_BOT_TOKEN"), (re.compile(r"xapp-"), "SLACK_APP_TOKEN"))


def _secret_home(key: str, value: Any, depth: int = 0) -> Optional[str]:
    """The environment variable a secret written under `key` (or inside its table or list) belongs
    in, when it is one of idops's own: by the key's name, or a Slack token's shape."""
    if isinstance(value, str):
        for pattern, variable in _TOKEN_VALUES:
            if pattern.match(value.strip()):
                return variable
    elif isinstance(value, (dict, list)) and depth < 5:
        items = value.items() if isinstance(value, dict) else ((key, item) for item in value)
        for inner_key, inner in items:
            found = _secret_home(str(inner_key), inner, depth + 1)
            if found:
                return found
    name = key.lower().removeprefix("slack_").removeprefix("idops_")
    return _SLACK_SECRETS.get(name)


class ConnectorEntry(BaseModel):
    """One `[[connectors]]` table; provider settings beyond name and kind are checked by the connector."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: str = Field(strict=True, max_length=100)

    @model_validator(mode="after")
    def _settings_shaped(self) -> ConnectorEntry:
        # setting names are identifiers (so messages can show them); secrets come from the environment
        # only, so a config file can be shared and committed; `*_env` values are variable names
        for key, value in (self.model_extra or {}).items():
            where = _printable(key)
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", key):
                raise ValueError(f"{where}: not a setting (settings are lower-case names like api_key_env)")
            if _SECRET_KEY.search(key) or _secret_home(key, value):
                raise ValueError(
                    f"{where} is a secret: set it in an environment variable named by {where}_env"
                )
            if key.endswith("_env") and not (isinstance(value, str) and re.fullmatch(_ENV_NAME, value)):
                raise ValueError(f"{where}: must be {_ENV_WHAT}")
        return self

    def settings(self, environ: Mapping[str, str]) -> dict[str, Any]:
        """Provider settings with each `x_env = "VAR"` replaced by `x = <value of VAR>`."""
        out: dict[str, Any] = {}
        for key, value in (self.model_extra or {}).items():
            if key.endswith("_env"):
                secret = environ.get(value)
                if not secret:
                    raise ConfigError(
                        f"connector '{self.name}': environment variable {value} (from {key}) is not set"
                    )
                out[key[: -len("_env")]] = secret
            else:
                out[key] = value
        return out

    def build(self, environ: Mapping[str, str], session: Optional[aiohttp.ClientSession] = None) -> Connector:
        """The connector, its secrets read from `environ` (the one way idops builds one from config);
        ConfigError for a missing variable, the connector's ConfigurationError for a bad setting."""
        return build(self.kind, self.name, self.settings(environ), session=session)


DAY_SECONDS = 24 * 3600
MONTH_MINUTES = 31 * 24 * 60


class AlertRoute(_Section):
    """Send alerts matching every given condition to `channel`; the first matching route wins."""

    channel: ChannelId
    tenant: Optional[Name] = None
    provider: Optional[Name] = None
    connector: Optional[Name] = None
    level: Optional[Level] = None


class AlertSettings(_Section):
    enabled: bool = True
    poll_seconds: int = Field(300, ge=1, le=DAY_SECONDS)
    levels: list[Level] = Field(
        default_factory=lambda: [RiskLevel.HIGH, RiskLevel.CRITICAL], min_length=1, max_length=4
    )
    cooldown_minutes: int = Field(60, ge=0, le=MONTH_MINUTES)
    # how long the Snooze button on an alert card silences that identity
    snooze_minutes: int = Field(240, ge=1, le=MONTH_MINUTES)
    mention: Optional[GroupId] = None
    routes: list[AlertRoute] = Field(default_factory=list, max_length=1000)
    # connector name -> tenant ids swept one by one (own schedule, own outage notice), e.g. MSP keys
    tenants: dict[Name, list[Name]] = Field(default_factory=dict)
    # connectors with a change feed list in full on start and every Nth sweep, only changes in between
    full_sweep_every: int = Field(12, ge=1, le=10_000)
    # more cards than this waiting for one channel are folded into digest messages (0: never fold)
    fold_after: int = Field(10, ge=0, le=10_000)


class AutoContainmentRule(_Section):
    """`[[auto_containment]]`: when an identity of `connector` enters critical risk, idops runs `action`
    once by itself (checked against the connector when the server starts: bot/alerts/auto.py)."""

    connector: Name
    action: Name
    name: Optional[Annotated[str, _shaped(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", "letters, digits, . _ -")]] = (
        None
    )


class WebhookSettings(_Section):
    homebase_secret_env: Optional[EnvName] = None
    sailpoint_auth: Literal["bearer", "basic", "none"] = "bearer"
    sailpoint_token_env: Optional[EnvName] = None
    sailpoint_username_env: Optional[EnvName] = None
    sailpoint_password_env: Optional[EnvName] = None


class Config(_Section):
    #: the file it was read from, for messages about values checked later (e.g. the store opened)
    _source: str = PrivateAttr("config")

    slack: SlackSettings
    access: AccessSettings = Field(default_factory=lambda: AccessSettings())
    approvals: ApprovalSettings = Field(default_factory=lambda: ApprovalSettings())
    store: StoreSettings = Field(default_factory=lambda: StoreSettings())
    connectors: list[ConnectorEntry] = Field(default_factory=list, max_length=1000)
    alerts: AlertSettings = Field(default_factory=lambda: AlertSettings())
    webhooks: WebhookSettings = Field(default_factory=lambda: WebhookSettings())
    auto_containment: list[AutoContainmentRule] = Field(default_factory=list, max_length=100)
    replicas: ReplicaSettings = Field(default_factory=lambda: ReplicaSettings())

    @field_validator("connectors")
    @classmethod
    def _unique_names(cls, value: list[ConnectorEntry]) -> list[ConnectorEntry]:
        seen: set[str] = set()
        for entry in value:
            if entry.name in seen:
                raise ValueError(f"two connectors are named '{entry.name}'")
            seen.add(entry.name)
        return value

    def connector(self, name: str) -> ConnectorEntry:
        for entry in self.connectors:
            if entry.name == name:
                return entry
        known = ", ".join(e.name for e in self.connectors) or "none configured"
        raise ConfigError(f"no connector named '{_printable(name)}' (known: {known})")

    @property
    def source(self) -> str:
        return self._source

    def error(self, key: str, problem: str) -> ConfigError:
        """A refusal of a value found wrong after loading (where it is used): names the file and key."""
        return ConfigError(f"{self._source}: {key}: {problem}")


class Secrets(BaseSettings):
    """Secrets and overrides read from the environment only; never logged (SecretStr hides them)."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)

    SLACK_BOT_TOKEN: Optional[SecretStr] = None
    SLACK_SIGNING_SECRET: Optional[SecretStr] = None
    SLACK_APP_TOKEN: Optional[SecretStr] = None
    SLACK_API_URL: Optional[str] = None
    IDOPS_API_TOKEN: Optional[SecretStr] = None


# control characters and bidi overrides in a key are shown as escapes, and long keys are cut
_UNPRINTABLE = {code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0xA0)]}
_UNPRINTABLE.update({code: f"\\u{code:04x}" for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]})
KEY_SHOWN = 60


def _printable(key: object, limit: int = KEY_SHOWN) -> str:
    text = str(key).translate(_UNPRINTABLE)
    return text if len(text) <= limit else text[: limit - 1] + "…"


MAX_BYTES = 1024 * 1024  # a config file is a few KB; a bigger one is a mistake, not read


def _location(loc: tuple) -> str:
    """Turn pydantic's ('connectors', 0, 'kind') into 'connectors[0].kind'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{_printable(part)}" if out else _printable(part))
    return out


def _section_fields(loc: tuple) -> set[str]:
    """The keys the section at `loc` (e.g. ('webhooks', 'homebase_secret')) accepts."""
    model: Any = Config
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        model = getattr(field, "annotation", None) if field else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return set()
    return set(model.model_fields)


def _message(error: Any) -> str:
    """One pydantic error as a line's tail: never the input value."""
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else ""
        home = _secret_home(key, error.get("input"))
        if home:
            return f"a secret does not belong in the file: set it in the environment variable {home}"
        if _SECRET_KEY.search(key):
            where = f"named by {_printable(key)}_env" if f"{key}_env" in _section_fields(loc) else ""
            return f"a secret does not belong in the file: set it in an environment variable {where}".rstrip()
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind in ("bool_type", "int_type", "string_type", "list_type", "dict_type", "model_type"):
        expected = {
            "bool_type": "true or false",
            "int_type": "a whole number",
            "string_type": "text in quotes",
            "list_type": "a list [...]",
            "dict_type": "a table",
            "model_type": "a table",
        }[kind]
        return f"must be {expected}"
    return str(error["msg"]).removeprefix("Value error, ")


def _is_secret_error(error: Any) -> bool:
    return error["type"] == "extra_forbidden" and _message(error) != "unknown key"


_INNER_KEY = re.compile(r"(([a-z_]+)(?:\[\d+\])?(?:\.[a-z_]+)?): ")


def parse_config(data: Mapping[str, Any], source: str = "config") -> Config:
    try:
        config = Config.model_validate(data)
    except PydanticValidationError as exc:
        # a secret in the file is said first, whatever else is wrong
        errors = sorted(exc.errors(), key=lambda error: not _is_secret_error(error))
        first = errors[0]
        where = _location(tuple(first["loc"])) or "(top level)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        problem = _message(first)
        # a section's own check names the key inside it first ("rules[1].name: ..."): one path
        inner = _INNER_KEY.match(problem)
        if inner and first["loc"] and inner[2] in _section_fields((*first["loc"], "")):
            where, problem = f"{where}.{inner[1]}", problem[inner.end() :]
        line = f"{source}: {where}: {problem}"
        raise ConfigError(line + more) from None
    config._source = source
    known = {entry.name for entry in config.connectors}
    for index, rule in enumerate(config.approvals.rules):
        for name in rule.connector:
            if name not in known:
                listed = ", ".join(sorted(known)) or "none configured"
                raise config.error(
                    f"approvals.rules[{index}].connector",
                    f"no connector named '{_printable(name)}' (known: {listed})",
                )
    return config


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML config file; every problem is one ConfigError line naming the file."""
    file = Path(path)
    where = _printable(file, 500)
    try:
        if file.is_file() and file.stat().st_size > MAX_BYTES:
            raise ConfigError(f"{where}: over {MAX_BYTES // 1024} KB: not an idops config file")
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{where}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {_printable(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{where}: not valid TOML: arrays or tables nested too deeply") from None
    return parse_config(data, where)
