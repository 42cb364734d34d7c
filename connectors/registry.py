"""Build a connector from a kind name and a settings mapping: a new provider is one module and one line."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Optional

import aiohttp

from .base import Connector
from .errors import ConfigurationError

_KINDS: dict[str, type[Connector]] = {}

# Modules that register the built-in kinds; imported on first use so importing the registry stays cheap.
BUILTIN_MODULES = (
    "connectors.homebase",
    "connectors.sailpoint",
    "connectors.entra",
    "connectors.google_workspace",
    "connectors.okta",
)


def register(cls: type[Connector]) -> type[Connector]:
    """Class decorator: make `cls` buildable under `cls.kind`."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} has no kind")
    _KINDS[cls.kind] = cls
    return cls


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def kinds() -> dict[str, type[Connector]]:
    _load_builtins()
    return dict(_KINDS)


def build(
    kind: str,
    name: str,
    config: Mapping[str, Any],
    *,
    session: Optional[aiohttp.ClientSession] = None,
) -> Connector:
    """A connector of `kind` named `name`; ConfigurationError names the bad kind or setting."""
    known = kinds()
    cls = known.get(kind)
    if cls is None:
        raise ConfigurationError(
            f"connector '{name}': unknown kind '{kind}' (known: {', '.join(sorted(known))})"
        )
    cls.validate_config(name, config)
    return cls.from_config(name, config, session=session)


def build_from_form(
    kind: str,
    name: str,
    fields: Mapping[str, Any],
    *,
    session: Optional[aiohttp.ClientSession] = None,
) -> Connector:
    """`build` from a form (a SOAR asset, a Cortex job) that has fields for every kind: the filled-in
    fields that are some kind's settings go to the connector, which refuses those its kind lacks."""
    accepted = set().union(*(cls.settings for cls in kinds().values()))
    settings = {key: value for key, value in fields.items() if key in accepted and value not in (None, "")}
    return build(kind, name, settings, session=session)
