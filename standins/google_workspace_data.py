"""What the Google Workspace stand-in serves, apart from HTTP: its constants, seeded users by index,
Alert Center alerts, tokens and quota (`WorkspaceState`), the Directory `query` parser (Google's documented
syntax) and `fields` partial responses. `google_workspace.py` serves them."""

from __future__ import annotations

import bisect
import collections
import functools
import hashlib
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .common import Fault
from .seed import person

GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE_USER = "https://www.googleapis.com/auth/admin.directory.user"
SCOPE_USER_READONLY = SCOPE_USER + ".readonly"
SCOPE_USER_SECURITY = SCOPE_USER + ".security"
SCOPE_ALERTS = "https://www.googleapis.com/auth/apps.alerts"
ALL_SCOPES = frozenset({SCOPE_USER, SCOPE_USER_READONLY, SCOPE_USER_SECURITY, SCOPE_ALERTS})
DIRECTORY = "/admin/directory/v1"
MAX_RESULTS = 500
ALERT_PAGE_MAX = 1000
NEVER = "1970-01-01T00:00:00.000Z"
FAULT_KINDS = (
    "400",
    "401",
    "429",
    "403_user_rate",
    "403_rate",
    "500",
    "503",
    "slow",
    "drop",
    "malformed",
    "expire_token",
)
# alert types by the score idops gives a user with one open (connectors/google_workspace's rule)
RISK_ALERTS = {
    100: frozenset({"Leaked password", "Government attack warning"}),
    75: frozenset(
        {
            "Suspicious login",
            "Suspicious login (less secure app)",
            "Suspicious programmatic login",
            "User suspended (suspicious activity)",
        }
    ),
}
ALERT_SOURCES = {"Government attack warning": ("State sponsored attack", "StateSponsoredAttack")}
_ID_BASE = 10**20  # ids are 21 digits, like Google's
SEEDED_ALERT_USERS = 100_000  # seeding reads each person once: bounded so a million users start fast
#: serialized users kept: two forms (idops' partial compact response and Google's client's full indented
#: one) for 100,000 users, so clients asking differently don't evict each other's users (~250 MB at most)
CACHE_SIZE = 200_000
#: the indentation of a user in a users.list page (`{"users": [{…`: two levels of two spaces)
LISTED = 4
#: `email:{PREFIX}*` answers kept (the 38 partitions of a partitioned listing, and room for searches)
PREFIX_CACHE = 256


