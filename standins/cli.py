"""`idops sim …` and `idops demo`: the stand-ins' own command line.

`bot.cli` hands these words over by module name (it never imports this package): the stand-ins are
development tools that live in a source checkout and are not installed with idops.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Optional

SIMULATORS = {
    "entra": "standins.entra",
    "google_workspace": "standins.google_workspace",
    "homebase": "standins.homebase",
    "okta": "standins.okta",
    "sailpoint": "standins.sailpoint",
    "slack": "standins.slack.sim",
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`argv` starts with `sim` or `demo`, as typed after `idops`."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["demo"]:
        return int(importlib.import_module("standins.demo").main(words[1:]) or 0)
    parser = argparse.ArgumentParser(prog="idops sim", description="run a local stand-in on loopback")
    parser.add_argument("which", choices=sorted(SIMULATORS))
    parser.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(words[1:])
    return int(importlib.import_module(SIMULATORS[args.which]).main(args.args) or 0)


if __name__ == "__main__":
    sys.exit(main())
