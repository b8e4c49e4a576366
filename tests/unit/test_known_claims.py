"""KnownClaims (backends/redis/claims.py): the claims a worker has seen, answered without
Redis; what they remember, what they forget, and that executions never share them."""

from __future__ import annotations

import pytest

from backends.errors import InvalidInputError
from backends.redis.claims import KnownClaims


def holder(claims: KnownClaims, execution_id: str, key: str) -> str | None:
    young, old = claims.owners(execution_id)
    return young.get(key, old.get(key))


def test_it_remembers_who_holds_each_key_per_execution() -> None:
    claims = KnownClaims(100)
    claims.remember("ex-1", [("a", "p1"), ("b", "p2")])
    claims.remember("ex-2", [("a", "p3")])

    assert holder(claims, "ex-1", "a") == "p1"
    assert holder(claims, "ex-1", "b") == "p2"
    assert holder(claims, "ex-2", "a") == "p3"  # executions are apart
    assert holder(claims, "ex-2", "b") is None
    assert holder(claims, "ex-3", "a") is None
    assert len(claims) == 3


def test_discarded_and_forgotten_keys_are_no_longer_known() -> None:
    claims = KnownClaims(100)
    claims.remember("ex-1", [("a", "p1"), ("b", "p1")])
    claims.remember("ex-2", [("a", "p1")])

    claims.drop("ex-1", ["a", "never-seen"])
    assert holder(claims, "ex-1", "a") is None and holder(claims, "ex-1", "b") == "p1"
    claims.forget("ex-2")
    assert holder(claims, "ex-2", "a") is None
    claims.drop("unknown", ["a"])
    claims.forget("unknown")
    assert len(claims) == 1


def test_it_is_bounded_and_forgets_the_oldest_first() -> None:
    claims = KnownClaims(10)  # two generations of five keys
    claims.remember("ex-1", [(f"k{i}", "p") for i in range(12)])

    assert len(claims) <= 10
    assert holder(claims, "ex-1", "k11") == "p"  # the newest are kept
    assert holder(claims, "ex-1", "k0") is None  # the oldest went first
    claims.remember("ex-2", [(f"k{i}", "p") for i in range(100)])
    assert len(claims) <= 10


def test_a_capacity_of_zero_remembers_nothing() -> None:
    claims = KnownClaims(0)
    claims.remember("ex-1", [("a", "p1")])
    assert holder(claims, "ex-1", "a") is None and len(claims) == 0
    with pytest.raises(InvalidInputError, match="capacity"):
        KnownClaims(-1)
