"""The idops config file (TOML) and the secrets from the environment, validated with pydantic.

Only entry points call `load_config` and `Secrets()`; everything else receives the parsed objects.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Optional

import tomllib
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors import RiskLevel


class ConfigError(Exception):
    """A config file or environment problem, phrased as one line that names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlackSettings(_Section):
    command: str = "/idops"
    api_url: str = "https://slack.com/api/"
    alert_channel: str
    approval_channel: str

    @field_validator("command")
    @classmethod
    def _slash(cls, value: str) -> str:
        if not value.startswith("/") or " " in value:
            raise ValueError("must start with '/' and contain no spaces, e.g. \"/idops\"")
        return value


class AccessSettings(_Section):
    # Empty lists deny everything: the bot refuses requests and names the missing key.
    responders: list[str] = Field(default_factory=list)
    approvers: list[str] = Field(default_factory=list)


class ApprovalSettings(_Section):
    expire_minutes: int = Field(30, ge=1, le=7 * 24 * 60)
    privileged_approvals: int = Field(2, ge=1, le=5)


class StoreSettings(_Section):
    path: str = "idops.db"


_SECRET_KEY = re.compile(r"(?:^|_)(?:secret|password|token|api_key|private_key|service_account_json)$")


class ConnectorEntry(BaseModel):
    """One `[[connectors]]` table; provider settings beyond name and kind are checked by the connector."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: str

    @model_validator(mode="after")
    def _no_literal_secrets(self) -> ConnectorEntry:
        # secrets come from the environment only, so a config file can be shared and committed
        for key in self.model_extra or {}:
            if _SECRET_KEY.search(key):
                raise ValueError(f"{key} is a secret: set it in an environment variable named by {key}_env")
        return self

    def settings(self, environ: Mapping[str, str]) -> dict[str, Any]:
        """Provider settings with each `x_env = "VAR"` replaced by `x = <value of VAR>`."""
        out: dict[str, Any] = {}
        for key, value in (self.model_extra or {}).items():
            if key.endswith("_env"):
                if not isinstance(value, str) or not value:
                    raise ConfigError(f"connector '{self.name}': {key} must name an environment variable")
                secret = environ.get(value)
                if not secret:
                    raise ConfigError(
                        f"connector '{self.name}': environment variable {value} (from {key}) is not set"
                    )
                out[key[: -len("_env")]] = secret
            else:
                out[key] = value
        return out


class AlertRoute(_Section):
    """Send alerts matching every given condition to `channel`; the first matching route wins."""

    channel: str
    tenant: Optional[str] = None
    provider: Optional[str] = None
    connector: Optional[str] = None
    level: Optional[RiskLevel] = None


class AlertSettings(_Section):
    enabled: bool = True
    poll_seconds: int = Field(300, ge=1)
    levels: list[RiskLevel] = Field(default_factory=lambda: [RiskLevel.HIGH, RiskLevel.CRITICAL])
    cooldown_minutes: int = Field(60, ge=0)
    # how long the Snooze button on an alert card silences that identity
    snooze_minutes: int = Field(240, ge=1)
    mention: Optional[str] = None
    routes: list[AlertRoute] = Field(default_factory=list)
    # connector name -> tenant ids swept one by one (own schedule, own outage notice), e.g. MSP keys
    tenants: dict[str, list[str]] = Field(default_factory=dict)
    # connectors with a change feed list in full on start and every Nth sweep, only changes in between
    full_sweep_every: int = Field(12, ge=1, le=10_000)
    # more cards than this waiting for one channel are folded into digest messages (0: never fold)
    fold_after: int = Field(10, ge=0, le=10_000)


class WebhookSettings(_Section):
    homebase_secret_env: Optional[str] = None
    sailpoint_auth: Literal["bearer", "basic", "none"] = "bearer"
    sailpoint_token_env: Optional[str] = None
    sailpoint_username_env: Optional[str] = None
    sailpoint_password_env: Optional[str] = None


class Config(_Section):
    slack: SlackSettings
    access: AccessSettings = Field(default_factory=lambda: AccessSettings())
    approvals: ApprovalSettings = Field(default_factory=lambda: ApprovalSettings())
    store: StoreSettings = Field(default_factory=lambda: StoreSettings())
    connectors: list[ConnectorEntry] = Field(default_factory=list)
    alerts: AlertSettings = Field(default_factory=lambda: AlertSettings())
    webhooks: WebhookSettings = Field(default_factory=lambda: WebhookSettings())

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
        raise ConfigError(f"no connector named '{name}' (known: {known})")


class Secrets(BaseSettings):
    """Secrets and overrides read from the environment only; never logged (SecretStr hides them)."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)

    SLACK_BOT_TOKEN: Optional[SecretStr] = None
    SLACK_SIGNING_SECRET: Optional[SecretStr] = None
    SLACK_APP_TOKEN: Optional[SecretStr] = None
    SLACK_API_URL: Optional[str] = None
    IDOPS_API_TOKEN: Optional[SecretStr] = None


def _location(loc: tuple) -> str:
    """Turn pydantic's ('connectors', 0, 'kind') into 'connectors[0].kind'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_config(data: Mapping[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = _location(tuple(first["loc"])) or "(top level)"
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        elif first["type"] == "missing":
            message = "required key is missing"
        elif first["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{source}: {where}: {message}{more}") from None


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML config file; every problem is one ConfigError line naming the file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    return parse_config(data, str(file))
