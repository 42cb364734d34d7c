"""Make a stand-in of each SOAR Python runtime (3.9, 3.13) for the built package: a venv with exactly
the wheels the package's manifest lists for that runtime, plus the packages SOAR itself provides to apps
(requests, beautifulsoup4; the SDK leaves them out of packages). Tests run the unpacked app in these.

    python runtimes.py dist/idops_soar.tgz build/runtimes
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

RUNTIMES = {"3.9": "pip39_dependencies", "3.13": "pip313_dependencies"}
# what SOAR's Python runner already has (the SDK's DEPENDENCIES_TO_SKIP that it needs itself)
PLATFORM = ("requests<3", "beautifulsoup4==4.10.0")


def interpreter(version: str) -> str:
    """`pythonX.Y` on PATH, else the newest pyenv install of it, else one uv installs (a fresh Debian
    has only its own Python 3.11: uv fetches a standalone CPython build once, into its cache)."""
    found = shutil.which(f"python{version}")
    if found and subprocess.run([found, "-c", ""], capture_output=True).returncode == 0:  # noqa: S603
        return found
    pyenv = Path.home() / ".pyenv" / "versions"
    candidates = sorted(pyenv.glob(f"{version}.*/bin/python{version}")) if pyenv.is_dir() else []
    if candidates:
        return str(candidates[-1])
    uv = [str(Path(sys.executable).with_name("uv")), "python"]
    installed = subprocess.run([*uv, "install", version], capture_output=True, text=True)  # noqa: S603
    located = subprocess.run([*uv, "find", "--managed-python", version], capture_output=True, text=True)  # noqa: S603
    if installed.returncode or located.returncode:
        why = (installed.stderr or located.stderr).strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(
            f"runtimes: no Python {version} found, and uv could not install one ({why[0]});"
            f" install python{version} (needed to check the package on SOAR's {version})"
        )
    return located.stdout.strip()


def main(package: Path, target: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(package) as tar:
        tar.extractall(tmp, filter="data")
        [app] = Path(tmp).iterdir()
        manifest = json.loads((app / "manifest.json").read_text())
        for version, key in RUNTIMES.items():
            venv = target / version
            if venv.exists():
                shutil.rmtree(venv)
            subprocess.run([interpreter(version), "-m", "venv", str(venv)], check=True)  # noqa: S603
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            wheels = [str(app / wheel["input_file"]) for wheel in manifest[key]["wheel"]]
            subprocess.run([*pip, "--no-deps", *wheels], check=True)  # noqa: S603
            subprocess.run([*pip, *PLATFORM], check=True)  # noqa: S603
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
