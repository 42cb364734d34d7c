"""Build the SOAR app package: stage the app with a copy of the repo's connectors/ and run
`soarapps package build` on the stage, so the repo never holds a second copy of the core."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# The stage's folder name is the import root `soarapps` uses while reading the app (idops_soar.src.app).
STAGE = HERE / "build" / "idops_soar"
APP_FILES = ("pyproject.toml", "uv.lock", "logo.svg", "logo_dark.svg")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "vendor")


def stage() -> Path:
    """A fresh copy of the app project with connectors/ under src/vendor/."""
    if STAGE.exists():
        shutil.rmtree(STAGE)
    STAGE.mkdir(parents=True)
    for name in APP_FILES:
        shutil.copy2(HERE / name, STAGE / name)
    shutil.copytree(HERE / "src", STAGE / "src", ignore=SKIP)
    shutil.copytree(REPO / "connectors", STAGE / "src" / "vendor" / "connectors", ignore=SKIP)
    return STAGE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=HERE / "dist" / "idops_soar.tgz")
    args = parser.parse_args(argv)
    output = args.output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    soarapps = Path(sys.executable).parent / "soarapps"
    partial = output.with_suffix(".partial")
    subprocess.run([str(soarapps), "package", "build", str(stage()), "-o", str(partial)], check=True)  # noqa: S603
    partial.replace(output)  # only a complete build replaces the previous package
    return 0


if __name__ == "__main__":
    sys.exit(main())
