"""Postgres 15 and PgBouncer 1.18 for integration tests, started from local binaries.

``ensure_postgres()`` starts the local cluster if nothing answers on 127.0.0.1:5432.
``ensure_pgbouncer()`` starts the shared PgBouncer on 127.0.0.1:6432 if nothing answers
there, and leaves it running (like Postgres) for the next session. Tests that kill PgBouncer
start a private one on a free port (``PgBouncer.start()``, the ``private_pgbouncer``
fixture), so they never disturb other sessions using the shared one.

Each test session works in its own database, ``trawl_test_<random>``, created and migrated
directly on Postgres, used through PgBouncer, and dropped at the end (``postgres_database``;
``session_database()`` gives the same database to code that cannot take fixtures, such as
the contract suite's adapter factories).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from backends.postgres.migrate import migrate
from tests.services import free_port, port_open, wait_for_port

HOST = "127.0.0.1"
POSTGRES_PORT = 5432
PGBOUNCER_PORT = 6432
USER = "postgres"
PGBOUNCER_BINARY = "/usr/sbin/pgbouncer"
START_DEADLINE_S = 30.0

T = TypeVar("T")


def postgres_dsn(database: str, *, port: int = POSTGRES_PORT) -> str:
    """A trust-auth DSN on the loopback address (Postgres itself, or PgBouncer's port)."""
    return f"postgresql://{USER}@{HOST}:{port}/{database}"


def ensure_postgres() -> tuple[str, int]:
    """Where Postgres listens, starting the local cluster first if it is down."""
    if not port_open(HOST, POSTGRES_PORT):
        versions = sorted(os.listdir("/etc/postgresql"))
        if not versions:
            raise RuntimeError("no Postgres cluster under /etc/postgresql; install postgresql")
        command = ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"]
        subprocess.run(command, check=True, capture_output=True, timeout=START_DEADLINE_S)
        wait_for_port(HOST, POSTGRES_PORT, START_DEADLINE_S, "Postgres")
    return HOST, POSTGRES_PORT


# -- PgBouncer

_INI = """\
[databases]
* = host={server_host} port={server_port}

[pgbouncer]
listen_addr = {host}
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/userlist.txt
admin_users = {user}
pool_mode = transaction
max_client_conn = 2000
default_pool_size = {pool_size}
server_reset_query =
server_login_retry = 1
ignore_startup_parameters = extra_float_digits,options
pidfile = {workdir}/pgbouncer.pid
logfile = {workdir}/pgbouncer.log
"""


@dataclass
class PgBouncer:
    """One PgBouncer process in transaction pooling mode in front of the local Postgres.

    It refuses to run as root, so as root it runs as the ``postgres`` user, from a work
    directory that user owns. ``pool_size`` is the server connections per database.
    """

    port: int
    workdir: Path
    pool_size: int = 20

    @classmethod
    def create(cls, port: int, *, pool_size: int = 20, workdir: Path | None = None) -> PgBouncer:
        """Write the configuration; nothing is started yet."""
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix=f"trawl-pgbouncer-{port}-"))
        workdir.mkdir(parents=True, exist_ok=True)
        bouncer = cls(port=port, workdir=workdir, pool_size=pool_size)
        (workdir / "pgbouncer.ini").write_text(
            _INI.format(
                server_host=HOST,
                server_port=POSTGRES_PORT,
                host=HOST,
                port=port,
                workdir=workdir,
                user=USER,
                pool_size=pool_size,
            )
        )
        (workdir / "userlist.txt").write_text(f'"{USER}" ""\n')
        if os.geteuid() == 0:
            for path in (workdir, *workdir.iterdir()):
                shutil.chown(path, USER, USER)
        return bouncer

    @property
    def pidfile(self) -> Path:
        return self.workdir / "pgbouncer.pid"

    def start(self) -> None:
        """Start it (daemonized) and wait until it accepts connections."""
        if port_open(HOST, self.port):
            raise RuntimeError(f"cannot start PgBouncer: {HOST}:{self.port} is taken")
        self.pidfile.unlink(missing_ok=True)  # stale after a kill -9
        command = [PGBOUNCER_BINARY, "-d", str(self.workdir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            command = ["runuser", "-u", USER, "--", *command]
        done = subprocess.run(
            command, check=False, capture_output=True, text=True, timeout=START_DEADLINE_S
        )
        if done.returncode != 0:
            raise RuntimeError(f"PgBouncer failed to start: {done.stderr.strip()}{self._log()}")
        try:
            wait_for_port(HOST, self.port, START_DEADLINE_S, "PgBouncer")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}{self._log()}") from None

    def stop(self, *, kill: bool = False) -> None:
        """Stop it (SIGTERM: immediate shutdown; SIGKILL with ``kill``: a crash) and wait
        until its port is closed."""
        pid = self._pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + START_DEADLINE_S
        while port_open(HOST, self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"PgBouncer (pid {pid}) still listens on port {self.port}")
            time.sleep(0.02)
        self.pidfile.unlink(missing_ok=True)  # a killed one leaves it behind

    def restart(self, *, kill: bool = True) -> None:
        """Crash (or stop) and start again on the same port."""
        self.stop(kill=kill)
        self.start()

    def dsn(self, database: str) -> str:
        return postgres_dsn(database, port=self.port)

    def _pid(self) -> int | None:
        """Its process id, if it runs: never a stale pid some other process now has."""
        try:
            pid = int(self.pidfile.read_text().strip())
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except (FileNotFoundError, ValueError):
            return None
        return pid if comm == "pgbouncer" else None

    def _log(self) -> str:
        try:
            tail = (self.workdir / "pgbouncer.log").read_text().splitlines()[-5:]
        except FileNotFoundError:
            return ""
        return "\n  pgbouncer.log: " + "\n  ".join(tail)


@dataclass
class _Shared:
    """What this process started or created, for helpers that cannot take fixtures."""

    bouncer: PgBouncer | None = None
    database: TestDatabase | None = None


_shared = _Shared()


def ensure_pgbouncer() -> tuple[str, int]:
    """Where the shared PgBouncer listens, starting it first if nothing answers there."""
    ensure_postgres()
    if not port_open(HOST, PGBOUNCER_PORT):
        workdir = Path(tempfile.gettempdir()) / f"trawl-pgbouncer-{PGBOUNCER_PORT}"
        _shared.bouncer = PgBouncer.create(PGBOUNCER_PORT, workdir=workdir)
        _shared.bouncer.start()
    return HOST, PGBOUNCER_PORT


def restart_pgbouncer(bouncer: PgBouncer | None = None, *, kill: bool = True) -> PgBouncer:
    """Crash and restart ``bouncer``, by default the shared one if this process started it
    (one started by someone else is not ours to kill)."""
    target = bouncer or _shared.bouncer
    if target is None:
        raise RuntimeError(
            "the shared PgBouncer was not started by this process; pass a private PgBouncer"
        )
    target.restart(kill=kill)
    return target


# -- throwaway databases


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a loop of its own: here if this thread runs no loop,
    else in a thread, so it works from plain code, atexit and inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(postgres_dsn("postgres"), statement_cache_size=0)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@dataclass(frozen=True)
class TestDatabase:
    """A migrated database of its own: ``dsn`` goes through the shared PgBouncer,
    ``direct_dsn`` straight to Postgres."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    name: str
    dsn: str
    direct_dsn: str


def create_database(*, migrated: bool = True) -> TestDatabase:
    """A new empty database (migrated unless told otherwise), served through PgBouncer."""
    ensure_pgbouncer()
    name = f"trawl_test_{secrets.token_hex(6)}"
    run_blocking(_admin(f'CREATE DATABASE "{name}"'))
    database = TestDatabase(name, postgres_dsn(name, port=PGBOUNCER_PORT), postgres_dsn(name))
    if migrated:
        run_blocking(migrate(database.direct_dsn))
    return database


def drop_database(database: TestDatabase) -> None:
    """Drop it, cutting PgBouncer's server connections to it."""
    run_blocking(_admin(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)'))


def session_database() -> TestDatabase:
    """This process's test database, created on first use and dropped at exit (or by the
    ``postgres_database`` fixture at the end of the session)."""
    if _shared.database is None:
        _shared.database = create_database()
        atexit.register(_drop_session_database)
    return _shared.database


def _drop_session_database() -> None:
    if _shared.database is not None:
        database, _shared.database = _shared.database, None
        drop_database(database)


async def empty_tables(dsn: str) -> None:
    """Delete every row but ``schema_migrations``'s, so a test starts from nothing. DELETE,
    not TRUNCATE: on tables this small it takes a millisecond, TRUNCATE a few hundred."""
    conn = await asyncpg.connect(dsn, statement_cache_size=0)
    try:
        tables = await conn.fetch(
            "SELECT quote_ident(tablename) AS name FROM pg_tables"
            " WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
        )
        # One simple-protocol query: the statements run in one implicit transaction.
        await conn.execute("".join(f"DELETE FROM {t['name']};" for t in tables))
    finally:
        await conn.close()


# -- fixtures


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[TestDatabase]:
    """The session's migrated database (through PgBouncer), dropped at the end."""
    yield session_database()
    _drop_session_database()


@pytest.fixture(scope="session")
def pgbouncer_dsn(postgres_database: TestDatabase) -> str:
    """DSN of the session's database through the shared PgBouncer."""
    return postgres_database.dsn


@pytest.fixture
def private_pgbouncer() -> Iterator[PgBouncer]:
    """A PgBouncer of the test's own on a free port, for tests that crash it."""
    ensure_postgres()
    bouncer = PgBouncer.create(free_port(HOST))
    bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.stop()
        shutil.rmtree(bouncer.workdir, ignore_errors=True)