def _iso(moment: datetime) -> str:
    return (
        moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def digest(*parts: object) -> str:
    return hashlib.sha1(":".join(map(str, parts)).encode(), usedforsecurity=False).hexdigest()


def generate_key(client_email: str = "idops-sim@idops-sim.iam.gserviceaccount.com") -> dict:
    """A new service account key file (the JSON Google's console downloads), RSA 2048."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "idops-sim",
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": client_email,
        "client_id": str(_ID_BASE + secrets.randbelow(_ID_BASE)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": GOOGLE_TOKEN_URL,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
    }


# --- Directory search queries (Google's documented syntax) -----------------------------------------

QUERY_FIELDS = {
    "email": "=:",
    "name": "=:",
    "givenName": "=:",
    "familyName": "=:",
    "isAdmin": "=",
    "isDelegatedAdmin": "=",
    "isSuspended": "=",
    "isArchived": "=",
    "isEnrolledIn2Sv": "=",
    "isEnforcedIn2Sv": "=",
    "orgUnitPath": "=",
}
_CLAUSE = re.compile(
    r"\s*(?P<field>[A-Za-z][A-Za-z0-9]*)(?P<op>[=:])(?:'(?P<quoted>(?:[^'\\]|\\.)*)'|(?P<bare>[^\s'\\]+))(?P<star>\*)?",
    re.DOTALL,
)
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)


class QueryError(ValueError):
    """A `query` that is not `field op value` clauses separated by spaces."""


@dataclass(frozen=True)
class Clause:
    field: str
    op: str
    value: str
    prefix: bool


def parse_query(text: str) -> list[Clause]:
    """Clauses separated by whitespace (implicit AND); values bare or in single quotes with `\\'`
    and `\\\\` escapes; a trailing `*` outside the value is a prefix match."""
    clauses, pos = [], 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        match = _CLAUSE.match(text, pos)
        if match is None:
            raise QueryError(f"cannot parse the query at position {pos}")
        name, op = match.group("field"), match.group("op")
        if name not in QUERY_FIELDS or op not in QUERY_FIELDS[name]:
            raise QueryError(f"unsupported query field or operator: {name}{op}")
        quoted = match.group("quoted")
        value = _UNESCAPE.sub(r"\1", quoted) if quoted is not None else match.group("bare")
        if value.endswith("*") and quoted is None:
            value, star = value[:-1], True
        else:
            star = bool(match.group("star"))
        if star and op != ":":
            raise QueryError("a prefix search (*) needs the : operator")
        clauses.append(Clause(name, op, value, star))
        pos = match.end()
        if pos < len(text) and not text[pos].isspace():
            raise QueryError(f"clauses must be separated by spaces (position {pos})")
    return clauses


def matches(clause: Clause, user: dict) -> bool:
    name = user["name"]
    values: list[Any]
    if clause.field == "email":
        values = [user["primaryEmail"], *user.get("aliases", ())]
    elif clause.field == "name":
        values = [f"{name['givenName']} {name['familyName']}"]
    elif clause.field in ("givenName", "familyName"):
        values = [name[clause.field]]
    elif clause.field in ("isSuspended", "isArchived"):
        values = [str(user[clause.field[2].lower() + clause.field[3:]]).lower()]
    elif clause.field == "orgUnitPath":
        values = [user["orgUnitPath"]]
    else:
        values = [str(user[clause.field]).lower()]
    wanted = clause.value.casefold()
    for value in values:
        text = str(value).casefold()
        if clause.op == "=" and text == wanted:
            return True
        if clause.op == ":" and (text.startswith(wanted) if clause.prefix else wanted in text):
            return True
    return False


# --- partial responses (`fields`) ----------------------------------------------------------------

_FIELD_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[,/()]")


def parse_fields(text: str) -> dict:
    """A `fields` mask such as `nextPageToken,users(id,name/fullName)` as a tree ({} = whole value)."""
    tokens = _FIELD_TOKEN.findall(text)
    if "".join(tokens) != text.replace(" ", ""):
        raise QueryError("fields")
    pos = 0

    def selection() -> dict:
        nonlocal pos
        tree: dict = {}
        while True:
            if pos >= len(tokens) or not (tokens[pos][0].isalpha() or tokens[pos][0] == "_"):
                raise QueryError("fields")
            node, pos = tree.setdefault(tokens[pos], {}), pos + 1
            while pos < len(tokens) and tokens[pos] == "/":
                if pos + 1 >= len(tokens):
                    raise QueryError("fields")
                node, pos = node.setdefault(tokens[pos + 1], {}), pos + 2
            if pos < len(tokens) and tokens[pos] == "(":
                pos += 1
                node.update(selection())
                if pos >= len(tokens) or tokens[pos] != ")":
                    raise QueryError("fields")
                pos += 1
            if pos < len(tokens) and tokens[pos] == ",":
                pos += 1
                continue
            return tree

    tree = selection()
    if pos != len(tokens):
        raise QueryError("fields")
    return tree


def project(value: Any, mask: dict) -> Any:
    """`value` cut down to `mask` (lists element by element), as Google's partial responses are."""
    if not mask:
        return value
    if isinstance(value, list):
        return [project(item, mask) for item in value]
    if isinstance(value, dict):
        return {key: project(value[key], sub) for key, sub in mask.items() if key in value}
    return value


# --- state -----------------------------------------------------------------------------------------


@dataclass
class RequestRecord:
    at: float
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    subject: Optional[str] = None
    status: int = 0


@dataclass
class WorkspaceState:
    """Everything beyond the seeded people; `app[STATE]`, read and changed directly by tests."""

    identities: int
    seed: int
    domain: str
    customer_id: str
    keys: dict[str, Any]  # client_email -> public key
    admin: Optional[str] = None
    granted_scopes: frozenset[str] = ALL_SCOPES
    alert_center: bool = True
    quota_per_minute: Optional[int] = 2400
    token_ttl: int = 3599
    latency: float = 0.0
    cache_size: int = CACHE_SIZE
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    suspended: dict[int, bool] = field(default_factory=dict)
    change_password: dict[int, bool] = field(default_factory=dict)
    sign_outs: collections.Counter = field(default_factory=collections.Counter)
    #: users Directory search doesn't find yet (Google's index lags, up to 36 hours); plain listing does
    unindexed: set[int] = field(default_factory=set)
    alerts: list[dict] = field(default_factory=list)
    tokens: dict[str, tuple[str, Optional[str], frozenset[str], float]] = field(default_factory=dict)
    tokens_issued: int = 0
    faults: collections.deque[Fault] = field(default_factory=collections.deque)
    windows: dict[tuple[str, Optional[str]], collections.deque[float]] = field(default_factory=dict)
    peak_per_minute: int = 0
    log: collections.deque[RequestRecord] = field(default_factory=lambda: collections.deque(maxlen=50000))

    def __post_init__(self) -> None:
        self._cached = functools.lru_cache(maxsize=self.cache_size)(self._render)
        self._mask = functools.lru_cache(maxsize=64)(parse_fields)  # a mask is parsed once, not per user
        self._addresses: Optional[tuple[list[str], list[int]]] = None
        self._prefixed: dict[str, list[int]] = {}  # prefix -> with_address_prefix's answer
        self._seed_alerts()

    def user_id(self, index: int) -> str:
        return str(_ID_BASE + int(digest("user", self.seed, index)[:12], 16) % 10**11 * 10**9 + index)

    def index_of(self, key: Any) -> Optional[int]:
        """The index of a user key: numeric id, primary email or alias (any case)."""
        if not isinstance(key, str) or not key:
            return None
        if key.isdigit():
            index = int(key) % 10**9
            ok = index < self.identities and self.user_id(index) == key
            return index if ok else None
        match = re.fullmatch(r"[^@]*\.(\d+)@" + re.escape(self.domain), key, re.IGNORECASE)
        if not match or int(match.group(1)) >= self.identities:
            return None
        index = int(match.group(1))
        return index if key.casefold() in self.addresses(index) else None

    def user(self, index: int) -> dict:
        """User `index` as users.get returns it (projection basic)."""
        p = person(index, seed=self.seed)
        plain = p.display_name == f"{p.first} {p.last}"
        given = p.first if plain else p.display_name
        email, *aliases = self._addresses_of(p, index)
        admin = "admin" in p.roles
        suspended = self.suspended.get(index, p.status == "suspended")
        user = {
            "kind": "admin#directory#user",
            "id": self.user_id(index),
            "etag": f'"{digest("etag", self.seed, index, suspended, self.change_password.get(index))[:27]}"',
            "primaryEmail": email,
            "name": {"givenName": given, "familyName": p.last, "fullName": f"{given} {p.last}"},
            "isAdmin": admin,
            "isDelegatedAdmin": not admin and "billing-admin" in p.roles,
            "lastLoginTime": NEVER if index % 97 == 96 else _iso(p.last_login_at),
            "creationTime": _iso(p.created_at),
            "agreedToTerms": True,
            "suspended": suspended,
            "archived": False,
            "changePasswordAtNextLogin": self.change_password.get(index, False),
            "ipWhitelisted": False,
            "emails": [{"address": email, "primary": True}, *({"address": a} for a in aliases)],
            "aliases": aliases,
            "nonEditableAliases": [email.replace("@", "@test-google-a.", 1)],
            "customerId": self.customer_id,
            "orgUnitPath": "/" if not admin else "/IT",
            "isMailboxSetup": True,
            "isEnrolledIn2Sv": bool(p.mfa_methods),
            "isEnforcedIn2Sv": index % 4 == 0,
            "includeInGlobalAddressList": True,
        }
        if suspended:
            user["suspensionReason"] = "ADMIN"
        if not aliases:
            del user["aliases"]
        return user

    def _render(self, index: int, fields: str, indent: Optional[int]) -> bytes:
        user = project(self.user(index), self._mask(fields)) if fields else self.user(index)
        if indent is None:
            return json.dumps(user, separators=(",", ":")).encode()
        text = json.dumps(user, indent=2)  # Google's prettyPrint form
        if indent:  # every line moved right to its place in the page (strings hold no raw newline)
            text = " " * indent + text.replace("\n", "\n" + " " * indent)
        return text.encode()

    def _addresses_of(self, p: Any, index: int) -> list[str]:
        """The primary address of person `p` (user `index`), then its aliases: one user in ten has one,
        family name first (so it often begins with another letter than the primary address)."""
        email = f"{p.first}.{p.last}.{index}@{self.domain}".lower()
        return [email, f"{p.last}.{p.first[0]}.{index}@{self.domain}".lower()] if index % 10 == 3 else [email]

    def addresses(self, index: int) -> list[str]:
        """User `index`'s primary address and aliases, without building the whole user."""
        return self._addresses_of(person(index, seed=self.seed), index)

    def with_address_prefix(self, prefix: str) -> list[int]:
        """Indexes of the users with an address (primary or alias) starting with `prefix` (any case), in
        listing order: Google's `email:{PREFIX}*` search, from a sorted index of every address."""
        if self._addresses is None:
            pairs = sorted((a, i) for i in range(self.identities) for a in self.addresses(i))
            self._addresses = [a for a, _ in pairs], [i for _, i in pairs]
        wanted = prefix.casefold()
        cached = self._prefixed.get(wanted)
        if cached is not None:  # each page of a search asks again; addresses never change
            return cached
        keys, indexes = self._addresses
        start = bisect.bisect_left(keys, wanted)
        found = set()
        for position in range(start, len(keys)):
            if not keys[position].startswith(wanted):
                break
            found.add(indexes[position])
        if len(self._prefixed) >= PREFIX_CACHE:
            self._prefixed.clear()
        self._prefixed[wanted] = sorted(found)
        return self._prefixed[wanted]

    def user_json(self, index: int, fields: str = "", indent: Optional[int] = None) -> bytes:
        """User `index` serialized, cut to `fields` (a `users(…)` sub-mask as text): compact, or (`indent`
        a number) in Google's prettyPrint form with every line indented that many spaces, no final
        newline; cached when untouched, per form."""
        changed = index in self.suspended or index in self.change_password
        return self._render(index, fields, indent) if changed else self._cached(index, fields, indent)

    def set_user(
        self, index: int, *, suspended: Optional[bool] = None, change: Optional[bool] = None
    ) -> None:
        if suspended is not None:
            self.suspended[index] = suspended
        if change is not None:
            self.change_password[index] = change

    # --- alerts

    def raise_alert(
        self, index: int, alert_type: str, *, status: str = "NOT_STARTED", created: Optional[datetime] = None
    ) -> dict:
        """Add an Alert Center alert naming user `index` (AccountWarning data, as Google identity sends)."""
        created = created or datetime.now(timezone.utc)
        alert_id = str(uuid.UUID(digest("alert", self.seed, index, alert_type, len(self.alerts))[:32]))
        source, data_type = ALERT_SOURCES.get(alert_type, ("Google identity", "AccountWarning"))
        email = self.user(index)["primaryEmail"]
        customer = self.customer_id.lstrip("C")
        alert = {
            "customerId": customer,
            "alertId": alert_id,
            "createTime": _iso(created),
            "startTime": _iso(created - timedelta(minutes=5)),
            "updateTime": _iso(created),
            "type": alert_type,
            "source": source,
            "data": {
                "@type": f"type.googleapis.com/google.apps.alertcenter.type.{data_type}",
                "email": email,
            },
            "deleted": False,
            "metadata": {
                "customerId": customer,
                "alertId": alert_id,
                "status": status,
                "severity": "HIGH",
                "updateTime": _iso(created),
                "etag": digest("m", alert_id)[:12],
            },
            "etag": digest("a", alert_id)[:12],
        }
        self.alerts.append(alert)
        return alert

    def _seed_alerts(self) -> None:
        """Alerts for the first SEEDED_ALERT_USERS people, picked by their seeded risk score."""
        for index in range(min(self.identities, SEEDED_ALERT_USERS)):
            score = person(index, seed=self.seed).risk_score
            hours = timedelta(hours=1 + index % 240)
            if score >= 90:
                self.raise_alert(index, "Leaked password", created=self.started - hours)
            elif score >= 76:
                self.raise_alert(index, "Suspicious login", created=self.started - hours)
            elif score >= 70:
                self.raise_alert(index, "Suspicious login", status="CLOSED", created=self.started - hours)

    def open_alerts(self, index: int) -> list[dict]:
        email = self.user(index)["primaryEmail"]
        return [
            a
            for a in self.alerts
            if a["data"]["email"] == email and a["metadata"]["status"] != "CLOSED" and not a["deleted"]
        ]

    def risk_score(self, index: int) -> int:
        """The score idops derives from the user's open alerts (the rule in connectors/google_workspace)."""
        types = {a["type"] for a in self.open_alerts(index)}
        if types & RISK_ALERTS[100]:
            return 100
        if types & RISK_ALERTS[75]:
            return 75
        return 50 if types else 0

    def set_risk(self, index: int, score: int) -> list[dict]:
        """Make the user's open alerts say `score`'s level: the open ones close, and one alert of a type
        of that level opens (none for low). What the demo's drift and tests use; returns the new alerts."""
        now = datetime.now(timezone.utc)
        for alert in self.open_alerts(index):
            alert["metadata"]["status"] = "CLOSED"
            alert["metadata"]["updateTime"] = alert["updateTime"] = _iso(now)
        if score <= 20:
            return []
        alert_type = (
            "Leaked password"
            if score > 75
            else "Suspicious login"
            if score > 50
            else "User reported phishing"
        )
        return [self.raise_alert(index, alert_type, created=now)]

    # --- auth and quota

    def issue_token(self, issuer: str, subject: Optional[str], scopes: frozenset[str]) -> str:
        token = "ya29." + secrets.token_urlsafe(48)
        self.tokens[token] = (issuer, subject, scopes, time.monotonic() + self.token_ttl)
        self.tokens_issued += 1
        return token

    def expire_tokens(self) -> None:
        self.tokens = {t: (*v[:3], 0.0) for t, v in self.tokens.items()}

    def admit(self, caller: tuple[str, Optional[str]]) -> bool:
        """Count one request against the caller's per-minute quota; False past the ceiling."""
        now = time.monotonic()
        window = self.windows.setdefault(caller, collections.deque())
        while window and now - window[0] >= 60.0:
            window.popleft()
        if self.quota_per_minute is not None and len(window) >= self.quota_per_minute:
            return False
        window.append(now)
        self.peak_per_minute = max(self.peak_per_minute, len(window))
        return True


def public_key(key: dict) -> Any:
    """The public half of a key file's private key (what Google keeps for the service account)."""
    private = serialization.load_pem_private_key(key["private_key"].encode(), password=None)
    return private.public_key()
