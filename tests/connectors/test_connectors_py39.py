"""connectors/ on a real Python 3.9 (SOAR's oldest runtime; the venv `make soar` builds with the
package's own aiohttp): built outside any event loop, as a synchronous caller does, then used from
`asyncio.run` with concurrent calls."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from support.soar import ROOT, RUNTIMES, require, run_process

from standins import homebase, sailpoint, serving

SCRIPT = """
import asyncio, json, sys
import connectors

sailpoint = connectors.build("sailpoint", "sp", json.loads(sys.argv[1]))  # no loop running yet
homebase = connectors.build("homebase", "hb", json.loads(sys.argv[2]))


async def main():
    ids = json.loads(sys.argv[3])
    async with sailpoint, homebase:
        # concurrent first calls: all but one wait for the token the first one is fetching
        found = await asyncio.gather(*(sailpoint.get_identity(i) for i in ids))
        listed = [i async for i in sailpoint.list_identities()]
        check = await homebase.check()
    print(json.dumps({"found": [i.id for i in found], "listed": len(listed), "hb": check.ok}))


asyncio.run(main())
"""


@pytest.fixture
async def sims() -> AsyncIterator[tuple[str, str, sailpoint.SailPointState]]:
    sp_app = sailpoint.create_app(identities=600, rate_limit=False)
    async with serving(sp_app) as sp_url, serving(homebase.create_app(identities=5)) as hb_url:
        yield sp_url, hb_url, sp_app[sailpoint.STATE]


async def test_connectors_on_python_3_9(sims) -> None:
    python = require(RUNTIMES / "3.9" / "bin" / "python", "soar")
    sp_url, hb_url, state = sims
    ids = [state.identity_id(n) for n in range(0, 600, 100)]
    code, out, err = await run_process(
        str(python),
        "-c",
        SCRIPT,
        json.dumps({"base_url": sp_url, "client_id": "sim-client", "client_secret": "sim-secret"}),
        json.dumps({"base_url": hb_url + "/v1", "api_key": "hld_test_simulator"}),
        json.dumps(ids),
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert code == 0, err
    assert json.loads(out) == {"found": ids, "listed": 600, "hb": True}
    assert state.tokens_issued == 1
