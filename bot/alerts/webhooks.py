"""Push path: HomeBase webhooks and SailPoint event triggers make idops re-check an identity at once.

HomeBase: `POST /webhooks/homebase`, envelope `{id, type, created_at, tenant_id, data}`, signed with
`X-HLD-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`; the signature is checked on the raw
bytes before anything is parsed, and an event id seen before is acknowledged without a second look.
SailPoint: `POST /webhooks/sailpoint`, the `idn:identity-attributes-changed` trigger
(`{"identity": {"id", "name", "type"}, "changes": [...]}`), with bearer or basic auth as configured.
Every refusal answers JSON `{"error": "..."}` saying what was wrong; nothing from the body is echoed.
Credentials are checked before the body is read (its size is capped by the server); a body that is not
UTF-8 JSON Python can hold (nested too deep, numbers too long) is 400, never a 500.
"""

from __future__ import annotations

import binascii
import hmac
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, TypeVar, Union

from aiohttp import BasicAuth, web
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from connectors.homebase import verify_webhook

from ..config import ConfigError, WebhookSettings

if TYPE_CHECKING:
    from .scheduler import AlertService

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-HLD-Signature-256"
KEEP_EVENT_IDS = 7 * 24 * 3600.0  # HomeBase retries a delivery for at most a few days
MAX_IDENTITIES = 100  # per event: a bigger list is refused rather than fanned out


@dataclass(frozen=True)
class WebhookSecrets:
    """What the webhook routes check, read from the environment at start-up."""

    homebase_secret: Optional[str] = None
    sailpoint_auth: str = "none"
    sailpoint_token: Optional[str] = None
    sailpoint_username: Optional[str] = None
    sailpoint_password: Optional[str] = None
    sailpoint_enabled: bool = False


def _env(environ: Mapping[str, str], key: str, variable: Optional[str]) -> Optional[str]:
    if not variable:
        return None
    value = environ.get(variable)
    if not value:
        raise ConfigError(f"environment variable {variable} (from [webhooks] {key}) is not set")
    return value


def from_config(settings: WebhookSettings, environ: Mapping[str, str]) -> WebhookSecrets:
    """Resolve `[webhooks]`; a route whose secret is not configured is not served at all."""
    homebase = _env(environ, "homebase_secret_env", settings.homebase_secret_env)
    token = _env(environ, "sailpoint_token_env", settings.sailpoint_token_env)
    username = _env(environ, "sailpoint_username_env", settings.sailpoint_username_env)
    password = _env(environ, "sailpoint_password_env", settings.sailpoint_password_env)
    auth = settings.sailpoint_auth
    if auth == "bearer" and token is None and (username or password):
        raise ConfigError('[webhooks] sailpoint_auth is "bearer" but sailpoint_token_env is not set')
    if auth == "basic" and not (username and password):
        raise ConfigError(
            '[webhooks] sailpoint_auth = "basic" needs sailpoint_username_env and sailpoint_password_env'
        )
    enabled = (auth == "bearer" and token is not None) or auth == "basic" or auth == "none"
    if auth == "none":
        log.warning('[webhooks] sailpoint_auth = "none": anyone who can reach idops can trigger re-checks')
    return WebhookSecrets(homebase, auth, token, username, password, enabled)


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=200)
    created_at: Optional[str] = None
    tenant_id: Optional[str] = None
    data: dict[str, Any] = Field(default_factory=dict)


class _TriggerIdentity(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=200)
    type: Optional[str] = None
    name: Optional[str] = None


class _AttributesChanged(BaseModel):
    model_config = ConfigDict(extra="allow")

    identity: _TriggerIdentity
    changes: list[dict[str, Any]] = Field(default_factory=list)


Event = TypeVar("Event", bound=BaseModel)


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def _parse(body: bytes, model: type[Event], what: str) -> Union[Event, web.Response]:
    """The body as a `model`, or the 400 naming what is wrong with it (the first wrong field)."""
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        # ValueError: bad JSON or an integer too long to convert; RecursionError: nested too deep
        parsed = None
    if not isinstance(parsed, dict):
        return _error(400, "body is not a JSON object")
    try:
        return model.model_validate(parsed)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        message = "is required" if first["type"] == "missing" else first["msg"]
        return _error(400, f"{what}: field '{where}' {message}")


def _header_bytes(value: str) -> bytes:
    """A header as the bytes received (aiohttp decodes them with surrogateescape), for compare_digest."""
    return value.encode("utf-8", "surrogateescape")


