"""Microsoft Graph's wire formats for `connectors.entra`: OData literals and filters, the risk rule,
users to `Identity`, error bodies to `ConnectorError`s, the certificate's client assertion. Pure
functions: no requests, no state (`GraphRequests` only names the connector's request method).

Risk (Entra ID P2, `identityProtection/riskyUsers`) maps to idops bands by this rule (`risk_band`):
`confirmedCompromised` is critical (100) whatever its level; `atRisk` with level high is high (75),
medium is medium (50), low is low (20); `remediated`, `dismissed`, level `none` and users absent from
riskyUsers are low (0); level `hidden` (no licence to see it) and anything else is unknown.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Optional, Protocol
from urllib.parse import quote, urlsplit

from .errors import AuthenticationError, ConnectorError, NotFoundError, ProviderUnavailableError
from .http import Response, ServerErrorRetry, error_class_for_status
from .models import Identity, RiskLevel, parse_datetime
from .tokens import assertion_claims, sign_rs256

PROVIDER = "Microsoft Entra ID"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
DEFAULT_GRAPH = "https://graph.microsoft.com"
SCOPE = "https://graph.microsoft.com/.default"
MAX_PAGE = 999
RISKY_PAGE = 500
ID_FILTER_MAX = 15  # values Graph takes in one `in (...)`
BATCH_MAX = 20  # requests Graph takes in one JSON batch
ROLES_MAX_AGE = 900.0  # seconds a listing's role members stand for changes_since
USER_FIELDS = "id,displayName,mail,userPrincipalName,accountEnabled,createdDateTime,userType"
# risk (riskState, riskLevel) -> (score, band); anything else is unknown (None, None)
NO_RISK = (0, RiskLevel.LOW)
RISK_BANDS = {
    ("atRisk", "high"): (75, RiskLevel.HIGH),
    ("atRisk", "medium"): (50, RiskLevel.MEDIUM),
    ("atRisk", "low"): (20, RiskLevel.LOW),
}
UNKNOWN_RISK: tuple[Optional[int], Optional[RiskLevel]] = (None, None)
# MFA (isMfaRegistered, methodsRegistered) from the authentication methods registration report
REGISTRATIONS = "/v1.0/reports/authenticationMethods/userRegistrationDetails"
UNKNOWN_MFA: tuple[Optional[bool], tuple[str, ...]] = (None, ())
CURSOR_MAX_AGE = timedelta(days=90)  # Identity Protection keeps risk history this long
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_UPN = re.compile(r"[A-Za-z0-9._%+'#!$&*=?^`{|}~-]{1,113}@[A-Za-z0-9.-]{1,255}")
TENANT = re.compile(r"[0-9a-fA-F-]{36}|[A-Za-z0-9][A-Za-z0-9.-]{0,253}[A-Za-z0-9]")
TOKEN_MAX = 16384  # characters an access token may have (Entra's can carry many claims)
THUMBPRINT = re.compile(r"[0-9a-fA-F]{40}")
MAX_QUERY = 256


class GraphRequests(Protocol):
    """What the listing and actions mixins take from `EntraConnector`: `_api`, its one authenticated
    Graph call (a base of both, so its signature is written once). It stays after `Connector` in the
    connector's MRO (EntraActions names it last): a Protocol's `__init__` would end the `__init__` chain."""

    async def _api(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json_body: Any = None,
        advanced: bool = False,
        allow: Sequence[int] = (),
        changes_state: Optional[bool] = None,
    ) -> Response: ...


def odata_string(value: str) -> str:
    """`value` as an OData string literal: quoted, with every `'` doubled."""
    return "'" + value.replace("'", "''") + "'"


def filter_expr(template: str, *values: str) -> str:
    """A filter from a fixed template and literal values (`{}` marks each, quoted by odata_string)."""
    return template.format(*(odata_string(value) for value in values))


def risk_band(state: Any, level: Any) -> tuple[Optional[int], Optional[RiskLevel]]:
    """The (score, band) of a riskyUser's riskState and riskLevel, by the rule in the module docstring."""
    if state == "confirmedCompromised":
        return 100, RiskLevel.CRITICAL
    if level == "hidden" or not isinstance(state, str) or not isinstance(level, str):
        return UNKNOWN_RISK
    if state in ("remediated", "dismissed", "none") or level == "none":
        return NO_RISK
    return RISK_BANDS.get((state, level), UNKNOWN_RISK)


class GraphServerErrorRetry(ServerErrorRetry):
    """503/504 (and 500/502) on requests safe to repeat: wait Retry-After when Graph sends one."""

    def delay(self, attempt, *, method, idempotent, response, error):  # type: ignore[no-untyped-def]
        wait = super().delay(attempt, method=method, idempotent=idempotent, response=response, error=error)
        if wait is None or response is None:
            return wait
        retry_after = response.retry_after()
        return wait if retry_after is None else min(max(wait, retry_after), 120.0)


