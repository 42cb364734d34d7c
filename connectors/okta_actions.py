"""Okta's response actions, mixed into `connectors.okta.OktaConnector` (which supplies the requests,
user reads and ITP state declared below).

Rules: a user already in the wanted state is success ("already suspended"); Okta refuses a lifecycle
transition from the wrong status with a 400, after which the user is read to tell "already done" from
"not possible from this status"; lifecycle calls are not idempotent, so a lost answer or a 5xx is an
OutcomeUnknownError and never sent again; the ITP risk verdicts need ITP (UnsupportedActionError without).
"""

from __future__ import annotations

from typing import Any, Optional
from urllib.parse import quote

import aiohttp

from . import okta_api as api
from .base import ResponseActions
from .errors import (
    ConflictError,
    ConnectorError,
    NotFoundError,
    OutcomeUnknownError,
    ProviderUnavailableError,
    RateLimitedError,
    UnsupportedActionError,
    ValidationError,
)
from .http import Response
from .models import Action, ActionResult, Identity
from .okta_api import PROVIDER


class OktaActions(ResponseActions):
    """Revoke sessions, force a password change, suspend / unsuspend, and the ITP risk verdicts."""

    name: str
    itp: Optional[bool]
    password_action: str

    # supplied by the connector
    async def _api(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Any] = None,
        json_body: Any = None,
        idempotent: Optional[bool] = None,
    ) -> Response:
        raise NotImplementedError

    async def _json(self, method: str, path: str, **kwargs: Any) -> tuple[Any, Response]:
        raise NotImplementedError

    @staticmethod
    def _checked_id(identity_id: str) -> str:
        raise NotImplementedError

    async def get_identity(self, identity_id: str) -> Identity:
        raise NotImplementedError

    async def _user_risk(self, user_id: str) -> Optional[str]:
        raise NotImplementedError

    def _no_itp(self, exc: ConnectorError) -> None:
        raise NotImplementedError

    def _done(self, action: Action, user_id: str, message: str, raw: Any = None) -> ActionResult:
        return ActionResult(
            action=action,
            identity_id=user_id,
            connector=self.name,
            status=ActionResult.COMPLETED,
            message=message,
            raw=raw if isinstance(raw, dict) else {},
        )

    async def _lifecycle(self, action: Action, user_id: str, path: str, **kwargs: Any) -> Response:
        """A state-changing call: a dropped answer or a 5xx means the outcome is unknown."""
        try:
            return await self._api("POST", path, idempotent=False, **kwargs)
        except RateLimitedError:
            raise
        except ProviderUnavailableError as exc:
            if isinstance(exc.__cause__, aiohttp.ClientConnectorError):
                raise  # never reached Okta: nothing happened
            raise OutcomeUnknownError(
                f"'{action.label}' was sent for {user_id} but its answer was lost ({exc.message});"
                " read the user before trying again",
                provider=PROVIDER,
                request_id=exc.request_id,
                status=exc.status,
            ) from exc

    async def revoke_sessions(self, identity_id: str) -> ActionResult:
        user_id = self._checked_id(identity_id)
        response = await self._api(
            "DELETE", f"/api/v1/users/{quote(user_id, safe='')}/sessions", params={"oauthTokens": True}
        )
        return ActionResult(
            action=Action.REVOKE_SESSIONS,
            identity_id=user_id,
            connector=self.name,
            status=ActionResult.COMPLETED,
            reference=api.request_id(response),
            message="all sessions and OAuth tokens revoked",
        )

    async def force_password_reset(self, identity_id: str) -> ActionResult:
        user_id = self._checked_id(identity_id)
        base = f"/api/v1/users/{quote(user_id, safe='')}/lifecycle"
        if self.password_action == "reset_password":  # noqa: S105 - an Okta endpoint name
            await self._lifecycle(
                Action.FORCE_PASSWORD_RESET, user_id, f"{base}/reset_password", params={"sendEmail": True}
            )
            return self._done(
                Action.FORCE_PASSWORD_RESET, user_id, "password reset: Okta emailed the user a reset link"
            )
        response = await self._lifecycle(Action.FORCE_PASSWORD_RESET, user_id, f"{base}/expire_password")
        body = response.json(PROVIDER)
        return self._done(
            Action.FORCE_PASSWORD_RESET,
            user_id,
            "password expired: the user must change it at next sign-in",
            body,
        )

    async def disable(self, identity_id: str, reason: str) -> ActionResult:
        """Suspend (Okta has no reason field: the reason stays in idops' audit trail)."""
        return await self._transition(Action.DISABLE, identity_id, "suspend", "SUSPENDED", "ACTIVE")

    async def enable(self, identity_id: str, reason: str = "") -> ActionResult:
        return await self._transition(Action.ENABLE, identity_id, "unsuspend", "ACTIVE", "SUSPENDED")

    async def _transition(
        self, action: Action, identity_id: str, verb: str, target: str, source: str
    ) -> ActionResult:
        user_id = self._checked_id(identity_id)
        path = f"/api/v1/users/{quote(user_id, safe='')}/lifecycle/{verb}"
        try:
            await self._lifecycle(action, user_id, path)
        except (ValidationError, ConflictError) as refused:
            # Okta refuses a transition from the wrong status (400): read where the user is
            current = await self.get_identity(user_id)
            if (current.status or "").upper() == target:
                return self._done(action, user_id, f"already {target.lower()}: nothing to do")
            raise ValidationError(
                f"Okta can {verb} only a user whose status is {source}; this one is {current.status}",
                provider=PROVIDER,
                request_id=refused.request_id,
                status=refused.status,
                code=refused.code,
            ) from refused
        return self._done(action, user_id, f"{verb} done: status {target.lower()}")

    async def _set_risk(self, action: Action, identity_id: str, level: str, reason: str) -> ActionResult:
        user_id = self._checked_id(identity_id)
        if self.itp is False:
            raise UnsupportedActionError(
                f"this org has no Identity Threat Protection: '{action.label}' can't be reported",
                provider=PROVIDER,
            )
        try:
            body, _ = await self._json(
                "PUT",
                f"/api/v1/users/{quote(user_id, safe='')}/risk",
                json_body={"riskLevel": level, "riskReason": reason},
            )
        except ConnectorError as exc:
            if isinstance(exc, NotFoundError):
                await self.get_identity(user_id)  # NotFoundError naming the user if it is the user
            if api.is_missing_feature(exc):
                self._no_itp(exc)
                raise UnsupportedActionError(
                    f"this org has no Identity Threat Protection: '{action.label}' can't be reported",
                    provider=PROVIDER,
                    request_id=exc.request_id,
                ) from exc
            raise
        return self._done(action, user_id, f"Okta risk set to {level} ({reason})", body)

    async def action_in_effect(self, action: Action, identity_id: str) -> Optional[bool]:
        """Read whether an action shows on the user (status, or ITP risk); None for session revocation,
        which leaves nothing to read."""
        user_id = self._checked_id(identity_id)
        if action in (Action.CONFIRM_COMPROMISED, Action.DISMISS_RISK):
            level = await self._user_risk(user_id)
            if level is None:
                return None
            return level == "HIGH" if action is Action.CONFIRM_COMPROMISED else level in ("LOW", "NONE")
        statuses = {
            Action.DISABLE: ("suspended",),
            Action.ENABLE: ("active",),
            Action.FORCE_PASSWORD_RESET: ("password_expired", "recovery"),
        }
        if action not in statuses:
            return None
        body, _ = await self._json("GET", f"/api/v1/users/{quote(user_id, safe='')}")
        status = str(body.get("status") or "").lower() if isinstance(body, dict) else ""
        return status in statuses[action]

    async def confirm_compromised(self, identity_id: str) -> ActionResult:
        return await self._set_risk(
            Action.CONFIRM_COMPROMISED, identity_id, "HIGH", "confirmed compromised in idops"
        )

    async def dismiss_risk(self, identity_id: str) -> ActionResult:
        return await self._set_risk(Action.DISMISS_RISK, identity_id, "LOW", "risk dismissed in idops")