def _identity_ids(event: _Envelope) -> list[str]:
    """The identities an event names: `identity_id`, `identity_ids`, or `id` in an identity.* event."""
    data = event.data
    found: list[Any] = []
    if "identity_id" in data:
        found.append(data["identity_id"])
    if isinstance(data.get("identity_ids"), list):
        found.extend(data["identity_ids"])
    if not found and event.type.startswith("identity.") and "id" in data:
        found.append(data["id"])
    return [value for value in dict.fromkeys(found) if isinstance(value, str) and value]


def add_routes(app: web.Application, service: AlertService, secrets: WebhookSecrets) -> None:
    """Mount the webhook routes whose secrets are configured."""
    detector = service.detector
    db = detector.db

    def connectors_of(kind: str, tenant_id: Optional[str] = None) -> list[str]:
        names = []
        for name, connector in detector.connectors.items():
            if connector.kind != kind:
                continue
            scoped = getattr(connector, "tenant_id", None)
            if tenant_id and scoped and scoped != tenant_id:
                continue
            names.append(name)
        return names

    async def homebase(request: web.Request) -> web.Response:
        assert secrets.homebase_secret is not None
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            return _error(401, f"missing {SIGNATURE_HEADER} header")
        body = await request.read()
        # verify_webhook compares text: a header that is not ASCII can't be a hex digest anyway
        if not signature.isascii() or not verify_webhook(secrets.homebase_secret, body, signature):
            log.warning("HomeBase webhook refused: bad signature")
            return _error(401, f"{SIGNATURE_HEADER} does not match the body")
        event = _parse(body, _Envelope, "HomeBase event")
        if isinstance(event, web.Response):
            return event
        ids = _identity_ids(event)
        if len(ids) > MAX_IDENTITIES:
            return _error(400, f"HomeBase event: more than {MAX_IDENTITIES} identities in one event")
        now = time.time()
        with db.atomic():
            db.execute("DELETE FROM alert_webhook_events WHERE received_at < ?", [now - KEEP_EVENT_IDS])
            fresh = db.execute(
                "INSERT INTO alert_webhook_events (source, event_id, received_at) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                ["homebase", event.id, now],
            ).rowcount
        if not fresh:
            return web.json_response({"ok": True, "duplicate": True})
        names = connectors_of("homebase", event.tenant_id)
        for name in names:
            for identity_id in ids:
                service.recheck_soon(name, identity_id)
        return web.json_response({"ok": True, "rechecking": len(ids) * len(names)}, status=202)

    def sailpoint_allowed(request: web.Request) -> Optional[web.Response]:
        if secrets.sailpoint_auth == "none":
            return None
        header = request.headers.get("Authorization", "")
        if secrets.sailpoint_auth == "bearer":
            scheme, _, token = header.partition(" ")
            expected = secrets.sailpoint_token or ""
            if scheme.lower() != "bearer" or not token:
                return _error(401, "missing bearer token", **{"WWW-Authenticate": "Bearer"})
            if not hmac.compare_digest(_header_bytes(token.strip()), expected.encode()):
                return _error(401, "wrong bearer token", **{"WWW-Authenticate": "Bearer"})
            return None
        try:
            auth = BasicAuth.decode(header)
        except (ValueError, binascii.Error):
            return _error(401, "missing or unreadable basic credentials", **{"WWW-Authenticate": "Basic"})
        good_user = hmac.compare_digest(auth.login.encode(), (secrets.sailpoint_username or "").encode())
        good_password = hmac.compare_digest(
            auth.password.encode(), (secrets.sailpoint_password or "").encode()
        )
        if not (good_user and good_password):
            return _error(401, "wrong basic credentials", **{"WWW-Authenticate": "Basic"})
        return None

    async def sailpoint(request: web.Request) -> web.Response:
        refused = sailpoint_allowed(request)
        if refused is not None:
            log.warning("SailPoint trigger refused: %s", json.loads(refused.text or "{}").get("error"))
            return refused
        trigger = _parse(await request.read(), _AttributesChanged, "idn:identity-attributes-changed")
        if isinstance(trigger, web.Response):
            return trigger
        names = connectors_of("sailpoint")
        for name in names:
            service.recheck_soon(name, trigger.identity.id)
        return web.json_response({"ok": True, "rechecking": len(names)}, status=202)

    if secrets.homebase_secret:
        app.router.add_post("/webhooks/homebase", homebase)
    if secrets.sailpoint_enabled:
        app.router.add_post("/webhooks/sailpoint", sailpoint)
