"""The official SailPoint Python SDK listing every identity, run as a process of its own (`sdk_listing`).

Why a process: for every object it deserializes, the SDK finds the model class by scanning `sys.modules`
for a `sailpoint.*.models` module that has it (sailpoint/api_client.py `__deserialize`). In the test
suite's own process that is the ~3,800 modules the whole suite imported, the SDK's own imported last:
listing 620 identities took 12 s there (2 s alone), and over 20 s on a loaded machine. In a fresh
interpreter the SDK's modules are nearly all there is, so the listing takes the same time whatever else
the suite imports. Run as a script, it prints the listing as JSON:

    python tests/support/sailpoint_sdk.py BASE_URL CLIENT_ID CLIENT_SECRET PAGE_SIZE PICK
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from sailpoint import ApiClient, Configuration, ConfigurationParams, Paginator
from sailpoint.identities import IdentitiesApi

SCRIPT = Path(__file__).resolve()


def listing(base_url: str, client_id: str, client_secret: str, page: int, pick: int) -> dict[str, Any]:
    """Every identity through the SDK's Paginator (`page` a request), and the `pick`th one again by id
    (blocking: urllib3); ids, emails and names as the SDK's models hold them."""
    params = ConfigurationParams()
    params.base_url, params.client_id, params.client_secret = base_url, client_id, client_secret
    configuration = Configuration(params)  # fetches its token from /oauth/token right here
    with ApiClient(configuration) as client:
        api = IdentitiesApi(client)
        identities = Paginator.paginate(api.list_identities_v1, 100_000, limit=page)
        one = api.get_identity_v1(identities[pick].id)
    return {
        "identities": [{"id": i.id, "email": i.email_address, "name": i.name} for i in identities],
        "one": {"id": one.id, "email": one.email_address},
    }


async def sdk_listing(
    base_url: str, client_id: str, client_secret: str, page: int, pick: int
) -> dict[str, Any]:
    """`listing` in a fresh `python` process; what it printed, parsed (it fails with the child's output)."""
    child = await asyncio.create_subprocess_exec(
        *(sys.executable, str(SCRIPT), base_url, client_id, client_secret, str(page), str(pick)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(120):  # a ceiling for a loaded machine, not a pace: it returns when done
            out, err = await child.communicate()
    finally:
        if child.returncode is None:  # timed out or cancelled: never leave it running
            child.kill()
            await child.wait()
    assert child.returncode == 0, err.decode(errors="replace")[-3000:]
    return dict(json.loads(out))


if __name__ == "__main__":
    url, cid, secret, size, index = sys.argv[1:6]
    print(json.dumps(listing(url, cid, secret, int(size), int(index))))
