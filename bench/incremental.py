"""Incremental-sweep benchmark: after the baseline, a sweep of 100,000 HomeBase identities of whom 1% changed
risk, asked only for the changes, against a full listing: requests sent to the simulator, wall time, and
whether every change was found.

HomeBase's API has nothing to pull changes from, so the change feed is its signed `identity.risk_changed`
webhooks (tests/support/feed.py: the real connector plus a loopback receiver); a changes-sweep then asks
HomeBase nothing, and the figure shows that the alerts' side adds no request of its own. Connectors with
a pull feed (Okta's System Log, Entra's riskLastUpdatedDateTime) pay their feed's requests instead.
The simulator runs as a subprocess (`idops sim homebase --no-rate-limit --webhook-url …`); the 1% change
goes through its admin API, which signs and POSTs each webhook. Requests are counted where they leave the
connector's session. The peer is a bare full listing by the same connector, in the same repeats.

    .venv/bin/python bench/incremental.py [--identities 100000] [--change 0.01] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _support import REPO, simulator_process
from alerts import change_levels

from bot.alerts.detector import Detector, Scope
from bot.alerts.scope import CHANGES, FULL
from bot.config import AlertSettings
from bot.store import open_db

sys.path.insert(0, str(REPO / "tests"))  # the webhook-fed HomeBase connector the tests use
from support.feed import WebhookFedHomeBase, counting_session, receiving

API_KEY = "hld_test_bench"
SECRET = "whsec-bench"  # noqa: S105 - the bench receiver's made-up webhook secret
TARGET_SHARE = 0.05


def row(label: str, value: str, note: str = "") -> None:
    print(f"{label:<44}{value:>12}  {note}".rstrip())


async def run(identities: int, share: float, repeats: int) -> None:
    session, sent = counting_session()
    feeds: list[WebhookFedHomeBase] = []  # the connector needs the simulator's URL, which needs the hook's
    async with session, receiving(lambda body, signature: feeds[0].receive(body, signature)) as hook_url:
        args = ["--no-rate-limit", "--identities", str(identities), "--webhook-url", hook_url]
        env = {"HOMEBASE_API_KEY": API_KEY, "HOMEBASE_WEBHOOK_SECRET": SECRET}
        with simulator_process("homebase", *args, env=env) as base_url, tempfile.TemporaryDirectory() as tmp:
            feed = WebhookFedHomeBase(
                "hld", api_key=API_KEY, base_url=base_url, pacing=False, session=session, secret=SECRET
            )
            feeds.append(feed)
            db = open_db(str(Path(tmp) / "idops.db"))
            settings = AlertSettings(full_sweep_every=1000)
            detector = Detector(db, {"hld": feed}, settings, "C0ALERTS")
            started = time.perf_counter()
            baseline = await detector.sweep(Scope("hld"))
            baseline_s = time.perf_counter() - started
            assert baseline.mode == FULL and baseline.seen == identities, baseline
            changes_requests: list[int] = []
            changes_s: list[float] = []
            full_requests: list[int] = []
            full_s: list[float] = []
            for repeat in range(repeats):
                events = len(feed.events)
                moved = await change_levels(base_url, identities, share, seed=repeat + 1)
                assert len(feed.events) - events == moved, "every change arrived as a signed webhook"
                before, started = len(sent), time.perf_counter()
                result = await detector.sweep(Scope("hld"))
                changes_s.append(time.perf_counter() - started)
                changes_requests.append(len(sent) - before)
                assert result.mode == CHANGES and result.error is None, result
                found = sum(result.changes.values())
                assert found == moved, f"found {found} of {moved} changes"
                before, started = len(sent), time.perf_counter()
                listed = 0
                async for page in feed.iter_pages():
                    listed += len(page)
                full_s.append(time.perf_counter() - started)
                full_requests.append(len(sent) - before)
                assert listed == identities
            db.close()
    med = statistics.median
    ratio = med(changes_requests) / med(full_requests)
    row("identities", f"{identities:,}")
    row("baseline sweep (full listing, stores all)", f"{baseline_s:.1f} s")
    row("changed risk between sweeps", f"{moved:,}", f"({share:.0%}), each a signed webhook")
    row(f"changes sweep: requests (median of {repeats})", f"{med(changes_requests):,.0f}")
    row("changes sweep: wall time", f"{med(changes_s):.2f} s", f"every change found ({found:,} recorded)")
    row("full listing: requests", f"{med(full_requests):,.0f}")
    row("full listing: wall time", f"{med(full_s):.1f} s")
    row("changes / full listing, requests", f"{ratio:.1%}")
    row("changes / full listing, wall time", f"{med(changes_s) / med(full_s):.1%}")
    verdict = "met" if ratio <= TARGET_SHARE else "MISSED"
    row(f"target: requests <= {TARGET_SHARE:.0%} of a full listing", verdict)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=100_000)
    parser.add_argument("--change", type=float, default=0.01, help="share of identities changing level")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.identities, args.change, max(1, args.repeats)))


if __name__ == "__main__":
    main()
