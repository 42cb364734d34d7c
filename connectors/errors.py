"""Errors raised by connectors, each fit to show a person and carrying the provider's request id.

The hierarchy:

* ConnectorError
  + ConfigurationError         - the connector's settings are wrong (raised before any request)
  + AuthenticationError        - credentials refused (401)
  + PermissionDeniedError      - credentials valid but not allowed (403, suspended tenant)
  + NotFoundError              - no such identity or account (404)
  + ValidationError            - the provider rejected the input (400, 422)
  + ConflictError              - state forbids it (409: already disabled, not reversible)
  + RateLimitedError           - still limited after the retries (429)
  + ProviderUnavailableError   - timeout, connection failure, 5xx or an unreadable answer
  |  + OutcomeUnknownError      - an action was sent but no answer came back (timeout, dropped
  |                               connection, 5xx after sending): it may have run; never retry blindly
  + UnsupportedActionError     - this provider has no such action
"""

from __future__ import annotations

from typing import Optional


class ConnectorError(Exception):
    """Base of every connector error; `str()` is a sentence fit for Slack or a SOAR action result.
    Callers tell the kinds apart by class (`except NotFoundError`)."""

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        request_id: Optional[str] = None,
        status: Optional[int] = None,
        code: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.request_id = request_id
        self.status = status
        self.code = code

    def __str__(self) -> str:
        text = self.message
        if self.provider and not text.startswith(self.provider):
            text = f"{self.provider}: {text}"
        if self.request_id:
            text = f"{text} (request id {self.request_id})"
        return text


class ConfigurationError(ConnectorError):
    """The connector's settings are wrong (raised before any request)."""


class AuthenticationError(ConnectorError):
    """Credentials refused (401)."""


class PermissionDeniedError(ConnectorError):
    """Credentials valid but not allowed (403, suspended tenant)."""


class NotFoundError(ConnectorError):
    """No such identity or account (404)."""


class ValidationError(ConnectorError):
    """The provider rejected the input (400, 422)."""


class ConflictError(ConnectorError):
    """State forbids it (409: not reversible)."""


class RateLimitedError(ConnectorError):
    """Still limited after the retries (429)."""

    def __init__(self, message: str, *, retry_after: Optional[float] = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ProviderUnavailableError(ConnectorError):
    """Timeout, connection failure, 5xx or an unreadable answer."""


class OutcomeUnknownError(ProviderUnavailableError):
    """A state-changing request reached (or may have reached) the provider, but its answer did not come
    back. The action may have run: reconcile by reading the target, never by sending it again."""


class UnsupportedActionError(ConnectorError):
    """This provider has no such action."""