def json_or_none(response: Response) -> Any:
    try:
        return response.json(PROVIDER)
    except ProviderUnavailableError:
        return None


def header_id(response: Response) -> str:
    """Graph's request-id for this answer (what Microsoft support asks for), else ours."""
    value = response.header("request-id")
    return value[:64] if value else response.client_request_id


def odata_time(moment: datetime) -> str:
    """A DateTimeOffset literal (unquoted in $filter): UTC, to the microsecond, with Z."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def text_or_none(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and value else None


def datetime_or_none(value: Any) -> Optional[datetime]:
    try:
        return parse_datetime(value)
    except ValueError:
        return None


def map_error(response: Response) -> ConnectorError:
    """Graph's `{"error": {"code", "message", "innerError": {"request-id", ...}}}` as an error."""
    data = json_or_none(response)
    error = data.get("error") if isinstance(data, dict) else None
    code = message = None
    request_id = header_id(response)
    if isinstance(error, dict):
        code = error.get("code") if isinstance(error.get("code"), str) else None
        message = error.get("message") if isinstance(error.get("message"), str) else None
        inner = error.get("innerError")
        if isinstance(inner, dict) and isinstance(inner.get("request-id"), str):
            request_id = inner["request-id"][:64]
    path = urlsplit(response.url).path
    summary = f"{response.method} {path} failed with HTTP {response.status}"
    if code or message:
        detail = " ".join(f"{code or ''}: {message or ''}".strip(": ").split())
        summary = f"{summary}: {detail[:300]}"
    cls = error_class_for_status(response.status)
    kwargs: dict[str, Any] = {
        "provider": PROVIDER,
        "request_id": request_id,
        "status": response.status,
        "code": code,
    }
    if response.status == 429:
        kwargs["retry_after"] = response.retry_after()
    return cls(summary, **kwargs)  # type: ignore[no-any-return]


def registration_mfa(row: Any) -> tuple[Optional[bool], tuple[str, ...]]:
    """(mfa_enrolled, mfa_methods) from a userRegistrationDetails row: isMfaRegistered and the
    methodsRegistered (unknown when the row lacks a boolean isMfaRegistered)."""
    enrolled = row.get("isMfaRegistered") if isinstance(row, dict) else None
    if not isinstance(enrolled, bool):
        return UNKNOWN_MFA
    methods = row.get("methodsRegistered")
    names = tuple(m for m in methods if isinstance(m, str) and m) if isinstance(methods, list) else ()
    return enrolled, names


def user_to_identity(
    connector: str,
    tenant_id: str,
    user: Any,
    roles: Sequence[str] = (),
    risk: tuple[Optional[int], Optional[RiskLevel]] = UNKNOWN_RISK,
    request_id: Optional[str] = None,
    mfa: tuple[Optional[bool], tuple[str, ...]] = UNKNOWN_MFA,
) -> Identity:
    """An `Identity` from a Graph user; ProviderUnavailableError when it has no id."""
    user_id = user.get("id") if isinstance(user, dict) else None
    if not isinstance(user_id, str) or not user_id:
        raise ProviderUnavailableError("sent a user without an id", provider=PROVIDER, request_id=request_id)
    enabled = user.get("accountEnabled")
    return Identity(
        id=user_id,
        connector=connector,
        email=text_or_none(user.get("mail")) or text_or_none(user.get("userPrincipalName")),
        display_name=text_or_none(user.get("displayName")),
        tenant_id=tenant_id,
        status=None if not isinstance(enabled, bool) else ("active" if enabled else "disabled"),
        risk_score=risk[0],
        risk_level=risk[1],
        privileged=bool(roles),
        mfa_enrolled=mfa[0],
        mfa_methods=mfa[1],
        provider="entra",
        provider_id=user_id,
        roles=tuple(roles),
        created_at=datetime_or_none(user.get("createdDateTime")),
        raw=user,
    )


def client_assertion(token_url: str, client_id: str, key: str, thumbprint: str) -> str:
    """A client assertion: a JWT for the token endpoint, signed RS256 with the certificate's key (named
    by its thumbprint, `x5t`), valid 10 minutes."""
    claims = assertion_claims(client_id, token_url, time.time(), 600)
    x5t = base64.urlsafe_b64encode(bytes.fromhex(thumbprint)).decode().rstrip("=")
    try:
        return sign_rs256(
            {**claims, "nbf": claims["iat"]}, key, {"x5t": x5t, "typ": "JWT"}, provider=PROVIDER
        )
    except ValueError as exc:
        raise AuthenticationError(
            "could not sign the client assertion with certificate_key (is it an RSA private key?)",
            provider=PROVIDER,
        ) from exc


def checked_id(identity_id: str) -> str:
    # an id goes into a URL path: only a GUID or a user principal name, percent-encoded
    text = str(identity_id).strip()
    if not (GUID.fullmatch(text) or _UPN.fullmatch(text)) or ".." in text:
        raise NotFoundError(f"no user with id {text[:60]!r}", provider=PROVIDER)
    return quote(text, safe="@")
