"""The long-running worker: readiness gate, the pipeline, graceful shutdown, health.

Before pulling a task the worker checks every backend it needs (the bucket is there and
writable, the subscription exists, the schema is at the packaged migration, Redis answers).
While one is not, it pulls nothing, logs one warning per backoff step and answers 503 on
``/readyz`` naming what is down (``/healthz`` stays 200: it is working on it); past the
outage budget it gives up with NotReady, and the process exits non-zero.

On SIGTERM (Cloud Run gives a grace period, 10 s by default) the worker stops taking tasks,
hands back the ones it received but did not start, lets the ones in flight finish and
flushes the sink, all within ``grace_s``; whatever is still running then is cancelled and
comes back from the queue after its ack deadline, so nothing is lost either way, but the
drain was not clean and ``run`` says so (DrainIncomplete).

``/healthz`` answers 200 while the pipeline runs (503 once it has died); ``/readyz`` runs
the backend checks with a short timeout each, adds the backends a stage is waiting out,
and answers 503 naming what is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from aiohttp import web

from worker.outage import DEFAULT_OUTAGE_BUDGET_S, describe, public_reason
from worker.pipeline import Pipeline

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[object]]

FIRST_READY_DELAY_S = 1.0
MAX_READY_DELAY_S = 30.0


class NotReady(Exception):
    """A backend the worker needs stayed unavailable for longer than the outage budget."""


class DrainIncomplete(Exception):
    """The grace period ran out before the tasks in flight were finished and flushed."""


class WorkerService:
    def __init__(
        self,
        pipeline: Pipeline,
        *,
        grace_s: float = 8.0,
        checks: Mapping[str, Check] | None = None,
        check_timeout_s: float = 2.0,
        outage_budget_s: float = DEFAULT_OUTAGE_BUDGET_S,
        first_ready_delay_s: float = FIRST_READY_DELAY_S,
    ) -> None:
        self._pipeline = pipeline
        self._grace_s = grace_s
        self._checks = dict(checks or {})
        self._check_timeout_s = check_timeout_s
        self._outage_budget_s = outage_budget_s
        self._first_ready_delay_s = first_ready_delay_s
        self._task: asyncio.Task[None] | None = None
        self._starting = True
        self._waiting_for: dict[str, str] = {}

    @property
    def alive(self) -> bool:
        if self._starting:
            return True  # checking its backends, and saying so on /readyz
        return self._task is not None and not self._task.done()

    async def run(self, stop: asyncio.Event) -> None:
        """Wait for the backends, run until ``stop``, then drain within the grace period.
        Raises NotReady, StageFailed (a stage died) or DrainIncomplete."""
        try:
            if not await self._wait_until_ready(stop):
                return  # stopped before it took any task
        finally:
            self._starting = False
        pipeline_stop = asyncio.Event()
        self._task = asyncio.create_task(self._pipeline.run(pipeline_stop), name="pipeline")
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([self._task, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if self._task.done():
            self._task.result()  # the pipeline died: raise why
            return
        log.info("stopping: draining tasks in flight", extra={"grace_s": self._grace_s})
        pipeline_stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self._grace_s)
        except TimeoutError:
            in_flight = self._pipeline.in_flight
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            raise DrainIncomplete(
                f"grace period of {self._grace_s:g} s over with {in_flight} tasks in flight; "
                "they will be redelivered"
            ) from None

    async def _wait_until_ready(self, stop: asyncio.Event) -> bool:
        """Check the backends until all answer (True) or ``stop`` is set (False)."""
        if not self._checks:
            return True
        loop = asyncio.get_running_loop()
        started = loop.time()
        delay_s = self._first_ready_delay_s
        while not stop.is_set():
            down = await run_checks(self._checks, self._check_timeout_s)
            self._waiting_for = down
            if not down:
                if loop.time() > started + delay_s:
                    log.info("every backend answers; pulling tasks")
                return True
            waited = loop.time() - started
            if waited + delay_s > self._outage_budget_s:
                raise NotReady(
                    f"not ready after {waited:.0f} s (TRAWL_BACKEND_OUTAGE_S="
                    f"{self._outage_budget_s:g}): {summary(down)}"
                )
            log.warning(
                "not pulling tasks yet: %s; checking again in %.0f s", summary(down), delay_s
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay_s)
            delay_s = min(delay_s * 2, MAX_READY_DELAY_S)
        return False

    # -- health

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def _healthz(self, _request: web.Request) -> web.Response:
        if self.alive:
            body: dict[str, object] = {"status": "ok", "in_flight": self._pipeline.in_flight}
            if self._starting and self._waiting_for:
                body["waiting_for"] = dict(self._waiting_for)
            return web.json_response(body)
        return web.json_response({"status": "down", "reason": "pipeline stopped"}, status=503)

    async def _readyz(self, _request: web.Request) -> web.Response:
        down = await run_checks(self._checks, self._check_timeout_s)
        for backend, why in self._pipeline.outages.current.items():
            down.setdefault(backend, why)
        if not self.alive:
            down["pipeline"] = "not running"
        elif self._starting and not down:
            down["pipeline"] = "starting"
        if down:
            return web.json_response({"status": "unavailable", "down": down}, status=503)
        return web.json_response({"status": "ready", "checked": sorted(self._checks)})


async def run_checks(checks: Mapping[str, Check], timeout_s: float) -> dict[str, str]:
    """Run every check at once; the failed ones by name with why."""

    async def one(name: str, check: Check) -> str | None:
        try:
            await asyncio.wait_for(check(), timeout_s)
        except TimeoutError:
            return f"no answer within {timeout_s:g} s"
        except Exception as exc:
            log.info("readiness check %s failed: %s", name, describe(exc)[:500])
            return public_reason(exc)
        return None

    results = await asyncio.gather(*(one(n, c) for n, c in checks.items()))
    return {name: why for name, why in zip(checks, results, strict=True) if why is not None}


def summary(down: Mapping[str, str]) -> str:
    """``gcs: why; redis: why`` in one line."""
    return "; ".join(f"{name}: {why}" for name, why in sorted(down.items()))


@contextlib.asynccontextmanager
async def serve_health(
    service: WorkerService, host: str, port: int, *, sock: socket.socket | None = None
) -> AsyncIterator[str]:
    """Serve ``/healthz`` and ``/readyz`` while the block runs; yields the base URL. With
    ``sock`` (bound already, see trawl.listen) it serves there."""
    runner = web.AppRunner(service.app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site: web.BaseSite = (
            web.SockSite(runner, sock) if sock is not None else web.TCPSite(runner, host, port)
        )
        await site.start()
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
