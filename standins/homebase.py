"""HomeBase (HLD Group) Identity API stand-in: the documented /v1 endpoints, errors, rate limits and
webhooks, plus an /_admin API for tests to inject faults, change risk scores, delete identities and read what
happened.

Identities are computed from `seed.person(i)` on demand, so a million can be served; only changes
(risk scores set by admins, disabled accounts) are kept. Run it with `idops sim homebase --port P`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import collections
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Optional, Union

import aiohttp
from aiohttp import web

from . import print_env, run_until_stopped
from .idempotency import IdempotencyKeys
from .seed import PROVIDERS, Person, person

DOCS_URL = "https://docs.hldgroup.org/errors#"
DEFAULT_LIMITS = {"reads": 300, "writes": 60, "actions": 10}
MAX_PER_PAGE = 100
RISK_LEVELS = ("low", "medium", "high", "critical")
ACTIONS = {
    "force-password-reset": "force_password_reset",
    "revoke-sessions": "revoke_sessions",
    "disable": "disable",
}
ERROR_STATUS = {
    "unauthorized": 401,
    "forbidden": 403,
    "tenant_suspended": 403,
    "resource_not_found": 404,
    "validation_error": 422,
    "resource_conflict": 409,
    "action_not_reversible": 409,
    "rate_limited": 429,
    "integration_unavailable": 500,
    "internal_error": 500,
}
FAULT_KINDS = ("429", "500", "slow", "drop", "malformed", "error", "corrupt")
_ID_MODULUS = 1 << 40
_ID_MULTIPLIER = 0x9E3779B97F  # odd, so multiplying by it is a bijection modulo 2**40
_EMAIL_INDEX = re.compile(r"\.(\d+)@")


def risk_level(score: int) -> str:
    """HomeBase's bands: 0-20 low, 21-50 medium, 51-75 high, 76-100 critical."""
    return "low" if score <= 20 else "medium" if score <= 50 else "high" if score <= 75 else "critical"


def sign(secret: str, body: bytes) -> str:
    """The `X-HLD-Signature-256` value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _now() -> str:
    return _iso(datetime.now(timezone.utc))


class ApiError(Exception):
    """An error answer in HomeBase's documented shape."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: Optional[int] = None,
        fields: Optional[Mapping[str, str]] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or ERROR_STATUS.get(code, 500)
        self.fields = dict(fields) if fields else None
        self.headers = dict(headers or {})


@dataclass
class Fault:
    """One injected misbehaviour, applied to the next `count` API requests it matches."""

    kind: str
    count: int = 1
    retry_after: float = 1.0
    delay: float = 5.0
    path: str = ""
    method: str = ""
    code: str = "internal_error"
    status: Optional[int] = None
    # "corrupt": identity records in the answer get `field` set to `value` (a wrong type, or null)
    field: str = "risk_score"
    value: Any = None

    def matches(self, method: str, path: str) -> bool:
        return path.startswith(self.path) and (not self.method or self.method.upper() == method)


class _Window:
    """Requests accepted in the rolling window, per key and bucket."""

    def __init__(self, limit: int, period: float) -> None:
        self.limit = limit
        self.period = period
        self.stamps: collections.deque[float] = collections.deque()

    def _expire(self, now: float) -> None:
        while self.stamps and now - self.stamps[0] >= self.period:
            self.stamps.popleft()

    def wait(self, now: float) -> float:
        """Seconds until a request would be accepted (0 when it would be now)."""
        self._expire(now)
        return 0.0 if len(self.stamps) < self.limit else self.stamps[0] + self.period - now

    def take(self, now: float) -> None:
        self.stamps.append(now)

    def headers(self, now: float) -> dict[str, str]:
        self._expire(now)
        remaining = max(0, self.limit - len(self.stamps))
        until = self.stamps[0] + self.period - now if self.stamps else self.period
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(math.ceil(time.time() + until)),
        }


@dataclass(frozen=True)
class Filters:
    tenant: Optional[int] = None
    risk_level: Optional[str] = None
    privileged: Optional[bool] = None
    mfa_enrolled: Optional[bool] = None
    provider: Optional[str] = None
    email: Optional[str] = None

    @property
    def empty(self) -> bool:
        return self == Filters()


