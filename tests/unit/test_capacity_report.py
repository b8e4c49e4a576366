"""How bench/capacity.py reads its steps: which backend it names as saturating first, and
when it says a climb was the workers' own doing rather than the backend's.

The steps are written out here (what one window of a run measures), so each rule is seen
on figures chosen to trip it: a backend whose own figures got worse, one whose latency
climbed only as the workers saw it, a one-off stall, sub-millisecond jitter.
"""

from __future__ import annotations

from typing import Any

from bench.capacity_report import analyse, cost_per_operation, markdown, per_page

KINDS = ("redis.seen_add", "postgres.register_tasks", "pubsub.publish", "worker.loop_lag")


def step(
    workers: int,
    *,
    p99: dict[str, float] | None = None,
    pages_per_s: float = 60.0,
    redis_us: float = 50.0,
    query_ms: float = 4.0,
    wait_ms: float = 0.0,
    busy_pct: float = 40.0,
    loop_pct: float = 20.0,
) -> dict[str, Any]:
    """One measured window: every p99 2 ms unless ``p99`` says otherwise."""
    latencies = {k: 2.0 for k in KINDS} | (p99 or {})
    return {
        "scenario": "one",
        "workers": workers,
        "warmed_up": True,
        "pages": int(pages_per_s * 10),
        "pages_per_s": pages_per_s,
        "seconds": 10.0,
        "completed": 0,
        "latency": {k: {"n": 500, "p50_ms": v / 4, "p99_ms": v} for k, v in latencies.items()},
        "redis": {
            "commands_per_s": 3 * pages_per_s,
            "commands_per_page": 3.0,
            "server_us_per_command": redis_us,
            "cpu_pct": 0.01 * pages_per_s,
            "cpu_us_per_command": 30.0,
        },
        "postgres": {
            "queries_per_s": 4 * pages_per_s,
            "xacts_per_s": pages_per_s,
            "queries_per_page": 4.0,
            "xacts_per_page": 1.0,
            "avg_query_ms": query_ms,
            "avg_xact_ms": query_ms * 3,
            "avg_wait_ms": wait_ms,
            "cpu_pct": 0.05 * pages_per_s,
            "cpu_us_per_xact": 500.0,
            "backends": 4,
            "pgbouncer_cpu_pct": 0.02 * pages_per_s,
        },
        "pubsub": {
            "publish_calls_per_s": pages_per_s,
            "published_per_s": pages_per_s,
            "acks_per_s": pages_per_s,
            "publish_calls_per_page": 1.0,
            "published_per_page": 1.0,
            "acks_per_page": 1.0,
            "nacks_per_page": 0.0,
            "bytes_per_message": 190,
            "emulator_cpu_pct": 5.0,
        },
        "worker": {
            "loop_cpu_pct": loop_pct,
            "process_cpu_pct": 0.4 * pages_per_s,
            "cpu_ms_per_page": 4.0,
            "threads": 20 * workers,
        },
        "machine": {
            "cores": 2,
            "busy_pct": busy_pct,
            "run_cpu_pct": 50.0,
            "other_cpu_pct": max(0.0, 2 * busy_pct - 50.0),
            "load_1m_end": 1.0,
        },
    }


def test_the_backend_whose_own_figures_get_worse_is_named_not_the_first_to_look_slow() -> None:
    busy = {"redis.seen_add": 30.0, "worker.loop_lag": 40.0}
    steps = [
        step(1, pages_per_s=60),
        step(2, pages_per_s=110, p99=busy, busy_pct=95),
        step(4, pages_per_s=120, p99=busy | {"postgres.register_tasks": 90.0}, query_ms=40),
        step(8, pages_per_s=118, p99=busy | {"postgres.register_tasks": 400.0}, query_ms=150),
    ]

    found = analyse(steps)

    assert found["first_saturating"] == "postgres"
    text = found["verdict"]
    assert text.startswith(
        "First saturating backend: **Postgres through PgBouncer**, at 4 workers."
    )
    assert "`postgres.register_tasks` p99 climbed from 2 ms at 1 worker to 90 ms (45x)" in text
    assert "PgBouncer's average query time 4.0 -> 40 ms" in text
    assert "It then served 480 queries/s (120 transactions/s); at the step before, 440" in text
    assert (
        "Redis's latency as the workers saw it climbed from 2 workers (`redis.seen_add` p99 "
        "2 -> 30 ms) while its own figures stayed flat" in text
    )
    assert "the workers' event loop lag p99 2 -> 40 ms; the machine was 95% busy" in text
    assert "Latency flat up to 8 workers: Pub/Sub (the emulator)." in text


