"""The compact id maps (`connectors.idmap`): the same answers as a dict built from the same entries
(also through many levels of runs merged, with the sizes shrunk), in about 17 bytes an entry, built in
memory that holds no more than a fixed bound beside the map whatever the number of entries (traced by
tracemalloc), on this Python and on 3.9; Entra listings built on them, over loopback HTTP against the
simulator, with users whose ids are not canonical GUIDs among the role holders and the users at risk;
Okta listings' admin set and risk map."""

from __future__ import annotations

import gc
import json
import operator
import random
import subprocess
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from typing import Any, Callable, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.sim_env import SimEnv, serve_env
from support.sims import entra_connector
from support.soar import ROOT, RUNTIMES, require, run_process

from connectors import idmap, okta_listing
from connectors.entra import EntraConnector
from connectors.entra_api import NO_RISK, risk_band
from connectors.http import Response
from connectors.idmap import GUIDS, OKTA_IDS, RUN, IdMap, IdMapBuilder
from connectors.okta import OktaConnector
from connectors.okta_api import risk_band as okta_band
from connectors.okta_listing import AdminSet
from standins.entra_state import EntraState
from standins.okta import STATE as OKTA_STATE
from standins.okta import create_app as create_okta

NOT_GUIDS = (
    "",
    "legacy-user-1",
    "{6f9619ff-8b86-d011-b42d-00c04fc964ff}",  # braces
    "6F9619FF-8B86-D011-B42D-00C04FC964FF",  # upper case
    "6f9619ff8b86d011b42d00c04fc964ff",  # no hyphens
    "6f9619ff-8b86-d011-b42d-00c04fc964f\n",
    "6f9619ff-8b86-d011-b42d-00c04fc964fg",
    "6f9619ff-8b86-d011-b42d-00c04fc964f٣",  # a non-ASCII digit int() would take
    "6f9619ff-8b86-d011-b42d_00c04fc964ff",
    " 6f9619ff-8b86-d011-b42d-00c04fc964f",
)


def both(entries: list[tuple[str, Any]], merge: Any = None, codec: Any = GUIDS) -> tuple[IdMap, dict]:
    builder: IdMapBuilder = IdMapBuilder(merge, codec)
    expected: dict = {}
    for key, value in entries:
        builder.add(key, value)
        expected[key] = value if key not in expected or merge is None else merge(expected[key], value)
    return builder.build(), expected


def more(held: tuple, names: tuple) -> tuple:
    """Entra's merge of role names: those held, then the new ones not among them (associative)."""
    return (*held, *(n for n in names if n not in held))


def test_guids_pack_canonical_guids_only() -> None:
    guid = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    assert GUIDS.pack(guid) == uuid.UUID(guid).int and GUIDS.text(uuid.UUID(guid).int) == guid
    assert [GUIDS.pack(key) for key in NOT_GUIDS] == [None] * len(NOT_GUIDS)


def test_okta_ids_pack_twenty_ascii_letters_and_digits_both_ways() -> None:
    rng = random.Random(13)
    alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    keys = ["00ub0oNGTSWTBKOLGLNR", "0" * 20, "z" * 20] + [
        "".join(rng.choices(alnum, k=20)) for _ in range(2000)
    ]
    numbers = [OKTA_IDS.pack(key) for key in keys]
    assert all(n is not None and 0 <= n < 1 << 120 for n in numbers)
    assert [OKTA_IDS.text(n) for n in numbers if n is not None] == keys and len(set(numbers)) == len(
        set(keys)
    )
    others = [
        "00u1admin0000000000",
        "00ub0oNGTSWTBKOLGLNRx",
        "00ub0oNGTSWTBKOLGLN-",
        "00ub0oNGTSWTBKOLGLN٣",
        "",
    ]
    assert [OKTA_IDS.pack(key) for key in others] == [None] * len(others)
    packed, expected = both([(k, n % 3) for n, k in enumerate(keys + others)], codec=OKTA_IDS)
    assert dict(packed) == expected and packed.nbytes() == 17 * len(keys)
    assert keys[5].lower() not in packed and keys[5].swapcase() not in packed


