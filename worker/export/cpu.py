"""The export's CPU-bound steps (sorting, encoding, compressing), off the event loop.

They run on one thread of their own rather than the loop's default executor: the memory a
thread allocates stays in that thread's malloc arena once freed, so spreading a build's
chunks over several threads multiplies its footprint. One thread also keeps two exports
in one process from competing for the GIL in more than one place.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trawl-export")


async def on_cpu(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` on the export's thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor, functools.partial(fn, *args, **kwargs))


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None
    return trim


_trim = _malloc_trim()


def release_memory() -> None:
    """Hand the memory a finished step freed back to the system. glibc keeps freed memory
    in its arenas for reuse, and a build frees large amounts at once (a sorted chunk, a
    dataset file): without this the process stays at its high-water mark."""
    if _trim is not None:
        _trim(0)
