"""HomeBase (HLD Group) Identity API connector: identities, their risk, and the three response actions.

Finding by email: HomeBase documents no email filter, so the connector sends `filter[email]` and
keeps only records whose email really matches; if the API ignored the filter (it returned other
people) or refused it (400/422), it falls back to the bounded scan used for names
(`search_scan_limit` identities).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Callable, Optional, TypeVar

import aiohttp

from .base import Connector
from .errors import (
    AuthenticationError,
    ConflictError,
    ConnectorError,
    NotFoundError,
    PermissionDeniedError,
    ProviderUnavailableError,
    RateLimitedError,
    ValidationError,
)
from .http import HttpClient, Response, RetryPolicy, SlidingWindowLimiter, error_class_for_status, short
from .models import Action, ActionResult, CheckResult, Identity, RiskLevel, derive_risk, parse_datetime
from .registry import register
from .settings import SettingsReader

DEFAULT_BASE_URL = "https://api.hldgroup.org/v1"
MAX_PAGE_SIZE = 100
# documented per key over a rolling 60 s
RATE_LIMITS = {"reads": 300, "writes": 60, "actions": 10}
RATE_PERIOD = 60.0
SIGNATURE_HEADER = "X-HLD-Signature-256"

ERRORS_BY_CODE: dict[str, type[ConnectorError]] = {
    "unauthorized": AuthenticationError,
    "forbidden": PermissionDeniedError,
    "tenant_suspended": PermissionDeniedError,
    "resource_not_found": NotFoundError,
    "validation_error": ValidationError,
    "resource_conflict": ConflictError,
    "action_not_reversible": ConflictError,
    "rate_limited": RateLimitedError,
    "integration_unavailable": ProviderUnavailableError,
    "internal_error": ProviderUnavailableError,
}
ACTION_PATHS = {
    Action.FORCE_PASSWORD_RESET: "force-password-reset",
    Action.REVOKE_SESSIONS: "revoke-sessions",
    Action.DISABLE: "disable",
}
_KEY = re.compile(r"hld_(live|test)_[A-Za-z0-9_-]{4,}")
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")

T = TypeVar("T")


def webhook_signature(secret: str, body: bytes) -> str:
    """The `X-HLD-Signature-256` value HomeBase sends with `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_webhook(secret: str, body: bytes, header: Optional[str]) -> bool:
    """Whether `header` is HomeBase's signature of the raw `body` (constant-time compare)."""
    return bool(header) and hmac.compare_digest(webhook_signature(secret, body), str(header).strip())


@register
class HomeBaseConnector(Connector):
    """HomeBase over its REST API, paced inside its three documented rate limits."""

    kind = "homebase"
    label = "HomeBase"
    settings = frozenset({"base_url", "api_key", "tenant_id", "timeout", "page_size", "search_scan_limit"})
    required_settings = frozenset({"api_key"})
    capabilities = frozenset(ACTION_PATHS)  # what HomeBase has an endpoint for

    def __init__(
        self,
        name: str,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        tenant_id: Optional[str] = None,
        timeout: float = 10.0,
        page_size: int = MAX_PAGE_SIZE,
        search_scan_limit: int = 5000,
        session: Optional[aiohttp.ClientSession] = None,
        retry_policies: Optional[Sequence[RetryPolicy]] = None,
        pacing: bool = True,
    ) -> None:
        """`pacing=False` turns client-side rate limiting off: only for local simulators with limits off."""
        super().__init__(name)
        self.tenant_id = tenant_id
        self.page_size = page_size
        self.search_scan_limit = search_scan_limit
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        if tenant_id:
            self._headers["X-Tenant-Id"] = tenant_id
        self._http = HttpClient(
            base_url,
            provider=self.label,
            error_mapper=self._error,
            session=session,
            timeout=float(timeout),
            retry_policies=retry_policies,
        )
        # per instance: each connector holds its own key, and HomeBase counts per key
        self._limiters = {
            bucket: SlidingWindowLimiter(limit, RATE_PERIOD)
            for bucket, limit in RATE_LIMITS.items()
            if pacing
        }

    @classmethod
    def from_config(
        cls, name: str, config: Mapping[str, Any], *, session: Optional[aiohttp.ClientSession] = None
    ) -> HomeBaseConnector:
        cls.validate_config(name, config)
        read = SettingsReader(f"connector '{name}' ({cls.kind})", config)
        return cls(
            name,
            api_key=read.required_text(
                "api_key", pattern=_KEY, expected="a HomeBase key (hld_live_… or hld_test_…)"
            ),
            base_url=read.url("base_url", DEFAULT_BASE_URL, example=DEFAULT_BASE_URL),
            tenant_id=read.text("tenant_id", pattern=_SAFE_ID, expected="a HomeBase tenant id like ten_…"),
            timeout=read.seconds("timeout", 10.0, 300),
            page_size=read.integer("page_size", MAX_PAGE_SIZE, 1, MAX_PAGE_SIZE),
            search_scan_limit=read.integer("search_scan_limit", 5000, 0, 1_000_000),
            session=session,
        )

    async def close(self) -> None:
        await self._http.close()

    # --- HTTP -------------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        bucket: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json_body: Any = None,
        idempotency_key: Optional[str] = None,
    ) -> tuple[Any, Response]:
        """One call, paced in its bucket, quota headers honoured, errors mapped: (body, response)."""
        limiter = self._limiters.get(bucket)
        response = await self._http.request(
            method,
            path,
            params=params,
            json_body=json_body,
            headers=self._headers,
            limiter=limiter,
            idempotency_key=idempotency_key,
            raise_for_status=False,
        )
        if limiter is not None and response.header("X-RateLimit-Remaining") == "0":
            limiter.pause(self._until_reset(response))
        if not response.ok:
            raise self._error(response)
        body = response.json(self.label)
        if not isinstance(body, dict):
            raise self._bad_answer(response, "an answer that is not a JSON object")
        return body, response

    @staticmethod
    def _until_reset(response: Response) -> float:
        try:
            reset = float(response.header("X-RateLimit-Reset") or "")
        except ValueError:
            return 1.0
        return max(0.0, reset - time.time())  # the limiter caps the pause: a wrong clock can't stall us

    def _request_id(self, response: Response, body: Any = None) -> str:
        error = body.get("error") if isinstance(body, dict) else None
        found = error.get("request_id") if isinstance(error, dict) else None
        if isinstance(found, str) and found:
            return found
        return response.header("X-Request-Id") or response.client_request_id

    def _error(self, response: Response) -> ConnectorError:
        """HomeBase's `{"error": {code, message, request_id, fields}}` as the matching ConnectorError."""
        try:
            body = response.json(self.label)
        except ProviderUnavailableError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        code = error.get("code") if isinstance(error.get("code"), str) else None
        message = error.get("message") if isinstance(error.get("message"), str) else ""
        text = short(message) if message else f"answered HTTP {response.status}"
        fields = error.get("fields")
        if isinstance(fields, dict) and fields:
            text += " (" + "; ".join(short(f"{key}: {value}", 100) for key, value in fields.items()) + ")"
        if code == "unauthorized" or (code is None and response.status == 401):
            text = f"the API key was refused: {text}"
        cls = ERRORS_BY_CODE.get(code or "") or error_class_for_status(response.status)
        kwargs: dict[str, Any] = {
            "provider": self.label,
            "request_id": self._request_id(response, body),
            "status": response.status,
            "code": code,
        }
        if cls is RateLimitedError:
            return RateLimitedError(
                f"still rate limited: {text}", retry_after=response.retry_after(), **kwargs
            )
        return cls(text, **kwargs)

    def _bad_answer(self, response: Response, what: str) -> ProviderUnavailableError:
        return ProviderUnavailableError(
            f"sent {what}", provider=self.label, request_id=self._request_id(response), status=response.status
        )

    # --- identities -------------------------------------------------------------------------------

    def _identity(self, record: Any, response: Response) -> Identity:
        """Check and convert one identity object; a bad field is named, never a KeyError."""
        if not isinstance(record, dict):
            raise self._bad_answer(response, "an identity that is not a JSON object")
        identity_id = record.get("id")
        if not isinstance(identity_id, str) or not identity_id:
            raise self._bad_answer(response, "an identity without a string 'id'")

        def field(name: str, check: Callable[[Any], T], expected: str) -> T:
            try:
                return check(record.get(name))
            except (TypeError, ValueError):
                raise self._bad_answer(
                    response, f"identity {short(identity_id, 60)} with a bad '{name}' (expected {expected})"
                ) from None

        score = field("risk_score", _optional_score, "an integer from 0 to 100")
        level = field("risk_level", _optional_level, "low, medium, high or critical")
        score, level = derive_risk(score, level)
        return Identity(
            id=identity_id,
            connector=self.name,
            email=field("email", _optional_str, "a string"),
            display_name=field("display_name", _optional_str, "a string"),
            tenant_id=field("tenant_id", _optional_str, "a string"),
            status=field("status", _optional_str, "a string"),
            risk_score=score,
            risk_level=level,
            mfa_enrolled=field("mfa_enrolled", _optional_bool, "true or false"),
            mfa_methods=field("mfa_methods", _strings, "a list of strings"),
            privileged=bool(field("privileged", _optional_bool, "true or false")),
            last_login_at=field("last_login_at", parse_datetime, "an ISO 8601 timestamp"),
            last_login_ip=field("last_login_ip", _optional_str, "a string"),
            last_login_country=field("last_login_country", _optional_str, "a string"),
            provider=field("provider", _optional_str, "a string"),
            provider_id=field("provider_id", _optional_str, "a string"),
            roles=field("roles", _strings, "a list of strings"),
            created_at=field("created_at", parse_datetime, "an ISO 8601 timestamp"),
            raw=record,
        )

    async def _page(self, params: Mapping[str, Any]) -> tuple[list[Identity], dict, Response]:
        body, response = await self._request("GET", "identity", "reads", params=params)
        data = body.get("data")
        if not isinstance(data, list):
            raise self._bad_answer(response, "a list answer without a 'data' array")
        pagination = body.get("pagination")
        if pagination is None:
            pagination = {}
        if not isinstance(pagination, dict):
            raise self._bad_answer(response, "a 'pagination' that is not an object")
        return [self._identity(record, response) for record in data], pagination, response

    async def iter_pages(
        self,
        *,
        risk_level: Optional[RiskLevel] = None,
        tenant_id: Optional[str] = None,
        privileged: Optional[bool] = None,
        mfa_enrolled: Optional[bool] = None,
        provider: Optional[str] = None,
    ) -> AsyncIterator[list[Identity]]:
        """Follow `next_cursor` when HomeBase sends one, else page numbers while `has_more`."""
        params: dict[str, Any] = {
            "per_page": self.page_size,
            "filter[tenant_id]": tenant_id,
            "filter[risk_level]": None if risk_level is None else RiskLevel(risk_level).value,
            "filter[privileged]": privileged,
            "filter[mfa_enrolled]": mfa_enrolled,
            "filter[provider]": provider,
        }
        async for page in self._pages(params):
            yield page

    async def _pages(self, params: dict[str, Any]) -> AsyncIterator[list[Identity]]:
        page_number = 1
        cursor: Optional[str] = None
        seen_cursors: set[str] = set()
        while True:
            query = dict(params)
            if cursor:
                query["cursor"] = cursor
            else:
                query["page"] = page_number
            identities, pagination, response = await self._page(query)
            yield identities
            next_cursor = pagination.get("next_cursor")
            has_more = pagination.get("has_more")
            if not isinstance(has_more, bool) and has_more is not None:
                raise self._bad_answer(response, "a 'pagination.has_more' that is not true or false")
            if next_cursor:
                if not isinstance(next_cursor, str) or next_cursor in seen_cursors:
                    raise self._bad_answer(response, "a 'next_cursor' that repeats or is not a string")
                seen_cursors.add(next_cursor)
                cursor = next_cursor
            elif has_more and cursor is None:
                if not identities:
                    raise self._bad_answer(response, "an empty page that says there are more")
                page_number += 1
            else:
                return

    async def get_identity(self, identity_id: str) -> Identity:
        path = self._identity_path(identity_id)
        body, response = await self._request("GET", path, "reads")
        return self._identity(body.get("data"), response)

    def _identity_path(self, identity_id: str) -> str:
        # an id goes into the URL path: anything else than HomeBase's id alphabet (like "../") is refused here
        if not isinstance(identity_id, str) or not _SAFE_ID.fullmatch(identity_id):
            raise NotFoundError(f"no identity with id {short(str(identity_id), 80)!r}", provider=self.label)
        return f"identity/{identity_id}"

    async def find_identities(self, query: str, *, limit: int = 10) -> list[Identity]:
        text = query.strip()
        if not text:
            # as SailPoint: an empty search is a mistake to tell the person, not "no match"
            raise ValidationError("type an email, an id (idn_…) or a name to search for", provider=self.label)
        if limit < 1:
            return []
        if text.startswith("idn_"):
            try:
                return [await self.get_identity(text)]
            except NotFoundError:
                return []
        if "@" in text:
            wanted = text.casefold()
            try:
                identities, _, _ = await self._page(
                    {"filter[email]": text, "per_page": min(limit, MAX_PAGE_SIZE)}
                )
            except ValidationError:
                identities = None  # an API that knows no such filter: scan instead
            if identities is not None:
                matches = [i for i in identities if (i.email or "").casefold() == wanted]
                if len(matches) == len(identities):
                    return matches[:limit]
        return await self._scan(text, limit)

    async def _scan(self, text: str, limit: int) -> list[Identity]:
        """Read up to `search_scan_limit` identities; exact email/name matches first, then substrings."""
        wanted = text.casefold()
        exact: list[Identity] = []
        partial: list[Identity] = []
        seen = 0
        async for page in self._pages({"per_page": self.page_size}):
            for identity in page:
                email, name = (identity.email or "").casefold(), (identity.display_name or "").casefold()
                if wanted in (email, name):
                    exact.append(identity)
                elif wanted in email or wanted in name:
                    partial.append(identity)
            seen += len(page)
            if len(exact) >= limit or seen >= self.search_scan_limit:
                break
        return (exact + partial)[:limit]

    async def check(self) -> CheckResult:
        try:
            body, response = await self._request("GET", "identity", "reads", params={"per_page": 1})
        except ConnectorError as exc:
            return CheckResult(ok=False, connector=self.name, message=str(exc), request_id=exc.request_id)
        pagination = body.get("pagination")
        total = pagination.get("total") if isinstance(pagination, dict) else None
        seen = f"{total} identities visible" if isinstance(total, int) else "identities readable"
        scope = f" in tenant {self.tenant_id}" if self.tenant_id else ""
        return CheckResult(
            ok=True,
            connector=self.name,
            message=f"API key accepted; {seen}{scope}",
            request_id=self._request_id(response),
        )

    # --- actions ----------------------------------------------------------------------------------

    async def _act(self, action: Action, identity_id: str, reason: Optional[str] = None) -> ActionResult:
        path = f"{self._identity_path(identity_id)}/{ACTION_PATHS[action]}"
        # a response action is also a write: it must fit in both buckets
        if "writes" in self._limiters:
            await self._limiters["writes"].acquire()
        body, response = await self._request(
            "POST",
            path,
            "actions",
            json_body={} if reason is None else {"reason": reason},
            idempotency_key=self.idempotency_key(),
        )
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        queued = data.get("status") in ("queued", "pending", "in_progress")
        return ActionResult(
            action=action,
            identity_id=identity_id,
            connector=self.name,
            status=ActionResult.QUEUED if queued else ActionResult.COMPLETED,
            reference=self._request_id(response),
            message=f"{action.label}: {'queued' if queued else 'done'} in {self.label}",
            raw=data,
        )

    async def action_in_effect(self, action: Action, identity_id: str) -> Optional[bool]:
        """Disable is readable (the identity's status); a reset or a revocation leaves nothing to read."""
        if action is not Action.DISABLE:
            return None
        return (await self.get_identity(identity_id)).status == "disabled"

    async def force_password_reset(self, identity_id: str) -> ActionResult:
        return await self._act(Action.FORCE_PASSWORD_RESET, identity_id)

    async def revoke_sessions(self, identity_id: str) -> ActionResult:
        return await self._act(Action.REVOKE_SESSIONS, identity_id)

    async def disable(self, identity_id: str, reason: str) -> ActionResult:
        return await self._act(Action.DISABLE, identity_id, reason)


def _optional_str(value: Any) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    raise TypeError


def _optional_bool(value: Any) -> Optional[bool]:
    if value is None or isinstance(value, bool):
        return value
    raise TypeError


def _optional_score(value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ValueError
    return value


def _optional_level(value: Any) -> Optional[RiskLevel]:
    return None if value is None else RiskLevel.parse(value)


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError
    return tuple(value)
