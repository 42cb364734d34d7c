"""A throwaway PostgreSQL cluster for the tests: Debian's server binaries, started once per session on a
free loopback port, and a fresh database per test, owned by a role that is not a superuser.

- The binaries are found where Debian puts them (`/usr/lib/postgresql/<major>/bin`, newest major first;
  `IDOPS_PG_BINDIR` names another directory). `make test` installs the `postgresql` package where it is
  missing (`scripts/system-deps postgresql`); without it the fixture fails naming that command.
- initdb refuses to run as root: when the tests run as root, the cluster runs as the `postgres` system
  user (created by the Debian package) through `runuser`, and its directory is owned by that user;
  otherwise it runs as the current user (tests/store/test_pg_cluster.py checks both, the second as
  `nobody` when the tests run as root).
- Everything lives in one temporary directory (data, the Unix socket, the server log); the server
  listens on 127.0.0.1 only, on a free port (another one when that port is taken before it binds).
  Connections over TCP need a password (scram-sha-256); the superuser reaches the server over the
  socket (trust) to create roles and databases.
- Durability is off (fsync, synchronous_commit, full_page_writes): a test cluster never outlives a crash.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import psycopg
from psycopg import sql

SUPERUSER = "postgres"
OWNER_ROLE = "idops_owner"  # owns every test database; not a superuser
OWNER_PASSWORD = "idops-test-password"
PORT_TRIES = 5  # a port found free can be taken by another process before the server binds it
INSTALL = "sh scripts/system-deps postgresql   (or: sudo apt-get install -y postgresql)"


def find_bindir() -> Path:
    """The directory holding initdb and pg_ctl: `IDOPS_PG_BINDIR`, else Debian's newest major."""
    named = os.environ.get("IDOPS_PG_BINDIR")
    candidates = [Path(named)] if named else []
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    candidates += sorted((Path(p).parent for p in found), key=lambda p: int(p.parent.name), reverse=True)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise RuntimeError(f"PostgreSQL server binaries (initdb, pg_ctl) not found; install them: {INSTALL}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class PgDatabase:
    """One test database on the cluster: its owner role (not a superuser) connects over loopback TCP."""

    host: str
    port: int
    name: str
    user: str
    password: str

    @property
    def url(self) -> str:
        """SQLAlchemy URL with the password (psycopg 3 driver)."""
        return f"postgresql+psycopg://{self.user}:{self.password}@{self.host}:{self.port}/{self.name}"

    @property
    def config_url(self) -> str:
        """The form `[store] url` takes in idops.toml: no password (that comes from `password_env`)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.name}"

    def connect(self) -> psycopg.Connection:
        """A plain psycopg connection as the owner (autocommit), for checks beside the code under test."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            dbname=self.name,
            user=self.user,
            password=self.password,
            autocommit=True,
        )


class PostgresCluster:
    """initdb + pg_ctl in a temporary directory; `database()` makes a fresh database per test."""

    def __init__(self, bindir: Optional[Path] = None) -> None:
        self.bindir = bindir or find_bindir()
        self.port = free_port()
        self.host = "127.0.0.1"
        self.root = Path(tempfile.mkdtemp(prefix="idops-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "run"
        self.log = self.root / "server.log"
        self._runas: list[str] = []
        self._names = itertools.count(1)
        if os.geteuid() == 0:  # initdb refuses root: run the server as the Debian package's system user
            try:
                account = pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise RuntimeError(
                    f"running as root needs the '{SUPERUSER}' system user to own the test cluster; {INSTALL}"
                ) from None
            self.root.chmod(0o700)
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._runas = ["runuser", "-u", SUPERUSER, "--"]
            self._owner = (account.pw_uid, account.pw_gid)
        else:
            self._owner = (os.getuid(), os.getgid())

    def _run(self, *argv: str) -> None:
        done = subprocess.run([*self._runas, *argv], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{Path(argv[0]).name} failed ({done.returncode}): {done.stderr.strip()}\n{tail}"
            )

    def start(self) -> None:
        self.sockets.mkdir()
        os.chown(self.sockets, *self._owner)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        for attempt in range(1, PORT_TRIES + 1):
            logged = self.log.stat().st_size if self.log.exists() else 0
            try:
                self._serve()
                break
            except RuntimeError:
                # the free port was taken by someone else before the server bound it: pick another
                said = self.log.read_bytes()[logged:] if self.log.exists() else b""
                if attempt == PORT_TRIES or b"could not bind" not in said:
                    raise
                self.port = free_port()
        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                    sql.Identifier(OWNER_ROLE), sql.Literal(OWNER_PASSWORD)
                )
            )

    def _serve(self) -> None:
        """pg_ctl start on `self.port`, waiting (60 s at most) until the server takes connections."""
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.sockets}",
                f"-c listen_addresses={self.host}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
                "-c shared_buffers=32MB",
            ]
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def admin(self) -> psycopg.Connection:
        """The superuser over the Unix socket (trust), autocommit: roles and databases."""
        return psycopg.connect(
            host=str(self.sockets), port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
        )

    @contextlib.contextmanager
    def database(self) -> Iterator[PgDatabase]:
        """A fresh database owned by the non-superuser role, dropped (connections and all) afterwards."""
        name = f"idops_test_{os.getpid()}_{next(self._names)}"
        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(OWNER_ROLE)
                )
            )
        try:
            yield PgDatabase(self.host, self.port, name, OWNER_ROLE, OWNER_PASSWORD)
        finally:
            with self.admin() as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def running_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
