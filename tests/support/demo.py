"""A running `idops demo` as tests share it (the `platform_demo` fixture, tests/standins/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from standins import demo


@dataclass
class PlatformDemo:
    """The running demo and every line it logged so far (`lines`: the drift's changes among them)."""

    run: demo.Demo
    lines: list[str] = field(default_factory=list)
