"""The Entra simulator's Microsoft identity platform: the token endpoint (a client secret, or a
certificate's `client_assertion` checked against the registered public keys) and the OpenID discovery
document, with the platform's `AADSTS…` error bodies."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timezone
from typing import Optional

import jwt
from aiohttp import web

from .entra_state import DOMAIN, SCOPE, STATE, EntraState


def _aad_error(status: int, error: str, code: int, text: str) -> web.Response:
    trace = str(uuid.uuid4())
    return web.json_response(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {text} Trace ID: {trace}",
            "error_codes": [code],
            "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": trace,
            "correlation_id": str(uuid.uuid4()),
        },
        status=status,
    )


def base_url(request: web.Request) -> str:
    host = request.headers.get("X-Forwarded-Host") or request.host
    return f"{request.headers.get('X-Forwarded-Proto') or request.scheme}://{host}"


async def openid_configuration(request: web.Request) -> web.Response:
    state = request.app[STATE]
    tenant = request.match_info["tenant"]
    if tenant.lower() not in (state.tenant_id, DOMAIN, "organizations", "common"):
        return _aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant[:60]}' not found.")
    base, tid = base_url(request), state.tenant_id
    return web.json_response(
        {
            "token_endpoint": f"{base}/{tid}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/{tid}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/{tid}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{tid}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "ver"],
            "kerberos_endpoint": f"{base}/{tid}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }
    )


async def token(request: web.Request) -> web.Response:
    """POST /{tenant}/oauth2/v2.0/token: client credentials with a secret or a client assertion."""
    state = request.app[STATE]
    tenant = request.match_info["tenant"]
    form = {key: str(value) for key, value in (await request.post()).items()}
    state.token_forms.append({key: value for key, value in form.items() if "secret" not in key})
    if tenant.lower() not in (state.tenant_id, DOMAIN):
        return _aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant[:60]}' not found.")
    if form.get("grant_type") != "client_credentials":
        return _aad_error(
            400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
        )
    if form.get("scope") != SCOPE:
        return _aad_error(400, "invalid_scope", 1002012, "The provided value for scope is not valid.")
    if not secrets.compare_digest(form.get("client_id", ""), state.client_id):
        return _aad_error(400, "unauthorized_client", 700016, "Application not found in the directory.")
    if "client_assertion" in form:
        problem = _check_assertion(state, form, f"/{tenant}/oauth2/v2.0/token")
        if problem:
            return _aad_error(401, "invalid_client", 700027, problem)
    elif not secrets.compare_digest(form.get("client_secret", ""), state.client_secret):
        return _aad_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
    return web.json_response(
        {
            "token_type": "Bearer",
            "expires_in": state.token_ttl,
            "ext_expires_in": state.token_ttl,
            "access_token": state.issue_token(),
        }
    )


def _check_assertion(state: EntraState, form: dict, path: str) -> Optional[str]:
    if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
        return "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer."
    assertion = form["client_assertion"]
    try:
        header = jwt.get_unverified_header(assertion)
        key = state.certificates.get(str(header.get("x5t", "")))
        if key is None:
            return "Client assertion contains an invalid signature: key not found (x5t)."
        claims = jwt.decode(
            assertion,
            key,
            algorithms=["RS256"],
            options={"verify_aud": False, "require": ["exp", "aud", "iss", "sub", "jti"]},
        )
    except jwt.PyJWTError as exc:
        return f"Client assertion failed validation: {type(exc).__name__}."
    if claims["iss"] != state.client_id or claims["sub"] != state.client_id:
        return "Client assertion iss and sub must be the client id."
    if not str(claims["aud"]).endswith(path):
        return "Client assertion audience is not this token endpoint."
    return None
