"""Kill the alerts process at the worst moments (SIGKILL, a real subprocess) and restart it on the same
SQLite file: every alert reaches Slack exactly once.

Run as a script, this file is that process: it sweeps and/or sends, killing itself at a given point.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from support.alerts import ALERTS, API_KEY, all_text, running

from bot.alerts.detector import Detector, Scope
from bot.alerts.sender import Sender
from bot.config import AlertSettings
from bot.store import open_db
from connectors import RiskLevel
from connectors.homebase import HomeBaseConnector
from standins.slack import FakeSlack

HERE = Path(__file__).resolve()


# --- the process under test ---------------------------------------------------------------------


async def _work(args: argparse.Namespace) -> None:
    from slack_sdk.web.async_client import AsyncWebClient

    db = open_db(args.db)
    client = AsyncWebClient(token=args.token, base_url=args.slack, retry_handlers=[])
    posts = 0

    def hook(point: str, row: Mapping[str, Any]) -> None:
        nonlocal posts
        if point == "posted":
            posts += 1
        if point == args.kill_at and (point != "posted" or posts == args.kill_on_post):
            os.kill(os.getpid(), signal.SIGKILL)

    sender = Sender(
        db,
        client,
        interval=0.01,
        backoff=0.05,
        backoff_cap=0.2,
        poll=0.1,
        fold_after=args.fold_after,
        hook=hook,
    )
    async with HomeBaseConnector("hld", api_key=API_KEY, base_url=args.sim) as connector:
        detector = Detector(db, {"hld": connector}, AlertSettings(), ALERTS, on_outbox=sender.notify)
        if args.sweep:
            await detector.sweep(Scope("hld"))
        if args.kill_at == "after-sweep":
            os.kill(os.getpid(), signal.SIGKILL)
        sender.start()
        await sender.wait_idle(timeout=20)
        await sender.stop()


def _main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--slack", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--sim", required=True)
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--kill-at", default="", choices=["", "after-sweep", "claimed", "posted"])
    parser.add_argument("--kill-on-post", type=int, default=1)
    parser.add_argument("--fold-after", type=int, default=0)
    asyncio.run(_work(parser.parse_args()))


# --- the tests ----------------------------------------------------------------------------------


async def _run(a: Any, *extra: str) -> int:
    """Run this file as the alerts process against the test's simulator, Slack and database."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parents[1]), str(HERE.parents[2])])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE),
        "--db",
        str(a.db_path),
        "--slack",
        a.slack.api_url,
        "--token",
        a.slack.bot_token,
        "--sim",
        f"{a.sim_url}/v1",
        *extra,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    except asyncio.TimeoutError:
        proc.kill()
        raise AssertionError("the alerts process did not finish in 60 s") from None
    assert proc.returncode in (0, -signal.SIGKILL), err.decode()
    return proc.returncode


def _posts(slack: FakeSlack, part: str) -> list[dict[str, Any]]:
    """Every chat.postMessage call (answered or not) that carried an alert `part` in its metadata."""
    out = []
    for params in slack.calls_to("chat.postMessage"):
        metadata = params.get("metadata") or {}
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        if metadata.get("event_payload", {}).get("part") == part:
            out.append(params)
    return out


async def test_killed_between_outbox_write_and_post(tmp_path: Path) -> None:
    async with running(tmp_path, start_sender=False) as a:
        assert await _run(a, "--sweep") == 0  # baseline, summary sent
        a.set_risk(a.index_at(RiskLevel.LOW), 88)
        assert await _run(a, "--sweep", "--kill-at", "after-sweep") == -signal.SIGKILL
        assert not a.cards()
        (pending,) = [row for row in a.outbox() if row["status"] == "pending"]
        assert pending["kind"] == "alert"
        assert await _run(a) == 0
        assert len(a.cards()) == 1 and len(_posts(a.slack, "card")) == 1
        assert all(row["status"] == "sent" for row in a.outbox())


async def test_killed_after_claim_before_post(tmp_path: Path) -> None:
    async with running(tmp_path, start_sender=False) as a:
        assert await _run(a, "--sweep") == 0
        a.set_risk(a.index_at(RiskLevel.LOW), 88)
        assert await _run(a, "--sweep", "--kill-at", "claimed") == -signal.SIGKILL
        (row,) = [r for r in a.outbox() if r["kind"] == "alert"]
        assert row["status"] == "sending" and not a.cards()
        assert await _run(a) == 0
        assert len(a.cards()) == 1 and len(_posts(a.slack, "card")) == 1
        assert a.slack.calls_to("conversations.history")  # it looked before posting


