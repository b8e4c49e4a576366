"""A distributed deployment for tests: `trawl worker` processes over the real services.

Each test gets its own namespace: a migrated database behind PgBouncer, a Redis key prefix
(or a Redis server of its own), a Pub/Sub project, a GCS bucket. Workers are real
``trawl worker`` processes configured only through the environment, as on Cloud Run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.postgres import PostgresStateStore
from backends.state import Execution, Progress
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[1]
TRAWL = [sys.executable, "-m", "trawl"]


@dataclass
class Cluster:
    """The environment every process of one deployment shares, and its workers."""

    env: dict[str, str]
    logs: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)  # each worker's /healthz and /readyz

    @property
    def database_url(self) -> str:
        return self.env["TRAWL_DATABASE_URL"]

    def start_worker(self, **overrides: str) -> subprocess.Popen[bytes]:
        """Start one ``trawl worker``; its output goes to a log file of its own."""
        n = len(self.workers)
        port = free_port()
        self.ports.append(port)
        env = {**self.env, "PORT": str(port), "TRAWL_WORKER_ID": f"w{n}", **overrides}
        log = (self.logs / f"worker-{n}.log").open("wb")
        process = subprocess.Popen(
            [*TRAWL, "worker"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.workers.append(process)
        return process

    def live_workers(self) -> list[subprocess.Popen[bytes]]:
        return [w for w in self.workers if w.poll() is None]

    def run(self, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        """A ``trawl`` command with this deployment's environment."""
        return subprocess.run(
            [*TRAWL, *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def submit(self, workflow: Path, *sets: str) -> str:
        args = ["submit", str(workflow)]
        for item in sets:
            args += ["--set", item]
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def export(self, execution_id: str, fmt: str = "jsonl") -> str:
        done = self.run("export", execution_id, "--format", fmt)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def records(self, execution_id: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.export(execution_id).splitlines() if line]

    def stop_workers(self, timeout_s: float = 30.0) -> list[int]:
        """SIGTERM every live worker and wait; their exit codes."""
        for worker in self.live_workers():
            worker.send_signal(signal.SIGTERM)
        codes = []
        for worker in self.workers:
            try:
                codes.append(worker.wait(timeout=timeout_s))
            except subprocess.TimeoutExpired:
                worker.kill()
                codes.append(worker.wait())
        return codes

    def worker_log(self, n: int) -> str:
        return (self.logs / f"worker-{n}.log").read_text(errors="replace")

    def all_logs(self) -> str:
        return "\n".join(
            f"--- worker {n}\n{self.worker_log(n)[-4000:]}" for n in range(len(self.workers))
        )


async def wait_for_execution(
    cluster: Cluster,
    execution_id: str,
    *,
    until: Callable[[Execution, Progress], bool],
    deadline_s: float,
    every_s: float = 0.25,
) -> tuple[Execution, Progress]:
    """Poll the StateStore until ``until`` holds; fail with the workers' logs at the
    deadline, or as soon as every worker has died."""
    state = await PostgresStateStore.from_url(cluster.database_url, max_size=2)
    try:
        deadline = time.monotonic() + deadline_s
        while True:
            execution = await state.get_execution(execution_id)
            assert execution is not None, f"no execution {execution_id}"
            progress = await state.progress(execution_id)
            if until(execution, progress):
                return execution, progress
            if not cluster.live_workers():
                raise AssertionError(f"every worker exited\n{cluster.all_logs()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"execution {execution_id} still {execution.status} after {deadline_s} s "
                    f"({progress.finished}/{progress.published} finished)\n{cluster.all_logs()}"
                )
            await asyncio.sleep(every_s)
    finally:
        await state.close()


def completed(execution: Execution, _progress: Progress) -> bool:
    return execution.status in ("completed", "failed", "cancelled")


@contextlib.contextmanager
def cluster_env(
    *,
    database_url: str,
    redis_url: str,
    pubsub_host: str,
    gcs_endpoint: str,
    logs: Path,
    **extra: str,
) -> Iterator[Cluster]:
    """A Cluster in fresh namespaces; workers still running at the end are killed."""
    tag = uuid.uuid4().hex[:10]
    env = {
        **os.environ,
        "TRAWL_DATABASE_URL": database_url,
        "TRAWL_REDIS_URL": redis_url,
        "TRAWL_REDIS_PREFIX": f"trawl-test-{tag}",
        "TRAWL_PUBSUB_PROJECT": f"trawl-test-{tag}",
        "TRAWL_PUBSUB_TOPIC": f"tasks-{tag}",
        "TRAWL_PUBSUB_SUBSCRIPTION": f"tasks-{tag}-workers",
        "TRAWL_PUBSUB_DEAD_LETTER_TOPIC": f"tasks-{tag}-dead",
        "TRAWL_PUBSUB_ACK_DEADLINE_S": "10",  # Pub/Sub's minimum: crashed work returns fast
        "PUBSUB_EMULATOR_HOST": pubsub_host,
        "STORAGE_EMULATOR_HOST": gcs_endpoint,
        "TRAWL_GCS_BUCKET": f"trawl-test-{tag}",
        "TRAWL_GCS_CREATE_BUCKET": "1",
        "TRAWL_ALLOW_PRIVATE_NETWORKS": "1",
        "TRAWL_WORKER_CONCURRENCY": "8",
        "TRAWL_SHUTDOWN_GRACE_S": "5",
        "TRAWL_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    logs.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(env=env, logs=logs)
    try:
        yield cluster
    finally:
        for worker in cluster.live_workers():
            worker.kill()
        for worker in cluster.workers:
            worker.wait()
