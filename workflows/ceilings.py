"""What a shared deployment lets any workflow ask for.

A workflow names its own timeouts, rates, page budget and body size; on a shared deployment
those are requests, not rights. The operator sets ``Ceilings`` (TRAWL_CEILING_* settings)
and the orchestrator refuses a workflow that asks for more, naming the path, the value and
the ceiling. ``trawl run`` on a user's own machine has no ceilings: the user's values hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from workflows import paths
from workflows.errors import Problem
from workflows.spec import ScriptNode, Workflow


class Ceilings(msgspec.Struct, frozen=True, kw_only=True):
    """The most any one workflow may ask for. A workflow with no page budget
    (``max_pages: 0``) runs with ``max_pages`` of the deployment."""

    max_body_bytes: int = 20 * 1024 * 1024
    max_fetch_timeout_s: float = 120.0
    max_script_timeout_s: float = 30.0
    max_requests_per_second: float = 100.0
    max_burst: int = 100
    max_concurrency_per_host: int = 32
    max_pages: int = 1_000_000
    max_depth: int = 50
    max_attempts: int = 10
    max_backoff_s: float = 300.0
    # The length of any one list or mapping in the document (start URLs, phases, nodes,
    # fields, transitions, patterns...).
    max_items: int = 1000


def exceeded(workflow: Workflow, ceilings: Ceilings) -> list[Problem]:
    """Every value of ``workflow`` above its ceiling, with its path."""
    problems = [
        Problem(path, _message(value, limit, setting))
        for path, value, limit, setting in _scalars(workflow, ceilings)
        if value > limit
    ]
    data = msgspec.to_builtins(workflow)
    problems += [
        Problem(
            path,
            f"has {size} items; this deployment allows at most {ceilings.max_items} "
            "(TRAWL_CEILING_MAX_ITEMS)",
        )
        for path, size in _collections(data, "")
        if size > ceilings.max_items
    ]
    return problems


def _message(value: float, limit: float, setting: str) -> str:
    return f"is {_number(value)}; this deployment allows at most {_number(limit)} ({setting})"


def _number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e18:
        return str(int(value))
    return f"{value:g}"


def _scalars(w: Workflow, c: Ceilings) -> Iterator[tuple[str, float, float, str]]:
    env = "TRAWL_CEILING_"
    yield "fetch.max_body_bytes", w.fetch.max_body_bytes, c.max_body_bytes, env + "MAX_BODY_BYTES"
    yield "fetch.timeout_s", w.fetch.timeout_s, c.max_fetch_timeout_s, env + "MAX_FETCH_TIMEOUT_S"
    rps = w.politeness.requests_per_second
    yield (
        "politeness.requests_per_second",
        rps,
        c.max_requests_per_second,
        (env + "MAX_REQUESTS_PER_SECOND"),
    )
    yield "politeness.burst", w.politeness.burst, c.max_burst, env + "MAX_BURST"
    yield (
        "politeness.max_concurrency_per_host",
        w.politeness.max_concurrency_per_host,
        (c.max_concurrency_per_host),
        env + "MAX_CONCURRENCY_PER_HOST",
    )
    yield "max_pages", w.max_pages, c.max_pages, env + "MAX_PAGES"
    yield "max_depth", w.max_depth, c.max_depth, env + "MAX_DEPTH"
    yield "retries.max_attempts", w.retries.max_attempts, c.max_attempts, env + "MAX_ATTEMPTS"
    yield "retries.backoff_s", w.retries.backoff_s, c.max_backoff_s, env + "MAX_BACKOFF_S"
    if w.login is not None:
        timeout = w.login.timeout_s
        yield "login.timeout_s", timeout, c.max_fetch_timeout_s, env + "MAX_FETCH_TIMEOUT_S"
    for i, phase in enumerate(w.phases):
        for j, node in enumerate(phase.nodes):
            if isinstance(node, ScriptNode):
                path = f"phases[{i}].nodes[{j}].timeout_s"
                yield path, node.timeout_s, c.max_script_timeout_s, env + "MAX_SCRIPT_TIMEOUT_S"


# Mappings whose keys the author chose (fields, headers, cookies, form fields).
_USER_KEYED = frozenset({"fields", "headers", "cookies", "form"})


def _collections(data: Any, path: str, user_keys: bool = False) -> Iterator[tuple[str, int]]:
    """(path, length) of every list in ``data`` and every mapping whose keys the author
    chose (``fields``); the other mappings have a fixed set of keys."""
    if isinstance(data, list):
        yield path, len(data)
        for i, item in enumerate(data):
            yield from _collections(item, paths.index(path, i))
    elif isinstance(data, dict):
        if user_keys:
            yield path, len(data)
        for key, value in data.items():
            yield from _collections(value, paths.key(path, str(key)), key in _USER_KEYED)
