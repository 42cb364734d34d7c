"""Auto-containment during an alert storm, through the real server: when the alert of an identity that
entered critical was folded into a digest (no card of its own), the automatic action's outcome is told
in the digest's thread, naming the identity, once; on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from support.alerts import ENVIRON, Served, all_text, eventually, served
from support.bot import pg_store
from support.postgres import PgDatabase

from bot.alerts.detector import Scope
from bot.blocks import esc

REVOKE = [{"connector": "homebase", "action": "revoke", "name": "hb-revoke"}]


def _payload(message: dict[str, Any]) -> dict[str, Any]:
    return (message.get("metadata") or {}).get("event_payload") or {}


def digests_of(s: Served) -> list[dict[str, Any]]:
    return [m for m in s.slack.messages("C0ALERTS") if _payload(m).get("part") == "digest"]


async def test_a_folded_alert_s_auto_containment_is_told_in_its_digest_s_thread_once(
    tmp_path: Path, server_pg: Optional[PgDatabase]
) -> None:
    options = pg_store(server_pg)
    environ = {**ENVIRON, **options.pop("environ", {})}
    alerts = {"poll_seconds": 3600, "fold_after": 3}
    async with served(tmp_path, environ=environ, auto_containment=REVOKE, alerts=alerts, **options) as s:
        await s.started()
        # a storm behind a slow channel: every card waits for the sender, and one identity enters critical
        await s.service.sender.stop()
        risen = [s.hb.identity_id(s.hb_low(skip=n)) for n in range(6)]
        for identity_id in risen[1:]:
            s.hb.set_risk(identity_id, 65)
        critical = risen[0]
        s.hb.set_risk(critical, 95)
        name = next(
            s.hb.record(i)["display_name"] for i in range(s.hb.size) if s.hb.identity_id(i) == critical
        )
        await s.service.sweep(Scope("homebase"))
        await eventually(lambda: s.hb.sessions_revoked[critical] >= 1, what="the automatic revoke")
        await s.service.auto.run()  # the outcome is queued for the alert's thread
        s.service.sender.start()
        await s.settle()

        alert = next(s.db.query("SELECT * FROM alerts WHERE identity_id = ?", [critical]))
        assert alert["ts"] is None and alert["digest"] is not None  # folded: no card of its own
        (digest,) = digests_of(s)
        assert esc(name, 80) in all_text(digest)
        told = [
            r
            for r in digest["replies"]
            if "Auto-containment (rule `hb-revoke`) ran *Revoke sessions*" in r["text"]
        ]
        assert len(told) == 1
        assert told[0]["text"].startswith(f"*{esc(name, 80)}*: :shield: Auto-containment")
        row = next(
            s.db.query(
                "SELECT * FROM alert_outbox WHERE alert_id = ? AND kind = 'refresh' AND payload LIKE ?",
                [alert["id"], '%"folded_reply": true%'],
            )
        )
        assert row["status"] == "sent" and row["ts"] == told[0]["ts"]
        assert json.loads(row["payload"])["reply"]["text"] in told[0]["text"]

        # more sweeps and runs while it stays critical: nothing more is said
        for _ in range(2):
            await s.service.sweep(Scope("homebase"))
            await s.service.auto.run()
        await s.settle()
        (digest,) = digests_of(s)
        assert len([r for r in digest["replies"] if "Auto-containment" in r["text"]]) == 1
        assert s.hb.sessions_revoked[critical] == 1
