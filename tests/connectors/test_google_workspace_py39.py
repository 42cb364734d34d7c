"""The Google Workspace connector on a real Python 3.9 (SOAR's oldest runtime, built by `make soar` with
the package's own aiohttp and PyJWT): built outside any event loop, then concurrent first calls share one
signed-JWT token, a listing with Alert Center risk (then a partitioned one: searches paged at once), an
action and its already-done case."""

from __future__ import annotations

import json

from support.soar import ROOT, RUNTIMES, require, run_process

from standins import google_workspace, serving

SCRIPT = """
import asyncio, json, sys
import connectors

workspace = connectors.build("google_workspace", "gw", json.loads(sys.argv[1]))  # no loop running yet


async def main():
    ids = json.loads(sys.argv[2])
    async with workspace:
        found = await asyncio.gather(*(workspace.get_identity(i) for i in ids))
        listed = [i async for i in workspace.list_identities()]
        second = [i.id async for i in workspace.list_identities()]  # partitioned: searches at once
        first = await workspace.disable(ids[0], "py39")
        again = await workspace.disable(ids[0], "py39")
        check = await workspace.check()
    print(json.dumps({
        "found": [i.id for i in found],
        "listed": len(listed),
        "partitioned": sorted(second) == sorted(i.id for i in listed) and len(second) == len(set(second)),
        "levels": sorted({i.risk_level.value for i in listed}),
        "messages": [first.message, again.message],
        "ok": check.ok,
    }))


asyncio.run(main())
"""


async def test_workspace_connector_on_python_3_9() -> None:
    python = require(RUNTIMES / "3.9" / "bin" / "python", "soar")
    key = google_workspace.generate_key()
    app = google_workspace.create_app(key=key, identities=700)
    state = app[google_workspace.STATE]
    async with serving(app) as url:
        settings = {
            "service_account_json": json.dumps({**key, "token_uri": f"{url}/token"}),
            "admin_email": "secops-bot@acme.example",
            "base_url": url,
            "alert_center_url": url,
            "listing": "partitioned",
            "listing_concurrency": 4,
        }
        active = [i for i in range(700) if not state.user(i)["suspended"]]
        ids = [state.user_id(i) for i in active[:6]]
        code, out, err = await run_process(
            str(python),
            "-c",
            SCRIPT,
            json.dumps(settings),
            json.dumps(ids),
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        )
    assert code == 0, err
    result = json.loads(out)
    assert result["found"] == ids and result["listed"] == 700 and result["ok"] is True
    assert result["partitioned"] is True
    assert {r.query.get("query") for r in state.log if r.path.endswith("/users")} >= {
        None,
        "email:a*",
        "email:-*",
    }
    assert "critical" in result["levels"] and "low" in result["levels"]
    assert result["messages"] == ["suspended in Google Workspace", "was already suspended"]
    assert state.tokens_issued == 1  # six concurrent first calls waited for one token
