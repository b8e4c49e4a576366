"""The orchestrator's periodic jobs (the scheduler, the backlog metrics, retention) share
how they run: one named asyncio task started with the app and cancelled on its way down,
and rounds whose failure is logged and waited out, never the end of the loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from backends.errors import RetryableError

T = TypeVar("T")


class Background:
    """The task of one job: ``start`` runs ``run()`` (once; again after ``stop``), ``stop``
    cancels it and waits for its end."""

    def __init__(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.name = name
        self._run = run
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def guarded(log: logging.Logger, what: str, round_: Callable[[], Awaitable[T]]) -> T | None:
    """``round_()``'s result, or None when it failed: a backend that is away for now
    (RetryableError) as a warning, anything else with its traceback."""
    try:
        return await round_()
    except RetryableError as error:
        log.warning("%s failed: %s", what, error)
    except Exception:
        log.exception("%s failed", what)
    return None
