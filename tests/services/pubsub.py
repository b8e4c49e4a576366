"""The Pub/Sub emulator for integration tests.

``ensure_pubsub()`` starts Google's official emulator (the Java one of the Cloud SDK) when
nothing answers on 127.0.0.1:8085, as a detached daemon that later sessions reuse, like the
shared Redis and Postgres: test sessions run side by side here, and one that stopped "its"
emulator at the end would pull it from under the others (and a JVM start costs seconds).
``python -m tests.services.pubsub stop`` stops the one these helpers started.

The emulator keeps everything in memory and accepts any project id, so every test gets names
of its own (``unique_names``, the ``pubsub_names`` fixture) and deletes its topics and
subscriptions afterwards, which keeps the long-lived emulator from growing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services import env_restored, free_port, port_open

HOST = "127.0.0.1"
PORT = 8085
EMULATOR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator")
# A JVM start: usually 2-5 s, more on a loaded machine.
START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 10.0
ENV_VAR = "PUBSUB_EMULATOR_HOST"

_lock = threading.Lock()


def ensure_pubsub() -> str:
    """``host:port`` of the emulator, started first if nothing answers there."""
    with _lock:
        if not port_open(HOST, PORT):
            if not os.access(EMULATOR, os.X_OK):
                raise RuntimeError(
                    f"the Pub/Sub emulator is not installed at {EMULATOR} and nothing listens "
                    f"on {HOST}:{PORT}: install the Cloud SDK's pubsub-emulator component, or "
                    f"start an emulator on {HOST}:{PORT} yourself"
                )
            start_detached(
                "pubsub-emulator",
                [str(EMULATOR), f"--host={HOST}", f"--port={PORT}"],
                PORT,
                START_DEADLINE_S,
            )
    return f"{HOST}:{PORT}"


# Runs in a throwaway interpreter that starts the daemon and exits at once, so the daemon is
# nobody's child here (no Popen to reap, or to warn when it is collected still running).
_LAUNCHER = """\
import subprocess, sys
with open(sys.argv[1], "ab") as log:
    daemon = subprocess.Popen(
        sys.argv[3:], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
with open(sys.argv[2], "w") as pidfile:
    pidfile.write(str(daemon.pid))
"""


def _paths(name: str, port: int) -> tuple[Path, Path, Path]:
    base = Path(tempfile.gettempdir()) / f"trawl-{name}-{port}"
    return Path(f"{base}.log"), Path(f"{base}.pid"), Path(f"{base}.lock")


def start_detached(name: str, command: Sequence[str], port: int, deadline_s: float) -> None:
    """Start ``command`` as a daemon in a session of its own, outliving this process, and
    wait until it listens on ``port``. A lock file keeps two test sessions from starting
    one each; the second finds the first's listening."""
    log, pidfile, lockfile = _paths(name, port)
    with open(lockfile, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if port_open(HOST, port):
            return
        subprocess.run(
            [sys.executable, "-c", _LAUNCHER, str(log), str(pidfile), *command],
            check=True,
            timeout=30,
            cwd=Path(__file__).resolve().parents[2],
        )
        pid = int(pidfile.read_text())
        deadline = time.monotonic() + deadline_s
        while not port_open(HOST, port, timeout_s=0.2):
            if not _alive(pid):
                pidfile.unlink(missing_ok=True)
                raise RuntimeError(f"{name} exited before listening on {HOST}:{port}; see {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{name} did not listen on {HOST}:{port} within {deadline_s:g} s; see {log}"
                )
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_detached(name: str, port: int) -> bool:
    """Stop the daemon ``start_detached`` started for ``name`` and ``port``, if it runs."""
    _log, pidfile, _lock_path = _paths(name, port)
    try:
        pid = int(pidfile.read_text())
    except (FileNotFoundError, ValueError):
        return False
    pidfile.unlink(missing_ok=True)
    try:
        os.killpg(pid, signal.SIGTERM)  # its session: the script and what it runs
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + STOP_DEADLINE_S
    while port_open(HOST, port) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


class PubSubEmulator:
    """An emulator of one test's own on a fixed free port, to stop and start again.

    A restart loses every topic, subscription and message (the emulator keeps nothing on
    disk), as a crashed emulator or a replaced Pub/Sub endpoint would. It runs in a session
    of its own, so stopping it also stops the JVM the launcher script starts.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port if port is not None else free_port(HOST)
        self.log_path = Path(tempfile.gettempdir()) / f"trawl-pubsub-private-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> PubSubEmulator:
        """Start (again) on the same port, empty; wait until it accepts connections."""
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError(f"the Pub/Sub emulator on {self.address} is already running")
        if not os.access(EMULATOR, os.X_OK):
            raise RuntimeError(f"the Pub/Sub emulator is not installed at {EMULATOR}")
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [str(EMULATOR), f"--host={HOST}", f"--port={self.port}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_DEADLINE_S
        while not port_open(HOST, self.port, timeout_s=0.2):
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"the Pub/Sub emulator on {self.address} exited at start; see {self.log_path}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Pub/Sub emulator did not listen on {self.address} within "
                    f"{START_DEADLINE_S:g} s; see {self.log_path}"
                )
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Kill it (and its JVM) and wait until its port is closed."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_DEADLINE_S)
        deadline = time.monotonic() + STOP_DEADLINE_S
        while port_open(HOST, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self) -> None:
        """Crash and come back on the same port with nothing in it."""
        self.stop()
        self.start()

    def __enter__(self) -> PubSubEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)


def use_pubsub_emulator() -> str:
    """Start the emulator if needed and point Google's clients in this process at it."""
    address = ensure_pubsub()
    os.environ[ENV_VAR] = address
    return address


@dataclass(frozen=True)
class PubSubNames:
    """Names no other test uses: a project of its own, so nothing can collide."""

    project: str
    topic: str
    subscription: str
    dead_letter_topic: str


def unique_names() -> PubSubNames:
    tag = uuid.uuid4().hex[:12]
    return PubSubNames(
        project=f"trawl-test-{tag}",
        topic=f"tasks-{tag}",
        subscription=f"tasks-{tag}-worker",
        dead_letter_topic=f"tasks-{tag}-dead",
    )


def delete_project(project: str) -> None:
    """Delete every subscription and topic of ``project`` on the emulator."""
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    try:
        for subscription in subscriber.list_subscriptions(project=f"projects/{project}"):
            with contextlib.suppress(Exception):
                subscriber.delete_subscription(subscription=subscription.name, timeout=10)
        for topic in publisher.list_topics(project=f"projects/{project}"):
            with contextlib.suppress(Exception):
                publisher.delete_topic(topic=topic.name, timeout=10)
    finally:
        subscriber.close()
        publisher.transport.close()


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[str]:
    """The emulator's address, with PUBSUB_EMULATOR_HOST set for the session."""
    with env_restored(ENV_VAR):
        yield use_pubsub_emulator()


@pytest.fixture
def pubsub_names(pubsub_emulator: str) -> Iterator[PubSubNames]:
    """Project, topic, subscription and dead-letter topic names for this test alone; what
    the test created under them is deleted afterwards."""
    names = unique_names()
    try:
        yield names
    finally:
        delete_project(names.project)


if __name__ == "__main__":
    if sys.argv[1:] == ["start"]:
        print(ensure_pubsub())
    elif sys.argv[1:] == ["stop"]:
        print("stopped" if stop_detached("pubsub-emulator", PORT) else "not started by us")
    else:
        sys.exit("usage: python -m tests.services.pubsub start|stop")
