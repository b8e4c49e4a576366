"""The long-running worker: the pipeline, graceful shutdown, health and readiness.

On SIGTERM (Cloud Run gives a grace period, 10 s by default) the worker stops taking tasks,
hands back the ones it received but did not start, lets the ones in flight finish and
flushes the sink, all within ``grace_s``; whatever is still running then is cancelled and
comes back from the queue after its ack deadline, so nothing is lost either way.

``/healthz`` answers 200 while the pipeline runs (503 once it has died, so the platform
restarts the process); ``/readyz`` runs the backend checks with a short timeout each and
answers 503 naming what is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from aiohttp import web

from worker.pipeline import Pipeline

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[object]]


class WorkerService:
    def __init__(
        self,
        pipeline: Pipeline,
        *,
        grace_s: float = 8.0,
        checks: Mapping[str, Check] | None = None,
        check_timeout_s: float = 2.0,
    ) -> None:
        self._pipeline = pipeline
        self._grace_s = grace_s
        self._checks = dict(checks or {})
        self._check_timeout_s = check_timeout_s
        self._task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop``; then drain within the grace period."""
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
            log.warning(
                "grace period over: abandoning tasks in flight (they will be redelivered)",
                extra={"in_flight": self._pipeline.in_flight},
            )
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- health

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def _healthz(self, _request: web.Request) -> web.Response:
        if self.alive:
            return web.json_response({"status": "ok", "in_flight": self._pipeline.in_flight})
        return web.json_response({"status": "down", "reason": "pipeline stopped"}, status=503)

    async def _readyz(self, _request: web.Request) -> web.Response:
        down = await run_checks(self._checks, self._check_timeout_s)
        if down or not self.alive:
            if not self.alive:
                down["pipeline"] = "not running"
            return web.json_response({"status": "unavailable", "down": down}, status=503)
        return web.json_response({"status": "ready", "checked": sorted(self._checks)})


async def run_checks(checks: Mapping[str, Check], timeout_s: float) -> dict[str, str]:
    """Run every check at once; the failed ones by name with why."""

    async def one(check: Check) -> str | None:
        try:
            await asyncio.wait_for(check(), timeout_s)
        except TimeoutError:
            return f"no answer within {timeout_s:g} s"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        return None

    results = await asyncio.gather(*(one(c) for c in checks.values()))
    return {name: why for name, why in zip(checks, results, strict=True) if why is not None}


@contextlib.asynccontextmanager
async def serve_health(service: WorkerService, host: str, port: int) -> AsyncIterator[str]:
    """Serve ``/healthz`` and ``/readyz`` while the block runs; yields the base URL."""
    runner = web.AppRunner(service.app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
