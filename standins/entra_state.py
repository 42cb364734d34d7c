"""The Entra simulator's state: seeded users, roles and risk by index, tokens, throttling, faults."""

from __future__ import annotations

import collections
import functools
import hashlib
import heapq
import math
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from aiohttp import web

from .common import Fault
from .seed import EPOCH, person

MAX_TOP = 999
RISKY_MAX_TOP = 500
SCOPE = "https://graph.microsoft.com/.default"
DOMAIN = "idopsdemo.onmicrosoft.com"
FAULT_KINDS = ("401", "429", "503", "500", "slow", "drop", "malformed", "expire_token")
# (role id, displayName, roleTemplateId, every Nth user from an offset is a member)
ROLES = (
    (
        "5e6a4b1c-0000-4000-8000-000000000001",
        "Global Administrator",
        "62e90394-69f5-4237-9190-012177145e10",
        97,
        3,
    ),
    (
        "5e6a4b1c-0000-4000-8000-000000000002",
        "User Administrator",
        "fe930be7-5e62-47db-91af-98c3a49a38b1",
        61,
        5,
    ),
    (
        "5e6a4b1c-0000-4000-8000-000000000003",
        "Security Reader",
        "5d6b6bb7-de71-4623-b4af-96380a352509",
        149,
        11,
    ),
)
# role-assignable groups: (group id, displayName, ids of the roles it holds, every Nth user from an
# offset is a member); their members hold those roles without being the roles' direct members
GROUPS = (
    (
        "7c2d9e40-0000-4000-8000-0000000000a1",
        "Identity Operators",
        ("5e6a4b1c-0000-4000-8000-000000000002", "5e6a4b1c-0000-4000-8000-000000000003"),
        131,
        19,
    ),
    (
        "7c2d9e40-0000-4000-8000-0000000000a2",
        "Tier 0 Admins",
        ("5e6a4b1c-0000-4000-8000-000000000001",),
        179,
        23,
    ),
)
# a service principal (an app) that holds a role: a role's members are not only users and groups
SERVICE_PRINCIPAL = (
    "3b8f1e22-0000-4000-8000-0000000000b1",
    "Backup Automation",
    "5e6a4b1c-0000-4000-8000-000000000003",
)
RISK_EVERY, RISK_OFFSET = 20, 7  # every 20th user from 7 has a riskyUser record
USER_FIELDS = (
    "id displayName givenName surname mail userPrincipalName accountEnabled createdDateTime userType"
    " jobTitle businessPhones mobilePhone officeLocation preferredLanguage"
).split()
DEFAULT_SELECT = (
    "businessPhones displayName givenName jobTitle mail mobilePhone officeLocation preferredLanguage"
    " surname userPrincipalName id"
).split()
USER_FILTERS = {
    "id": "eq in",
    "mail": "eq ne in startswith endswith",
    "userPrincipalName": "eq ne in startswith endswith",
    "displayName": "eq ne in startswith endswith",
    "givenName": "eq ne startswith",
    "surname": "eq ne startswith",
    "accountEnabled": "eq ne",
    "userType": "eq ne",
}
REGISTRATION_FIELDS = (
    "id userPrincipalName userDisplayName userType isAdmin isSsprRegistered isSsprEnabled isSsprCapable"
    " isMfaRegistered isMfaCapable isPasswordlessCapable methodsRegistered"
    " isSystemPreferredAuthenticationMethodEnabled systemPreferredAuthenticationMethods"
    " userPreferredMethodForSecondaryAuthentication lastUpdatedDateTime"
).split()
REGISTRATION_FILTERS = {
    "id": "eq in",
    "userPrincipalName": "eq",
    "isMfaRegistered": "eq",
    "isMfaCapable": "eq",
    "isAdmin": "eq",
    "userType": "eq",
}
RISKY_FILTERS = {
    "id": "eq in",
    "riskLevel": "eq",
    "riskState": "eq",
    "userPrincipalName": "eq startswith",
    "riskLastUpdatedDateTime": "eq gt ge lt le",
}
ADVANCED_OPS = frozenset({"ne", "endswith", "not"})


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _guid(*parts: object, tail: int) -> str:
    h = hashlib.sha1(":".join(map(str, parts)).encode(), usedforsecurity=False).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{tail:012x}"


def thumbprint(certificate_der: bytes) -> str:
    """A certificate's SHA-1 thumbprint in hex, as the Azure portal shows it."""
    return hashlib.sha1(certificate_der, usedforsecurity=False).hexdigest().upper()