def test_answers_as_a_dict_does_across_runs_duplicates_and_other_keys() -> None:
    rng = random.Random(7)
    guids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(3 * RUN + 17)]
    bands = [("high", 75), ("medium", 50), ("critical", 100)]
    entries = [(g, rng.choice(bands)) for g in guids] + [(k, ("low", 20)) for k in NOT_GUIDS]
    entries += [(g, ("critical", 100)) for g in guids[::5]]  # added again: the last value wins
    entries += [(NOT_GUIDS[1], ("high", 75)), (guids[0].upper(), ("medium", 50))]
    rng.shuffle(entries)
    packed, expected = both(entries)
    assert len(packed) == len(expected) == len(set(guids)) + len(NOT_GUIDS) + 1
    assert dict(packed) == expected and set(packed) == set(expected)
    for key, value in expected.items():
        assert packed[key] == value and packed.get(key) == value and key in packed
    # upper case is another key, as in a dict; absent keys of every shape are absent
    assert packed[guids[0].upper()] == ("medium", 50) and packed[guids[0]] == expected[guids[0]]
    for key in [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(500)] + ["x", guids[1].upper()]:
        assert key not in packed and packed.get(key) is None and packed.get(key, "d") == "d"
        with pytest.raises(KeyError):
            packed[key]
    assert packed.get(7) is None and 7 not in packed  # type: ignore[call-overload,operator]
    # three distinct values: one byte of code an entry besides the 16 of the key
    assert packed.nbytes() == 17 * (len(expected) - len(NOT_GUIDS) - 1)


def test_a_merge_sees_the_values_in_the_order_added() -> None:
    rng = random.Random(11)
    users = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(2 * RUN)] + ["legacy-1", "LEGACY-1"]
    entries: list[tuple[str, tuple[str, ...]]] = [(u, ("Global Administrator",)) for u in users[::3]]
    entries += [(u, ("User Administrator", "Security Reader")) for u in users[::2]]
    entries += [(u, ("Security Reader",)) for u in users[::7]]
    packed, expected = both(entries, more)
    assert dict(packed) == expected
    assert packed[users[0]] == ("Global Administrator", "User Administrator", "Security Reader")


def test_keys_sharing_their_high_half_are_told_apart() -> None:
    high = 0x6F9619FF8B86D011 << 64
    keys = [GUIDS.text(high | low) for low in (5, 1, 9, 3, 1 << 63)]
    packed, expected = both([(k, n) for n, k in enumerate(keys)])
    assert dict(packed) == expected
    assert GUIDS.text(high | 4) not in packed and GUIDS.text(high | 10) not in packed
    assert GUIDS.text(((high >> 64) ^ 1) << 64 | 5) not in packed  # same low half, another high


def test_codes_widen_with_the_number_of_distinct_values() -> None:
    rng = random.Random(3)
    for distinct, per_entry in ((256, 17), (257, 18), (70_000, 20)):
        keys = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(distinct)]
        packed, expected = both([(k, n) for n, k in enumerate(keys)])
        assert packed.nbytes() == per_entry * distinct
        assert packed[keys[-1]] == distinct - 1 and dict(packed) == expected


# keys for the property test: random GUIDs, GUIDs sharing a high half, neighbours, and other shapes
_RNG = random.Random(17)
_SHARED = 0x6F9619FF8B86D011 << 64
POOL = [str(uuid.UUID(int=_RNG.getrandbits(128))) for _ in range(12)]
POOL += [GUIDS.text(_SHARED | low) for low in (0, 1, 2, 7, 1 << 63, idmap.LOW)]
POOL += [GUIDS.text(0), GUIDS.text((1 << 128) - 1), *NOT_GUIDS[:4]]
ABSENT = [GUIDS.text(_SHARED | 3), GUIDS.text(_SHARED + (1 << 64)), GUIDS.text(1), GUIDS.text(idmap.LOW), "x"]
MERGES: dict[str, tuple[Optional[Callable], Callable[[int], Any]]] = {
    "new": (None, lambda n: ("band", n % 5)),
    "sum": (operator.add, lambda n: n),  # many distinct values: the codes widen as they are folded
    "roles": (more, lambda n: (f"role {n % 4}", f"role {n % 3}")),
}


