"""The README's "run the pieces yourself" recipe, as written: the `idops sim` processes, their
printed lines pasted into a shell, `idops serve --config standins/demo.toml` started there, and the
Slack page's command box reaching that bot, which reaches every identity simulator.

The recipe gives `idops sim slack` the bot's URL before the bot runs, so the port is picked first; when
another process takes it before `idops serve` binds it (serve says "cannot listen"), the Slack stand-in
and the bot start again on another port. Every wait is for a line of output or a change the page's
long poll reports, bounded by a ceiling for a loaded machine."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

from support.sims import ROOT, SimProcess, sim_process

from standins.slack.page import RESPONDER

DROP = ("HOMEBASE_", "SAILPOINT_", "SLACK_", "GOOGLE_", "ENTRA_", "OKTA_")
PORT_TRIES = 3  # a port found free can be taken by another process before `idops serve` binds it
TOKEN = "readme-api-token"  # IDOPS_API_TOKEN, made up


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str, timeout: float = 5, headers: Optional[dict[str, str]] = None) -> tuple[int, dict]:
    try:
        request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback http only
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback http only
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(  # noqa: S310 - loopback http only
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        return json.load(response)


def _answer(page: str, wanted: str, timeout: float = 60) -> str:
    """Alice's ephemeral replies (not the echo of her command), once one of them mentions `wanted`: the
    page's state is read again each time its long poll reports a change (or after 20 s without one)."""
    deadline = time.monotonic() + timeout
    version, answer = -1, ""
    while wanted not in answer:
        assert time.monotonic() < deadline, f"no answer mentioning {wanted} in {timeout:g} s: {answer!r}"
        status, state = _get(f"{page}/_ui/state?user={RESPONDER}&version={version}", timeout=30)
        assert status == 200, state
        version = state["version"]
        answer = " ".join(m.get("text", "") for m in state["ephemerals"] if "/idops" not in m.get("text", ""))
    return answer


def _serve(pasted: Path, port: int, workdir: Path) -> SimProcess:
    """`sh pasted.sh idops serve --config standins/demo.toml --port PORT`, its output read line by line."""
    process = subprocess.Popen(
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
        cwd=workdir,  # the config's store file lands here
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return SimProcess(process)


def test_pasted_simulator_lines_run_the_demo_config_against_the_stand_ins(tmp_path: Path) -> None:
    with (
        sim_process("homebase", "--identities", "20", drop=DROP) as homebase,
        sim_process("sailpoint", "--identities", "20", drop=DROP) as sailpoint,
        sim_process("google_workspace", "--identities", "20", drop=DROP) as workspace,
        sim_process("entra", "--identities", "20", drop=DROP) as entra,
        sim_process("okta", "--identities", "20", drop=DROP) as okta,
    ):
        identities = homebase.block() + sailpoint.block() + workspace.block() + entra.block() + okta.block()
        for attempt in range(1, PORT_TRIES + 1):
            port = _free_port()
            bot_url = f"http://127.0.0.1:{port}/slack/events"
            with sim_process("slack", "--bot-url", bot_url, drop=DROP) as slack:
                pasted = tmp_path / "pasted.sh"
                # IDOPS_API_TOKEN: /healthz shows its details (the connectors) to its bearer only
                pasted.write_text(identities + slack.block() + f'export IDOPS_API_TOKEN={TOKEN}\nexec "$@"\n')
                page = slack.read_until(r"the page is at (http://\S+)/").group(1)
                serve = _serve(pasted, port, tmp_path)
                try:
                    started = serve.read_until(r"idops listening on http://\S+|cannot listen on", 60)
                    if "cannot listen" in started.group(0) and attempt < PORT_TRIES:
                        continue  # the port was taken meanwhile: another one, another Slack stand-in
                    assert started.group(0) == f"idops listening on http://127.0.0.1:{port}", serve.lines
                    assert _get(f"http://127.0.0.1:{port}/healthz") == (200, {"ok": True})
                    auth = {"Authorization": f"Bearer {TOKEN}"}
                    status, health = _get(f"http://127.0.0.1:{port}/healthz", headers=auth)
                    assert status == 200, health
                    named = sorted(c["name"] if isinstance(c, dict) else c for c in health["connectors"])
                    assert named == ["entra", "homebase", "okta", "sailpoint", "workspace"]
                    typed = {
                        "user": RESPONDER,
                        "line": "/idops whois nobody@example.com",
                        "channel": "C0ALERTS",
                    }
                    assert _post(page + "/_ui/command", typed) == {"status": 200}
                    answer = _answer(page, "nobody@example.com")
                finally:
                    serve.close()
            break
        # every identity simulator was searched with the pasted URLs and credentials
        assert "HomeBase (homebase)" in answer and "SailPoint (sailpoint)" in answer, answer
        assert "Google Workspace (workspace)" in answer, answer
        assert "Microsoft Entra ID (entra)" in answer, answer
        assert "Okta (okta)" in answer, answer
        assert "couldn't reach" not in answer.lower() and "unavailable" not in answer.lower(), answer
