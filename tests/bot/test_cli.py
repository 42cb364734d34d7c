"""`idops check` and `idops identities list|get` against both simulators over loopback HTTP: filters,
JSON output, exit codes, and every bad config or provider answer as one line without a traceback."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot import cli
from standins import homebase, sailpoint, serving
from standins.homebase import Fault

HB_KEY = "hld_test_clisimulator"
SP_SECRET = "cli-secret-value"


@contextlib.contextmanager
def served(app: web.Application) -> Iterator[str]:
    """Serve `app` on loopback from a thread of its own, since `cli.main` runs its own event loop."""
    loop = asyncio.new_event_loop()
    url: concurrent.futures.Future[str] = concurrent.futures.Future()
    stop = asyncio.Event()

    async def serve() -> None:
        async with serving(app) as base:
            url.set_result(base)
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        yield url.result(timeout=10)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, Any]]:
    hb_app = homebase.create_app(identities=60, api_keys=(HB_KEY,), rate_limits=False)
    sp_app = sailpoint.create_app(identities=40, client_secret=SP_SECRET, rate_limit=False)
    with served(hb_app) as hb_url, served(sp_app) as sp_url:
        yield {"hb": hb_url + "/v1", "sp": sp_url, "hb_state": hb_app[homebase.STATE]}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HB_KEY", HB_KEY)
    monkeypatch.setenv("SP_ID", "sim-client")
    monkeypatch.setenv("SP_SECRET", SP_SECRET)


def config(tmp_path: Path, *tables: str) -> str:
    path = tmp_path / "idops.toml"
    head = '[slack]\nalert_channel = "C0ALERTS"\napproval_channel = "C0APPROVALS"\n'
    path.write_text(head + "".join(f"\n[[connectors]]\n{table}\n" for table in tables), encoding="utf-8")
    return str(path)


def homebase_table(url: str, **extra: str) -> str:
    lines = {"name": "hb", "kind": "homebase", "base_url": url, "api_key_env": "HB_KEY", **extra}
    return "\n".join(f'{key} = "{value}"' for key, value in lines.items())


def sailpoint_table(url: str, **extra: str) -> str:
    lines = {
        "name": "sp",
        "kind": "sailpoint",
        "base_url": url,
        "client_id_env": "SP_ID",
        "client_secret_env": "SP_SECRET",
        "risk_attribute": "attributes.riskScore",
        **extra,
    }
    return "\n".join(f'{key} = "{value}"' for key, value in lines.items())


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_both_kinds_then_one_failing(tmp_path, sims, env, capsys, monkeypatch) -> None:
    path = config(tmp_path, homebase_table(sims["hb"]), sailpoint_table(sims["sp"]))
    code, out, _ = run(capsys, "check", "--config", path)
    assert code == 0
    assert out.splitlines() == [
        "ok   hb (homebase): API key accepted; 60 identities visible",
        f"ok   sp (sailpoint): signed in to {sims['sp']} (v2024 API); 40 identities visible",
    ]
    monkeypatch.setenv("SP_SECRET", "not-the-secret")
    code, out, _ = run(capsys, "check", "--config", path)
    hb_line, sp_line = out.splitlines()
    assert code == 1 and hb_line.startswith("ok ")
    assert sp_line.startswith("FAIL sp (sailpoint): SailPoint: refused the client credentials")
    assert "not-the-secret" not in out


@pytest.mark.parametrize(
    ("table", "line"),
    [
        (
            'name = "x"\nkind = "ldap"',
            "FAIL x (ldap): unknown kind 'ldap' (known: entra, google_workspace, homebase,",
        ),
        (
            'name = "hb"\nkind = "homebase"\napi_key_env = "IDOPS_TEST_UNSET"',
            "FAIL hb (homebase): environment variable IDOPS_TEST_UNSET (from api_key_env) is not set",
        ),
        (
            'name = "hb"\nkind = "homebase"\napi_key_env = "HB_KEY"\nbase_url = "http://127.0.0.1:1/v1"',
            "FAIL hb (homebase): HomeBase could not be reached at http://127.0.0.1:1/v1 (request id idops-",
        ),
        (
            'name = "sp"\nkind = "sailpoint"\nclient_id_env = "SP_ID"\nclient_secret_env = "SP_SECRET"\n'
            'base_url = "http://[::1"',
            "FAIL sp (sailpoint): setting 'base_url' must be an http(s) URL like https://",
        ),
        (
            'name = "hb"\nkind = "homebase"\napi_key_env = "HB_KEY"\npage_size = 1000',
            "FAIL hb (homebase): setting 'page_size' must be a whole number from 1 to 100",
        ),
        (
            'name = "hb"\nkind = "homebase"\napi_key_env = "HB_KEY"\ncolour = "red"',
            "FAIL hb (homebase): unknown setting 'colour' (known: api_key, base_url,",
        ),
    ],
)
def test_check_names_each_bad_connector_in_one_line(tmp_path, env, capsys, table: str, line: str) -> None:
    code, out, err = run(capsys, "check", "--config", config(tmp_path, table))
    assert code == 1 and err == ""
    assert len(out.splitlines()) == 1 and out.startswith(line), out


def test_a_bad_config_file_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[slack\n", encoding="utf-8")
    for path in (str(broken), str(tmp_path / "missing.toml")):
        code, out, err = run(capsys, "check", "--config", path)
        assert code == 2 and out == "" and len(err.splitlines()) == 1 and err.startswith(f"idops: {path}: ")


def test_list_filters_privileged_tenant_and_risk(tmp_path, sims, env, capsys) -> None:
    path = config(tmp_path, homebase_table(sims["hb"]), sailpoint_table(sims["sp"]))
    state: homebase.HomeBaseState = sims["hb_state"]
    records = [state.record(i) for i in range(state.size)]
    listing = ["identities", "list", "--config", path, "--json"]

    def listed(*args: str) -> list[dict[str, Any]]:
        code, out, _ = run(capsys, *listing, *args)
        assert code == 0
        return json.loads(out)

    privileged = listed("--connector", "hb", "--privileged")
    assert [i["id"] for i in privileged] == [r["id"] for r in records if r["privileged"]]
    others = listed("--connector", "hb", "--no-privileged")
    assert [i["id"] for i in others] == [r["id"] for r in records if not r["privileged"]]
    assert privileged and others
    tenant = state.tenant_ids[1]
    critical = listed("--connector", "hb", "--tenant", tenant, "--risk-level", "CRITICAL")
    expected = [r["id"] for r in records if r["tenant_id"] == tenant and r["risk_level"] == "critical"]
    assert expected and [i["id"] for i in critical] == expected
    # a tenant typed with a query string in it stays one (unknown) tenant id, not extra filters
    code, out, err = run(
        capsys, *listing, "--connector", "hb", "--tenant", f"{tenant}&filter[privileged]=true"
    )
    assert (code, out) == (1, "") and "HomeBase: This API key has no access to that tenant" in err

    sp_privileged = listed("--connector", "sp", "--privileged")
    assert sp_privileged and all(i["privileged"] and i["connector"] == "sp" for i in sp_privileged)
    assert len(listed("--connector", "sp", "--limit", "7")) == 7


def test_list_as_text_escapes_control_characters(tmp_path, sims, env, capsys) -> None:
    state: homebase.HomeBaseState = sims["hb_state"]
    hostile = "\x1b[2J\x1b[31mEvil\x1b[0m\nfake\tline\u202e"
    state.faults.append(
        Fault(kind="corrupt", count=1, field="display_name", value=hostile, path="/v1/identity")
    )
    path = config(tmp_path, homebase_table(sims["hb"]))
    code, out, err = run(capsys, "identities", "list", "--config", path, "--connector", "hb", "--limit", "3")
    assert code == 0 and err == "3 identities\n"
    lines = out.splitlines()
    assert len(lines) == 3 and all(len(line.split("\t")) == 6 for line in lines)
    assert lines[0].split("\t")[2] == "\\x1b[2J\\x1b[31mEvil\\x1b[0m\\x0afake\\x09line\\u202e"
    assert not any(ch in out for ch in "\x1b\u202e")


def test_get_as_text_and_json(tmp_path, sims, env, capsys) -> None:
    state: homebase.HomeBaseState = sims["hb_state"]
    record = state.record(5)
    path = config(tmp_path, homebase_table(sims["hb"]))
    code, out, _ = run(capsys, "identities", "get", "--config", path, "--connector", "hb", record["id"])
    assert code == 0
    fields = dict(line.split(None, 1) for line in out.splitlines() if len(line.split(None, 1)) == 2)
    assert fields["id"] == record["id"] and fields["email"] == record["email"]
    assert fields["risk_level"] == record["risk_level"]

    code, out, _ = run(
        capsys, "identities", "get", "--config", path, "--connector", "hb", record["id"], "--json"
    )
    [identity] = json.loads(out)
    assert code == 0 and identity["id"] == record["id"] and identity["roles"] == record["roles"]


def test_provider_errors_are_one_line_and_exit_1(tmp_path, sims, env, capsys) -> None:
    path = config(tmp_path, homebase_table(sims["hb"]), homebase_table("http://127.0.0.1:1/v1", name="down"))
    code, out, err = run(capsys, "identities", "get", "--config", path, "--connector", "hb", "idn_nobody")
    assert code == 1 and out == ""
    assert err.startswith("idops: HomeBase: ") and "(request id req_" in err and len(err.splitlines()) == 1

    # a listing that fails before its first page prints no half-made JSON
    code, out, err = run(capsys, "identities", "list", "--config", path, "--connector", "down", "--json")
    assert code == 1 and out == "" and err.startswith("idops: HomeBase could not be reached")

    code, out, err = run(capsys, "identities", "list", "--config", path, "--connector", "nope")
    assert code == 2 and out == "" and err == "idops: no connector named 'nope' (known: hb, down)\n"


def test_usage_errors_name_the_argument(capsys) -> None:
    for args, complaint in (
        (["--limit", "0"], "argument --limit: expected a whole number of at least 1, not '0'"),
        (["--risk-level", "extreme"], "argument --risk-level: unknown risk level 'extreme'"),
    ):
        with pytest.raises(SystemExit) as exit_:
            cli.main(["identities", "list", "--config", "x.toml", "--connector", "hb", *args])
        assert exit_.value.code == 2 and complaint in capsys.readouterr().err
