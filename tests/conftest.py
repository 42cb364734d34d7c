"""Set-up shared by every area of the tests. Area fixtures live in each folder's conftest.py and the
harnesses behind them in tests/support/."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Optional

import pytest
from support.postgres import PgDatabase, PostgresCluster, running_cluster
from support.sims import HomeBaseSim

from standins import homebase, serving


@pytest.fixture
async def homebase_sim(request: pytest.FixtureRequest) -> AsyncIterator[HomeBaseSim]:
    """The HomeBase simulator on loopback, rate limits off, 60 identities, the test key
    (`HomeBaseSim.api_key`). `@pytest.mark.homebase(identities=20, ...)` on a test or module passes
    other arguments to `standins.homebase.create_app`."""
    marker = request.node.get_closest_marker("homebase")
    app = homebase.create_app(**{"identities": 60, "rate_limits": False, **(marker.kwargs if marker else {})})
    async with serving(app) as url:
        yield HomeBaseSim(url, app[homebase.STATE])


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster (tests/support/postgres.py), started on first use, once per session."""
    try:
        with running_cluster() as cluster:
            yield cluster
    except RuntimeError as exc:  # no binaries or initdb failed: say what to do, never skip
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def pg_database(postgres_cluster: PostgresCluster) -> Iterator[PgDatabase]:
    """A fresh PostgreSQL database for one test, owned by a role that is not a superuser."""
    with postgres_cluster.database() as database:
        yield database


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL for `bot.store.open_store`, once per backend: a SQLite file in `tmp_path`, then a fresh
    PostgreSQL database (the throwaway cluster)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'idops.db'}"
        return
    cluster = request.getfixturevalue("postgres_cluster")
    with cluster.database() as database:
        yield database.url


@pytest.fixture(params=["sqlite", "postgresql"])
def server_pg(request: pytest.FixtureRequest) -> Optional[PgDatabase]:
    """For tests of the real server, once per backend: None (the harness's SQLite file), then a fresh
    PostgreSQL database (`support.bot.pg_store` makes it the server's `[store]`)."""
    if request.param == "sqlite":
        return None
    database: PgDatabase = request.getfixturevalue("pg_database")
    return database