@settings(max_examples=250, deadline=None, derandomize=True, database=None)
@given(
    entries=st.lists(st.tuples(st.sampled_from(POOL), st.integers(0, 300)), max_size=120),
    merge=st.sampled_from(sorted(MERGES)),
    sizes=st.sampled_from([(1, 1, 2), (3, 2, 2), (4, 3, 3), (5, 2, 4)]),
)
def test_any_run_block_and_fan_in_sizes_answer_as_a_dict(
    entries: list[tuple[str, int]], merge: str, sizes: tuple[int, int, int]
) -> None:
    # the sizes shrunk to a few entries, so that a hundred entries go through several levels of merges
    function, value = MERGES[merge]
    with pytest.MonkeyPatch.context() as patch:
        for name, size in zip(("RUN", "BLOCK", "FAN_IN"), sizes):
            patch.setattr(idmap, name, size)
        packed, expected = both([(key, value(n)) for key, n in entries], function)
    assert dict(packed) == expected and len(packed) == len(expected)
    for key in POOL + ABSENT:
        assert packed.get(key, "absent") == expected.get(key, "absent") and (key in packed) == (
            key in expected
        )
    numbers = [GUIDS.pack(key) for key in packed]
    guids = [n for n in numbers if n is not None]
    assert guids == sorted(guids) and numbers[len(guids) :] == [None] * (len(numbers) - len(guids))


def traced_build(keys: list[str], values: list[Any]) -> tuple[IdMap, int, int]:
    """(the map, bytes it holds, peak bytes while adding and building), as tracemalloc counts them."""
    tracemalloc.start()
    try:
        builder: IdMapBuilder = IdMapBuilder()
        for n, key in enumerate(keys):
            builder.add(key, values[n % len(values)])
        packed = builder.build()
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return packed, held, peak


# the buffer (RUN entries as tuples, ~110 KB) and one merge's FAN_IN + 1 blocks (~160 KB): not the entries
BUILD_BOUND = 300_000


def test_building_holds_a_bound_beside_the_map_whatever_the_entries() -> None:
    rng = random.Random(5)
    bands = [("high", 75), ("medium", 50), ("critical", 100), ("low", 20)]
    for count in (5_000, 60_000):  # the second: 1 MB more if the entries were held twice
        keys = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(count)]
        packed, held, peak = traced_build(keys, bands)
        assert held < 18 * count + 64_000, (count, held)  # 17 bytes an entry, the blocks' few bytes
        assert peak - held < BUILD_BOUND, (count, peak - held)
        assert len(packed) == count and packed[keys[123]] == bands[123 % 4] and keys[-1] in packed


