"""`[store]`: `path` (SQLite) or `url` (PostgreSQL) with the password from `password_env`; refusals name the
file and key, and the password is never in a message or a log line."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest
from support.postgres import PgDatabase

from bot import audit_cli, server
from bot.config import ConfigError, Secrets, load_config
from bot.extension import BOT
from standins import serving

SLACK = '[slack]\nalert_channel = "C0ALERTS"\napproval_channel = "C0APPROVALS"\n'
SECRETS = Secrets(SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s")


def _config(tmp_path: Path, store: str) -> Path:
    path = tmp_path / "idops.toml"
    path.write_text(f"{SLACK}\n[store]\n{store}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("store", "expected"),
    [
        (
            'path = "idops.db"\nurl = "postgresql://idops@db.example:5432/idops"',
            "store: path and url are both set: keep path (a SQLite file) or url (PostgreSQL), not both",
        ),
        (
            'password_env = "PGPASS"',
            "store: password_env is the password of url (PostgreSQL); set url or remove it",
        ),
        ('url = "mysql://idops@db.example/idops"', "store.url: must be a PostgreSQL URL like postgresql://"),
        ('url = "postgresql://idops@db.example:port/idops"', "store.url: must be a PostgreSQL URL"),
        ('url = "postgresql://db.example/idops"', "store.url: must name the user, the host and the database"),
        ('url = "postgresql://idops@db.example"', "store.url: must name the user, the host and the database"),
        (
            'url = "postgresql://idops@db.example/idops"\npassword_env = "hunter2"',
            "store.password_env: must be",
        ),
    ],
)
def test_store_settings_are_checked_when_read(tmp_path: Path, store: str, expected: str) -> None:
    path = _config(tmp_path, store)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: {expected}")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://idops:Sup3rSecret@db.example:5432/idops",
        "postgresql://idops@db.example:5432/idops?password=Sup3rSecret",
    ],
)
def test_a_password_in_the_url_is_refused_without_showing_it(tmp_path: Path, url: str) -> None:
    path = _config(tmp_path, f'url = "{url}"\npassword_env = "IDOPS_PG_PASSWORD"')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "Sup3rSecret" not in str(info.value)
    assert (
        "store.url: must not hold the password: set it in an environment variable named by store.password_env"
        in (str(info.value))
    )


def test_a_secret_under_store_is_sent_to_password_env(tmp_path: Path) -> None:
    path = _config(tmp_path, 'url = "postgresql://idops@db.example/idops"\npassword = "Sup3rSecret"')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "Sup3rSecret" not in str(info.value) and "named by password_env" in str(info.value)


def _pg_config(tmp_path: Path, database: PgDatabase) -> Path:
    return _config(tmp_path, f'url = "{database.config_url}"\npassword_env = "IDOPS_PG_PASSWORD"')


async def test_the_server_runs_on_postgresql_from_the_config(tmp_path: Path, pg_database: PgDatabase) -> None:
    config = load_config(_pg_config(tmp_path, pg_database))
    web_app = server.build_web_app(config, SECRETS, environ={"IDOPS_PG_PASSWORD": pg_database.password})
    db = web_app[BOT].service.db
    assert db.backend == "postgresql"
    async with serving(web_app) as url, aiohttp.ClientSession() as http:
        async with http.get(url + "/healthz") as response:
            assert response.status == 200
    with pg_database.connect() as conn:  # the schema was made in that database, by its owner
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'approvals'").fetchone()
        assert owner == (pg_database.user,)


def test_start_up_names_an_unset_password_variable(tmp_path: Path, pg_database: PgDatabase) -> None:
    path = _pg_config(tmp_path, pg_database)
    with pytest.raises(ConfigError) as info:
        server.build_web_app(load_config(path), SECRETS, environ={}, extensions=[])
    assert str(info.value) == f"{path}: store.password_env: environment variable IDOPS_PG_PASSWORD is not set"


def test_a_wrong_password_is_refused_without_showing_it(
    tmp_path: Path, pg_database: PgDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    path = _pg_config(tmp_path, pg_database)
    wrong = "Wr0ng-but-Secret-Passw0rd"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as info:
        server.build_web_app(load_config(path), SECRETS, environ={"IDOPS_PG_PASSWORD": wrong}, extensions=[])
    message = str(info.value)
    assert message.startswith(f"{path}: store.url: cannot open the store (") and "\n" not in message
    assert "password authentication failed" in message
    assert wrong not in message and wrong not in caplog.text
    assert pg_database.password not in message


def test_idops_audit_reads_the_postgresql_store(
    tmp_path: Path,
    pg_database: PgDatabase,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = _pg_config(tmp_path, pg_database)
    monkeypatch.setenv("IDOPS_PG_PASSWORD", pg_database.password)
    assert audit_cli.main(["verify", "--config", str(path)]) == 0
    assert "audit chain intact: 0 rows" in capsys.readouterr().out
    monkeypatch.setenv("IDOPS_PG_PASSWORD", "Wr0ng-but-Secret-Passw0rd")
    assert audit_cli.main(["verify", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "store.url: cannot open the store" in err and "Wr0ng-but-Secret-Passw0rd" not in err
