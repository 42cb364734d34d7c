"""Drive the Splunk SOAR app the way SOAR does: a subprocess in the app's own environment
(plugins/splunk_soar/.venv, made by `make soar-venv`) running the SDK's AppCliRunner through
plugins/splunk_soar/dev_platform.py, with the asset and parameters as JSON files."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOAR_DIR = ROOT / "plugins" / "splunk_soar"
SOAR_PY = SOAR_DIR / ".venv" / "bin" / "python"
PACKAGE = SOAR_DIR / "dist" / "idops_soar.tgz"
RUNTIMES = SOAR_DIR / "build" / "runtimes"
RUN_TIMEOUT = 60.0


def require(path: Path, target: str) -> Path:
    """Fail (never skip) when the plugin environment or package is missing, naming the make target."""
    if not path.exists():
        pytest.fail(f"{path.relative_to(ROOT)} is missing: run `make {target}` first")
    return path


@dataclass
class Run:
    """One action run: the action results the SDK collected, and what the process printed."""

    results: list[dict[str, Any]]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r["status"] for r in self.results)

    @property
    def message(self) -> str:
        return " | ".join(r["message"] for r in self.results)

    @property
    def data(self) -> list[dict[str, Any]]:
        return [item for r in self.results for item in r["data"]]


async def run_process(*args: str, cwd: Path, env: Optional[dict[str, str]] = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode or 0, out.decode(), err.decode()


class SoarApp:
    """The app with one asset; every run of it shares the platform stand-in's state in `state_dir`."""

    _files = itertools.count()

    def __init__(self, tmp_path: Path, asset: dict[str, Any]) -> None:
        require(SOAR_PY, "soar-venv")
        self.tmp_path = tmp_path
        self.asset = asset
        self.state_dir = tmp_path / "soar-platform"

    def _write(self, data: dict[str, Any]) -> str:
        path = self.tmp_path / f"soar-{next(self._files)}.json"
        path.write_text(json.dumps(data))
        return str(path)

    async def run(self, action: str, params: Optional[dict[str, Any]] = None, **asset: Any) -> Run:
        args = [str(SOAR_PY), "dev_platform.py", "--state-dir", str(self.state_dir), "action", action]
        args += ["-a", self._write({**self.asset, **asset})]
        if params is not None:
            args += ["-p", self._write(params)]
        code, out, err = await run_process(*args, cwd=SOAR_DIR, env=dict(os.environ))
        lines = out.strip().splitlines()
        results = json.loads(lines[-1])["results"] if lines and lines[-1].startswith('{"results"') else []
        return Run(results, code, out, err)

    def containers(self) -> list[dict[str, Any]]:
        """What the platform stand-in saved: containers, each with its artifacts."""
        path = self.state_dir / "containers.json"
        return json.loads(path.read_text()) if path.exists() else []
