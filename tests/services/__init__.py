"""The services integration tests run against, started from local binaries when not running.

One module per service (``postgres``, ``redis``, ``pubsub``, ``gcs``), each with an
``ensure_<service>()`` that returns where the service listens, starting it first if nothing
answers there, and pytest fixtures that hand every test its own namespace (database, key
prefix, project id, bucket) so tests never collide. ``python -m tests.services up`` starts
them all for a developer shell.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, deadline_s: float, what: str) -> None:
    """Block until ``host:port`` accepts connections; a clear error naming ``what`` if not."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start listening on {host}:{port} within {deadline_s:g} s")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def env_restored(name: str) -> Iterator[None]:
    """Put environment variable ``name`` back as it was (set or not) when the block ends."""
    previous = os.environ.get(name)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous
