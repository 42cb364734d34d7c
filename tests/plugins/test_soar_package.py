"""The SOAR app as SOAR receives it: `soarapps manifests create` lists the actions, and the package built
by `soarapps package build` (make soar) carries the connector core, no simulators, and runs an action
from its unpacked code on Python 3.9 and 3.13 with only its own wheels (nothing of the repo)."""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support.sims import HomeBaseSim
from support.soar import PACKAGE, ROOT, RUNTIMES, SOAR_DIR, SOAR_PY, require, run_process

import connectors
from standins import homebase, sailpoint, serving

ACTIONS = {
    "test connectivity": "test",
    "on poll": "ingest",
    "list identities": "investigate",
    "get identity": "investigate",
    "lookup identity": "investigate",
    "force password reset": "contain",
    "revoke sessions": "contain",
    "disable account": "contain",
    "confirm compromised": "correct",
    "dismiss risk": "correct",
    "request slack approval": "generic",
    "get approval status": "investigate",
}
ANSI = re.compile(r"\x1b\[[0-9;]*m")
pytestmark = pytest.mark.homebase(identities=20)


@pytest.fixture
async def sailpoint_url() -> AsyncIterator[str]:
    # 520 identities at the default 250 a page: the first page's count, then a window of two
    async with serving(sailpoint.create_app(identities=520, rate_limit=False)) as url:
        yield url


def check_manifest(manifest: dict[str, Any]) -> None:
    actions = {a["action"]: a for a in manifest["actions"]}
    assert {name: a["type"] for name, a in actions.items()} == ACTIONS
    config = manifest["configuration"]
    for secret in ("api_key", "client_secret", "idops_api_token", "service_account_json"):
        assert config[secret]["data_type"] == "password", secret
    # the asset's connector fields are settings of some kind (build_from_form drops any other unseen),
    # and every kind's required settings can be filled in
    fields = set(config) - {
        "connector_kind",
        "connector_name",
        "idops_url",
        "idops_api_token",
        "idops_requested_by",
    }
    kinds = connectors.kinds()
    taken = set().union(*(kind.settings for kind in kinds.values()))
    assert fields <= taken, f"no kind takes {fields - taken}"
    required = set().union(*(kind.required_settings for kind in kinds.values()))
    assert required <= fields, f"no asset field for {required - fields}"
    assert set(config["connector_kind"]["value_list"]) == set(kinds)
    disable = actions["disable account"]
    assert disable["parameters"]["reason"]["required"] is True
    assert disable["read_only"] is False and actions["get identity"]["read_only"] is True
    paths = {o["data_path"]: o for o in actions["get identity"]["output"]}
    assert paths["action_result.data.*.email"]["contains"] == ["email"]
    assert paths["action_result.data.*.last_login_ip"]["contains"] == ["ip"]
    approval = {o["data_path"] for o in actions["request slack approval"]["output"]}
    assert {"action_result.data.*.id", "action_result.data.*.status"} <= approval
    assert manifest["python_version"] == "3.9,3.13"


async def test_manifests_create_lists_every_action(tmp_path: Path) -> None:
    require(SOAR_PY, "soar-venv")
    target = tmp_path / "manifest.json"
    # `soarapps manifests create` through build_package.py, which takes stable-ABI wheels (cryptography)
    code, out, err = await run_process(
        str(SOAR_PY), str(SOAR_DIR / "build_package.py"), "--manifest", str(target), cwd=tmp_path
    )
    assert code == 0, out + err
    check_manifest(json.loads(target.read_text()))


def test_package_carries_the_core_and_no_simulators() -> None:
    require(PACKAGE, "soar")
    with tarfile.open(PACKAGE) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("idops/manifest.json"))  # type: ignore[arg-type]
        vendored = {
            name.removeprefix("idops/src/vendor/connectors/"): tar.extractfile(name).read()  # type: ignore[union-attr]
            for name in names
            if name.startswith("idops/src/vendor/connectors/") and name.endswith(".py")
        }
    core = {p.name: p.read_bytes() for p in (ROOT / "connectors").glob("*.py")}
    assert vendored == core, "the package's connectors/ differs from the repo's: run `make soar`"
    assert not [n for n in names if "simulator" in n or n.startswith("idops/bot") or "/bot/" in n]
    assert not [n for n in names if n.startswith("idops/tests") or "dev_platform" in n]
    check_manifest(manifest)
    wheels = {w["module"] for w in manifest["pip39_dependencies"]["wheel"]}
    assert {"aiohttp", "splunk-soar-sdk", "pydantic"} <= wheels
    assert {w["module"] for w in manifest["pip313_dependencies"]["wheel"]} == wheels
    for dependency in manifest["pip39_dependencies"]["wheel"] + manifest["pip313_dependencies"]["wheel"]:
        assert f"idops/{dependency['input_file']}" in names


@pytest.mark.parametrize("runtime", ["3.9", "3.13"])
async def test_unpacked_package_runs_an_action(
    tmp_path: Path, homebase_sim: HomeBaseSim, sailpoint_url: str, runtime: str
) -> None:
    # a venv with only the package's own wheels for that Python plus what SOAR provides (make soar)
    python = require(RUNTIMES / runtime / "bin" / "python", "soar")
    with tarfile.open(PACKAGE) as tar:
        tar.extractall(tmp_path, filter="data")
    app_dir = tmp_path / "idops"
    person = homebase.create_app(identities=20)[homebase.STATE].record(0)
    env = {"PATH": "/usr/bin:/bin"}

    code, out, err = await run_process(
        str(python),
        "-c",
        "import sys, src, connectors; print(connectors.__file__, sys.version_info[:2])",
        cwd=app_dir,
        env=env,
    )
    assert code == 0, err
    major, minor = runtime.split(".")
    expected = f"{app_dir / 'src' / 'vendor' / 'connectors' / '__init__.py'} ({major}, {minor})"
    assert out.strip() == expected

    async def action(name: str, asset: dict[str, Any], params: dict[str, Any]) -> str:
        """Run one action as `python -m src.app action` does; its output, once it succeeded."""
        (tmp_path / "asset.json").write_text(json.dumps(asset))
        (tmp_path / "params.json").write_text(json.dumps(params))
        code, out, err = await run_process(
            str(python),
            "-m",
            "src.app",
            "action",
            name,
            "-a",
            "../asset.json",
            "-p",
            "../params.json",
            cwd=app_dir,
            env=env,
        )
        text = ANSI.sub("", out)
        assert code == 0, text + err
        assert "Action success: True" in text
        return text

    hb_asset = {
        "connector_kind": "homebase",
        "base_url": homebase_sim.api_url,
        "api_key": homebase_sim.api_key,
    }
    text = await action("get_identity", hb_asset, {"identity_id": person["id"]})
    assert f'"id": "{person["id"]}"' in text and f'"email": "{person["email"]}"' in text

    # SailPoint's listing (tokens, concurrent pages) on the same interpreter
    sp_asset = {"connector_kind": "sailpoint", "base_url": sailpoint_url}
    sp_asset.update(client_id="sim-client", client_secret="sim-secret")
    text = await action("list_identities", sp_asset, {"limit": 1000})
    listed = sailpoint.create_app(identities=520)[sailpoint.STATE]
    assert text.count('"connector": "sailpoint"') == 520
    assert f'"id": "{listed.identity_id(519)}"' in text