@dataclass
class Record:
    at: float
    method: str
    path: str
    query: dict
    headers: dict
    status: int = 0


@dataclass
class EntraState:
    """Everything beyond the seeded population; `app[STATE]`."""

    users: int
    seed: int
    tenant_id: str
    client_id: str
    client_secret: str
    certificates: dict[str, Any] = field(default_factory=dict)  # x5t (base64url) -> public key
    p2: bool = True
    group_read: bool = True  # False: the app lacks GroupMember.Read.All (group members are 403)
    mfa_reports: bool = True  # False: no Entra ID P1 or no AuditLog.Read.All (registration details are 403)
    token_ttl: int = 3599
    throttle: Optional[tuple[int, float]] = (2000, 10.0)  # requests per period per app, else None
    enabled: dict[int, bool] = field(default_factory=dict)
    risk: dict[int, tuple[str, str, str, str]] = field(default_factory=dict)  # level, state, detail, time
    revoked: collections.Counter = field(default_factory=collections.Counter)
    password_changes: set[int] = field(default_factory=set)
    tokens: dict[str, float] = field(default_factory=dict)
    tokens_issued: int = 0
    token_forms: list[dict] = field(default_factory=list)
    faults: collections.deque[Fault] = field(default_factory=collections.deque)
    window: collections.deque[float] = field(default_factory=collections.deque)
    log: collections.deque[Record] = field(default_factory=lambda: collections.deque(maxlen=20000))
    throttled: int = 0

    def __post_init__(self) -> None:
        self._doc = functools.lru_cache(maxsize=70000)(self._render)

    # --- ids --------------------------------------------------------------------------------------
    def user_id(self, index: int) -> str:
        return _guid("user", self.seed, index, tail=index)

    def index_of(self, key: Any) -> Optional[int]:
        """The index of a user by object id or userPrincipalName (any case)."""
        if not isinstance(key, str):
            return None
        text = key.lower()
        try:
            index = int(text[-12:], 16) if len(text) == 36 else int(text.split("@")[0].rsplit(".", 1)[1])
        except (ValueError, IndexError):
            return None
        if not 0 <= index < self.users:
            return None
        return index if text in (self.user_id(index), self.upn(index).lower()) else None

    def upn(self, index: int) -> str:
        p = person(index, seed=self.seed)
        return f"{p.first}.{p.last}.{index}@{DOMAIN}".lower()

    def mail(self, index: int) -> Optional[str]:
        p = person(index, seed=self.seed)
        if index % 41 == 40:
            return None  # no mailbox: the connector falls back to the principal name
        if index % 37 == 11:  # a quote in the address: filters must escape it
            return f"{p.first}.o'{p.last}.{index}@tenant{p.tenant}.example".lower()
        return p.email

    # --- users ------------------------------------------------------------------------------------
    def _render(self, index: int) -> dict:
        p = person(index, seed=self.seed)
        return {
            "id": self.user_id(index),
            "displayName": p.display_name,
            "givenName": p.first,
            "surname": p.last,
            "mail": self.mail(index),
            "userPrincipalName": self.upn(index),
            "accountEnabled": p.status == "active",
            "createdDateTime": iso(p.created_at),
            "userType": "Guest" if index % 53 == 52 else "Member",
            "jobTitle": p.roles[-1].title(),
            "businessPhones": [],
            "mobilePhone": None,
            "officeLocation": p.last_login_country,
            "preferredLanguage": "en-US",
        }

    def user(self, index: int) -> dict:
        doc = self._doc(index)
        if index in self.enabled:
            doc = {**doc, "accountEnabled": self.enabled[index]}
        return doc

    def roles_of(self, index: int) -> list[tuple[str, str, str]]:
        """The roles a user holds directly or through a role-assignable group (transitively)."""
        held = {rid for _, _, roles, every, offset in GROUPS if index % every == offset for rid in roles}
        return [
            (rid, name, tpl)
            for rid, name, tpl, every, offset in ROLES
            if index % every == offset or rid in held
        ]

    def group_members(self, group_id: str) -> Optional[range]:
        """The indices of a role-assignable group's members; None for no such group."""
        group = next((g for g in GROUPS if g[0] == group_id), None)
        return None if group is None else range(group[4], self.users, group[3])

    # --- risk -------------------------------------------------------------------------------------
    def base_risk(self, index: int) -> Optional[tuple[str, str, str, str]]:
        if index % RISK_EVERY != RISK_OFFSET:
            return None
        n = index // RISK_EVERY
        moment = iso(EPOCH - timedelta(minutes=n % 40000))
        if n % 20 == 0:
            return "high", "confirmedCompromised", "adminConfirmedUserCompromised", moment
        if n % 10 == 5:
            return "none", "remediated", "userPerformedSecuredPasswordChange", moment
        if n % 10 == 9:
            return "none", "dismissed", "adminDismissedAllRiskForUser", moment
        return ("low", "medium", "high", "medium")[n % 4], "atRisk", "none", moment

    def risk_of(self, index: int) -> Optional[tuple[str, str, str, str]]:
        return self.risk.get(index) or self.base_risk(index)

    def set_risk(self, index: int, level: str, state: str, detail: str = "none") -> None:
        now = datetime.now(timezone.utc)
        self.risk[index] = (
            level,
            state,
            detail,
            now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}Z",
        )

    def risky_indices(self, start: int = 0) -> Iterator[int]:
        """Indices with a riskyUser record, ascending from `start`."""
        first = start + (RISK_OFFSET - start) % RISK_EVERY
        merged = heapq.merge(range(first, self.users, RISK_EVERY), sorted(i for i in self.risk if i >= start))
        last = -1
        for index in merged:
            if index != last:
                last = index
                yield index

    def registration(self, index: int) -> Optional[dict]:
        """The user's authentication methods registration details (userRegistrationDetails), or None:
        Graph's report leaves disabled users out. Every 7th user from 2 has no MFA method (every other
        one of those only an email address for password reset)."""
        doc = self.user(index)
        if not doc["accountEnabled"]:
            return None
        registered = index % 7 != 2
        if registered:
            methods = (
                ["fido2"] if index % 3 == 0 else ["microsoftAuthenticatorPush", "softwareOneTimePasscode"]
            )
        else:
            methods = ["email"] if index % 2 else []
        return {
            "id": doc["id"],
            "userPrincipalName": doc["userPrincipalName"],
            "userDisplayName": doc["displayName"],
            "userType": doc["userType"].lower(),
            "isAdmin": bool(self.roles_of(index)),
            "isSsprRegistered": bool(methods),
            "isSsprEnabled": True,
            "isSsprCapable": bool(methods),
            "isMfaRegistered": registered,
            "isMfaCapable": registered,
            "isPasswordlessCapable": methods == ["fido2"],
            "methodsRegistered": methods,
            "isSystemPreferredAuthenticationMethodEnabled": True,
            "systemPreferredAuthenticationMethods": methods[:1] if registered else [],
            "userPreferredMethodForSecondaryAuthentication": methods[0] if registered else "none",
            "lastUpdatedDateTime": iso(EPOCH),
        }

    def risky_user(self, index: int) -> dict:
        level, state, detail, moment = self.risk_of(index) or ("none", "none", "none", iso(EPOCH))
        doc = self.user(index)
        return {
            "id": doc["id"],
            "isDeleted": False,
            "isProcessing": False,
            "riskLastUpdatedDateTime": moment,
            "riskLevel": level,
            "riskState": state,
            "riskDetail": detail,
            "userDisplayName": doc["displayName"],
            "userPrincipalName": doc["userPrincipalName"],
        }

    # --- tokens and throttling ----------------------------------------------------------------------
    def issue_token(self) -> str:
        token = "eyJ0eXAiOiJKV1QifQ." + secrets.token_urlsafe(32)
        self.tokens[token] = time.monotonic() + self.token_ttl
        self.tokens_issued += 1
        return token

    def expire_tokens(self) -> None:
        self.tokens = dict.fromkeys(self.tokens, 0.0)

    def admit(self) -> Optional[int]:
        if self.throttle is None:
            return None
        limit, period = self.throttle
        now = time.monotonic()
        while self.window and now - self.window[0] >= period:
            self.window.popleft()
        if len(self.window) >= limit:
            self.throttled += 1
            return max(1, math.ceil(self.window[0] + period - now))
        self.window.append(now)
        return None

    def requests_to(self, suffix: str, method: str = "GET") -> list[Record]:
        return [r for r in self.log if r.method == method and r.path.endswith(suffix)]


STATE = web.AppKey("entra_state", EntraState)
