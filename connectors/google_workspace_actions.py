"""Google Workspace's response actions, mixed into `connectors.google_workspace.GoogleWorkspaceConnector`
(which supplies the requests and user reads declared below).

Rules: sign out, force a password change at the next sign-in, suspend and unsuspend; a user already in
the wanted state is success ("was already suspended"); each call sets a state (or signs out), so doing
it twice does what once does and a lost answer is retried, and only when the answer never comes is it
an OutcomeUnknownError, settled by `action_in_effect` (suspension and the pending password change show
on the user; a sign-out leaves nothing to read).
"""

from __future__ import annotations

from typing import Any, Optional

from .base import ResponseActions
from .google_workspace_auth import DirectoryRequests
from .http import Response
from .models import Action, ActionResult


class GoogleWorkspaceActions(ResponseActions, DirectoryRequests):
    """Revoke sessions (sign out), force a password change, disable (suspend) and enable (unsuspend)."""

    name: str

    # supplied by the connector (and `_api`, see DirectoryRequests)
    def _user_path(self, user_key: str) -> str:
        raise NotImplementedError

    async def _read_user(self, user_key: str) -> tuple[dict, Response]:
        raise NotImplementedError

    async def _act(
        self, action: Action, identity_id: str, method: str, path: str, body: Any, done: str
    ) -> ActionResult:
        """Send one state-changing call. Setting a state (or signing out) twice does what once does, so
        a lost answer is retried; still none, connectors.http raises OutcomeUnknownError (a connection
        never opened sent nothing: ProviderUnavailableError)."""
        response = await self._api(method, path, json_body=body, idempotent=True)
        return ActionResult(
            action=action,
            identity_id=identity_id,
            connector=self.name,
            status=ActionResult.COMPLETED,
            reference=response.client_request_id,
            message=done,
        )

    def _already(self, action: Action, user_id: str, message: str) -> ActionResult:
        return ActionResult(
            action=action,
            identity_id=user_id,
            connector=self.name,
            status=ActionResult.COMPLETED,
            message=message,
        )

    async def action_in_effect(self, action: Action, identity_id: str) -> Optional[bool]:
        """Suspension and a pending forced password change show on the user; a sign-out leaves
        nothing to read (None)."""
        if action not in (Action.DISABLE, Action.ENABLE, Action.FORCE_PASSWORD_RESET):
            return None
        user, _ = await self._read_user(identity_id)
        if action is Action.FORCE_PASSWORD_RESET:
            return user.get("changePasswordAtNextLogin") is True
        return (user.get("suspended") is True) == (action is Action.DISABLE)

    async def revoke_sessions(self, identity_id: str) -> ActionResult:
        """users.signOut: every web and device session ends (there is no already-signed-out state)."""
        path = f"{self._user_path(identity_id)}/signOut"
        done = "signed out of every web and device session in Google Workspace"
        return await self._act(Action.REVOKE_SESSIONS, identity_id, "POST", path, None, done)

    async def force_password_reset(self, identity_id: str) -> ActionResult:
        """changePasswordAtNextLogin: applies at the next sign-in (Revoke sessions makes that now)."""
        user, _ = await self._read_user(identity_id)
        if user.get("changePasswordAtNextLogin") is True:
            message = "already had to change their password at the next sign-in"
            return self._already(Action.FORCE_PASSWORD_RESET, identity_id, message)
        done = "must change their password at the next sign-in (Revoke sessions forces that now)"
        path = self._user_path(identity_id)
        return await self._act(
            Action.FORCE_PASSWORD_RESET, identity_id, "PATCH", path, {"changePasswordAtNextLogin": True}, done
        )

    async def disable(self, identity_id: str, reason: str) -> ActionResult:
        """Suspend the user (Google has no reason field: it stays in idops' audit trail)."""
        return await self._suspend(Action.DISABLE, identity_id, True)

    async def enable(self, identity_id: str, reason: str = "") -> ActionResult:
        """Unsuspend the user: the undo of disable."""
        return await self._suspend(Action.ENABLE, identity_id, False)

    async def _suspend(self, action: Action, identity_id: str, suspended: bool) -> ActionResult:
        user, _ = await self._read_user(identity_id)
        if (user.get("suspended") is True) == suspended:
            return self._already(action, identity_id, f"was already {'suspended' if suspended else 'active'}")
        done = "suspended in Google Workspace" if suspended else "unsuspended in Google Workspace"
        path = self._user_path(identity_id)
        return await self._act(action, identity_id, "PATCH", path, {"suspended": suspended}, done)
