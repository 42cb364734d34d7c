"""The Okta simulator's data: seeded users made on demand, what actions changed, ITP risk, admin roles and
the System Log (Okta's `search`/`filter` expressions are in `standins.okta_search`)."""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from aiohttp import web

from .okta_search import SearchError, conjuncts, fields, matches, parse_time
from .sailpoint import BoolOp, Comparison
from .seed import person

MAX_LIMIT = 200
MAX_LOG_LIMIT = 1000
BASE = datetime(2021, 1, 4, 9, 0, tzinfo=timezone.utc)
STEP = 37  # seconds between two users' `created`: created time is monotonic in the index
LEVELS = ("NONE", "LOW", "MEDIUM", "HIGH")
ROLE_TYPES = (
    ("SUPER_ADMIN", "Super Administrator"),
    ("ORG_ADMIN", "Organizational Administrator"),
    ("HELP_DESK_ADMIN", "Help Desk Administrator"),
)
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def iso(moment: datetime) -> str:
    return (
        moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def error(status: int, code: str, summary: str, causes: Optional[list[str]] = None) -> str:
    """An Okta error body (spec schema Error) as text."""
    return json.dumps(
        {
            "errorCode": code,
            "errorSummary": summary,
            "errorLink": code,
            "errorId": "oae" + uuid.uuid4().hex[:19],
            "errorCauses": [{"errorSummary": cause} for cause in causes or []],
        }
    )


def validation_error(operation: str, cause: str) -> web.Response:
    text = error(400, "E0000001", f"Api validation failed: {operation}", [cause])
    return web.Response(text=text, status=400, content_type="application/json")


@dataclass
class OktaState:
    """Everything the simulator knows beyond the seeded population; reachable as `app[STATE]`."""

    identities: int
    seed: int = 0
    api_tokens: set[str] = field(default_factory=set)
    itp: bool = True
    rate_limits: bool = True
    windows: Any = None
    oauth: Any = None
    latency: float = 0.0
    statuses: dict[int, str] = field(default_factory=dict)
    updated: dict[int, str] = field(default_factory=dict)
    risk: dict[int, tuple[str, str]] = field(default_factory=dict)
    role_overrides: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    actions: list[tuple[str, str]] = field(default_factory=list)
    faults: list[Any] = field(default_factory=list)
    log: collections.deque = field(default_factory=lambda: collections.deque(maxlen=200_000))
    oauth_tokens: dict[str, tuple[float, frozenset[str]]] = field(default_factory=dict)
    used_assertions: set[str] = field(default_factory=set)
    base_url: str = "http://127.0.0.1"
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def __post_init__(self) -> None:
        # DEPROVISIONED users (index % 101 == 100) come on top: a default list returns `identities`
        self.total = self.identities + self.identities // 100
        self._cached = functools.lru_cache(maxsize=60_000)(self._render_user)
        # the seeded parts are pure functions of the index: cached, so the server stays cheap per user
        self._seeded_status = functools.lru_cache(maxsize=200_000)(self._seeded_status_of)
        self.user_id = functools.lru_cache(maxsize=200_000)(self._user_id)  # type: ignore[method-assign]

    # ids: "00u" + 8 seeded characters + the index in 9 base-62 digits (20 characters, like Okta's)
    def user_id(self, index: int) -> str:
        return self._user_id(index)

    def _user_id(self, index: int) -> str:
        digest = hashlib.sha1(f"okta:{self.seed}:{index}".encode(), usedforsecurity=False).digest()
        head = "".join(_ALPHABET[b % 62] for b in digest[:8])
        tail = ""
        for _ in range(9):
            index, digit = divmod(index, 62)
            tail = _ALPHABET[digit] + tail
        return f"00u{head}{tail}"

    def index_of(self, user_id: Any) -> Optional[int]:
        if not isinstance(user_id, str) or len(user_id) != 20 or not user_id.startswith("00u"):
            return None
        index = 0
        for char in user_id[11:]:
            position = _ALPHABET.find(char)
            if position < 0:
                return None
            index = index * 62 + position
        return index if index < self.total and self.user_id(index) == user_id else None

    def lookup(self, id_or_login: str) -> Optional[int]:
        """A user by id or login (the path parameter takes either)."""
        found = self.index_of(id_or_login)
        if found is not None:
            return found
        match = re.search(r"\.(\d+)@", id_or_login)
        if match and int(match.group(1)) < self.total:
            index = int(match.group(1))
            if person(index, seed=self.seed).email.casefold() == id_or_login.casefold():
                return index
        return None

    def created(self, index: int) -> datetime:
        return BASE + timedelta(seconds=STEP * index)

    def status(self, index: int) -> str:
        if index in self.statuses:
            return self.statuses[index]
        return self._seeded_status(index)

    def _seeded_status_of(self, index: int) -> str:
        if index % 101 == 100:
            return "DEPROVISIONED"
        if person(index, seed=self.seed).status == "suspended":
            return "SUSPENDED"
        for modulus, remainder, status in (
            (53, 7, "LOCKED_OUT"),
            (61, 5, "PASSWORD_EXPIRED"),
            (67, 3, "STAGED"),
        ):
            if index % modulus == remainder:
                return status
        return "ACTIVE"

    def seeded_risk(self, index: int) -> str:
        # ITP flags few users: 0.3% HIGH, 0.6% MEDIUM, 1.2% LOW
        roll = (index * 2654435761 + self.seed * 40503) % 1000
        return "HIGH" if roll < 3 else "MEDIUM" if roll < 9 else "LOW" if roll < 21 else "NONE"

    def risk_level(self, index: int) -> tuple[str, str]:
        """(level, reason) the risk API reports now."""
        if index in self.risk:
            return self.risk[index]
        level = self.seeded_risk(index)
        return level, "Anomalous sign-in from a new country" if level != "NONE" else ""

    def role_types(self, index: int) -> list[tuple[str, str]]:
        """Admin roles (type, label): 4% of users, none once DEPROVISIONED (Okta revokes them)."""
        if index in self.role_overrides:
            return self.role_overrides[index]
        if (index * 7919 + self.seed) % 100 >= 4 or self.status(index) == "DEPROVISIONED":
            return []
        return [ROLE_TYPES[index % len(ROLE_TYPES)]]

    # --- rendering ------------------------------------------------------------------------------------

    def user(self, index: int) -> dict:
        """User `index` as the API returns it (spec schema User)."""
        p = person(index, seed=self.seed)
        status = self.status(index)
        created = self.created(index)
        updated = self.updated.get(index) or iso(created + timedelta(days=3))
        login = p.email
        return {
            "id": self.user_id(index),
            "status": status,
            "created": iso(created),
            "activated": None if status == "STAGED" else iso(created + timedelta(hours=1)),
            "statusChanged": updated if index in self.updated else iso(created + timedelta(hours=1)),
            "lastLogin": None if status == "STAGED" else iso(p.last_login_at),
            "lastUpdated": updated,
            "passwordChanged": iso(created + timedelta(hours=1)),
            "type": {"id": "otyfnjfba4ye7pgjB0g4"},
            "profile": {
                "firstName": p.first,
                "lastName": p.last,
                "mobilePhone": None,
                "secondEmail": None,
                "login": login,
                "email": p.email,
                "displayName": p.display_name,
            },
            "credentials": {
                "password": {},
                "provider": {"type": "OKTA", "name": "OKTA"},
            },
            "_links": {"self": {"href": f"{self.base_url}/api/v1/users/{self.user_id(index)}"}},
        }

    def light_user(self, index: int) -> dict:
        return {"id": self.user_id(index), "status": self.status(index), "created": iso(self.created(index))}

    def _render_user(self, index: int) -> bytes:
        return json.dumps(self.user(index), separators=(",", ":")).encode()

    def render_one(self, index: int) -> bytes:
        return self._render_user(index) if index in self.updated else self._cached(index)

    def render(self, indices: list[int]) -> bytes:
        return b"[" + b",".join(self.render_one(i) for i in indices) + b"]"

    def risk_body(self, index: int, request: web.Request) -> dict:
        level, reason = self.risk_level(index)
        user = f"{self.base_url}/api/v1/users/{self.user_id(index)}"
        body: dict = {"riskLevel": level}
        if level != "NONE":
            body["reason"] = reason
        body["_links"] = {
            "self": {"href": f"{user}/risk", "hints": {"allow": ["GET", "PUT"]}},
            "user": {"href": user, "hints": {"allow": ["GET"]}},
        }
        return body

    def roles(self, index: int, request: web.Request) -> list[dict]:
        created = iso(self.created(index) + timedelta(days=1))
        return [
            {
                "id": f"ra{self.user_id(index)[3:]}",
                "label": label,
                "type": kind,
                "status": "ACTIVE",
                "created": created,
                "lastUpdated": created,
                "assignmentType": "USER",
                "_links": {"assignee": {"href": f"{self.base_url}/api/v1/users/{self.user_id(index)}"}},
            }
            for kind, label in self.role_types(index)
        ]

    def org_url(self, request: web.Request) -> str:
        return self.base_url

    # --- listing and search ---------------------------------------------------------------------------

    def listing(self, after: int, limit: int) -> tuple[list[int], bool]:
        """The default list: every user but DEPROVISIONED ones, by index after `after`."""
        out: list[int] = []
        index = after + 1
        while index < self.total and len(out) < limit:
            if self.status(index) != "DEPROVISIONED":
                out.append(index)
            index += 1
        more = any(self.status(i) != "DEPROVISIONED" for i in range(index, min(index + 2, self.total)))
        return out, more

    def _range(self, node: Any) -> tuple[int, int, Optional[set[int]]]:
        """Index bounds (a superset) a search's top-level `and` pins: created ranges, ids, emails (also
        an `or` of ids, as a change feed asks for its users)."""
        lo, hi, pinned = 0, self.total, None
        if isinstance(node, BoolOp) and node.op == "or":
            terms = [part for part in node.parts if isinstance(part, Comparison)]
            if len(terms) == len(node.parts) and all(t.field == "id" and t.op == "eq" for t in terms):
                ids = {self.index_of(t.values[0]) for t in terms}
                return 0, self.total, {i for i in ids if i is not None}
        for term in conjuncts(node):
            value = term.values[0]
            if term.field == "created" and isinstance(value, str):
                offset = (parse_time(value, "created") - BASE).total_seconds() / STEP
                if term.op in ("gt", "ge"):
                    lo = max(lo, int(offset) - 1)
                elif term.op in ("lt", "le"):
                    hi = min(hi, int(offset) + 2)
            elif term.op == "eq" and term.field in ("id", "profile.email", "profile.login"):
                found = self.lookup(str(value))
                pinned = {found} if found is not None else set()
        return max(lo, 0), max(min(hi, self.total), 0), pinned

    def search(
        self, node: Any, after: int, limit: int, *, descending: bool = False
    ) -> tuple[list[int], bool]:
        """Users matching the expression (DEPROVISIONED included, as Okta's search does), by index."""
        lo, hi, pinned = self._range(node)
        candidates: Any = sorted(i for i in pinned if lo <= i < hi) if pinned is not None else range(lo, hi)
        if descending:
            candidates = list(reversed(candidates))
            candidates = [i for i in candidates if after < 0 or i < after]
        else:
            candidates = (i for i in candidates if i > after)
        light = fields(node) <= {"id", "status", "created"}  # the listing partitions: no full user needed
        out: list[int] = []
        for index in candidates:
            doc = self.light_user(index) if light else self.user(index)
            if matches(node, doc):
                if len(out) == limit:
                    return out, True
                out.append(index)
        return out, False

    def q_matches(self, text: str, limit: int) -> list[int]:
        wanted = text.casefold()
        out = []
        for index in range(self.total):
            p = person(index, seed=self.seed)
            names = (p.first.casefold(), p.last.casefold(), p.email.casefold())
            if self.status(index) != "DEPROVISIONED" and any(name.startswith(wanted) for name in names):
                out.append(index)
                if len(out) == limit:
                    break
        return out

    # --- changes --------------------------------------------------------------------------------------

    def record_action(self, index: int, what: str) -> None:
        self.actions.append((self.user_id(index), what))

    def set_status(self, index: int, status: str, verb: str) -> None:
        self.statuses[index] = status
        self.updated[index] = iso(datetime.now(timezone.utc))
        self.record_action(index, verb)

    def set_risk(self, index: int, level: str, reason: str, event_type: str, *, actor: str) -> dict:
        """Change the user's risk and write the System Log event that says so; returns the event."""
        previous, _ = self.risk_level(index)
        self.risk[index] = (level, reason)
        # the server's clock, as Okta stamps events: several may share a millisecond (the log keeps
        # them in order by position), and none is stamped ahead of the clock a query's `until` reads
        published = datetime.now(timezone.utc)
        event = self._event(index, level, previous, reason, event_type, published, actor, len(self.events))
        self.events.append(event)
        return event

    def _event(
        self,
        index: int,
        level: str,
        previous: str,
        reason: str,
        event_type: str,
        published: datetime,
        actor: str,
        serial: int = -1,
    ) -> dict:
        p = person(index, seed=self.seed)
        name = f"okta:{self.seed}:{index}:{iso(published)}:{event_type}:{serial}"
        return {
            "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
            "published": iso(published),
            "eventType": event_type,
            "version": "0",
            "severity": "WARN" if level == "HIGH" else "INFO",
            "displayMessage": "User risk level changed"
            if event_type == "user.risk.change"
            else "User risk detected",
            "actor": {
                "id": "0oa1admin00000000000" if actor == "admin" else "system",
                "type": "SystemPrincipal",
                "alternateId": "system@okta.com",
                "displayName": "Okta System",
            },
            "outcome": {"result": "SUCCESS"},
            "target": [
                {
                    "id": self.user_id(index),
                    "type": "User",
                    "alternateId": p.email,
                    "displayName": p.display_name,
                }
            ],
            "securityContext": {
                "risk": {
                    "level": level if level != "NONE" else None,
                    "previousLevel": previous if previous != "NONE" else None,
                    "reasons": [reason] if reason else [],
                    "issuer": "OKTA",
                }
            },
            "debugContext": {"debugData": {"risk": f"{{level={level}, reasons={reason}}}"}},
            "transaction": {"type": "JOB", "id": uuid.uuid4().hex[:20]},
        }

    def seeded_event(self, index: int) -> dict:
        """The `user.risk.detect` event behind a seeded risk, published before the simulator started."""
        span = timedelta(days=20).total_seconds() / max(self.total, 1)
        published = self.started - timedelta(days=30) + timedelta(seconds=span * index)
        level, reason = self.seeded_risk(index), "Anomalous sign-in from a new country"
        return self._event(index, level, "NONE", reason, "user.risk.detect", published, "itp")

    def log_page(
        self,
        node: Any,
        *,
        since: Optional[str],
        until: Optional[str],
        after: Optional[str],
        limit: int,
        descending: bool,
    ) -> tuple[list[dict], Optional[str], bool]:
        """(events, cursor after the last one, more to come) for a System Log query."""
        now = datetime.now(timezone.utc)
        low = parse_time(since, "since") if since else now - timedelta(days=7)
        high = parse_time(until, "until") if until else now
        start_seeded, start_event = -1, -1
        if after:
            kind, _, number = after.partition(":")
            if kind not in ("s", "e") or not number.lstrip("-").isdigit():
                raise SearchError("after: not a cursor this log issued")
            if kind == "s":
                start_seeded = int(number)
            else:
                start_seeded, start_event = self.total, int(number)

        def stream() -> Any:
            if self.started - timedelta(days=10) >= low:  # seeded events lie 30 to 10 days back
                for index in range(start_seeded + 1, self.total):
                    if self.seeded_risk(index) != "NONE":
                        yield f"s:{index}", self.seeded_event(index)
            for position in range(start_event + 1, len(self.events)):
                yield f"e:{position}", self.events[position]

        out: list[dict] = []
        cursor = after
        more = False
        for position, event in stream():
            moment = parse_time(event["published"], "published")
            if not low <= moment <= high or (node is not None and not matches(node, event)):
                continue
            if len(out) == limit:
                more = True
                break
            out.append(event)
            cursor = position
        if descending:
            out.reverse()
        return out, cursor, more


STATE = web.AppKey("okta_state", OktaState)
