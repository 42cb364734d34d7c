"""Privilege in Entra listings: directory roles held directly and through role-assignable groups, read
from the Graph simulator over loopback HTTP as a listing and as single reads."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from support.sims import entra_connector

from connectors import PermissionDeniedError
from connectors.entra import EntraConnector
from standins.entra_state import GROUPS, ROLES, EntraState


@pytest.fixture
async def sim(request) -> AsyncIterator[tuple[EntraState, EntraConnector]]:
    async with entra_connector(getattr(request, "param", 1200)) as pair:
        yield pair


def expected_roles(state: EntraState, index: int) -> tuple[str, ...]:
    return tuple(name for _, name, _ in state.roles_of(index))


async def test_a_role_held_through_a_group_makes_a_listed_user_privileged(
    sim: tuple[EntraState, EntraConnector],
) -> None:
    state, connector = sim
    listed = {i.id: i for page in [p async for p in connector.iter_pages()] for i in page}
    # index 19 is in "Identity Operators" (User Administrator + Security Reader) and holds no role itself;
    # index 23 is in "Tier 0 Admins" (Global Administrator)
    via_group = listed[state.user_id(19)]
    assert via_group.privileged and set(via_group.roles) == {"User Administrator", "Security Reader"}
    tier0 = listed[state.user_id(23)]
    assert tier0.privileged and tier0.roles == ("Global Administrator",)
    assert not listed[state.user_id(4)].privileged
    # the listing agrees with single reads (transitiveMemberOf) for every user, and with the simulator
    for index in (3, 5, 11, 19, 23, 150, 202, 4, 8):
        single = await connector.get_identity(state.user_id(index))
        assert (
            set(single.roles) == set(listed[state.user_id(index)].roles) == set(expected_roles(state, index))
        )
    privileged = {i.id for i in listed.values() if i.privileged}
    assert privileged == {state.user_id(i) for i in range(state.users) if state.roles_of(i)}
    # each role's members read once without $top (Graph takes none there), each group's members once
    # (Identity Operators holds two roles), no service principal taken for a user
    paths = [r.path for r in state.log]
    for role_id, *_ in ROLES:
        reads = [r for r in state.log if r.path == f"/v1.0/directoryRoles/{role_id}/members"]
        assert len(reads) == 1 and "$top" not in reads[0].query
    for group_id, *_ in GROUPS:
        assert paths.count(f"/v1.0/groups/{group_id}/transitiveMembers/microsoft.graph.user") == 1
    assert len(listed) == state.users


@pytest.mark.parametrize("sim", [70_000], indirect=True)
async def test_role_members_follow_next_links_past_a_thousand(sim: tuple[EntraState, EntraConnector]) -> None:
    state, connector = sim
    members = await connector.role_members()
    user_admin = ROLES[1][0]
    pages = [r for r in state.log if r.path == f"/v1.0/directoryRoles/{user_admin}/members"]
    assert len(pages) == 2 and "$skiptoken" in pages[1].query  # 1,147 members: 1,000 then 147
    holders = [i for i in range(state.users) if "User Administrator" in expected_roles(state, i)]
    assert len(holders) > 1000
    assert all("User Administrator" in members[state.user_id(i)] for i in holders)
    assert len(members) == sum(1 for i in range(state.users) if state.roles_of(i))


async def test_group_members_refused_stops_the_listing_with_the_permission_named(
    sim: tuple[EntraState, EntraConnector],
) -> None:
    state, connector = sim
    state.group_read = False
    with pytest.raises(PermissionDeniedError, match=r"GroupMember\.Read\.All") as refused:
        async for _ in connector.iter_pages():
            pass
    assert "Authorization_RequestDenied" in str(refused.value) and refused.value.request_id
