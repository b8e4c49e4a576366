"""In-process adapters for embedded mode (``trawl run``). Product code: they pass the same
contract tests as the distributed adapters."""

from backends.memory.queue import MemoryTaskQueue
from backends.memory.ratelimit import MemoryRateLimiter
from backends.memory.seen import MemorySeenSet
from backends.memory.state import MemoryStateStore

__all__ = ["MemoryRateLimiter", "MemorySeenSet", "MemoryStateStore", "MemoryTaskQueue"]
