"""The one dependency rule, checked on the source: stand-ins, plugins and bot use connectors; bot
never imports the stand-ins; connectors imports neither (aiohttp and the standard library only, plus
an optional crypto library imported only where its auth mode is configured). The installed wheel
carries no stand-in code."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"bot", "connectors", "standins", "plugins", "tests", "bench"}
# what each layer may import from the project
ALLOWED = {
    "connectors": {"connectors"},
    "bot": {"bot", "connectors"},
    "standins": {"standins", "bot", "connectors"},
    "plugins": {"connectors", "src", "plugins"},
}
CONNECTOR_THIRD_PARTY = {"aiohttp"}
# imported inside the function that needs them, only when that auth mode is configured
CONNECTOR_OPTIONAL = {"jwt", "cryptography"}
# imports inside functions that still hide a circle; issue 9 removes them (never add to this list)
KNOWN_LATE_IMPORTS: set[tuple[str, str]] = set()


def _modules(layer: str) -> list[Path]:
    return [
        p for p in sorted((ROOT / layer).rglob("*.py")) if ".venv" not in p.parts and "build" not in p.parts
    ]


def _imports(path: Path, layer: str) -> list[tuple[str, bool]]:
    """(top-level package imported, inside a function?) for every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[str, bool]] = []
    late = {
        id(n)
        for fn in ast.walk(tree)
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
        for n in ast.walk(fn)
        if isinstance(n, (ast.Import, ast.ImportFrom))
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], id(node) in late) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            # a relative import stays inside its own top-level package
            top = layer if node.level else (node.module or "").split(".")[0]
            found.append((top, id(node) in late))
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_import_only_downwards(layer: str) -> None:
    wrong = []
    for path in _modules(layer):
        for top, _ in _imports(path, layer):
            if top in PROJECT and top not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(ROOT)} imports {top}")
    assert wrong == []


def test_connectors_need_only_aiohttp_and_the_standard_library() -> None:
    wrong = []
    for path in _modules("connectors"):
        for top, late in _imports(path, "connectors"):
            if top == "connectors" or top == "__future__" or top in sys.stdlib_module_names:
                continue
            if top in CONNECTOR_THIRD_PARTY or (late and top in CONNECTOR_OPTIONAL):
                continue
            where = " at module level" if top in CONNECTOR_OPTIONAL else ""
            wrong.append(f"{path.relative_to(ROOT)} imports {top}{where}")
    assert wrong == []


@pytest.mark.parametrize("layer", ["bot", "connectors", "standins"])
def test_no_project_imports_hidden_in_functions(layer: str) -> None:
    late = {
        (str(path.relative_to(ROOT)), top)
        for path in _modules(layer)
        for top, inside in _imports(path, layer)
        if inside and top in PROJECT
    }
    assert late <= KNOWN_LATE_IMPORTS, sorted(late - KNOWN_LATE_IMPORTS)


def _module_graph(layer: str) -> dict[str, set[str]]:
    """Module -> the project modules it imports when it runs (imports under `if TYPE_CHECKING:` run no
    code, so they are left out)."""

    def name_of(path: Path) -> str:
        parts = path.relative_to(ROOT).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    modules = {name_of(path): path for path in _modules(layer)}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        tree = ast.parse(path.read_text(), str(path))
        typing_only = {
            id(n)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and ast.unparse(block.test).endswith("TYPE_CHECKING")
            for n in ast.walk(block)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level else ""
                target = ".".join(p for p in (base, node.module or "") if p)
                for alias in node.names:
                    # `from pkg import module` imports the module, `from module import name` the module
                    edges.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
        graph[name] = {
            e for e in edges if e in modules and e != name and not modules[e].name == "__init__.py"
        }
    return graph


@pytest.mark.parametrize("layer", ["bot", "connectors"])
def test_no_import_circles(layer: str) -> None:
    graph = _module_graph(layer)
    circles: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            circles.append([*path[path.index(module) :], module])
            return
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert circles == []


def test_listeners_import_no_app_and_no_other_listener() -> None:
    """Listeners parse, ack and hand off to services: they never reach up to the app or across."""
    graph = _module_graph("bot")
    listeners = {m for m in graph if m.startswith("bot.listeners.") or m == "bot.alerts.listeners"}
    wrong = {
        f"{module} imports {target}"
        for module in listeners
        for target in graph[module]
        if target in listeners or target in ("bot.app", "bot.server")
    }
    assert wrong == set()


def test_the_wheel_carries_no_stand_ins(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("idops-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.startswith("idops-")}
    assert tops == {"bot", "connectors"}
    assert "bot/cli.py" in names and "connectors/base.py" in names
    # the store's migrations travel with the code that opens the store
    assert {
        "bot/migrations/env.py",
        "bot/migrations/script.py.mako",
        "bot/migrations/versions/0001_baseline.py",
    } <= set(names)
    assert not [
        n for n in names if "standins" in n or "simulator" in n or n.endswith((".html", ".js", ".css"))
    ]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "idops = bot.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
