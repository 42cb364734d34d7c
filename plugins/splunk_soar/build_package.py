"""Build the SOAR app package: stage the app with a copy of the repo's connectors/ and run the SDK's
`soarapps package build` on the stage, so the repo never holds a second copy of the core.

The SDK downloads every dependency wheel on each build (~50 at once, 10 s timeout each). Here its
download goes through a local cache (build/wheels/, checked against uv.lock's hashes by the SDK) with
bounded concurrency and retries: only the first build needs PyPI, and a dropped connection is retried.
The SDK picks a wheel only when it is tagged for the exact runtime (cp39, cp313); stable-ABI wheels built
for an older CPython (cryptography's `cp38-abi3`, `cp311-abi3`, which the JWT auth modes need) are taken
too, as pip would (`stable_abi`). `--manifest FILE` writes only the manifest, with the same rule.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# The stage's folder name is the import root `soarapps` uses while reading the app (idops_soar.src.app).
STAGE = HERE / "build" / "idops_soar"
WHEEL_CACHE = HERE / "build" / "wheels"
APP_FILES = ("pyproject.toml", "uv.lock", "logo.svg", "logo_dark.svg")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "vendor")
DOWNLOADS_AT_ONCE = 6
ATTEMPTS = 4


def stage() -> Path:
    """A fresh copy of the app project with connectors/ under src/vendor/."""
    if STAGE.exists():
        shutil.rmtree(STAGE)
    STAGE.mkdir(parents=True)
    for name in APP_FILES:
        shutil.copy2(HERE / name, STAGE / name)
    shutil.copytree(HERE / "src", STAGE / "src", ignore=SKIP)
    shutil.copytree(REPO / "connectors", STAGE / "src" / "vendor" / "connectors", ignore=SKIP)
    return STAGE


def cached(download: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap the SDK's `UvWheel.fetch`: serve a cached wheel whose hash matches, else download (a few at
    a time, retried) and keep it."""
    gate: Optional[asyncio.Semaphore] = None

    async def fetch(wheel: Any) -> bytes:
        nonlocal gate
        path = WHEEL_CACHE / wheel.url.rsplit("/", 1)[-1]
        if path.exists():
            data = path.read_bytes()
            try:
                wheel.validate_hash(data)
                return data
            except ValueError:
                path.unlink()
        gate = gate or asyncio.Semaphore(DOWNLOADS_AT_ONCE)
        async with gate:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    data = await download(wheel)  # validates the hash
                    break
                except Exception as exc:  # httpx's errors, and a hash mismatch from a cut download
                    if attempt == ATTEMPTS:
                        raise
                    print(f"build_package: {path.name}: {type(exc).__name__}, retrying", file=sys.stderr)
                    await asyncio.sleep(attempt)
        WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".part").write_bytes(data)
        path.with_suffix(".part").replace(path)
        return data

    return fetch


def stable_abi(find: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap the SDK's `UvPackage._find_wheel`: where it finds no wheel tagged for the exact Python
    (cp39, cp313), take a stable-ABI wheel built for an older CPython (cryptography ships `cp38-abi3`
    and `cp311-abi3`), which that Python loads too (PEP 384)."""

    def find_wheel(package: Any, abi: list[str], python: list[str], platform: list[str]) -> Any:
        try:
            return find(package, abi, python, platform)
        except FileNotFoundError:
            minor = int(abi[0][len("cp3") :])  # "cp39" -> 9, "cp313" -> 13
            return find(package, ["abi3"], [f"cp3{m}" for m in range(minor, 1, -1)], platform)

    return find_wheel


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=HERE / "dist" / "idops_soar.tgz")
    parser.add_argument(
        "--manifest", type=Path, help="only write the app's manifest here (`soarapps manifests create`)"
    )
    args = parser.parse_args(argv)
    output = args.output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial")

    import typer
    from soar_sdk.cli.cli import app
    from soar_sdk.meta.dependencies import UvPackage, UvWheel

    UvWheel.fetch = cached(UvWheel.fetch)  # type: ignore[method-assign]
    UvPackage._find_wheel = stable_abi(UvPackage._find_wheel)  # type: ignore[method-assign]
    if args.manifest is not None:
        typer.main.get_command(app)(
            ["manifests", "create", str(args.manifest.resolve()), str(HERE)], standalone_mode=False
        )
        return 0
    try:
        typer.main.get_command(app)(
            ["package", "build", str(stage()), "-o", str(partial)], standalone_mode=False
        )
    except Exception as exc:
        partial.unlink(missing_ok=True)
        print(f"build_package: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    partial.replace(output)  # only a complete build replaces the previous package
    return 0


if __name__ == "__main__":
    sys.exit(main())
