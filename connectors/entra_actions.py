"""Entra's response actions, mixed into `connectors.entra.EntraConnector` (which supplies the Graph
requests declared below).

Rules: every action first reads the user (by object id or userPrincipalName) and acts on its object id;
a target already in the wanted state (accountEnabled, riskState) is success, its message saying so;
every Entra action is idempotent, so the connector retries writes on 5xx and settles a lost answer
with `action_in_effect` (never sending it again); the Identity Protection verdicts need Entra ID P2 and
IdentityRiskyUser.ReadWrite.All, which a refusal's message says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional
from urllib.parse import quote

from .base import ResponseActions
from .entra_api import PROVIDER, GraphRequests, checked_id, header_id
from .errors import NotFoundError, PermissionDeniedError, ProviderUnavailableError
from .http import Response
from .models import Action, ActionResult


class EntraActions(ResponseActions, GraphRequests):  # GraphRequests: `_api`, from the connector
    """Revoke sessions, force a password change, disable / enable, and the Identity Protection verdicts."""

    name: str

    def _result(
        self, action: Action, user_id: str, message: str, response: Optional[Response]
    ) -> ActionResult:
        return ActionResult(
            action=action,
            identity_id=user_id,
            connector=self.name,
            status=ActionResult.COMPLETED,
            reference=header_id(response) if response is not None else None,
            message=message,
        )

    async def _user_state(self, identity_id: str) -> tuple[str, Optional[bool]]:
        segment = checked_id(identity_id)
        try:
            response = await self._api(
                "GET", f"/v1.0/users/{segment}", params={"$select": "id,accountEnabled"}
            )
        except NotFoundError as exc:
            raise NotFoundError(
                f"no user with id {identity_id}", provider=PROVIDER, request_id=exc.request_id, status=404
            ) from exc
        data = response.json(PROVIDER)
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise ProviderUnavailableError("sent a user without an id", provider=PROVIDER)
        enabled = data.get("accountEnabled")
        return data["id"], enabled if isinstance(enabled, bool) else None

    async def action_in_effect(self, action: Action, identity_id: str) -> Optional[bool]:
        """Whether Graph shows the action's effect now: accountEnabled for disable and enable, the
        riskState for the verdicts; None for revoke and password change (nothing readable shows them)."""
        if action in (Action.DISABLE, Action.ENABLE):
            _, enabled = await self._user_state(identity_id)
            return None if enabled is None else enabled is (action is Action.ENABLE)
        if action in (Action.CONFIRM_COMPROMISED, Action.DISMISS_RISK):
            user_id, _ = await self._user_state(identity_id)
            path = f"/v1.0/identityProtection/riskyUsers/{quote(user_id, safe='')}"
            response = await self._api("GET", path, allow=(403, 404))
            row = response.json(PROVIDER) if response.status == 200 else None
            if not isinstance(row, dict):
                return None if response.status == 403 else False
            wanted = "confirmedCompromised" if action is Action.CONFIRM_COMPROMISED else "dismissed"
            return row.get("riskState") == wanted
        return None

    async def revoke_sessions(self, identity_id: str) -> ActionResult:
        """revokeSignInSessions: refresh tokens and session cookies stop working (access tokens live
        out their hour)."""
        user_id, _ = await self._user_state(identity_id)
        response = await self._api("POST", f"/v1.0/users/{quote(user_id, safe='')}/revokeSignInSessions")
        return self._result(Action.REVOKE_SESSIONS, user_id, "sign-in sessions revoked", response)

    async def _set_enabled(self, action: Action, identity_id: str, enabled: bool) -> ActionResult:
        user_id, current = await self._user_state(identity_id)
        word = "enabled" if enabled else "disabled"
        if current is enabled:
            return self._result(action, user_id, f"the account was already {word}", None)
        response = await self._api(
            "PATCH",
            f"/v1.0/users/{quote(user_id, safe='')}",
            json_body={"accountEnabled": enabled},
        )
        return self._result(
            action, user_id, f"account {word} (accountEnabled {str(enabled).lower()})", response
        )

    async def disable(self, identity_id: str, reason: str) -> ActionResult:
        """accountEnabled false (Graph has no reason field: `reason` stays in idops' audit trail)."""
        return await self._set_enabled(Action.DISABLE, identity_id, False)

    async def enable(self, identity_id: str, reason: str = "") -> ActionResult:
        return await self._set_enabled(Action.ENABLE, identity_id, True)

    async def force_password_reset(self, identity_id: str) -> ActionResult:
        """passwordProfile.forceChangePasswordNextSignIn: the user must change the password at next
        sign-in (needs User-PasswordProfile.ReadWrite.All; admins' passwords need a directory role)."""
        user_id, _ = await self._user_state(identity_id)
        response = await self._api(
            "PATCH",
            f"/v1.0/users/{quote(user_id, safe='')}",
            json_body={"passwordProfile": {"forceChangePasswordNextSignIn": True}},
        )
        return self._result(
            Action.FORCE_PASSWORD_RESET, user_id, "password change required at next sign-in", response
        )

    async def _verdict(
        self, action: Action, identity_id: str, verb: str, done: Sequence[str]
    ) -> ActionResult:
        user_id, _ = await self._user_state(identity_id)
        path = f"/v1.0/identityProtection/riskyUsers/{quote(user_id, safe='')}"
        try:
            state = await self._api("GET", path, allow=(404,))
            row = state.json(PROVIDER) if state.status == 200 else None
            current = row.get("riskState") if isinstance(row, dict) else None
            if current in done:
                message = f"Identity Protection already had this user as {current}"
                return self._result(action, user_id, message, None)
            response = await self._api(
                "POST",
                f"/v1.0/identityProtection/riskyUsers/{verb}",
                json_body={"userIds": [user_id]},
            )
        except PermissionDeniedError as exc:
            exc.message += " (needs Entra ID P2 and the IdentityRiskyUser.ReadWrite.All permission)"
            raise
        label = "confirmed compromised" if verb == "confirmCompromised" else "risk dismissed"
        return self._result(action, user_id, f"{label} in Identity Protection", response)

    async def confirm_compromised(self, identity_id: str) -> ActionResult:
        return await self._verdict(
            Action.CONFIRM_COMPROMISED, identity_id, "confirmCompromised", ("confirmedCompromised",)
        )

    async def dismiss_risk(self, identity_id: str) -> ActionResult:
        return await self._verdict(
            Action.DISMISS_RISK, identity_id, "dismiss", ("dismissed", "remediated", "none")
        )
