"""Reading a connector's settings from config (a TOML table, a SOAR asset, a Cortex job): typed and
checked, each problem a ConfigurationError naming the connector and the key but never the value (it
may be a secret pasted in the wrong place). Numbers may come as strings: SOAR and Cortex send text."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any, Optional
from urllib.parse import urlsplit

from .errors import ConfigurationError

_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")


class SettingsReader:
    """One connector's (or form's) settings; each method reads one key (None or absent: its default)."""

    def __init__(self, where: str, config: Mapping[str, Any]) -> None:
        """`where` starts every message: "connector 'hb' (homebase)", "the asset"."""
        self.where = where
        self._config = config

    def error(self, key: str, problem: str) -> ConfigurationError:
        return ConfigurationError(f"{self.where}: setting '{key}' {problem}")

    def text(
        self,
        key: str,
        default: Optional[str] = None,
        *,
        pattern: Optional[re.Pattern[str]] = None,
        expected: str = "a non-empty string",
    ) -> Optional[str]:
        """A string, stripped; with `pattern`, one that matches it whole."""
        value = self._config.get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"must be {expected}")
        value = value.strip()
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(key, f"must be {expected}")
        return value

    def required_text(self, key: str, **kwargs: Any) -> str:
        value = self.text(key, **kwargs)
        if value is None:
            raise self.error(key, "is required")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(key, default, expected=f"one of {', '.join(choices)}")
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}")
        return value

    def url(self, key: str, default: Optional[str] = None, *, example: str, root: bool = False) -> str:
        """An http(s) URL with a valid host and port; `root`: nothing after the host."""
        expected = f"an http(s) URL like {example}"
        value = self.text(key, default, expected=expected)
        if value is None:
            raise self.error(key, "is required")
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError:
            raise self.error(key, f"must be {expected}") from None
        if parts.scheme not in ("http", "https") or not _valid_host(parts.hostname or ""):
            raise self.error(key, f"must be {expected}")
        if parts.username is not None or parts.password is not None:
            # messages quote the URL ("could not be reached at …"): a password in it would be shown
            raise self.error(
                key, "must not contain a user name or password (credentials are settings of their own)"
            )
        if root and (parts.path.strip("/") or parts.query or parts.fragment):
            raise self.error(key, f"must be the API root without a path, like {example}")
        if parts.query or parts.fragment or any(ch.isspace() for ch in value):
            raise self.error(key, f"must be {expected}")
        return value.rstrip("/")

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self._config.get(key)
        if value is None:
            return default
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(key, f"must be a whole number from {low} to {high}")
        return value

    def seconds(self, key: str, default: float, high: float) -> float:
        """A positive number of seconds, at most `high`."""
        value = self._config.get(key)
        if value is None:
            return default
        try:
            number = float(value) if isinstance(value, str) else value
        except ValueError:
            number = None
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not 0 < number <= high:
            raise self.error(key, f"must be a number of seconds above 0, at most {high:g}")
        return float(number)


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOST.fullmatch(host))
    return True
