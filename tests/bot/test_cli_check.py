"""`idops check` with many connectors that don't answer: checked concurrently (at most
`cli.CHECK_CONCURRENCY` at once), each cut at its own `timeout`, printed in config order."""

from __future__ import annotations

import selectors
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import cli


class Blackhole:
    """A loopback port that accepts connections and never answers; counts how many are open at once.

    One thread watches the listening socket and every connection with a selector, and in each wake
    counts the connections the client closed before it accepts new ones: a thread per connection could
    run late on a loaded machine and count a closed connection as still open."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.server.setblocking(False)
        self.port = self.server.getsockname()[1]
        self.open = 0
        self.peak = 0
        self.total = 0
        self.closed = threading.Event()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.server, selectors.EVENT_READ)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.closed.is_set():
            ready = [key.fileobj for key, _ in self.selector.select(timeout=0.1)]
            for conn in ready:
                if conn is not self.server:
                    assert isinstance(conn, socket.socket)
                    try:
                        data = conn.recv(65536)  # the request: read, answer nothing
                    except OSError:
                        data = b""
                    if not data:  # the client gave up
                        self.selector.unregister(conn)
                        conn.close()
                        self.open -= 1
            if self.server in ready:
                while True:
                    try:
                        conn, _ = self.server.accept()
                    except OSError:  # none left to accept now
                        break
                    conn.setblocking(False)
                    self.selector.register(conn, selectors.EVENT_READ)
                    self.open += 1
                    self.total += 1
                    self.peak = max(self.peak, self.open)

    def close(self) -> None:
        self.closed.set()
        self.thread.join()
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.selector.close()


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    yield hole
    hole.close()


def test_a_hundred_silent_connectors_are_checked_concurrently_each_within_its_timeout(
    tmp_path: Path, blackhole: Blackhole, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HB_KEY", "hld_test_checkcheck")
    tables = []
    for n in range(100):
        env = "NOT_SET_ANYWHERE" if n == 42 else "HB_KEY"  # one fails at once, in the middle
        tables.append(
            f'[[connectors]]\nname = "hb{n:03}"\nkind = "homebase"\n'
            f'base_url = "http://127.0.0.1:{blackhole.port}/v1"\napi_key_env = "{env}"\ntimeout = 0.5\n'
        )
    path = tmp_path / "idops.toml"
    path.write_text('[slack]\nalert_channel = "C0A1"\napproval_channel = "C0A2"\n\n' + "\n".join(tables))
    assert cli.main(["check", "--config", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == [f"hb{n:03}" for n in range(100)]  # config order
    for n, line in enumerate(lines):
        if n == 42:
            assert line.endswith(": environment variable NOT_SET_ANYWHERE (from api_key_env) is not set")
        else:
            assert line.startswith(f"FAIL hb{n:03} (homebase): ") and "0.5 s" in line, line
    # concurrent, and bounded (the server notices a closed connection a moment late: a little slack)
    assert 1 < blackhole.peak <= cli.CHECK_CONCURRENCY + 8
    assert blackhole.total >= 99
