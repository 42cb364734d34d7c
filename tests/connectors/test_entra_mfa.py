"""Entra MFA from the authentication methods registration report (userRegistrationDetails): single reads
show it, listings leave it unknown unless the mfa_enrolled filter asks, and a tenant without Entra ID P1
or AuditLog.Read.All has it unknown, said once. Against the Graph simulator over loopback HTTP."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from support.sims import entra_connector

from connectors.entra import EntraConnector
from standins.entra_graph import REGISTRATIONS
from standins.entra_state import EntraState


@pytest.fixture
async def sim() -> AsyncIterator[tuple[EntraState, EntraConnector]]:
    async with entra_connector(1500) as pair:
        yield pair


def enabled_without_mfa(state: EntraState) -> list[int]:
    return [
        i for i in range(state.users) if (r := state.registration(i)) is not None and not r["isMfaRegistered"]
    ]


async def test_a_single_read_shows_mfa_and_its_methods(sim: tuple[EntraState, EntraConnector]) -> None:
    state, connector = sim
    without = enabled_without_mfa(state)[0]
    got = await connector.get_identity(state.user_id(without))
    assert got.mfa_enrolled is False and got.mfa_methods in ((), ("email",))
    fido = next(i for i in range(state.users) if i % 3 == 0 and state.registration(i) and i % 7 != 2)
    key = await connector.get_identity(state.upn(fido))  # by principal name: the report is read by object id
    assert key.mfa_enrolled is True and key.mfa_methods == ("fido2",)
    disabled = next(i for i in range(state.users) if not state.user(i)["accountEnabled"])
    assert (await connector.get_identity(state.user_id(disabled))).mfa_enrolled is None  # not in the report
    reads = [r.path for r in state.log if r.path.startswith(REGISTRATIONS)]
    assert reads == [f"{REGISTRATIONS}/{state.user_id(i)}" for i in (without, fido, disabled)]


async def test_the_mfa_filter_lists_the_report_s_users_page_by_page(
    sim: tuple[EntraState, EntraConnector],
) -> None:
    state, connector = sim
    pages = [page async for page in connector.iter_pages(mfa_enrolled=False)]
    found = {i.id: i for page in pages for i in page}
    assert set(found) == {state.user_id(i) for i in enabled_without_mfa(state)}
    assert all(i.mfa_enrolled is False and i.status == "active" and i.email for i in found.values())
    # roles and risk joined as in a full listing
    assert {i.privileged for i in found.values()} == {True, False}
    details = [r for r in state.log if r.path == REGISTRATIONS]
    assert len(details) == 1 and details[0].query["$filter"] == "isMfaRegistered eq false"
    assert "/v1.0/users" not in [r.path for r in state.log]  # users read by id, in JSON batches
    critical = [page async for page in connector.iter_pages(mfa_enrolled=True, privileged=True)]
    assert critical and all(i.mfa_enrolled and i.privileged for page in critical for i in page)


async def test_without_p1_mfa_is_unknown_and_said_once(
    sim: tuple[EntraState, EntraConnector], caplog: pytest.LogCaptureFixture
) -> None:
    state, connector = sim
    state.mfa_reports = False
    with caplog.at_level(logging.WARNING):
        assert (await connector.get_identity(state.user_id(2))).mfa_enrolled is None
        assert (await connector.get_identity(state.user_id(3))).mfa_enrolled is None
        assert [page async for page in connector.iter_pages(mfa_enrolled=False)] == []
    warnings = [r.getMessage() for r in caplog.records if "MFA is unknown" in r.getMessage()]
    assert len(warnings) == 1 and "AuditLog.Read.All" in warnings[0] and "Entra ID P1" in warnings[0]
    result = await connector.check()
    assert result.ok and "MFA unknown" in result.message
    state.mfa_reports = True
    assert "MFA from the registration report" in (await connector.check()).message
