"""Reading Slack Web API failures safely."""

from __future__ import annotations

from typing import Any, Optional


def slack_error(response: Any) -> Optional[str]:
    """Slack's error code; None when the answer was not Slack's JSON (e.g. a proxy's 503 page)."""
    data = getattr(response, "data", None)
    return str(data.get("error")) if isinstance(data, dict) and data.get("error") else None


def describe(response: Any) -> str:
    """Slack's error code, else the HTTP status: what to log or show when a Web API call failed."""
    return slack_error(response) or f"HTTP {getattr(response, 'status_code', '?')}"
