"""When to try a failed page again: exponential backoff with jitter, Retry-After honoured."""

from __future__ import annotations

import random

MAX_BACKOFF_S = 300.0


def backoff_delay(
    attempt: int,
    backoff_s: float,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1).

    A random factor of 0.5 to 1.5 on an exponential base keeps many workers from retrying
    in lockstep; a server's Retry-After is a floor, because coming back earlier only earns
    another 429.
    """
    base = backoff_s * (2 ** max(attempt - 1, 0))
    jitter = (rng or random).uniform(0.5, 1.5)
    delay = min(base * jitter, MAX_BACKOFF_S)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, MAX_BACKOFF_S))
    return float(delay)
