#!/usr/bin/env python3
"""Cortex responders Idops_*: the job JSON comes on stdin (or in /job/input/input.json)."""

import sys
from pathlib import Path

CORTEX = Path(__file__).resolve().parents[2]
# plugins/cortex holds the shared worker code; the repo root above it holds connectors/
sys.path[:0] = [str(CORTEX), str(CORTEX.parent.parent)]

from idops_cortex import IdopsResponder  # noqa: E402

if __name__ == "__main__":
    IdopsResponder().run()
