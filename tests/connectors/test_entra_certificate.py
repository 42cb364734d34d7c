"""Entra certificate credentials: a client_assertion JWT signed RS256, checked by the simulator."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

import connectors
from connectors import AuthenticationError, ConfigurationError
from connectors.entra import EntraConnector
from standins import serving
from standins.entra import create_app
from standins.entra_state import STATE, EntraState

REPO = Path(__file__).resolve().parents[2]


def certificate() -> tuple[str, str, str, object]:
    """A new RSA key and self-signed certificate: (PEM key, hex thumbprint, x5t, public key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idops-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    digest = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER), usedforsecurity=False).digest()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    x5t = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return pem, digest.hex().upper(), x5t, key.public_key()


KEY, THUMBPRINT, X5T, PUBLIC = certificate()


@pytest.fixture
async def sim() -> AsyncIterator[tuple[EntraState, str]]:
    app = create_app(users=40, certificates=[(X5T, PUBLIC)])
    async with serving(app) as url:
        yield app[STATE], url


def config(state: EntraState, url: str, **extra: str) -> dict:
    return {
        "tenant_id": state.tenant_id,
        "client_id": state.client_id,
        "certificate_key": KEY,
        "certificate_thumbprint": THUMBPRINT,
        "authority_url": url,
        "graph_url": url,
        **extra,
    }


async def test_certificate_mode_signs_in_with_a_client_assertion(sim: tuple[EntraState, str]) -> None:
    state, url = sim
    async with connectors.build("entra", "entra", config(state, url)) as connector:
        assert isinstance(connector, EntraConnector)
        listed = [identity async for identity in connector.list_identities()]
    assert len(listed) == 40
    [form] = state.token_forms
    assert "client_secret" not in form
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assertion = form["client_assertion"]
    header = jwt.get_unverified_header(assertion)
    assert header["alg"] == "RS256" and header["x5t"] == X5T
    claims = jwt.decode(assertion, PUBLIC, algorithms=["RS256"], audience=connector.token_url)
    assert claims["iss"] == claims["sub"] == state.client_id
    assert 0 < claims["exp"] - claims["iat"] <= 600 and claims["jti"]


async def test_an_unknown_or_wrong_certificate_is_refused(sim: tuple[EntraState, str]) -> None:
    state, url = sim
    other_key, other_thumbprint, _, _ = certificate()
    cases = [
        {"certificate_thumbprint": other_thumbprint},  # not registered on the app
        {"certificate_key": other_key},  # registered thumbprint, wrong key: the signature fails
    ]
    for extra in cases:
        async with connectors.build("entra", "entra", config(state, url, **extra)) as connector:
            with pytest.raises(AuthenticationError) as refused:
                await connector.get_identity(state.user_id(1))
        assert "AADSTS700027" in str(refused.value) and "BEGIN" not in str(refused.value)


async def test_a_key_that_cannot_sign_rs256_is_a_clear_error(sim: tuple[EntraState, str]) -> None:
    state, url = sim
    ec_key = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    async with connectors.build("entra", "entra", config(state, url, certificate_key=ec_key)) as connector:
        with pytest.raises(AuthenticationError, match="could not sign the client assertion"):
            await connector._access_token()


def test_certificate_settings_are_checked() -> None:
    base = {"tenant_id": "contoso.onmicrosoft.com", "client_id": "c"}
    cases = [
        ({**base, "certificate_key": KEY}, "'certificate_thumbprint' is required with certificate_key"),
        (
            {**base, "certificate_key": "hello", "certificate_thumbprint": THUMBPRINT},
            "must be a PEM private key",
        ),
        ({**base, "certificate_key": KEY, "certificate_thumbprint": "abc"}, "40-hex SHA-1 thumbprint"),
    ]
    for settings, message in cases:
        with pytest.raises(ConfigurationError) as bad:
            connectors.build("entra", "e", settings)
        assert message in str(bad.value) and KEY[40:80] not in str(bad.value)  # never the value


def test_pyjwt_is_imported_only_in_certificate_mode() -> None:
    script = (
        "import json, sys, connectors\n"
        "s = {'tenant_id': 't.example', 'client_id': 'c', 'client_secret': 's'}\n"
        "c = connectors.build('entra', 'e', s)\n"
        "c._credential_form()\n"
        "print(json.dumps('jwt' in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) is False
