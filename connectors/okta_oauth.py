"""Okta's OAuth 2.0 service-app mode for `connectors.okta`: the private_key_jwt client assertion (RS256),
and the `private_key` / `scopes` settings (the token answer and a refusal's text are read by
`connectors.tokens`, as for every OAuth connector).

PyJWT (with cryptography) is imported only when `ServiceApp.assertion` signs (`tokens.sign_rs256`):
API-token installs never need it.
The key's text is never quoted in a message: it is a secret.
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass
from typing import Any, Optional

from .errors import ConfigurationError
from .okta_api import PROVIDER
from .settings import SettingsReader
from .tokens import assertion_claims, sign_rs256

_SCOPE_NAME = re.compile(r"okta\.[A-Za-z]+\.[A-Za-z]+")

SCOPES = (
    "okta.users.read",
    "okta.users.manage",
    "okta.roles.read",
    "okta.logs.read",
    "okta.userRisk.read",
    "okta.userRisk.manage",
)


@dataclass(frozen=True)
class ServiceApp:
    """An OAuth 2.0 service app: client id, its PEM private key (RS256) and the scopes to ask for."""

    client_id: str
    private_key: str
    scopes: tuple[str, ...]
    key_id: Optional[str] = None

    def assertion(self, token_url: str, now: Optional[float] = None) -> str:
        """A private_key_jwt client assertion for `token_url`, valid 5 minutes (`tokens.sign_rs256`, which
        alone imports PyJWT)."""
        claims = assertion_claims(self.client_id, token_url, time.time() if now is None else now, 300)
        headers = {"kid": self.key_id} if self.key_id else None
        try:
            return sign_rs256(claims, self.private_key, headers, provider=PROVIDER)
        except ValueError as exc:
            # the key's text is never quoted: it is a secret
            raise ConfigurationError(
                "setting 'private_key' is not a PEM RSA private key PyJWT can sign RS256 with",
                provider=PROVIDER,
            ) from exc


def pem_text(read: SettingsReader, text: str) -> str:
    """The PEM text of `private_key`, also when a form sent it base64-encoded (SOAR fields are one line)."""
    if text.startswith("-----BEGIN"):
        return text
    try:
        decoded = base64.b64decode("".join(text.split()), validate=True).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        decoded = ""
    if not decoded.startswith("-----BEGIN"):
        raise read.error(
            "private_key", "must be a PEM private key (-----BEGIN …), or that text base64-encoded"
        )
    return decoded


def parse_scopes(read: SettingsReader, value: Any) -> tuple[str, ...]:
    if value is None:
        return SCOPES
    words = value.split() if isinstance(value, str) else value
    if (
        not isinstance(words, (list, tuple))
        or not words
        or not all(isinstance(w, str) and _SCOPE_NAME.fullmatch(w) for w in words)
    ):
        raise read.error("scopes", "must be Okta scopes like okta.users.read okta.users.manage")
    return tuple(words)
