"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl in a temp dir.

:class:`PostgresServer` makes a cluster in a fresh temp directory, starts it on a
free port of 127.0.0.1 (trust authentication, no socket directory shared with a
system server) and stops it by its postmaster PID. PostgreSQL refuses to run as
root, so when the tests do, the cluster belongs to and runs as an unprivileged
user (``postgres`` when Debian's package made it, else ``nobody``) via
``runuser``. Each test gets its own database (:meth:`PostgresServer.new_database`),
so one server serves a whole session. :meth:`PostgresServer.halt` and
:meth:`~PostgresServer.resume` (or :meth:`~PostgresServer.restart`, both at once)
take the server down and bring it back on the same port with its data, for
tests of a database outage. The binaries come from PATH or Debian's
/usr/lib/postgresql/<version>/bin (``make postgresql-tools`` installs them).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pytest

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
_names = count(1)


def pg_bin(tool: str) -> str | None:
    """The path of PostgreSQL's ``tool`` (initdb, pg_ctl, postgres), or None."""
    found = shutil.which(tool)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"))
    return str(versions[-1]) if versions else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> str | None:
    """The user the server runs as: None for ourselves, else an unprivileged one."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root and there is no postgres or nobody user")


class PostgresServer:
    """One PostgreSQL cluster in a temp dir, listening on 127.0.0.1:``port``."""

    def __init__(self) -> None:
        initdb, postgres = pg_bin("initdb"), pg_bin("postgres")
        if initdb is None or postgres is None:
            raise FileNotFoundError("initdb is missing: run `make postgresql-tools`")
        self._initdb, self._postgres = initdb, postgres
        self.user = _run_as()
        # Not under pytest's tmp_path: its root-only parents would lock the server out.
        self.root = Path(tempfile.mkdtemp(prefix="bootsync-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def _cmd(self, *argv: str) -> list[str]:
        return ["runuser", "-u", self.user, "--", *argv] if self.user else list(argv)

    def start(self) -> None:
        """initdb and start the server; returns once it accepts connections."""
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            self._cmd(
                self._initdb,
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "bootsync",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale",
                "C",
            ),
            check=True,
            capture_output=True,
        )
        self._launch()

    def _launch(self) -> None:
        """Start the postmaster on the data directory; return once it accepts connections."""
        log = (self.root / "server.log").open("ab")
        self._process = subprocess.Popen(
            self._cmd(
                self._postgres,
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.root}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.root / 'server.log').read_text()}")
            pidfile = self.data / "postmaster.pid"
            try:
                lines = pidfile.read_text().splitlines()
            except OSError:
                lines = []
            if len(lines) >= 8 and lines[7].strip() == "ready":
                self.pid = int(lines[0])
                return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError("postgres did not start in time")

    def halt(self) -> None:
        """Stop the server (fast shutdown: clients are cut off), keeping its data directory;
        return once it is down. :meth:`resume` starts it again."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGINT)
        if self._process is not None:
            self._process.wait(STOP_TIMEOUT)
        self.pid = None

    def resume(self) -> None:
        """Start the halted server again on the same port, same data; return once it is ready."""
        self._launch()

    def restart(self) -> None:
        """Stop the server keeping its data, and start it again on the same port."""
        self.halt()
        self.resume()

    def stop(self) -> None:
        """Stop the server by its PID (fast shutdown) and remove its directory."""
        pid = self.pid or (self._process.pid if self._process else None)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
        if self._process is not None:
            try:
                self._process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """The ``postgresql://`` URL of ``database`` on this server."""
        return f"postgresql://bootsync@127.0.0.1:{self.port}/{database}"

    async def new_database(self) -> str:
        """Create an empty database; its URL."""
        import asyncpg  # type: ignore[import-untyped]  # noqa: PLC0415 - an extra

        name = f"test_{os.getpid()}_{next(_names)}"
        conn = await asyncpg.connect(self.url())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; fails naming the make target without initdb."""
    if pg_bin("initdb") is None:
        pytest.fail("initdb is missing: run `make postgresql-tools`")
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
