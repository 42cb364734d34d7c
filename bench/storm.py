"""Alert-storm benchmark: 1,000 identities enter high or critical in one sweep; how soon is every one of
them named in the alert channel (its own card, or a line of a digest)?

The sender runs at Slack's pace (one message a second per channel, `interval=1.0`) against the Slack
stand-in (FakeSlack, loopback HTTP, every message checked as Slack checks Block Kit). The HomeBase
simulator runs as a subprocess (`idops sim homebase --no-rate-limit`); the storm goes through its admin
API. Each repeat starts a fresh simulator and store; the figures are medians.

The peer is the same sender without folding (`fold_after = 0`), run in the same repeats for
`--peer-seconds` and extrapolated to the whole storm at its measured posting rate (running it to the end
takes about 17 minutes).

    .venv/bin/python bench/storm.py [--identities 3000] [--storm 1000] [--repeats 3] [--peer-seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from _support import simulator_process
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts import digests
from bot.alerts.detector import Detector, Scope
from bot.alerts.sender import Sender
from bot.config import AlertSettings
from bot.store import open_db
from connectors.homebase import HomeBaseConnector
from standins.homebase import HomeBaseState, risk_level
from standins.slack import FakeSlack

API_KEY = "hld_test_bench"
CHANNEL = "C0ALERTS"
TARGET_SECONDS = 60.0


def named(slack: FakeSlack, db: Any, detector: Detector) -> set[str]:
    """Identity ids named in the channel so far: by their own card, or on a line of a digest."""
    out: set[str] = set()
    for message in slack.messages(CHANNEL):
        payload = (message.get("metadata") or {}).get("event_payload") or {}
        if payload.get("part") == "card":
            alert = detector.alert(payload["alert_id"])
            if alert is not None:
                out.add(alert["identity_id"])
        elif payload.get("part") == "digest":
            _, alerts = digests.members(db, int(payload["delivery"]))
            out.update(alert["identity_id"] for alert in alerts)
    return out


async def storm(base_url: str, identities: int, count: int) -> set[str]:
    """Move `count` identities at low or medium into high or critical through the admin API."""
    seeded = HomeBaseState(identities=identities)  # ids and seeded scores: the simulator's own seed
    admin = base_url.rsplit("/v1", 1)[0] + "/_admin/identity"
    picked = [i for i in range(identities) if risk_level(seeded.risk_score(i)) in ("low", "medium")][:count]
    assert len(picked) == count, "not enough identities at low or medium"
    semaphore = asyncio.Semaphore(16)
    async with aiohttp.ClientSession() as http:

        async def move(index: int) -> None:
            async with semaphore:
                url = f"{admin}/{seeded.identity_id(index)}/risk"
                async with http.post(url, json={"risk_score": 90 if index % 3 == 0 else 60}) as answer:
                    assert answer.status == 200, await answer.text()

        await asyncio.gather(*(move(index) for index in picked))
    return {seeded.identity_id(index) for index in picked}


async def one_run(identities: int, count: int, fold_after: int, limit: float) -> dict[str, Any]:
    """One storm: baseline sweep, the storm, the sweep that finds it; delivery watched for `limit` s."""
    env = {"HOMEBASE_API_KEY": API_KEY}
    args = ["--no-rate-limit", "--identities", str(identities)]
    slack = FakeSlack(channels={CHANNEL: "alerts"})
    with simulator_process("homebase", *args, env=env) as base_url, tempfile.TemporaryDirectory() as tmp:
        db = open_db(str(Path(tmp) / "idops.db"))
        async with (
            slack.serve(),
            HomeBaseConnector("hld", api_key=API_KEY, base_url=base_url, pacing=False, timeout=30) as hb,
        ):
            client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url, retry_handlers=[])
            sender = Sender(db, client, interval=1.0, fold_after=fold_after)
            settings = AlertSettings(fold_after=fold_after)
            detector = Detector(db, {"hld": hb}, settings, CHANNEL, on_outbox=sender.notify)
            sender.start()
            try:
                await detector.sweep(Scope("hld"))  # baseline: one summary
                await sender.wait_idle(timeout=30)
                posts_before = len(slack.calls_to("chat.postMessage"))
                moved = await storm(base_url, identities, count)
                started = time.perf_counter()
                result = await detector.sweep(Scope("hld"))
                swept = time.perf_counter() - started
                assert result.changes.get("open") == count, result.changes
                first = last = None
                while time.perf_counter() - started < limit:
                    seen = named(slack, db, detector) & moved
                    if seen and first is None:
                        first = time.perf_counter() - started
                    if len(seen) == count:
                        last = time.perf_counter() - started
                        break
                    await asyncio.sleep(0.05)
                posts = len(slack.calls_to("chat.postMessage")) - posts_before
                elapsed = time.perf_counter() - started
                seen = named(slack, db, detector) & moved
                problems = slack.warnings
            finally:
                await sender.stop()
                db.close()
    return {
        "swept": swept,
        "first": first,
        "last": last,
        "posts": posts,
        "named": len(seen),
        "elapsed": elapsed,
        "warnings": problems,
    }


def row(label: str, value: str, note: str = "") -> None:
    print(f"{label:<44}{value:>12}  {note}".rstrip())


async def run(identities: int, count: int, repeats: int, peer_seconds: float) -> None:
    folded: list[dict[str, Any]] = []
    peers: list[dict[str, Any]] = []
    for _ in range(repeats):
        folded.append(await one_run(identities, count, AlertSettings().fold_after, 300.0))
        peers.append(await one_run(identities, count, 0, peer_seconds))
    for run_ in folded:
        assert run_["last"] is not None and run_["named"] == count, run_
        assert not run_["warnings"], run_["warnings"]
    med = statistics.median
    last = med(r["last"] for r in folded)
    # the peer's pace, from what it named in its window; the whole storm at that pace
    peer_rate = med(r["named"] / r["elapsed"] for r in peers)
    peer_total = count / peer_rate
    row("identities in the simulator", f"{identities:,}")
    row("entering high or critical in one sweep", f"{count:,}")
    row(f"sweep that finds them (median of {repeats})", f"{med(r['swept'] for r in folded):.1f} s")
    row("folded: first one named", f"{med(r['first'] for r in folded):.1f} s")
    row("folded: every one named", f"{last:.1f} s", "(its own card or a digest line)")
    row("folded: channel messages posted", f"{med(r['posts'] for r in folded):.0f}", "(cards and digests)")
    row(
        "unfolded peer: identities named per second",
        f"{peer_rate:.2f}",
        f"(measured over {peer_seconds:.0f} s)",
    )
    row(
        "unfolded peer: every one named (extrapolated)", f"{peer_total:.0f} s", f"({peer_total / 60:.0f} min)"
    )
    row("unfolded / folded", f"{peer_total / last:.0f}x")
    row(f"target: every one named < {TARGET_SECONDS:.0f} s", "met" if last < TARGET_SECONDS else "MISSED")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=3000)
    parser.add_argument("--storm", type=int, default=1000, help="identities entering high or critical")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-seconds", type=float, default=15.0, help="how long the unfolded peer runs")
    args = parser.parse_args()
    asyncio.run(run(args.identities, args.storm, max(1, args.repeats), args.peer_seconds))


if __name__ == "__main__":
    main()