def test_a_stall_the_next_steps_recover_from_and_sub_millisecond_jitter_are_no_climb() -> None:
    steps = [
        step(1, p99={"redis.seen_add": 0.2}),
        step(2, p99={"postgres.register_tasks": 50.0, "redis.seen_add": 0.9}, query_ms=20),
        step(4, p99={"redis.seen_add": 0.9}),
        step(8, p99={"redis.seen_add": 0.9}),
    ]

    found = analyse(steps)

    assert found["first_saturating"] is None
    assert found["climbs"] == {"redis": None, "postgres": None, "pubsub": None}
    assert found["verdict"].startswith("No backend saturated on its own side up to 8 workers")
    assert (
        "Latency flat up to 8 workers: Redis, Postgres through PgBouncer, Pub/Sub"
        in (found["verdict"])
    )
    assert found["verdict"].endswith("No limit was hit up to 8 workers.")


def test_clients_queueing_for_a_pgbouncer_connection_count_as_postgres_saturating() -> None:
    steps = [
        step(1),
        step(2, p99={"postgres.register_tasks": 30.0}, wait_ms=50.0),
        step(4, p99={"postgres.register_tasks": 60.0}, wait_ms=120.0),
    ]

    found = analyse(steps)

    assert found["first_saturating"] == "postgres"
    assert "wait for a server connection 0.0 -> 50.0 ms" in found["verdict"]
    assert (
        "clients waited 50.00 ms per transaction for a PgBouncer server connection"
        in (found["verdict"])
    )


def test_cost_per_operation_is_the_slope_of_cpu_over_rate_without_idle_work() -> None:
    steps = [step(n, pages_per_s=rate) for n, rate in ((1, 50.0), (2, 100.0), (4, 200.0))]
    for s in steps:  # 10% of a core idle, then 40 us of CPU per command
        s["redis"]["cpu_pct"] = 10 + s["redis"]["commands_per_s"] * 40 / 1e4

    cost = cost_per_operation(steps)

    assert cost["redis_cpu_us_per_command"] == 40.0
    assert cost["postgres_cpu_us_per_xact"] == 500.0  # 0.05% of a core per transaction/s
    assert cost["worker_cpu_ms_per_page"] == 4.0


def test_the_report_has_every_step_and_the_operations_per_page() -> None:
    steps = [step(1), step(2, pages_per_s=100)]
    result = {
        "stamp": "20261207T000000Z",
        "command": "python -m bench.capacity",
        "elapsed_s": 300.0,
        "machine": {"cores": 2, "load_before": 1.0},
        "tree": {"commit": "abc", "modified": ["backends/postgres/tasks.py"]},
        "config": {
            "concurrency": 32,
            "pgbouncer_pool": 20,
            "fetch_delay_ms": 500.0,
            "fetch_cpu_ms": 0.2,
            "width_factor": 2,
            "warmup_max_s": 20.0,
            "window_s": 10.0,
            "small_executions": 50,
            "small_pages": 100,
            "budget_s": 570.0,
        },
        "one_execution": steps,
        "many_small": [],
        "skipped": ["many x16"],
        "analysis": {
            "one_execution": analyse(steps),
            "many_small": analyse([]),
            "cost": cost_per_operation(steps),
        },
    }

    report = markdown(result).splitlines()

    assert (
        "Tree measured: commit `abc`, with uncommitted changes to `backends/postgres/tasks.py`."
        in report
    )
    assert "| 2 | 100 | 20.0 | 40.0 | 4.0 | 0.50 / 2.00 | 40.0 | 30.0 | 40 |" in report
    assert "| Postgres transactions | 1 |" in report
    assert "Skipped to stay within the budget of 570 s: many x16." in report
    assert per_page(steps)["Redis commands"] == 3.0


def test_postgres_backends_queued_on_locks_are_named_as_the_limit() -> None:
    steps = [step(1), step(2, p99={"postgres.register_tasks": 80.0}, query_ms=30.0)]
    steps[0]["postgres"]["backends_by_state"] = {"running": 1.0, "locks": 0.0, "client": 0.5}
    steps[1]["postgres"]["backends_by_state"] = {"running": 1.5, "locks": 9.0, "client": 1.0}

    text = analyse(steps)["verdict"]

    assert "busy backends running / on locks / awaiting the client 1 / 0 / 0.5 -> 1.5 / 9 / 1" in (
        text
    )
    assert (
        "First limit hit, at 2 workers: the Postgres backends waited on locks other "
        "transactions held more than they ran (9 busy backends on average, 1.5 running)."
    ) in text
