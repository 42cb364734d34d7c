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
    if kind == "homebase":
        with pytest.raises(ConfigurationError) as bad:
            connectors.build(kind, "conn", {**VALID[kind], key: secret})
        assert secret not in str(bad.value)