async def test_killed_between_post_and_record_never_posts_twice(tmp_path: Path) -> None:
    async with running(tmp_path, start_sender=False) as a:
        assert await _run(a, "--sweep") == 0
        first = a.index_at(RiskLevel.LOW)
        second = a.index_at(RiskLevel.LOW, skip=1)
        a.set_risk(first, 88)
        a.set_risk(second, 66)
        # the first card reaches Slack, then the process dies before writing down its ts
        assert await _run(a, "--sweep", "--kill-at", "posted") == -signal.SIGKILL
        assert len(a.cards()) == 1
        uncertain = [r for r in a.outbox() if r["status"] == "sending"]
        assert len(uncertain) == 1 and uncertain[0]["ts"] is None
        assert await _run(a) == 0
        cards = a.cards()
        assert len(cards) == 2 and len(_posts(a.slack, "card")) == 2
        ids = {c["metadata"]["event_payload"]["alert_id"] for c in cards}
        assert len(ids) == 2
        recorded = {r["alert_id"]: r["ts"] for r in a.outbox() if r["kind"] == "alert"}
        assert recorded == {c["metadata"]["event_payload"]["alert_id"]: c["ts"] for c in cards}
        stored = dict(a.db.execute("SELECT id, ts FROM alerts").fetchall())
        assert stored == recorded


async def test_killed_after_escalation_reply_posts_it_once(tmp_path: Path) -> None:
    async with running(tmp_path, start_sender=False) as a:
        assert await _run(a, "--sweep") == 0
        index = a.index_at(RiskLevel.LOW)
        a.set_risk(index, 60)
        assert await _run(a, "--sweep") == 0
        a.set_risk(index, 97)
        # escalation: chat.update, then the thread reply is posted and the process dies
        assert await _run(a, "--sweep", "--kill-at", "posted") == -signal.SIGKILL
        (card,) = a.cards()
        assert len(card["replies"]) == 1 and "high → critical" in all_text(card["replies"][0])
        assert await _run(a) == 0
        (card,) = a.cards()
        assert len(card["replies"]) == 1 and len(_posts(a.slack, "reply")) == 1
        assert "→ 97" in all_text(card)
        assert all(row["status"] == "sent" for row in a.outbox())


@pytest.mark.parametrize("kill_at", ["claimed", "posted"])
async def test_killed_around_a_storm_digest_names_everyone_once(tmp_path: Path, kill_at: str) -> None:
    async with running(tmp_path, start_sender=False) as a:
        assert await _run(a, "--sweep") == 0
        moved = {a.set_risk(a.index_at(RiskLevel.LOW), 70) for _ in range(8)}
        # the 8 cards are folded into one digest (more than 5 wait), then the process dies around its post
        assert await _run(a, "--sweep", "--fold-after", "5", "--kill-at", kill_at) == -signal.SIGKILL
        (digest,) = [r for r in a.outbox() if r["kind"] == "digest"]
        assert digest["status"] == "sending" and digest["ts"] is None
        assert len(_posts(a.slack, "digest")) == (1 if kill_at == "posted" else 0)
        assert await _run(a, "--fold-after", "5") == 0
        assert len(_posts(a.slack, "digest")) == 1 and not _posts(a.slack, "card")
        (message,) = [
            m for m in a.slack.messages(ALERTS) if m["metadata"]["event_payload"]["part"] == "digest"
        ]
        (digest,) = [r for r in a.outbox() if r["kind"] == "digest"]
        assert digest["status"] == "sent" and digest["ts"] == message["ts"]
        folded = {
            row["identity_id"] for row in a.db.query("SELECT * FROM alerts WHERE digest = ?", [digest["id"]])
        }
        assert folded == moved
        assert {r["status"] for r in a.outbox()} == {"sent", "folded"}


async def test_killed_after_a_folded_escalation_reply_posts_it_once(tmp_path: Path) -> None:
    async with running(tmp_path, start_sender=False) as a:
        assert await _run(a, "--sweep") == 0
        moved = [a.set_risk(a.index_at(RiskLevel.LOW), 70) for _ in range(8)]
        assert await _run(a, "--sweep", "--fold-after", "5") == 0  # one digest names the 8
        for identity_id in moved[:7]:
            a.sim.set_risk(identity_id, 97)
        # the 7 escalations fold into one reply on the digest; the process dies once it is posted
        assert await _run(a, "--sweep", "--fold-after", "5", "--kill-at", "posted") == -signal.SIGKILL
        assert await _run(a, "--fold-after", "5") == 0
        (digest,) = [
            m for m in a.slack.messages(ALERTS) if m["metadata"]["event_payload"]["part"] == "digest"
        ]
        (reply,) = digest["replies"]
        assert len(_posts(a.slack, "reply")) == 1 and all_text(reply).count("70 → 97, high → critical") == 7
        assert not _posts(a.slack, "card") and {r["status"] for r in a.outbox()} == {"sent", "folded"}


if __name__ == "__main__":
    _main()
