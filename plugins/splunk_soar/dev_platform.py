"""Run an action of this app through the SDK's AppCliRunner with a local stand-in for the SOAR platform
parts a run touches, and print the action results as one JSON object on the last line of stdout.

The stand-in does what the platform's BaseConnector does around an action: it loads the asset state
before the run and saves it after (to --state-dir/state.json), and saves containers with SOAR's
duplicate check (a container whose source_data_identifier exists is not created again; its id is
returned). Containers and artifacts are kept in --state-dir/containers.json. Development and tests
only: never packaged.

    python dev_platform.py --state-dir DIR action on_poll -a asset.json -p params.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent


class Platform:
    """Asset state and saved containers, in two JSON files."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_file = state_dir / "state.json"
        self.containers_file = state_dir / "containers.json"
        self.containers: list[dict[str, Any]] = (
            json.loads(self.containers_file.read_text()) if self.containers_file.exists() else []
        )

    def load_state(self) -> dict:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def save_state(self, state: dict) -> None:
        _write_json(self.state_file, state)

    def save_container(
        self, container: dict, fail_on_duplicate: bool = False
    ) -> tuple[bool, str, Optional[int]]:
        sdi = container.get("source_data_identifier")
        for saved in self.containers:
            if sdi and saved["source_data_identifier"] == sdi:
                if fail_on_duplicate:
                    return False, "Duplicate container found", saved["id"]
                return True, "Duplicate container found", saved["id"]
        saved = {**container, "id": len(self.containers) + 1, "artifacts": []}
        self.containers.append(saved)
        self._flush()
        return True, "Container saved successfully", saved["id"]

    def save_artifacts(self, artifacts: list[dict]) -> tuple[bool, str, list[int]]:
        ids = []
        for artifact in artifacts:
            container = next(c for c in self.containers if c["id"] == artifact["container_id"])
            known = {a.get("source_data_identifier") for a in container["artifacts"]}
            if artifact.get("source_data_identifier") not in known:
                container["artifacts"].append(artifact)
            ids.append(len(container["artifacts"]))
        self._flush()
        return True, "Artifacts saved successfully", ids

    def _flush(self) -> None:
        _write_json(self.containers_file, self.containers)


def _write_json(path: Path, data: Any) -> None:
    """Replace `path` whole, so a concurrent run never reads a half-written file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(data, indent=1))
    partial.replace(path)


def install(manager: Any, platform: Platform) -> None:
    """Route the app's ActionsManager to the stand-in, and run initialize/finalize around each action
    as the platform does (the SDK's own shim does neither)."""
    manager.load_state = platform.load_state
    manager.save_state = platform.save_state
    manager.save_container = platform.save_container
    manager.save_artifacts = platform.save_artifacts
    handle_action = manager._handle_action

    def _handle_action(in_json: str, handle: int) -> str:
        manager.initialize()
        try:
            return handle_action(in_json, handle)
        finally:
            manager.finalize()

    manager._handle_action = _handle_action


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, required=True)
    own, rest = parser.parse_known_args(argv)
    sys.path.insert(0, str(HERE))
    from soar_sdk.app_cli_runner import AppCliRunner
    from src.app import app

    install(app.actions_manager, Platform(own.state_dir))
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        AppCliRunner(app).run(rest)
    results = [
        {
            "status": bool(result.get_status()),
            "message": result.get_message(),
            "data": result.get_data(),
            "summary": result.get_summary(),
        }
        for result in app.actions_manager.get_action_results()
    ]
    sys.stderr.write(log.getvalue())
    print(json.dumps({"results": results}, default=str))
    return 0 if results and all(r["status"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
