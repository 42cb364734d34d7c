"""SailPoint's wire formats for `connectors.sailpoint`: filter expressions, identity JSON to `Identity`,
and error bodies to `ConnectorError`s. Pure functions: no requests, no state.

Mapping to `Identity` (SailPoint has no risk score, MFA data or privileged flag of its own):

* risk: the identity attribute named by the `risk_attribute` setting, a dotted path into the identity
  JSON such as `attributes.riskScore`; without it risk is unknown (None) and no risk alert can fire.
* privileged: the identity attribute `attributes.privileged` (tenants map it from admin groups).
* last login: the attributes `lastLogin`, `lastLoginIp` and `lastLoginCountry` when a tenant maps them.
* status: `identityStatus` (else `attributes.cloudStatus`), lower case: "active", "disabled", "locked"...
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Optional
from urllib.parse import urlsplit

from .errors import ConnectorError, NotFoundError, ProviderUnavailableError
from .http import Response, error_class_for_status
from .models import Identity, RiskLevel, parse_datetime

PROVIDER = "SailPoint"
_SAFE_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
# (field, operator) pairs this module may put in a `filters` expression; values are always quoted
_FILTERS = frozenset({("email", "eq"), ("name", "sw"), ("alias", "sw"), ("identityId", "eq")})


def filter_expr(field: str, op: str, value: str) -> str:
    """One `field op "value"` term; only whitelisted pairs, and the value quoted with \\ and " escaped,
    so text typed by a person can never change what the filter means."""
    if (field, op) not in _FILTERS:
        raise ValueError(f"filter {field} {op} is not allowed")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{field} {op} "{escaped}"'


def checked_id(identity_id: str) -> str:
    """An id fit for a URL path, else NotFoundError: "..", "/" or "?" could point the request elsewhere."""
    text = str(identity_id).strip()
    if not _SAFE_ID.fullmatch(text) or not text.strip("."):
        raise NotFoundError(f"no identity with id {text[:60]!r}", provider=PROVIDER)
    return text


def path_value(data: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (`attributes.riskScore`), or None when any step is missing."""
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def identity_from_json(
    raw: Any, *, connector: str, tenant_id: str, risk_score: Optional[int], request_id: Optional[str] = None
) -> Identity:
    """An `Identity` from one SailPoint identity object; ProviderUnavailableError when it has no id.

    Other fields of the wrong type read as unknown: SailPoint attributes are whatever a tenant maps.
    """
    identity_id = raw.get("id") if isinstance(raw, dict) else None
    if not isinstance(identity_id, str) or not identity_id:
        raise ProviderUnavailableError(
            "sent an identity without an id", provider=PROVIDER, request_id=request_id
        )
    attrs = raw.get("attributes")
    if not isinstance(attrs, dict):
        attrs = {}
    status = _text(raw.get("identityStatus")) or _text(attrs.get("cloudStatus"))
    return Identity(
        id=identity_id,
        connector=connector,
        email=_text(raw.get("emailAddress")) or _text(attrs.get("email")),
        display_name=_text(raw.get("name")) or _text(attrs.get("displayName")) or _text(raw.get("alias")),
        tenant_id=tenant_id,
        status=status.lower() if status else None,
        risk_score=risk_score,
        risk_level=None if risk_score is None else RiskLevel.for_score(risk_score),
        privileged=_truthy(attrs.get("privileged")),
        last_login_at=_datetime(attrs.get("lastLogin")),
        last_login_ip=_text(attrs.get("lastLoginIp")),
        last_login_country=_text(attrs.get("lastLoginCountry")),
        provider="sailpoint",
        provider_id=identity_id,
        created_at=_datetime(raw.get("created")),
        raw=raw,
    )


def account_rows(response: Response) -> list[dict]:
    """One page of an account listing: JSON objects with a string `id`, else ProviderUnavailableError."""
    rows = response.json(PROVIDER)
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and isinstance(r.get("id"), str) for r in rows
    ):
        raise ProviderUnavailableError(
            "answered the account list with an unexpected shape",
            provider=PROVIDER,
            request_id=response.client_request_id,
        )
    return rows


def map_error(response: Response) -> ConnectorError:
    """The error an answer means: ErrorResponseDto, `{"error"}` (401) or `{"message"}` (429)."""
    try:
        data = response.json(PROVIDER)
    except ProviderUnavailableError:
        data = None
    text, detail, tracking = "", None, None
    if isinstance(data, dict):
        messages = data.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[0], dict):
            text = str(messages[0].get("text") or "")
        text = text or str(data.get("error") or data.get("message") or "")
        detail = data.get("detailCode") if isinstance(data.get("detailCode"), str) else None
        tracking = data.get("trackingId") if isinstance(data.get("trackingId"), str) else None
    path = urlsplit(response.url).path
    summary = f"{response.method} {path} failed with HTTP {response.status}"
    if text.strip():
        summary = f"{summary}: {text.strip()[:300]}"
    cls = error_class_for_status(response.status)
    kwargs: dict[str, Any] = {
        "provider": PROVIDER,
        "request_id": tracking or response.client_request_id,
        "status": response.status,
        "code": detail,
    }
    if response.status == 429:
        kwargs["retry_after"] = response.retry_after()
    return cls(summary, **kwargs)  # type: ignore[no-any-return]


def token_error(response: Response) -> str:
    """The `error` of a refused token request, cut short, else its HTTP status."""
    try:
        data = response.json(PROVIDER)
    except ProviderUnavailableError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"][:100]
    return f"HTTP {response.status}"


def tenant_of(base_url: str) -> str:
    """The tenant a base URL names: "acme" for https://acme.api.identitynow.com, else the host."""
    host = urlsplit(base_url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host.split(".")[0]
    return host


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "yes", "1"))


def _text(value: Any) -> Optional[str]:
    """A non-empty string, else None (a tenant may map an attribute to a number, a list or nothing)."""
    return value if isinstance(value, str) and value else None


def _datetime(value: Any) -> Optional[datetime]:
    try:
        return parse_datetime(value)
    except ValueError:
        return None
