"""The README's "run the pieces yourself" recipe, as written: the `idops sim` processes, their
printed lines pasted into a shell, `idops serve --config standins/demo.toml` started there, and the
Slack page's command box reaching that bot, which reaches every identity simulator."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from support.sims import ROOT, sim_process

from standins.slack.page import RESPONDER

DROP = ("HOMEBASE_", "SAILPOINT_", "SLACK_", "GOOGLE_", "ENTRA_", "OKTA_")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback http only
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(  # noqa: S310 - loopback http only
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310
        return json.load(response)


def _wait_healthy(url: str, process: subprocess.Popen, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"idops serve exited: {process.communicate()[0]}")
        try:
            status, health = _get(url + "/healthz")
            if status == 200:
                return health
        except OSError:
            pass  # not listening yet
        time.sleep(0.1)
    raise AssertionError(f"idops serve did not answer /healthz in {timeout} s")


def test_pasted_simulator_lines_run_the_demo_config_against_the_stand_ins(tmp_path: Path) -> None:
    port = _free_port()
    bot_url = f"http://127.0.0.1:{port}/slack/events"
    with (
        sim_process("homebase", "--identities", "20", drop=DROP) as homebase,
        sim_process("sailpoint", "--identities", "20", drop=DROP) as sailpoint,
        sim_process("google_workspace", "--identities", "20", drop=DROP) as workspace,
        sim_process("entra", "--identities", "20", drop=DROP) as entra,
        sim_process("okta", "--identities", "20", drop=DROP) as okta,
        sim_process("slack", "--bot-url", bot_url, drop=DROP) as slack,
    ):
        pasted = tmp_path / "pasted.sh"
        blocks = homebase.block() + sailpoint.block() + workspace.block() + entra.block() + okta.block()
        blocks += slack.block()
        pasted.write_text(blocks + 'exec "$@"\n')
        page = slack.read_until(r"the page is at (http://\S+)/").group(1)
        serve = subprocess.Popen(
            [
                "sh",
                str(pasted),
                sys.executable,
                "-m",
                "bot.cli",
                "serve",
                "--config",
                str(ROOT / "standins" / "demo.toml"),
                "--port",
                str(port),
            ],
            cwd=tmp_path,  # the config's store file lands here
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            health = _wait_healthy(f"http://127.0.0.1:{port}", serve)
            assert sorted(c["name"] if isinstance(c, dict) else c for c in health["connectors"]) == [
                "entra",
                "homebase",
                "okta",
                "sailpoint",
                "workspace",
            ]
            typed = {"user": RESPONDER, "line": "/idops whois nobody@example.com", "channel": "C0ALERTS"}
            assert _post(page + "/_ui/command", typed) == {"status": 200}
            deadline = time.monotonic() + 20
            answer = ""
            while time.monotonic() < deadline and "nobody@example.com" not in answer:
                _, state = _get(f"{page}/_ui/state?user={RESPONDER}&version=-1")
                answer = " ".join(
                    m.get("text", "") for m in state["ephemerals"] if "/idops" not in m.get("text", "")
                )
                time.sleep(0.2)
            # both identity simulators were searched with the pasted URLs and credentials
            assert "nobody@example.com" in answer, answer
            assert "HomeBase (homebase)" in answer and "SailPoint (sailpoint)" in answer, answer
            assert "Google Workspace (workspace)" in answer, answer
            assert "Microsoft Entra ID (entra)" in answer, answer
            assert "Google Workspace (workspace)" in answer and "Okta (okta)" in answer, answer
            assert "couldn't reach" not in answer.lower() and "unavailable" not in answer.lower(), answer
        finally:
            serve.terminate()
            serve.wait(timeout=15)
            assert serve.stdout is not None
            serve.stdout.close()
