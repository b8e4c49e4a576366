"""Redis for integration tests: the shared server on 6379, and throwaway ones to kill.

``ensure_redis()`` starts ``redis-server`` (daemonized, no persistence, loopback only) when
nothing answers on 127.0.0.1:6379, and leaves it running for the next session. Tests share
it through a unique key prefix each (``redis_prefix``), whose keys are deleted afterwards.
A test that restarts or stops Redis gets its own server (``throwaway_redis``) on a free
port, started as a child process so it can be killed and started again on the same port.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from backends.redis.client import connect
from tests.services import free_port, port_open, wait_for_port

HOST = "127.0.0.1"
PORT = 6379
START_DEADLINE_S = 10.0
STOP_DEADLINE_S = 10.0


def redis_server_command(port: int, *extra: str) -> list[str]:
    """redis-server on loopback with no persistence: a restart loses everything."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not on PATH (apt-get install redis-server)")
    return [
        binary,
        *("--bind", HOST, "--port", str(port)),
        *("--save", "", "--appendonly", "no"),
        *extra,
    ]


def ensure_redis() -> str:
    """The URL of the shared test Redis, started first if nothing answers on its port."""
    if not port_open(HOST, PORT):
        subprocess.run(
            redis_server_command(PORT, "--daemonize", "yes"), check=True, capture_output=True
        )
        wait_for_port(HOST, PORT, START_DEADLINE_S, "redis-server")
    return f"redis://{HOST}:{PORT}/0"


def unique_prefix() -> str:
    """A key namespace nobody else uses."""
    return f"trawl-test:{uuid.uuid4().hex[:12]}:"


async def delete_prefix(client: Redis, prefix: str) -> int:
    """Delete every key under ``prefix`` (unique_prefix makes no glob characters)."""
    deleted = 0
    batch: list[bytes] = []
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += await client.unlink(*batch)
            batch.clear()
    if batch:
        deleted += await client.unlink(*batch)
    return deleted


class RedisServer:
    """A redis-server of one test's own, on a fixed free port across restarts."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port if port is not None else free_port(HOST)
        self._dir = tempfile.TemporaryDirectory(prefix="trawl-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> RedisServer:
        """Start (again) on the same port, empty, and wait until it accepts connections."""
        if self.running:
            raise RuntimeError(f"redis-server on {self.address} is already running")
        self._process = subprocess.Popen(
            redis_server_command(self.port, "--dir", self._dir.name),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_DEADLINE_S
        while not port_open(HOST, self.port, timeout_s=0.2):
            if self._process.poll() is not None:  # e.g. someone else took the port
                raise RuntimeError(f"redis-server on {self.address} exited at start")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not listen on {self.address} in time")
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: no goodbye to connected clients."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM, as an orderly shutdown."""
        self._signal(signal.SIGTERM)

    def restart(self) -> None:
        """Crash and come back on the same port with no data, as Redis without persistence."""
        self.kill()
        self.start()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing answers."""
        self._running_process().send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._running_process().send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)  # a paused server cannot stop
        self.stop()
        self._dir.cleanup()

    def _running_process(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            raise RuntimeError(f"redis-server on {self.address} is not running")
        return self._process

    def _signal(self, signum: int) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signum)
        self._process.wait(timeout=STOP_DEADLINE_S)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The shared test Redis (started if needed)."""
    return ensure_redis()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = connect(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def redis_prefix(redis_client: Redis) -> AsyncIterator[str]:
    """A key prefix for this test alone; its keys are deleted afterwards."""
    prefix = unique_prefix()
    try:
        yield prefix
    finally:
        await delete_prefix(redis_client, prefix)


@pytest.fixture
def throwaway_redis() -> Iterator[RedisServer]:
    """A redis-server for this test alone, to kill, pause and restart; stopped afterwards."""
    with RedisServer() as server:
        yield server