class HomeBaseState:
    """Everything the simulator knows and did; tests read it (and may change it) through `app[STATE]`."""

    def __init__(
        self,
        *,
        identities: int = 300,
        seed: int = 0,
        tenants: int = 2,
        api_keys: Iterable[str] = ("hld_test_simulator",),
        msp_keys: Iterable[str] = (),
        rate_limits: Union[bool, Mapping[str, int]] = True,
        rate_window: float = 60.0,
        cursor: bool = True,
        email_filter: Union[bool, str] = True,
        webhook_url: Optional[str] = None,
        webhook_secret: Optional[str] = None,
    ) -> None:
        if identities < 0 or tenants < 1:
            raise ValueError("identities must be >= 0 and tenants >= 1")
        self.size = identities
        self.seed = seed
        self.tenants = tenants
        self.api_keys = frozenset(api_keys)
        self.msp_keys = frozenset(msp_keys)
        if rate_limits is True:
            self.limits: Optional[dict[str, int]] = dict(DEFAULT_LIMITS)
        elif rate_limits:
            self.limits = {**DEFAULT_LIMITS, **dict(rate_limits)}  # type: ignore[arg-type]
        else:
            self.limits = None
        self.rate_window = rate_window
        self.cursor = cursor
        # False: filter[email] is ignored, as a lenient API without that (undocumented) filter would;
        # "reject": answered 400 like any unknown parameter, as a strict one would
        self.email_filter = email_filter
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        # opened on the first delivery, so a simulator that never started leaves nothing to close
        self.webhook_session: Optional[aiohttp.ClientSession] = None
        self.tenant_ids = [
            "ten_" + hashlib.sha256(f"{seed}:tenant:{t}".encode()).hexdigest()[:12] for t in range(tenants)
        ]
        self._tenant_index = {tid: t for t, tid in enumerate(self.tenant_ids)}
        self.suspended_tenants: set[str] = set()
        # only what changed from the seeded person is kept
        self.risk_overrides: dict[int, int] = {}
        self.disabled: dict[int, str] = {}
        # deleted at the provider: gone from lists, and every lookup of the id answers 404
        self.deleted: set[int] = set()
        self.sessions_revoked: collections.Counter[str] = collections.Counter()
        self.password_resets: collections.Counter[str] = collections.Counter()
        self.actions: list[dict[str, Any]] = []
        self.webhooks: list[dict[str, Any]] = []
        self.requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=10_000)
        self.faults: list[Fault] = []
        # Idempotency-Key on actions: a repeat with the same key gets the first answer, nothing runs twice
        self.idempotency = IdempotencyKeys()
        self._windows: dict[tuple[str, str], _Window] = {}
        # 2 bytes per identity (score, flags), filled as filters reach further: filtering a million
        # people then costs a byte scan, not a million `person()` calls per request
        self._facts = bytearray()
        self._version = 0
        self._matches: collections.OrderedDict[tuple, Sequence[int]] = collections.OrderedDict()
        self._request_counter = 0

    # --- ids ----------------------------------------------------------------------------------

    def identity_id(self, index: int) -> str:
        mixed = ((index + 1) * _ID_MULTIPLIER + self.seed) % _ID_MODULUS
        return f"idn_{mixed:010x}"

    def index_of(self, identity_id: str) -> Optional[int]:
        """The person number behind an id, or None when no identity has it."""
        if not re.fullmatch(r"idn_[0-9a-f]{10}", identity_id):
            return None
        mixed = int(identity_id[4:], 16)
        index = ((mixed - self.seed) * pow(_ID_MULTIPLIER, -1, _ID_MODULUS)) % _ID_MODULUS - 1
        return index if 0 <= index < self.size and index not in self.deleted else None

    def tenant_of(self, tenant_id: str) -> Optional[int]:
        return self._tenant_index.get(tenant_id)

    def new_request_id(self) -> str:
        self._request_counter += 1
        return f"req_{self._request_counter:06d}{secrets.token_hex(6)}"

    # --- identities ---------------------------------------------------------------------------

    def person(self, index: int) -> Person:
        return person(index, seed=self.seed, tenants=self.tenants)

    def risk_score(self, index: int, seeded: Optional[Person] = None) -> int:
        if index in self.risk_overrides:
            return self.risk_overrides[index]
        return (seeded or self.person(index)).risk_score

    def record(self, index: int) -> dict[str, Any]:
        """The identity object HomeBase returns for person `index`."""
        p = self.person(index)
        score = self.risk_score(index, p)
        digest = hashlib.sha256(f"{self.seed}:provider:{index}".encode()).hexdigest()
        provider_id = {
            "azure_ad": f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}",
            "okta": "00u" + digest[:17],
            "google_workspace": str(int(digest[:17], 16)),
            "local": f"local-{index}",
        }[p.provider]
        return {
            "id": self.identity_id(index),
            "tenant_id": self.tenant_ids[p.tenant],
            "email": p.email,
            "display_name": p.display_name,
            "status": "disabled" if index in self.disabled else p.status,
            "risk_score": score,
            "risk_level": risk_level(score),
            "mfa_enrolled": bool(p.mfa_methods),
            "mfa_methods": list(p.mfa_methods),
            "privileged": p.privileged,
            "last_login_at": _iso(p.last_login_at),
            "last_login_ip": p.last_login_ip,
            "last_login_country": p.last_login_country,
            "provider": p.provider,
            "provider_id": provider_id,
            "roles": list(p.roles),
            "created_at": _iso(p.created_at),
        }

    def set_risk(self, identity_id: str, score: int) -> Optional[dict[str, Any]]:
        """Change an identity's risk score; the `identity.risk_changed` event, or None if unchanged."""
        index = self.index_of(identity_id)
        if index is None:
            raise KeyError(identity_id)
        if not 0 <= score <= 100:
            raise ValueError("risk_score must be between 0 and 100")
        previous = self.risk_score(index)
        if previous == score:
            return None
        self.risk_overrides[index] = score
        self._version += 1
        return {
            "id": "evt_" + secrets.token_hex(12),
            "type": "identity.risk_changed",
            "created_at": _now(),
            "tenant_id": self.tenant_ids[index % self.tenants],
            "data": {
                "identity_id": identity_id,
                "previous_risk_score": previous,
                "risk_score": score,
                "previous_risk_level": risk_level(previous),
                "risk_level": risk_level(score),
            },
        }

    def delete(self, identity_id: str) -> None:
        """Delete an identity, as an admin at the provider would; KeyError when there is none."""
        index = self.index_of(identity_id)
        if index is None:
            raise KeyError(identity_id)
        self.deleted.add(index)
        self._version += 1

    def _fact(self, index: int) -> tuple[int, int]:
        while len(self._facts) // 2 <= index:
            p = self.person(len(self._facts) // 2)
            flags = p.privileged | (bool(p.mfa_methods) << 1) | (PROVIDERS.index(p.provider) << 2)
            self._facts += bytes((p.risk_score, flags))
        return self._facts[2 * index], self._facts[2 * index + 1]

    def _match(self, index: int, filters: Filters) -> bool:
        if index in self.deleted:
            return False
        score, flags = self._fact(index)
        if filters.risk_level is not None:
            if risk_level(self.risk_overrides.get(index, score)) != filters.risk_level:
                return False
        if filters.privileged is not None and bool(flags & 1) != filters.privileged:
            return False
        if filters.mfa_enrolled is not None and bool(flags & 2) != filters.mfa_enrolled:
            return False
        return filters.provider is None or PROVIDERS[flags >> 2] == filters.provider

    def matching(self, filters: Filters) -> Sequence[int]:
        """Sorted person numbers that pass `filters` (cached until a risk score changes)."""
        if filters.email is not None:
            return self._by_email(filters)
        candidates = (
            range(self.size) if filters.tenant is None else range(filters.tenant, self.size, self.tenants)
        )
        if filters == Filters(tenant=filters.tenant) and not self.deleted:
            return candidates
        key = (filters, self._version)
        if key not in self._matches:
            self._matches[key] = [i for i in candidates if self._match(i, filters)]
            while len(self._matches) > 16:
                self._matches.popitem(last=False)
        self._matches.move_to_end(key)
        return self._matches[key]

    def _by_email(self, filters: Filters) -> Sequence[int]:
        # The seeded address carries its person number, so one candidate is checked instead of a scan.
        assert filters.email is not None
        found = _EMAIL_INDEX.search(filters.email)
        index = int(found.group(1)) if found else -1
        if not 0 <= index < self.size or self.person(index).email.lower() != filters.email.lower():
            return []
        if filters.tenant is not None and index % self.tenants != filters.tenant:
            return []
        return [index] if self._match(index, Filters(**{**asdict(filters), "email": None})) else []

    # --- rate limits and faults ---------------------------------------------------------------

    def window(self, key: str, bucket: str) -> Optional[_Window]:
        if self.limits is None:
            return None
        found = self._windows.get((key, bucket))
        if found is None:
            found = self._windows[(key, bucket)] = _Window(self.limits[bucket], self.rate_window)
        return found

    def take_fault(self, method: str, path: str) -> Optional[Fault]:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def requests_to(self, path_prefix: str, method: Optional[str] = None) -> list[dict[str, Any]]:
        """Recorded API requests whose path starts with `path_prefix` (and method, if given)."""
        return [
            r
            for r in self.requests
            if r["path"].startswith(path_prefix) and (method is None or r["method"] == method.upper())
        ]


@dataclass(frozen=True)
class _Call:
    """What the middleware learnt about an API request: its id, and the tenant it is limited to."""

    request_id: str
    tenant: Optional[int]


STATE = web.AppKey("homebase_state", HomeBaseState)
_CALL = web.RequestKey("homebase_call", _Call)


# --- the API --------------------------------------------------------------------------------------


def _error_response(error: ApiError, request_id: str) -> web.Response:
    body: dict[str, Any] = {
        "code": error.code,
        "message": error.message,
        "request_id": request_id,
        "docs_url": DOCS_URL + error.code,
    }
    if error.fields:
        body["fields"] = error.fields
    return web.json_response({"error": body}, status=error.status, headers=error.headers)


def _bucket(request: web.Request) -> str:
    if request.method in ("GET", "HEAD"):
        return "reads"
    return "actions" if request.path.rsplit("/", 1)[-1] in ACTIONS else "writes"


def _authenticate(state: HomeBaseState, request: web.Request) -> str:
    for name in request.query:
        if name.lower() in ("api_key", "apikey", "key", "token", "access_token"):
            raise ApiError(
                "validation_error",
                "API keys go in the Authorization header, never in the URL",
                status=400,
                fields={name: "not allowed"},
            )
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError("unauthorized", "Missing bearer API key in the Authorization header")
    key = key.strip()
    if key not in state.api_keys and key not in state.msp_keys:
        raise ApiError("unauthorized", "Invalid API key")
    return key


def _scope(state: HomeBaseState, request: web.Request, key: str) -> Optional[int]:
    """The tenant the request is limited to: X-Tenant-Id (required for MSP keys)."""
    tenant_id = request.headers.get("X-Tenant-Id")
    if tenant_id is None:
        if key in state.msp_keys:
            raise ApiError(
                "validation_error",
                "MSP keys must name a tenant with the X-Tenant-Id header",
                status=400,
                fields={"X-Tenant-Id": "required for MSP keys"},
            )
        return None
    tenant = state.tenant_of(tenant_id)
    if tenant is None:
        raise ApiError("forbidden", "This API key has no access to that tenant")
    if tenant_id in state.suspended_tenants:
        raise ApiError("tenant_suspended", "The tenant is suspended")
    return tenant


async def _apply_fault(fault: Fault, request: web.Request) -> Optional[web.StreamResponse]:
    if fault.kind == "slow":
        await request.read()  # received in full, then slow: the request is carried out after the delay
        await asyncio.sleep(fault.delay)
    if fault.kind in ("slow", "corrupt"):
        return None
    if fault.kind == "drop":
        if request.transport is not None:
            request.transport.close()
        raise asyncio.CancelledError
    if fault.kind == "malformed":
        return web.Response(body=b'{"data": [{"id": "idn_', content_type="application/json")
    if fault.kind == "429":
        raise ApiError(
            "rate_limited",
            "Too many requests",
            headers={"Retry-After": f"{fault.retry_after:g}"},
        )
    if fault.kind == "500":
        raise ApiError("internal_error", "Something went wrong on our side")
    raise ApiError(fault.code, f"Injected {fault.code}", status=fault.status)


def _corrupt(response: web.StreamResponse, fault: Fault) -> web.StreamResponse:
    """The same answer with `fault.field` of each identity record set to `fault.value`."""
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
        return response
    body = json.loads(response.body)
    data = body.get("data")
    for record in data if isinstance(data, list) else [data]:
        if isinstance(record, dict):
            record[fault.field] = fault.value
    return web.json_response(body, status=response.status)


@web.middleware
async def _api_middleware(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    state = request.app[STATE]
    if request.path.startswith("/_admin"):
        return await handler(request)  # type: ignore[no-any-return]
    request_id = state.new_request_id()
    record = {
        "method": request.method,
        "path": request.path,
        "query": request.query_string,
        "tenant": request.headers.get("X-Tenant-Id"),
        "client_request_id": request.headers.get("X-Request-Id"),
        "status": 0,
        "at": time.monotonic(),
    }
    state.requests.append(record)
    headers: dict[str, str] = {"X-Request-Id": request_id}
    try:
        fault = state.take_fault(request.method, request.path)
        if fault is not None:
            faulted = await _apply_fault(fault, request)
            if faulted is not None:
                record["status"] = faulted.status
                return faulted
        key = _authenticate(state, request)
        window = state.window(key, _bucket(request))
        if window is not None:
            now = time.monotonic()
            wait = window.wait(now)
            headers.update(window.headers(now))
            if wait > 0:
                raise ApiError(
                    "rate_limited", "Rate limit exceeded", headers={"Retry-After": str(math.ceil(wait))}
                )
            window.take(now)
            headers.update(window.headers(now))
        request[_CALL] = _Call(request_id, _scope(state, request, key))
        response = await handler(request)
        if fault is not None and fault.kind == "corrupt":
            response = _corrupt(response, fault)
    except ApiError as error:
        response = _error_response(error, request_id)
    except web.HTTPException as exc:  # routing: unknown path or method
        code = "resource_not_found" if exc.status == 404 else "validation_error"
        response = _error_response(ApiError(code, exc.reason, status=exc.status), request_id)
    response.headers.update(headers)
    record["status"] = response.status
    return response  # type: ignore[no-any-return]


def _bool(name: str, value: Optional[str]) -> Optional[bool]:
    if value is None:
        return None
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ApiError(
        "validation_error", f"{name} must be true or false", status=400, fields={name: "not a boolean"}
    )


def _choice(name: str, value: Optional[str], choices: Sequence[str]) -> Optional[str]:
    if value is None or value in choices:
        return value
    raise ApiError(
        "validation_error",
        f"{name} must be one of {', '.join(choices)}",
        status=400,
        fields={name: "not an allowed value"},
    )


def _int(name: str, value: Optional[str], default: int, low: int, high: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise ApiError(
            "validation_error",
            f"{name} must be an integer from {low} to {high}",
            status=400,
            fields={name: "out of range"},
        )
    return number


def _filters(state: HomeBaseState, request: web.Request) -> Filters:
    query = request.query
    known = {"page", "per_page", "cursor"}
    known |= {f"filter[{n}]" for n in ("tenant_id", "risk_level", "privileged", "mfa_enrolled", "provider")}
    if state.email_filter != "reject":
        known.add("filter[email]")
    unknown = sorted(set(query) - known)
    if unknown:
        raise ApiError(
            "validation_error",
            f"Unknown query parameter {unknown[0]}",
            status=400,
            fields={unknown[0]: "unknown"},
        )
    tenant = request[_CALL].tenant
    tenant_filter = query.get("filter[tenant_id]")
    if tenant_filter is not None:
        wanted = state.tenant_of(tenant_filter)
        if wanted is None or (tenant is not None and wanted != tenant):
            raise ApiError("forbidden", "This API key has no access to that tenant")
        if tenant_filter in state.suspended_tenants:
            raise ApiError("tenant_suspended", "The tenant is suspended")
        tenant = wanted
    return Filters(
        tenant=tenant,
        risk_level=_choice("filter[risk_level]", query.get("filter[risk_level]"), RISK_LEVELS),
        privileged=_bool("filter[privileged]", query.get("filter[privileged]")),
        mfa_enrolled=_bool("filter[mfa_enrolled]", query.get("filter[mfa_enrolled]")),
        provider=_choice("filter[provider]", query.get("filter[provider]"), PROVIDERS),
        email=query.get("filter[email]") if state.email_filter is True else None,
    )


def _encode_cursor(after: int) -> str:
    return base64.urlsafe_b64encode(f"hb1:{after}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, after = text.partition(":")
        if prefix == "hb1" and after.isdigit():
            return int(after)
    except ValueError:  # bad base64 (binascii.Error), non-ASCII text or bytes that are not UTF-8
        pass
    raise ApiError("validation_error", "cursor is not valid", status=400, fields={"cursor": "invalid"})


async def list_identities(request: web.Request) -> web.Response:
    state = request.app[STATE]
    filters = _filters(state, request)
    per_page = _int("per_page", request.query.get("per_page"), 25, 1, MAX_PER_PAGE)
    matching = state.matching(filters)
    cursor = request.query.get("cursor")
    if cursor is not None:
        start = bisect.bisect_left(matching, _decode_cursor(cursor))
        page = start // per_page + 1
    else:
        page = _int("page", request.query.get("page"), 1, 1, 10**9)
        start = (page - 1) * per_page
    chosen = matching[start : start + per_page]
    has_more = start + per_page < len(matching)
    next_cursor = _encode_cursor(chosen[-1] + 1) if has_more and state.cursor and chosen else None
    return web.json_response(
        {
            "data": [state.record(i) for i in chosen],
            "pagination": {
                "page": page,
                "per_page": per_page,
                "total": len(matching),
                "has_more": has_more,
                "next_cursor": next_cursor,
            },
        }
    )


def _identity_index(request: web.Request) -> int:
    state = request.app[STATE]
    index = state.index_of(request.match_info["id"])
    tenant = request[_CALL].tenant
    if index is None or (tenant is not None and index % state.tenants != tenant):
        raise ApiError("resource_not_found", "No identity with that id")
    if state.tenant_ids[index % state.tenants] in state.suspended_tenants:
        raise ApiError("tenant_suspended", "The identity's tenant is suspended")
    return index


async def get_identity(request: web.Request) -> web.Response:
    return web.json_response({"data": request.app[STATE].record(_identity_index(request))})


async def _reason(request: web.Request, required: bool) -> Optional[str]:
    raw = await request.read()
    if not raw:
        body: Any = {}
    else:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
    if not isinstance(body, dict):
        raise ApiError("validation_error", "The request body must be a JSON object", status=400)
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ApiError("validation_error", "reason must be a string", fields={"reason": "must be a string"})
    if reason is not None and len(reason) > 1000:
        raise ApiError("validation_error", "reason is too long", fields={"reason": "at most 1000 characters"})
    if required and not (reason or "").strip():
        raise ApiError(
            "validation_error", "A reason is required to disable an identity", fields={"reason": "required"}
        )
    return reason


_KEY_ERRORS = {400: "validation_error", 409: "idempotency_key_in_use", 422: "idempotency_key_reused"}


async def identity_action(request: web.Request) -> web.StreamResponse:
    """An action, once per Idempotency-Key (scoped to the API key and tenant header) when one is sent."""
    call = request[_CALL]

    def refuse(status: int, message: str) -> web.StreamResponse:
        return _error_response(ApiError(_KEY_ERRORS[status], message, status=status), call.request_id)

    caller = f"{request.headers.get('Authorization', '')}|{request.headers.get('X-Tenant-Id', '')}"
    return await request.app[STATE].idempotency.run(request, caller, lambda: _act(request), refuse)


async def _act(request: web.Request) -> web.Response:
    state = request.app[STATE]
    index = _identity_index(request)
    action = ACTIONS[request.match_info["action"]]
    reason = await _reason(request, required=action == "disable")
    identity_id = state.identity_id(index)
    if index in state.disabled:
        raise ApiError("resource_conflict", "The identity is already disabled")
    if action == "disable":
        state.disabled[index] = reason or ""
    elif action == "revoke_sessions":
        state.sessions_revoked[identity_id] += 1
    else:
        state.password_resets[identity_id] += 1
    entry = {
        "id": "act_" + secrets.token_hex(8),
        "action": action,
        "identity_id": identity_id,
        "tenant_id": state.tenant_ids[index % state.tenants],
        "reason": reason,
        "status": "completed",
        "request_id": request[_CALL].request_id,
        "created_at": _now(),
    }
    state.actions.append(entry)
    return web.json_response({"data": entry})


# --- admin ----------------------------------------------------------------------------------------


async def _admin_json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _http(400, "body must be a JSON object")
    return body


def _http(status: int, message: str) -> web.HTTPException:
    cls = web.HTTPNotFound if status == 404 else web.HTTPBadRequest
    return cls(text=json.dumps({"error": message}), content_type="application/json")


async def admin_add_fault(request: web.Request) -> web.Response:
    body = await _admin_json(request)
    fields = {f for f in Fault.__dataclass_fields__}
    unknown = sorted(set(body) - fields)
    if unknown:
        raise _http(400, f"unknown fault field {unknown[0]!r} (known: {', '.join(sorted(fields))})")
    if body.get("kind") not in FAULT_KINDS:
        raise _http(400, f"kind must be one of {', '.join(FAULT_KINDS)}")
    try:
        fault = Fault(**body)
        if fault.count < 1 or fault.retry_after < 0 or fault.delay < 0:
            raise ValueError
    except (TypeError, ValueError):
        raise _http(400, "count must be >= 1, retry_after and delay >= 0") from None
    if fault.kind == "error" and fault.code not in ERROR_STATUS:
        raise _http(400, f"code must be one of {', '.join(ERROR_STATUS)}")
    request.app[STATE].faults.append(fault)
    return web.json_response({"fault": asdict(fault)}, status=201)


async def admin_clear_faults(request: web.Request) -> web.Response:
    request.app[STATE].faults.clear()
    return web.json_response({"faults": []})


async def admin_set_risk(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _admin_json(request)
    score = body.get("risk_score")
    if not isinstance(score, int) or isinstance(score, bool) or not 0 <= score <= 100:
        raise _http(400, "risk_score must be an integer from 0 to 100")
    identity_id = request.match_info["id"]
    try:
        event = state.set_risk(identity_id, score)
    except KeyError:
        raise _http(404, f"no identity {identity_id!r}") from None
    delivery = await deliver_webhook(request.app, event) if event is not None else None
    return web.json_response(
        {"identity": state.record(state.index_of(identity_id) or 0), "event": event, "delivery": delivery}
    )


async def admin_delete_identity(request: web.Request) -> web.Response:
    identity_id = request.match_info["id"]
    try:
        request.app[STATE].delete(identity_id)
    except KeyError:
        raise _http(404, f"no identity {identity_id!r}") from None
    return web.json_response({"deleted": identity_id})


async def deliver_webhook(app: web.Application, event: dict[str, Any]) -> Optional[dict[str, Any]]:
    """POST a signed event to the configured webhook URL; the outcome is recorded and returned."""
    state = app[STATE]
    if not state.webhook_url:
        return None
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "HomeBase-Webhooks/1.0"}
    headers["X-HLD-Signature-256"] = sign(state.webhook_secret or "", body)
    delivery: dict[str, Any] = {
        "event_id": event["id"],
        "url": state.webhook_url,
        "status": None,
        "error": None,
    }
    try:
        if state.webhook_session is None:
            state.webhook_session = aiohttp.ClientSession()
        async with state.webhook_session.post(
            state.webhook_url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
        ) as response:
            delivery["status"] = response.status
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        delivery["error"] = type(exc).__name__
    state.webhooks.append({"event": event, **delivery})
    return delivery


async def admin_actions(request: web.Request) -> web.Response:
    return web.json_response({"data": request.app[STATE].actions})


async def admin_suspend_tenant(request: web.Request) -> web.Response:
    state = request.app[STATE]
    tenant_id = request.match_info["id"]
    if state.tenant_of(tenant_id) is None:
        raise _http(404, f"no tenant {tenant_id!r}")
    body = await _admin_json(request)
    if body.get("suspended", True):
        state.suspended_tenants.add(tenant_id)
    else:
        state.suspended_tenants.discard(tenant_id)
    return web.json_response({"tenant_id": tenant_id, "suspended": tenant_id in state.suspended_tenants})


async def _close_session(app: web.Application) -> None:
    session = app[STATE].webhook_session
    if session is not None:
        await session.close()


def create_app(**settings: Any) -> web.Application:
    """The simulator as an aiohttp app; `settings` are `HomeBaseState`'s, its state is `app[STATE]`."""
    app = web.Application(middlewares=[_api_middleware])
    app[STATE] = HomeBaseState(**settings)
    app.on_cleanup.append(_close_session)
    app.router.add_get("/v1/identity", list_identities)
    app.router.add_get("/v1/identity/{id}", get_identity)
    app.router.add_post(
        "/v1/identity/{id}/{action:force-password-reset|revoke-sessions|disable}", identity_action
    )
    app.router.add_post("/_admin/faults", admin_add_fault)
    app.router.add_delete("/_admin/faults", admin_clear_faults)
    app.router.add_post("/_admin/identity/{id}/risk", admin_set_risk)
    app.router.add_delete("/_admin/identity/{id}", admin_delete_identity)
    app.router.add_get("/_admin/actions", admin_actions)
    app.router.add_post("/_admin/tenants/{id}/suspend", admin_suspend_tenant)
    return app


# --- command line ---------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="idops sim homebase",
        description="Run the HomeBase Identity API simulator. The API key comes from HOMEBASE_API_KEY "
        "(one is generated and printed when unset); webhooks are signed with HOMEBASE_WEBHOOK_SECRET.",
    )
    parser.add_argument("--port", type=int, default=8401, help="0 picks a free port (default 8401)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--identities", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tenants", type=int, default=2)
    parser.add_argument("--no-rate-limit", action="store_true", help="turn the documented rate limits off")
    parser.add_argument("--page-numbers", action="store_true", help="serve page numbers only, no next_cursor")
    parser.add_argument("--msp", action="store_true", help="make the key an MSP key (needs X-Tenant-Id)")
    parser.add_argument("--webhook-url", help="POST signed identity.risk_changed events here")
    return parser


def _app(args: argparse.Namespace, key: str, secret: Optional[str]) -> web.Application:
    return create_app(
        identities=args.identities,
        seed=args.seed,
        tenants=args.tenants,
        api_keys=() if args.msp else (key,),
        msp_keys=(key,) if args.msp else (),
        rate_limits=not args.no_rate_limit,
        cursor=not args.page_numbers,
        webhook_url=args.webhook_url,
        webhook_secret=secret,
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`idops sim homebase`: serve until Ctrl-C."""
    args = _parser().parse_args(argv)
    if args.identities < 0 or args.tenants < 1:
        print("idops sim homebase: --identities must be >= 0 and --tenants >= 1", file=sys.stderr)
        return 2
    secret = os.environ.get("HOMEBASE_WEBHOOK_SECRET")
    if args.webhook_url and not secret:
        print("idops sim homebase: --webhook-url needs HOMEBASE_WEBHOOK_SECRET set", file=sys.stderr)
        return 2
    key = os.environ.get("HOMEBASE_API_KEY") or ""
    generated = not key
    if generated:
        key = "hld_test_" + secrets.token_urlsafe(24)
    app = _app(args, key, secret)

    def announce(url: str) -> None:
        tenants = ", ".join(app[STATE].tenant_ids)
        variables = {"HOMEBASE_BASE_URL": f"{url}/v1"}
        if generated:
            # printed on purpose: made up for this run so a person can configure the connector
            variables["HOMEBASE_API_KEY"] = key
        print_env(f"HomeBase simulator: {args.identities} identities, tenants {tenants}", variables)

    code = run_until_stopped(app, args.host, args.port, prog="idops sim homebase", announce=announce)
    if code == 0:
        print("HomeBase simulator stopped", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
