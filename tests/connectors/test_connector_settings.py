"""Settings of both connectors as config gives them: every problem is one ConfigurationError naming the
connector and the key, never a traceback (ValueError from a URL) and never the value (it may be a secret)."""

from __future__ import annotations

import pytest

import connectors
from connectors import ConfigurationError

VALID = {
    "homebase": {"api_key": "hld_test_abcdefgh", "base_url": "https://api.hldgroup.org/v1"},
    "sailpoint": {"base_url": "https://acme.api.identitynow.com", "client_id": "c", "client_secret": "s"},
}
BAD_URLS = [
    "http://[::1",  # urlsplit raises ValueError
    "http://127.0.0.1:99999",  # port out of range: ValueError from .port
    "http:// bad host/v1",
    "http://exa mple.com",
    "https://",
    "file:///etc/passwd",
    "https://acme.api.identitynow.com?x=1",
    "",
    42,
]


@pytest.mark.parametrize("kind", sorted(VALID))
@pytest.mark.parametrize("url", BAD_URLS)
def test_a_bad_base_url_is_named_not_a_traceback(kind: str, url: object) -> None:
    with pytest.raises(ConfigurationError) as bad:
        connectors.build(kind, "conn", {**VALID[kind], "base_url": url})
    message = str(bad.value)
    assert message.startswith(f"connector 'conn' ({kind}): setting 'base_url' ")
    assert " must be " in message or message.endswith("is required")


@pytest.mark.parametrize("kind", sorted(VALID))
def test_good_settings_build_and_ipv6_loopback_is_a_host(kind: str) -> None:
    built = connectors.build(kind, "conn", VALID[kind])
    assert built.kind == kind and built.name == "conn"
    url = "http://[::1]:8401" + ("/v1" if kind == "homebase" else "")
    assert connectors.build(kind, "conn", {**VALID[kind], "base_url": url + "/"}).name == "conn"


@pytest.mark.parametrize(("kind", "key"), [("homebase", "api_key"), ("sailpoint", "client_secret")])
def test_a_secret_in_a_wrong_place_is_never_echoed(kind: str, key: str) -> None:
    secret = "hunter2 very/secret"
    for setting in ("base_url", "tenant_id", "page_size", "timeout"):
        with pytest.raises(ConfigurationError) as bad:
            connectors.build(kind, "conn", {**VALID[kind], setting: secret})
        assert secret not in str(bad.value) and f"setting '{setting}'" in str(bad.value)
    with pytest.raises(ConfigurationError, match="must not contain a user name or password") as bad:
        connectors.build(kind, "conn", {**VALID[kind], "base_url": "https://admin:hunter2@example.com"})
    assert "hunter2" not in str(bad.value)
    if kind == "homebase":
        with pytest.raises(ConfigurationError) as bad:
            connectors.build(kind, "conn", {**VALID[kind], key: secret})
        assert secret not in str(bad.value)


def test_a_form_with_fields_for_every_kind_builds_the_one_it_names() -> None:
    """SOAR assets and Cortex jobs have one field per setting of any kind, plus their own."""
    form = {
        "connector_kind": "sailpoint",
        "base_url": "https://acme.api.identitynow.com",
        "client_id": "c",
        "client_secret": "s",
        "api_key": "",  # HomeBase's, left empty
        "tenant_id": None,
        "idops_url": "https://idops.example.com",  # the form's own
        "page_size": "100",
    }
    built = connectors.build_from_form("sailpoint", "isc", form)
    assert built.kind == "sailpoint" and built.tenant_id == "acme"  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match=r"connector 'isc' \(sailpoint\): unknown setting 'api_key'"):
        connectors.build_from_form("sailpoint", "isc", {**form, "api_key": "hld_test_abcdefgh"})
