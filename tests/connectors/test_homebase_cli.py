"""`idops sim homebase` as a real process, driven by `idops check` / `idops identities list`, and the
connector's memory staying flat while it streams from that process."""

from __future__ import annotations

import contextlib
import gc
import json
import socket
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import sims
from support.sims import SimProcess

from bot import cli
from connectors.homebase import HomeBaseConnector
from standins import homebase

ROOT = Path(__file__).resolve().parents[2]
IDENTITIES = 20_000


@contextlib.contextmanager
def sim_process(*args: str, key: str | None = None) -> Iterator[SimProcess]:
    with sims.sim_process(
        "homebase", *args, env={"HOMEBASE_API_KEY": key} if key else {}, drop=("HOMEBASE_",)
    ) as sim:
        sim.url = sim.env()["HOMEBASE_BASE_URL"]
        yield sim


@pytest.fixture(scope="module")
def running() -> Iterator[tuple[SimProcess, str]]:
    """One simulator process for the module, started without HOMEBASE_API_KEY: (process, printed key)."""
    with sim_process("--identities", str(IDENTITIES), "--no-rate-limit") as sim:
        key = sim.env()["HOMEBASE_API_KEY"]
        yield sim, key


def write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "idops.toml"
    path.write_text(
        '[slack]\nalert_channel = "C0ALERTS"\napproval_channel = "C0APPROVALS"\n\n'
        '[[connectors]]\nname = "hb"\nkind = "homebase"\napi_key_env = "HOMEBASE_API_KEY"\n'
        f'base_url = "{url}"\n',
        encoding="utf-8",
    )
    return path


def test_check_and_identities_list_against_the_simulator_process(
    running, tmp_path, monkeypatch, capsys
) -> None:
    sim, key = running
    config = write_config(tmp_path, sim.url)
    monkeypatch.setenv("HOMEBASE_API_KEY", key)

    assert cli.main(["check", "--config", str(config)]) == 0
    checked = capsys.readouterr().out
    assert checked.startswith("ok") and f"hb (homebase): API key accepted; {IDENTITIES} identities" in checked

    assert (
        cli.main(
            ["identities", "list", "--config", str(config), "--connector", "hb", "--json", "--limit", "250"]
        )
        == 0
    )
    listed = json.loads(capsys.readouterr().out)
    expected = homebase.HomeBaseState(identities=IDENTITIES)
    assert [i["id"] for i in listed] == [expected.identity_id(n) for n in range(250)]
    assert listed[7]["email"] == expected.person(7).email and listed[7]["connector"] == "hb"

    args = [
        "identities",
        "list",
        "--config",
        str(config),
        "--connector",
        "hb",
        "--json",
        "--risk-level",
        "critical",
    ]
    assert cli.main(args) == 0
    critical = json.loads(capsys.readouterr().out)
    assert len(critical) > 100 and {i["risk_level"] for i in critical} == {"critical"}


def test_check_with_a_wrong_key_fails_without_echoing_it(running, tmp_path, monkeypatch, capsys) -> None:
    sim, _ = running
    config = write_config(tmp_path, sim.url)
    monkeypatch.setenv("HOMEBASE_API_KEY", "hld_test_wrongwrongwrong")
    assert cli.main(["check", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL hb (homebase): HomeBase: the API key was refused")
    assert "request id req_" in out and "wrongwrongwrong" not in out


async def test_streaming_keeps_client_memory_flat(running) -> None:
    """Peak memory while streaming 20,000 identities stays near that of streaming 1,000."""
    sim, key = running

    async def peak(count: int) -> tuple[int, int]:
        async with HomeBaseConnector("hb", api_key=key, base_url=sim.url) as hb:
            gc.collect()
            tracemalloc.start()
            seen = 0
            async for _ in hb.list_identities():
                seen += 1
                if seen == count:
                    break
            _, top = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        return seen, top

    small_count, small_peak = await peak(1_000)
    large_count, large_peak = await peak(IDENTITIES)
    assert (small_count, large_count) == (1_000, IDENTITIES)
    # 20,000 identities held at once would take tens of MB; a page at a time stays within a couple
    assert large_peak < 2 * small_peak + 500_000
    assert large_peak < 5_000_000


def test_key_from_the_environment_is_not_printed_and_ctrl_c_stops_cleanly() -> None:
    with sim_process("--identities", "10", key="hld_test_fromtheenvironment") as sim:
        sim.read_until(r"tenants ten_\w+, ten_\w+")
        assert sim.env() == {"HOMEBASE_BASE_URL": sim.url}
        rest = sim.stop()
        assert sim.process.returncode == 0
    output = "".join(sim.lines) + rest
    assert "fromtheenvironment" not in output and "HOMEBASE_API_KEY" not in output
    assert "HomeBase simulator stopped" in rest


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--webhook-url", "http://127.0.0.1:1/hook"], "--webhook-url needs HOMEBASE_WEBHOOK_SECRET"),
        (["--identities", "-5"], "--identities must be >= 0"),
    ],
)
def test_bad_simulator_arguments_are_named(args, message, monkeypatch, capsys) -> None:
    monkeypatch.delenv("HOMEBASE_WEBHOOK_SECRET", raising=False)
    assert cli.main(["sim", "homebase", *args]) == 2
    assert message in capsys.readouterr().err


def test_a_taken_port_is_a_clear_error(monkeypatch, capsys) -> None:
    monkeypatch.setenv("HOMEBASE_API_KEY", "hld_test_portcheck")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["sim", "homebase", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err
