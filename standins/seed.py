"""Deterministic people for the simulators: person `i` of seed `s` is always the same, so a simulator
can serve a million identities without holding them, and keep only what actions and admins changed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

FIRST = (
    "Ada Alan Barbara Claude Dennis Edsger Frances Grace Hedy Ivan Joan Ken Linus Margaret Niklaus "
    "Radia Shafi Tim Whitfield Yukihiro Anita Bjarne Carol Donald Elena Fernando Guido Hal Ingrid John"
).split()
LAST = (
    "Lovelace Turing Liskov Shannon Ritchie Dijkstra Allen Hopper Lamarr Sutherland Clarke Thompson "
    "Torvalds Hamilton Wirth Perlman Goldwasser Berners-Lee Diffie Matsumoto Borg Stroustrup Shaw "
    "Knuth Ostrom Corbato Rossum Abelson Daubechies McCarthy"
).split()

# Display names a hostile or careless provider record may carry: Slack mentions, links, mrkdwn,
# quotes and non-ASCII. Everything that shows these must escape them.
HOSTILE_NAMES = (
    "<!channel> urgent",
    "<https://evil.example/login|Click to verify>",
    "<@U0BOB> (it's me)",
    "<!here|here> Trudy",
    'Robert "Bobby" O\'Brien',
    "Zoë Ångström-Øvergård 👾",
    "*bold* _it_ ~strike~ `code` &amp;",
    "<#C0APPROVALS> Mallory",
)

PROVIDERS = ("azure_ad", "okta", "google_workspace", "local")
COUNTRIES = ("US", "GB", "DE", "FR", "NL", "SE", "JP", "BR", "IN", "NG", "RU", "KP")
MFA_METHODS = ("totp", "webauthn", "sms", "push")
ROLES = ("employee", "engineering", "finance", "sales", "support", "admin", "billing-admin", "hr")
PRIVILEGED_ROLES = frozenset({"admin", "billing-admin"})
_IP_OCTETS = ((11, 223), (0, 255), (0, 255), (1, 254))
EPOCH = datetime(2026, 11, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Person:
    """One seeded person; simulators turn it into their own API's record."""

    index: int
    first: str
    last: str
    display_name: str
    email: str
    tenant: int
    risk_score: int
    privileged: bool
    mfa_methods: tuple[str, ...]
    provider: str
    status: str
    roles: tuple[str, ...]
    last_login_at: datetime
    last_login_ip: str
    last_login_country: str
    created_at: datetime


def _score(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.70:
        return rng.randint(0, 20)
    if roll < 0.88:
        return rng.randint(21, 50)
    if roll < 0.96:
        return rng.randint(51, 75)
    return rng.randint(76, 100)


def person(index: int, *, seed: int = 0, tenants: int = 2, hostile_every: int = 50) -> Person:
    """Person number `index` (0-based) of the seeded population."""
    rng = random.Random(seed * 1_000_003 + index)
    first, last = rng.choice(FIRST), rng.choice(LAST)
    display = f"{first} {last}"
    if hostile_every and index % hostile_every == hostile_every - 1:
        display = HOSTILE_NAMES[(index // hostile_every) % len(HOSTILE_NAMES)]
    roles = tuple(sorted({"employee", *rng.sample(ROLES, rng.randint(0, 2))}))
    mfa = tuple(sorted(rng.sample(MFA_METHODS, rng.randint(0, 2))))
    login = EPOCH - timedelta(minutes=rng.randint(0, 60 * 24 * 30))
    return Person(
        index=index,
        first=first,
        last=last,
        display_name=display,
        email=f"{first.lower()}.{last.lower()}.{index}@tenant{index % tenants}.example",
        tenant=index % tenants,
        risk_score=_score(rng),
        privileged=bool(PRIVILEGED_ROLES.intersection(roles)),
        mfa_methods=mfa,
        provider=PROVIDERS[rng.randrange(len(PROVIDERS))],
        status="active" if rng.random() > 0.03 else "suspended",
        roles=roles,
        last_login_at=login,
        last_login_ip=".".join(str(rng.randint(lo, hi)) for lo, hi in _IP_OCTETS),
        last_login_country=rng.choice(COUNTRIES),
        created_at=login - timedelta(days=rng.randint(30, 2000)),
    )
