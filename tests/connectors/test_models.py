"""Risk bands, derivation and the JSON shape of identities."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone

import pytest

from connectors import Identity, RiskLevel, derive_risk
from connectors.models import parse_datetime


@pytest.mark.parametrize(
    ("score", "level"),
    [
        (0, "low"),
        (20, "low"),
        (21, "medium"),
        (50, "medium"),
        (51, "high"),
        (75, "high"),
        (76, "critical"),
        (100, "critical"),
    ],
)
def test_bands_match_documented_boundaries(score: int, level: str) -> None:
    assert RiskLevel.for_score(score) is RiskLevel(level)


def test_score_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="outside 0-100"):
        RiskLevel.for_score(101)


def test_derive_fills_the_missing_half() -> None:
    assert derive_risk(82, None) == (82, RiskLevel.CRITICAL)
    assert derive_risk(None, RiskLevel.HIGH) == (75, RiskLevel.HIGH)
    assert derive_risk(None, None) == (None, None)


def test_parse_level_names_valid_choices() -> None:
    assert RiskLevel.parse(" HIGH ") is RiskLevel.HIGH
    with pytest.raises(ValueError, match="low, medium, high, critical"):
        RiskLevel.parse("severe")


def test_identity_to_dict_is_json_ready() -> None:
    identity = Identity(
        id="idn_1",
        connector="hld",
        risk_score=90,
        risk_level=RiskLevel.CRITICAL,
        roles=("admin",),
        last_login_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        raw={"secret": "x"},
    )
    data = identity.to_dict()
    assert data["risk_level"] == "critical"
    assert data["last_login_at"] == "2026-01-02T03:04:05+00:00"
    assert data["roles"] == ["admin"]
    assert "raw" not in data


def test_identity_from_dict_reads_back_what_to_dict_wrote() -> None:
    identity = Identity(
        id="idn_2",
        connector="hld",
        email="ada@example.com",
        display_name="Ada",
        tenant_id="t1",
        status="active",
        risk_score=60,
        risk_level=RiskLevel.HIGH,
        mfa_enrolled=False,
        mfa_methods=("sms", "totp"),
        privileged=True,
        last_login_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        last_login_ip="192.0.2.1",
        last_login_country="FR",
        provider="okta",
        provider_id="00u1",
        roles=("admin", "audit"),
        created_at=datetime(2020, 5, 6, tzinfo=timezone.utc),
        raw={"kept": "only in memory"},
    )
    back = Identity.from_dict(json.loads(json.dumps(identity.to_dict())))
    assert back == identity and back.raw == {}
    bare = Identity.from_dict({"id": 7, "connector": "sp"})
    assert (bare.id, bare.risk_level, bare.roles, bare.last_login_at) == ("7", None, (), None)


def test_parse_datetime_accepts_zulu() -> None:
    assert parse_datetime("2026-11-01T10:00:00Z") == datetime(2026, 11, 1, 10, tzinfo=timezone.utc)
    assert parse_datetime(None) is None


def test_identity_from_fields_is_the_identity_the_constructor_builds() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    values = {
        "id": "u1",
        "connector": "gw",
        "email": "ada@acme.example",
        "display_name": "Ada Lovelace",
        "tenant_id": "C01",
        "status": "active",
        "risk_score": 75,
        "risk_level": RiskLevel.HIGH,
        "mfa_enrolled": True,
        "mfa_methods": (),
        "privileged": True,
        "last_login_at": at,
        "last_login_ip": None,
        "last_login_country": None,
        "provider": "google_workspace",
        "provider_id": "u1",
        "roles": ("super_admin",),
        "created_at": at,
        "raw": {"id": "u1"},
    }
    built, expected = Identity.from_fields(values), Identity(**values)
    assert built == expected and hash(built) == hash(expected) and repr(built) == repr(expected)
    assert built.to_dict(include_raw=True) == expected.to_dict(include_raw=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.email = "eve@acme.example"  # type: ignore[misc]
    values["email"] = "changed@acme.example"  # copied, not shared
    assert built.email == "ada@acme.example"


def test_identity_from_fields_names_missing_and_unknown_fields() -> None:
    values = {field.name: None for field in dataclasses.fields(Identity)}
    del values["raw"]
    with pytest.raises(TypeError, match=r"missing \['raw'\], unknown \[\]"):
        Identity.from_fields(values)
    values.update(raw={}, rwa={})
    with pytest.raises(TypeError, match=r"missing \[\], unknown \['rwa'\]"):
        Identity.from_fields(values)
