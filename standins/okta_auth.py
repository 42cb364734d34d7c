"""The Okta simulator's authentication: SSWS API tokens, and OAuth 2.0 service apps that sign a
private_key_jwt client assertion (RS256) checked against the app's registered public key, each access
token limited to the scopes it was granted."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Optional

import jwt
from aiohttp import web

from connectors.okta_oauth import SCOPES
from connectors.tokens import CLIENT_ASSERTION_TYPE

from .okta_data import STATE, error

# a service app is granted the scopes the connector asks for by default (one list, kept in connectors)
GRANTABLE = SCOPES


@dataclass(frozen=True)
class OAuthApp:
    """A service app registered in the org: its client id, public key (PEM) and granted scopes."""

    client_id: str
    public_key: str
    scopes: tuple[str, ...] = GRANTABLE
    token_ttl: int = 3600


def required_scope(method: str, path: str) -> str:
    """The scope an endpoint needs, as the spec's `security` lists it (Okta's docs for the role assignees,
    outside the subset: okta.roles.read; factors: okta.users.read)."""
    parts = [p for p in path.split("/") if p]
    if parts[:3] == ["api", "v1", "logs"]:
        return "okta.logs.read"
    if parts[:3] == ["api", "v1", "iam"] or (len(parts) >= 5 and parts[4] == "roles"):
        return "okta.roles.read"
    if len(parts) >= 5 and parts[4] == "risk":
        return "okta.userRisk.read" if method == "GET" else "okta.userRisk.manage"
    return "okta.users.read" if method == "GET" else "okta.users.manage"


def _oauth_error(status: int, code: str, description: str) -> web.Response:
    return web.json_response({"error": code, "error_description": description}, status=status)


def _insufficient_scope(request: web.Request, scope: str) -> str:
    """Okta's challenge for a token without the scope an endpoint needs (Okta support: "insufficient_scope
    Error when Making a Request to an OAuth or Management Endpoint")."""
    org = f"{request.scheme}://{request.host}"
    return (
        f'Bearer authorization_uri="{org}/oauth2/v1/authorize", realm="{org}", scope="{scope}",'
        ' error="insufficient_scope", error_description="The access token provided does not contain'
        f' the required scopes.", resource="{request.path}"'
    )


def invalid_token() -> web.Response:
    """Okta's 401 for an unknown, expired or malformed token (E0000011)."""
    text = error(401, "E0000011", "Invalid token provided")
    return web.Response(text=text, status=401, content_type="application/json")


def authenticate(request: web.Request, state: Any) -> Optional[web.Response]:
    """None when the request's Authorization is good for this endpoint, else the refusal to send."""
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if header.startswith("SSWS") and not credential:
        # okta 3.4.6 sends the first request of a call as "SSWS<token>" (no space); the SDK works against
        # real orgs, so Okta takes that form too
        scheme, credential = "SSWS", header[4:]
    if scheme == "SSWS":
        return None if credential in state.api_tokens else invalid_token()
    if scheme != "Bearer" or state.oauth is None:
        return invalid_token()
    known = state.oauth_tokens.get(credential)
    if known is None or time.monotonic() >= known[0]:
        return invalid_token()
    scope = required_scope(request.method, request.path)
    if scope not in known[1]:
        text = error(403, "E0000006", "You do not have permission to perform the requested action")
        return web.Response(
            text=text,
            status=403,
            content_type="application/json",
            headers={"WWW-Authenticate": _insufficient_scope(request, scope)},
        )
    return None


async def token_endpoint(request: web.Request) -> web.Response:
    """POST /oauth2/v1/token: client credentials with a private_key_jwt assertion."""
    state = request.app[STATE]
    form = await request.post()
    app: Optional[OAuthApp] = state.oauth
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "The authorization grant type is not supported.")
    if app is None or form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
        return _oauth_error(401, "invalid_client", "Client authentication failed.")
    audience = f"{state.base_url}/oauth2/v1/token"
    try:
        claims = jwt.decode(
            str(form.get("client_assertion", "")),
            app.public_key,
            algorithms=["RS256"],
            audience=audience,
            issuer=app.client_id,
            options={"require": ["exp", "iat", "iss", "sub", "aud", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        return _oauth_error(401, "invalid_client", "The client_assertion token is expired.")
    except jwt.PyJWTError:
        return _oauth_error(401, "invalid_client", "The client_assertion signature is invalid.")
    if claims.get("sub") != app.client_id:
        return _oauth_error(401, "invalid_client", "The client_assertion sub claim must be the client id.")
    if claims["jti"] in state.used_assertions:
        return _oauth_error(401, "invalid_client", "The client_assertion token has already been used.")
    state.used_assertions.add(claims["jti"])
    scopes = str(form.get("scope", "")).split()
    refused = [scope for scope in scopes if scope not in app.scopes]
    if not scopes or refused:
        return _oauth_error(
            400,
            "invalid_scope",
            f"The following scopes are not allowed: {' '.join(refused) or '(none asked)'}",
        )
    token = secrets.token_urlsafe(32)
    state.oauth_tokens[token] = (time.monotonic() + app.token_ttl, frozenset(scopes))
    return web.json_response(
        {
            "token_type": "Bearer",
            "expires_in": app.token_ttl,
            "access_token": token,
            "scope": " ".join(scopes),
        }
    )
