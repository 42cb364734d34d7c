"""The fresh-machine path of `make test`: `scripts/system-deps` finds the Debian packages the tests need
(Chromium; PostgreSQL's server when asked), installs what is missing with apt-get when run as root, and
otherwise stops at once with the exact `apt-get install` line, installing nothing.

Nothing is uninstalled or installed here: the script looks under `IDOPS_SYSTEM_ROOT` (an empty
directory is a machine without the packages), and `id` and `apt-get` are stand-ins put first on PATH,
the `apt-get` one recording how it was called."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "system-deps"


def _executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


class Machine:
    """A pretend machine: a system root the script looks under, and `id`/`apt-get` stand-ins."""

    def __init__(self, base: Path, *, uid: int, apt_status: int = 0) -> None:
        self.root = base / "root"
        self.root.mkdir()
        self.bin = base / "bin"
        self.calls = base / "apt-get.calls"
        _executable(self.bin / "id", f'#!/bin/sh\n[ "$1" = -u ] && echo {uid}\n')
        _executable(
            self.bin / "apt-get",
            f'#!/bin/sh\necho "$* DEBIAN_FRONTEND=${{DEBIAN_FRONTEND:-}}" >> {self.calls}\n'
            f"exit {apt_status}\n",
        )

    def install(self, package: str) -> None:
        """Put the file the script looks for in place, as the Debian package would."""
        path = {
            "chromium": "usr/bin/chromium",
            "postgresql": "usr/lib/postgresql/15/bin/initdb",
        }[package]
        _executable(self.root / path, "#!/bin/sh\n")

    def run(self, *packages: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": f"{self.bin}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "IDOPS_SYSTEM_ROOT": str(self.root),
        }
        return subprocess.run(
            ["sh", str(SCRIPT), *packages], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    def apt_calls(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


@pytest.mark.parametrize(
    ("packages", "line"),
    [
        ((), "  sudo apt-get install -y chromium"),
        (("postgresql",), "  sudo apt-get install -y chromium postgresql"),
    ],
)
def test_not_root_stops_with_the_apt_get_line_and_installs_nothing(tmp_path, packages, line):
    machine = Machine(tmp_path, uid=1000)
    done = machine.run(*packages)
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["make test needs Debian packages that are missing. Run:", line]
    assert done.stdout == ""
    assert machine.apt_calls() == []


def test_not_root_names_only_what_is_missing(tmp_path):
    machine = Machine(tmp_path, uid=1000)
    machine.install("chromium")
    done = machine.run("postgresql")
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == "  sudo apt-get install -y postgresql"
    assert machine.apt_calls() == []


def test_root_installs_what_is_missing_with_apt_get(tmp_path):
    machine = Machine(tmp_path, uid=0)
    machine.install("chromium")
    done = machine.run("postgresql")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "make test: installing Debian packages: postgresql"
    assert machine.apt_calls() == [
        "update -q DEBIAN_FRONTEND=",
        "install -y -q postgresql DEBIAN_FRONTEND=noninteractive",
    ]


def test_root_when_apt_get_fails_fails(tmp_path):
    machine = Machine(tmp_path, uid=0, apt_status=100)
    done = machine.run("postgresql")
    assert done.returncode == 1
    assert (
        done.stderr.splitlines()[-1]
        == "make test: apt-get could not install: chromium postgresql (its messages are above)"
    )
    assert machine.apt_calls() == ["update -q DEBIAN_FRONTEND="]  # stopped at the first failure


@pytest.mark.parametrize("uid", [0, 1000])
def test_nothing_missing_does_nothing(tmp_path, uid):
    machine = Machine(tmp_path, uid=uid)
    machine.install("chromium")
    machine.install("postgresql")
    done = machine.run("postgresql")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert machine.apt_calls() == []


def test_postgresql_is_looked_for_only_when_asked(tmp_path):
    machine = Machine(tmp_path, uid=1000)
    machine.install("chromium")
    assert machine.run().returncode == 0
    assert machine.run("postgresql").returncode == 1


@pytest.mark.parametrize("target", ["test", "unit"])
def test_make_checks_the_packages_before_building_anything(target):
    # `make -n` prints the commands it would run, in order, running none of them; run under `make
    # test` itself, the outer make's variables would make this one print "Entering directory"
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    commands = [line for line in done.stdout.splitlines() if line and not line.startswith("#")]
    assert commands[0] == "sh scripts/system-deps postgresql", commands[:3]  # the store's tests need it
