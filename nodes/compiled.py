"""What a node compiles from its spec, kept exactly as long as that spec object lives.

A node such as extract turns its spec into a plan once (regexes compiled, types resolved)
and reuses it on every page. The plan belongs to the spec *object*: it is found by the
object's identity and forgotten when the object is freed, so an identity reused by a later
spec can never find the earlier spec's plan. Specs are not hashable (their lists and dicts
are not), hence identity rather than value; node specs are weakly referenceable
(``weakref=True`` on their base in ``workflows/spec.py``) for this.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TypeVar

_K = TypeVar("_K")
_V = TypeVar("_V")


def per_spec(compile: Callable[[_K], _V]) -> Callable[[_K], _V]:
    """``compile``, run once per live spec object: the returned function gives what a spec
    compiled to, compiling it on first sight, and forgets it when the spec is freed."""
    # id(spec) -> (a weak reference to that spec, what it compiled to). The reference's
    # callback drops the entry when the spec is freed, before its id can be reused; the
    # lookup checks the reference as well, so a stale entry can never answer.
    entries: dict[int, tuple[weakref.ref[_K], _V]] = {}
    get = entries.get

    def compiled(spec: _K) -> _V:
        hit = get(id(spec))
        if hit is not None and hit[0]() is spec:
            return hit[1]
        key = id(spec)
        value = compile(spec)

        def forget(ref: weakref.ref[_K]) -> None:
            entry = entries.get(key)
            if entry is not None and entry[0] is ref:
                entries.pop(key, None)

        entries[key] = (weakref.ref(spec, forget), value)
        return value

    return compiled
