"""Tenant-supplied work that can be slow, run away from the caller's event loop.

Parsing and validating a workflow (YAML, a thousand regexes, CSS selectors) is CPU work
sized by a stranger. On the event loop it would stall every tenant's requests; in a thread
it would hold the GIL and could not be stopped. So it runs in a small pool of helper
processes (``python -m workflows.isolated``), one job at a time each, under a memory
limit; a job past its deadline has its process killed and replaced, and only that job
fails. Requests go down as pickles (from this process, trusted); answers come back as JSON
and are decoded into the expected type, so a helper never hands this process code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any, TypeVar

import msgspec

T = TypeVar("T")
_HEADER = struct.Struct("!I")
_READY = b"R"
START_TIMEOUT_S = 60.0
MAX_ANSWER_BYTES = 64 << 20


class OffloadFailed(Exception):
    """The job did not finish: out of time, out of memory, or its process died."""


class _Answer(msgspec.Struct, frozen=True):
    kind: str  # ok | invalid | failed
    value: Any


class _Helper:
    """One helper process and its pipes. Blocking calls, made from a worker thread: nothing
    here belongs to an event loop, so any loop (or none) may use the pool."""

    def __init__(self, memory_bytes: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workflows.isolated", str(memory_bytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        # A new helper says it is ready once its imports are done: starting one does not
        # eat into the deadline of the job it is started for.
        stdout = self.process.stdout
        assert stdout is not None
        try:
            ready = self._read(stdout, 1, time.monotonic() + START_TIMEOUT_S)
        except (TimeoutError, EOFError):
            self.kill()
            raise OffloadFailed("a helper process did not start") from None
        if ready != _READY:
            self.kill()
            raise OffloadFailed("a helper process did not start")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def call(self, request: bytes, timeout_s: float) -> bytes:
        """Send one request; its answer, or ``TimeoutError`` past ``timeout_s``."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        deadline = time.monotonic() + timeout_s
        stdin.write(_HEADER.pack(len(request)) + request)
        stdin.flush()
        (size,) = _HEADER.unpack(self._read(stdout, _HEADER.size, deadline))
        if size > MAX_ANSWER_BYTES:
            raise OffloadFailed(f"its answer is {size} bytes long")
        return self._read(stdout, size, deadline)

    @staticmethod
    def _read(stream: IO[bytes], size: int, deadline: float) -> bytes:
        chunks: list[bytes] = []
        wanted = size
        fd = stream.fileno()
        while wanted > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
            chunk = os.read(fd, min(wanted, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            wanted -= len(chunk)
        return b"".join(chunks)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class Offload:
    """A pool of ``max_jobs`` helper processes, each started when first needed."""

    def __init__(
        self, *, max_jobs: int = 2, timeout_s: float = 10.0, memory_bytes: int = 1 << 30
    ) -> None:
        self.timeout_s = timeout_s
        self._memory_bytes = memory_bytes
        self._lock = threading.Lock()
        self._idle: list[_Helper | None] = [None] * max_jobs
        self._free = threading.BoundedSemaphore(max_jobs)
        self._helpers: set[_Helper] = set()

    async def run(self, result_type: type[T], fn: Callable[..., Any], *args: Any) -> T:
        """``fn(*args)`` in a helper, its result decoded as ``result_type``. A
        ``WorkflowInvalid`` it raised is raised here; anything else that stopped it is
        ``OffloadFailed`` saying what."""
        from workflows.errors import Problem, WorkflowInvalid

        request = pickle.dumps((fn, args))
        raw = await asyncio.to_thread(self._call, request)
        answer = msgspec.json.decode(raw, type=_Answer)
        if answer.kind == "ok":
            return msgspec.convert(answer.value, result_type)
        if answer.kind == "invalid":
            raise WorkflowInvalid(msgspec.convert(answer.value, list[Problem]))
        raise OffloadFailed(str(answer.value))

    def _call(self, request: bytes) -> bytes:
        with self._free:
            with self._lock:
                helper = self._idle.pop()
            try:
                if helper is None or not helper.alive:
                    helper = _Helper(self._memory_bytes)
                    with self._lock:
                        self._helpers.add(helper)
                return helper.call(request, self.timeout_s)
            except (TimeoutError, EOFError, OSError) as exc:
                assert helper is not None
                helper.kill()  # mid-job or dead: never reused
                with self._lock:
                    self._helpers.discard(helper)
                helper = None
                if isinstance(exc, TimeoutError):
                    raise OffloadFailed(f"took longer than {self.timeout_s:g} s") from None
                raise OffloadFailed("its process died (out of memory?)") from None
            finally:
                with self._lock:
                    self._idle.append(helper)

    async def close(self) -> None:
        """Stop every helper (jobs still running fail)."""
        with self._lock:
            helpers = list(self._helpers)
            self._helpers.clear()
        for helper in helpers:
            helper.kill()


def _serve(memory_bytes: int) -> None:
    """The helper's loop: one request in, one answer out, until stdin closes."""
    import resource

    from workflows.errors import WorkflowInvalid

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    import workflows.admit  # noqa: F401  (the jobs' imports, paid once at start)

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(_READY)
    stdout.flush()
    while True:
        header = stdin.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        (size,) = _HEADER.unpack(header)
        fn, args = pickle.loads(stdin.read(size))
        try:
            answer = _Answer("ok", fn(*args))
        except WorkflowInvalid as exc:
            answer = _Answer("invalid", exc.problems)
        except MemoryError:
            answer = _Answer("failed", "ran out of memory")
        except Exception as exc:
            answer = _Answer("failed", f"{type(exc).__name__}: {exc}"[:300])
        data = msgspec.json.encode(answer)
        stdout.write(_HEADER.pack(len(data)) + data)
        stdout.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