# --- Entra listings over loopback, with some users' ids not canonical GUIDs -------------------------
def odd_id(index: int) -> Optional[str]:
    """Every third user's id is not a canonical GUID (four shapes); the others keep the simulator's."""
    if index % 3:
        return None
    guid = f"6f9619ff-8b86-4011-b42d-{index:012x}"
    return (guid.upper(), "{" + guid + "}", f"legacy-user-{index}", guid.replace("-", ""))[index // 3 % 4]


class OddIdsState(EntraState):
    """The simulator's state with `odd_id` ids: what /users, role and group members, riskyUsers and
    `id in (…)` filters show and accept."""

    def user_id(self, index: int) -> str:
        return odd_id(index) or super().user_id(index)

    def index_of(self, key: Any) -> Optional[int]:
        if self.__dict__.get("odd") is None:
            self.__dict__["odd"] = {odd_id(i): i for i in range(0, self.users, 3)}
        found = self.__dict__["odd"].get(key)
        return found if found is not None else super().index_of(key)


@pytest.fixture
async def odd() -> AsyncIterator[tuple[EntraState, EntraConnector]]:
    async with entra_connector(1500, OddIdsState) as pair:
        yield pair


def expected(state: EntraState, index: int) -> tuple[set[str], tuple]:
    level, risk_state, *_ = state.risk_of(index) or ("none", "none")
    return {name for _, name, _ in state.roles_of(index)}, risk_band(risk_state, level)[:2]


async def test_a_listing_with_non_guid_ids_has_every_role_and_band(
    odd: tuple[EntraState, EntraConnector],
) -> None:
    state, connector = odd
    listed = {i.id: i for page in [p async for p in connector.iter_pages()] for i in page}
    assert len(listed) == state.users
    odd_holders = odd_risky = 0
    for index in range(state.users):
        identity = listed[state.user_id(index)]
        roles, band = expected(state, index)
        assert set(identity.roles) == roles and identity.privileged == bool(roles), index
        assert (identity.risk_score, identity.risk_level) == band, index
        odd_holders += bool(roles) and odd_id(index) is not None
        odd_risky += band != NO_RISK[:2] and odd_id(index) is not None
    assert odd_holders > 20 and odd_risky > 20  # role holders (direct and through groups), risk bands
    # the maps themselves: odd ids kept as strings, the rest packed at 17 bytes an entry
    members = await connector.role_members()
    holders = [i for i in range(state.users) if state.roles_of(i)]
    assert len(members) == len(holders) and members.nbytes() == 17 * sum(1 for i in holders if not odd_id(i))
    assert members[state.user_id(19)] == ("User Administrator", "Security Reader")  # through a group
    upper = next(i for i in holders if i % 12 == 0)  # an upper-case GUID (odd_id's first shape)
    assert members[state.user_id(upper)] and members.get(state.user_id(upper).lower()) is None


async def test_changes_since_finds_non_guid_and_guid_users_with_their_roles(
    odd: tuple[EntraState, EntraConnector],
) -> None:
    state, connector = odd
    assert [i async for page in connector.iter_pages() for i in page]
    start = await connector.changes_since(None)
    moved = {3: "high", 5: "medium", 18: "low", 19: "high", 24: "medium", 1001: "high"}
    for index, level in moved.items():
        state.set_risk(index, level, "atRisk")
    changes = await connector.changes_since(start.cursor)
    found = {i.id: i for i in changes.identities}
    assert set(found) == {state.user_id(i) for i in moved}
    assert {odd_id(i) is None for i in moved} == {True, False}
    for index in moved:
        roles, band = expected(state, index)
        identity = found[state.user_id(index)]
        assert (set(identity.roles), (identity.risk_score, identity.risk_level)) == (roles, band), index


# --- Okta: the admin set and the risk map ----------------------------------------------------------------
def test_an_admin_set_applies_changes_over_what_was_read() -> None:
    read, _ = both([("00ub0oNGTSWTBKOLGLNR", True), ("00u1admin0000000000", True)], codec=OKTA_IDS)
    admins = AdminSet(read)
    assert "00ub0oNGTSWTBKOLGLNR" in admins and "00u1admin0000000000" in admins
    assert "00ub0oNGTSWTBKOLGLNS" not in admins and 7 not in admins
    admins.discard("00ub0oNGTSWTBKOLGLNR")
    admins.add("00ub0oNGTSWTBKOLGLNS")
    admins.add("odd")
    assert "00ub0oNGTSWTBKOLGLNR" not in admins and "00ub0oNGTSWTBKOLGLNS" in admins and "odd" in admins
    admins.add("00ub0oNGTSWTBKOLGLNR")
    assert "00ub0oNGTSWTBKOLGLNR" in admins


async def test_an_okta_listing_keeps_its_admins_and_risk_packed() -> None:
    async with serve_env(SimEnv, create_okta(identities=2000), OKTA_STATE) as env:
        state = env.state
        for index in range(0, 2000, 97):  # risk events, some on admins
            await env.admin(
                f"/_admin/users/{state.user_id(index)}/risk", {"riskLevel": ("HIGH", "MEDIUM")[index % 2]}
            )
        connector = env.build(
            OktaConnector, "okta", "okta", {"base_url": env.url, "api_token": "sim-okta-api-token"}
        )
        listed = {i.id: i for page in [p async for p in connector.iter_pages()] for i in page}
        expected_admins = {state.user_id(i) for i in range(state.total) if state.role_types(i)}
        assert {i for i, identity in listed.items() if identity.privileged} == expected_admins
        admins = connector._admins
        assert isinstance(admins, AdminSet) and isinstance(admins._read, IdMap)
        assert admins._read.nbytes() == 17 * len(expected_admins) > 17 * 20
        risks = await connector._risk_map()
        assert isinstance(risks, IdMap) and risks.nbytes() == 17 * len(risks) and len(risks) >= 21
        for user_id, identity in listed.items():
            assert (identity.risk_score, identity.risk_level) == okta_band(
                risks.get(user_id, "NONE"), user_id in expected_admins
            )


async def test_reading_okta_risk_holds_no_log_page_while_it_reads_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # pages of 100 events, so the seeded risk of 20,000 users (~420 events) takes several
    monkeypatch.setattr(okta_listing, "MAX_LOG_PAGE", 100)
    held: list[tuple[int, int]] = []

    def alive() -> tuple[int, int]:
        """(risk events, System Log answers) still alive anywhere in this process."""
        found = gc.get_objects()
        return (
            sum(isinstance(o, dict) and o.get("eventType") in okta_listing.RISK_EVENTS for o in found),
            sum(isinstance(o, Response) and "/api/v1/logs" in o.url for o in found),
        )

    class Counting(OktaConnector):
        async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
            if "/api/v1/logs" in path:  # about to read a page: what is left of the one before
                held.append(alive())
            return await super()._json(method, path, **kwargs)

    async with serve_env(SimEnv, create_okta(identities=20_000), OKTA_STATE) as env:
        state = env.state
        connector = env.keep(Counting("okta", base_url=env.url, api_token="sim-okta-api-token", pacing=False))
        gc.collect()  # what other tests left in cycles goes first
        risks = await connector._risk_map()
        seeded = {state.user_id(i): state.seeded_risk(i) for i in range(state.total)}
    assert dict(risks) == {user_id: level for user_id, level in seeded.items() if level != "NONE"}
    # beyond what was alive before the first page (other tests' leftovers), of the page before at most
    # the one event the consumer's loop variable still names
    (events_before, answers_before), *later = held
    assert len(later) >= 3, held
    assert all(events - events_before <= 1 and answers == answers_before for events, answers in later), held


BUILD_ON_39 = """
import json, random, sys, tracemalloc, uuid
from connectors import idmap, okta_listing
from connectors.idmap import IdMapBuilder


def more(held, names):
    return (*held, *(n for n in names if n not in held))


rng = random.Random(3)
keys = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(6000)] + ["legacy-1", "LEGACY-1"]
entries = [(rng.choice(keys), ("role %d" % rng.randrange(5),)) for _ in range(10000)]
expected = {}
for key, value in entries:
    expected[key] = more(expected[key], value) if key in expected else value
out = {}
defaults = (idmap.RUN, idmap.BLOCK, idmap.FAN_IN)
for sizes in ((3, 2, 2), defaults):
    idmap.RUN, idmap.BLOCK, idmap.FAN_IN = sizes
    builder = IdMapBuilder(more)
    for key, value in entries:
        builder.add(key, value)
    out["same %d" % sizes[0]] = dict(builder.build()) == expected
distinct = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(60000)]
tracemalloc.start()
builder = IdMapBuilder()
for key in distinct:
    builder.add(key, "high")
packed = builder.build()
held, peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
out["overhead"], out["held"], out["count"] = peak - held, held, len(packed)
print(json.dumps(out))
"""


def test_building_on_python_3_9_answers_as_a_dict_within_the_bound() -> None:
    python = require(RUNTIMES / "3.9" / "bin" / "python", "soar")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    found = subprocess.run(
        [str(python), "-c", BUILD_ON_39], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert found.returncode == 0, found.stderr
    out = json.loads(found.stdout)
    assert out["same 1024"] is True and out["same 3"] is True  # the defaults, and many levels of merges
    assert out["count"] == 60000 and out["held"] < 18 * 60000 + 64_000 and out["overhead"] < BUILD_BOUND, out


LIST_ON_39 = """
import asyncio, json, sys
import connectors


async def main():
    out = {}
    for kind, config in json.loads(sys.argv[1]).items():
        async with connectors.build(kind, kind, config) as connector:
            rows = [[i.id, i.privileged, i.risk_score] async for i in connector.list_identities()]
            out[kind] = sorted(rows)
    print(json.dumps(out))


asyncio.run(main())
"""


async def test_entra_and_okta_listings_agree_on_python_3_9(odd: tuple[EntraState, EntraConnector]) -> None:
    python = require(RUNTIMES / "3.9" / "bin" / "python", "soar")
    state, entra = odd
    async with serve_env(SimEnv, create_okta(identities=800), OKTA_STATE) as env:
        okta = env.build(
            OktaConnector, "okta", "okta", {"base_url": env.url, "api_token": "sim-okta-api-token"}
        )
        here: dict[str, list[list]] = {}
        for kind, connector in (("entra", entra), ("okta", okta)):
            here[kind] = sorted(
                [[i.id, i.privileged, i.risk_score] async for i in connector.list_identities()]
            )
        configs = {
            "entra": {
                "tenant_id": state.tenant_id,
                "client_id": state.client_id,
                "client_secret": state.client_secret,
                "authority_url": entra.graph_url,
                "graph_url": entra.graph_url,
            },
            "okta": {"base_url": env.url, "api_token": "sim-okta-api-token"},
        }
        code, out, err = await run_process(
            str(python),
            "-c",
            LIST_ON_39,
            json.dumps(configs),
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        )
    assert code == 0, err
    assert json.loads(out) == here
    assert sum(bool(p) for _, p, _ in here["entra"]) > 50 and sum(bool(p) for _, p, _ in here["okta"]) > 20
