"""TRAWL_COUNTER_SHARDS: what it accepts, where each store's counts go, and that its ceiling
is the one the schema allows (tests/integration/test_counter_shards.py runs the counters)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backends.errors import InvalidInputError
from backends.postgres.counters import DEFAULT_COUNTER_SHARDS, MAX_COUNTER_SHARDS, CounterTarget
from trawl import settings as settings_module
from trawl.settings import Settings, load_settings

MIGRATION = (
    Path(__file__).resolve().parents[2]
    / "backends"
    / "postgres"
    / "migrations"
    / "0011_counter_shards.sql"
)


def test_the_default_and_the_ceiling_agree_everywhere() -> None:
    assert Settings().counter_shards == DEFAULT_COUNTER_SHARDS == 16
    assert settings_module.MAX_COUNTER_SHARDS == MAX_COUNTER_SHARDS
    checks = re.findall(r"shard >= 0 AND shard < (\d+)", MIGRATION.read_text())
    assert checks and {int(c) for c in checks} == {MAX_COUNTER_SHARDS}


@pytest.mark.parametrize("value", ["0", "-3", "65"])
def test_a_shard_count_out_of_range_is_refused_at_startup(value: str) -> None:
    with pytest.raises(
        ValueError, match=rf"TRAWL_COUNTER_SHARDS must be between 1 .* and 64, not {value}"
    ):
        load_settings({"TRAWL_COUNTER_SHARDS": value})


def test_a_shard_count_that_is_no_number_is_named() -> None:
    with pytest.raises(ValueError, match="TRAWL_COUNTER_SHARDS must be an integer, got 'many'"):
        load_settings({"TRAWL_COUNTER_SHARDS": "many"})


def test_one_shard_is_the_execution_row_and_more_pick_one_of_them() -> None:
    assert load_settings({"TRAWL_COUNTER_SHARDS": "1"}).counter_shards == 1
    assert CounterTarget.pick(1).single
    picked = {CounterTarget.pick(4).shard for _ in range(200)}
    assert picked == {0, 1, 2, 3}
    assert CounterTarget.pick(64, 63) == CounterTarget(63)


@pytest.mark.parametrize(
    ("shards", "shard", "message"),
    [
        (0, None, "counter shards must be between 1 and 64, not 0"),
        (65, None, "counter shards must be between 1 and 64, not 65"),
        (16, 16, "counter shard 16 is not among 0 .. 15"),
        (16, -1, "counter shard -1 is not among 0 .. 15"),
    ],
)
def test_a_store_refuses_a_shard_it_could_not_write(
    shards: int, shard: int | None, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        CounterTarget.pick(shards, shard)


def test_each_target_writes_its_own_rows() -> None:
    """The shard is in the SQL text, checked to be an int; the one-row target updates the
    execution's row."""
    assert "task_counter_shards" in CounterTarget(7).bump(("finished",))
    assert "SELECT $1, 7, d.finished" in CounterTarget(7).bump(("finished",))
    assert CounterTarget(None).bump(("finished",)).startswith("UPDATE task_counters AS c")
    assert "task_count_shards" in CounterTarget(3).tally("dimensions")
    assert "INSERT INTO task_counts AS c" in CounterTarget(None).tally("dimensions")
