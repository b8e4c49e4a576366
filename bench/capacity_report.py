"""Reading a capacity run: when each backend's latency climbs, what limit was hit, the tables.

"Before latency climbs" is defined per backend over a series of steps (1, 2, 4 ...
workers): a call kind has climbed at the first step where its p99 is more than
``CLIMB_FACTOR`` times its p99 at the series' first step and at least ``CLIMB_FLOOR_MS``
above it (sub-millisecond jitter on a shared machine is not a climb). A backend climbs
when any of its kinds does; the first backend to climb is the first saturating one, and
its rates at the step before are what it served before latency climbed.

The worker's side of the same steps says whether that climb is the backend's: the event
loop's CPU, its lag, the machine's busy share, and the backends' own server-side figures
(Redis's microseconds per command, PgBouncer's query and wait times) and CPU. A latency
that climbs while the loop is saturated and the server-side times stay flat is the
worker's limit showing through the backend's calls, and the report says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bench.capacity_timing import MIN_SAMPLES

CLIMB_FACTOR = 2.0
CLIMB_FLOOR_MS = 1.0
SATURATED_PCT = 90.0  # of one core (a single-threaded process), or of the machine
MIN_RATE_SPREAD = 2.0  # a CPU-over-rate slope needs the highest rate this many times the lowest

Step = Mapping[str, Any]
NO_STEP = "No step of this series ran."

BACKENDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "redis": ("Redis", ("redis.seen_add", "redis.acquire", "redis.release")),
    "postgres": (
        "Postgres through PgBouncer",
        (
            "postgres.register_tasks",
            "postgres.finish_tasks",
            "postgres.add_output",
            "postgres.release_tasks",
            "postgres.get_execution",
            "postgres.progress",
            "postgres.lease_tasks",
        ),
    ),
    "pubsub": ("Pub/Sub (the emulator)", ("pubsub.publish",)),
}


def _latency(step: Step, kind: str) -> dict[str, float] | None:
    found: dict[str, float] | None = step.get("latency", {}).get(kind)
    return found


def climb(base: Step, step: Step, kind: str) -> float | None:
    """How many times ``kind``'s p99 at ``step`` is its p99 at ``base`` (None: too few
    samples at either to judge)."""
    first, now = _latency(base, kind), _latency(step, kind)
    if not first or not now or min(first["n"], now["n"]) < MIN_SAMPLES or first["p99_ms"] <= 0:
        return None
    return now["p99_ms"] / first["p99_ms"]


def climbed(base: Step, step: Step, kind: str) -> bool:
    ratio = climb(base, step, kind)
    if ratio is None:
        return False
    first, now = _latency(base, kind), _latency(step, kind)
    assert first is not None and now is not None
    return ratio > CLIMB_FACTOR and now["p99_ms"] - first["p99_ms"] >= CLIMB_FLOOR_MS


def limits(step: Step) -> list[str]:
    """The limits a step ran into, in words (empty: none): the workers' and the machine's,
    then the backends'."""
    return machine_limits(step) + backend_limits(step)


def machine_limits(step: Step) -> list[str]:
    """The limits of the workers' process and of the machine a step ran into."""
    found = []
    worker, machine = step["worker"], step["machine"]
    if worker["loop_cpu_pct"] >= SATURATED_PCT:
        found.append(f"the workers' event loop ran at {worker['loop_cpu_pct']:.0f}% of a core")
    if machine["busy_pct"] >= SATURATED_PCT:
        found.append(
            f"the machine was {machine['busy_pct']:.0f}% busy ({machine['cores']} cores; "
            f"this run's processes {machine['run_cpu_pct'] / 100:.2f} cores, everything else "
            f"on the machine {machine['other_cpu_pct'] / 100:.2f})"
        )
    return found


def backend_limits(step: Step) -> list[str]:
    """The limits of the backends' processes a step ran into."""
    found = []
    redis, postgres, pubsub = step["redis"], step["postgres"], step["pubsub"]
    if redis["cpu_pct"] >= SATURATED_PCT:
        found.append(f"redis-server (one thread) used {redis['cpu_pct']:.0f}% of a core")
    if postgres["pgbouncer_cpu_pct"] >= SATURATED_PCT:
        found.append(f"PgBouncer (one thread) used {postgres['pgbouncer_cpu_pct']:.0f}% of a core")
    if postgres["cpu_pct"] >= SATURATED_PCT:
        found.append(f"the Postgres backends used {postgres['cpu_pct']:.0f}% of a core")
    if postgres["avg_wait_ms"] > max(postgres["avg_xact_ms"], 0.1):
        found.append(
            f"clients waited {postgres['avg_wait_ms']:.2f} ms per transaction for a PgBouncer "
            f"server connection (transactions took {postgres['avg_xact_ms']:.2f} ms)"
        )
    states = postgres.get("backends_by_state") or {}
    running = states.get("running", 0.0)
    for state, what in (
        ("locks", "waited on locks other transactions held"),
        ("client", "waited for the workers' next statement"),
    ):
        if states.get(state, 0.0) >= 1 and states[state] > running:
            found.append(
                f"the Postgres backends {what} more than they ran ({states[state]:g} busy "
                f"backends on average, {running:g} running)"
            )
    if pubsub["emulator_cpu_pct"] >= SATURATED_PCT:
        found.append(f"the Pub/Sub emulator used {pubsub['emulator_cpu_pct']:.0f}% of a core")
    return found


def sustained(base: Step, later: Sequence[Step], kind: str) -> bool:
    """``kind`` climbed at ``later[0]`` and stayed up at every later step that has enough
    samples to judge: a saturated backend does not recover under more load, a one-off
    stall on a shared machine does."""
    if not climbed(base, later[0], kind):
        return False
    return all(climbed(base, s, kind) for s in later[1:] if climb(base, s, kind) is not None)


def backend_climb(steps: Sequence[Step], backend: str) -> dict[str, Any] | None:
    """Where ``backend``'s latency as the workers saw it first climbed for good over
    ``steps``: the step, the kind that climbed most there, its p99 before and then; None
    if it never did."""
    base = steps[0]
    for index, step in enumerate(steps[1:], start=1):
        kinds = [k for k in BACKENDS[backend][1] if sustained(base, steps[index:], k)]
        if kinds:
            return _at(steps, backend, index, max(kinds, key=lambda k: climb(base, step, k) or 0))
    return None


def _rates(step: Step, backend: str) -> str:
    if backend == "redis":
        return f"{step['redis']['commands_per_s']:,.0f} commands/s"
    if backend == "postgres":
        p = step["postgres"]
        return f"{p['queries_per_s']:,.0f} queries/s ({p['xacts_per_s']:,.0f} transactions/s)"
    p = step["pubsub"]
    return (
        f"{p['published_per_s']:,.0f} messages/s in {p['publish_calls_per_s']:,.0f} publish calls/s"
    )


def _server_side(before: Step, step: Step, backend: str) -> str:
    if backend == "redis":
        a, b = before["redis"], step["redis"]
        return (
            f"Redis's own time per command {a['server_us_per_command']} -> "
            f"{b['server_us_per_command']} us, its CPU {a['cpu_pct']}% -> {b['cpu_pct']}% of a core"
        )
    if backend == "postgres":
        a, b = before["postgres"], step["postgres"]
        return (
            f"PgBouncer's average query time {a['avg_query_ms']} -> {b['avg_query_ms']} ms, "
            f"wait for a server connection {a['avg_wait_ms']} -> {b['avg_wait_ms']} ms, "
            f"Postgres backends' CPU {a['cpu_pct']}% -> {b['cpu_pct']}% of a core, busy "
            f"backends running / on locks / awaiting the client {_states(a)} -> {_states(b)}"
        )
    a, b = before["pubsub"], step["pubsub"]
    return f"the emulator's CPU {a['emulator_cpu_pct']}% -> {b['emulator_cpu_pct']}% of a core"


def _states(postgres: Mapping[str, Any]) -> str:
    states = postgres.get("backends_by_state") or {}
    return " / ".join(f"{states.get(s, 0):g}" for s in ("running", "locks", "client"))


def _server_climbed(base: Step, step: Step, backend: str) -> bool:
    """Whether the backend's own figures (not the workers' view) are worse at ``step``
    than at ``base``: its server-side time more than doubled (and by a millisecond for
    Postgres), its single-threaded process is saturated, or clients queue for Postgres."""
    if backend == "redis":
        a, b = base["redis"]["server_us_per_command"], step["redis"]["server_us_per_command"]
        return bool((a > 0 and b > CLIMB_FACTOR * a) or step["redis"]["cpu_pct"] >= SATURATED_PCT)
    if backend == "postgres":
        a, b = base["postgres"]["avg_query_ms"], step["postgres"]["avg_query_ms"]
        slower = a > 0 and b > CLIMB_FACTOR * a and b - a >= CLIMB_FLOOR_MS
        p = step["postgres"]
        queued = p["avg_wait_ms"] > max(p["avg_xact_ms"], 0.1)
        return bool(slower or queued or p["pgbouncer_cpu_pct"] >= SATURATED_PCT)
    return bool(step["pubsub"]["emulator_cpu_pct"] >= SATURATED_PCT)


def backend_saturation(steps: Sequence[Step], backend: str) -> dict[str, Any] | None:
    """The first step from which on ``backend`` is saturated: its latency as the workers
    saw it has climbed for good (``backend_climb``) and its own figures are worse
    (``_server_climbed``) there and at every later step; None if that never happens."""
    climbed = backend_climb(steps, backend)
    if climbed is None:
        return None
    for index in range(climbed["index"], len(steps)):
        if all(_server_climbed(steps[0], s, backend) for s in steps[index:]):
            return _at(steps, backend, index, climbed["kind"])
    return None


def _at(steps: Sequence[Step], backend: str, index: int, kind: str) -> dict[str, Any]:
    first, now = _latency(steps[0], kind), _latency(steps[index], kind)
    assert first is not None and now is not None
    return {
        "backend": backend,
        "index": index,
        "workers": steps[index]["workers"],
        "kind": kind,
        "p99_before_ms": first["p99_ms"],
        "p99_ms": now["p99_ms"],
        "factor": round(now["p99_ms"] / first["p99_ms"], 1),
    }


def _describe(steps: Sequence[Step], found: dict[str, Any]) -> dict[str, Any]:
    """``found`` with the rates and figures around its step, for the verdict."""
    index, backend = found["index"], found["backend"]
    return {
        **found,
        "rates_before": _rates(steps[index - 1], backend),
        "rates_then": _rates(steps[index], backend),
        "server_side": _server_side(steps[0], steps[index], backend),
        "limits_then": limits(steps[index]),
        "machine_limits_then": machine_limits(steps[index]),
    }


def _order(found: Mapping[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    return sorted((c for c in found.values() if c), key=lambda c: (c["index"], -c["factor"]))


def analyse(steps: Sequence[Step]) -> dict[str, Any]:
    """The verdict over one series of steps: per backend where its latency as the workers
    saw it climbed, where it saturated (that and its own figures), the first to saturate,
    the limits the steps hit, the peak."""
    if not steps:
        return {}
    first_limit = next(((s["workers"], limits(s)) for s in steps if limits(s)), None)
    peak = max(steps, key=lambda s: s["pages_per_s"])
    if len(steps) == 1:
        only = (
            f"One step only ({_n(steps[0]['workers'])}): no latency to compare with. "
            + _limit_sentence(steps, first_limit)
        )
        return {"first_limit": first_limit, "verdict": only}
    climbs = {b: backend_climb(steps, b) for b in BACKENDS}
    saturations = {b: backend_saturation(steps, b) for b in BACKENDS}
    climbs = {b: _describe(steps, c) if c else None for b, c in climbs.items()}
    saturations = {b: _describe(steps, c) if c else None for b, c in saturations.items()}
    saturated = _order(saturations)
    return {
        "climbs": climbs,
        "saturations": saturations,
        "first_saturating": saturated[0]["backend"] if saturated else None,
        "first_limit": first_limit,
        "peak": {"workers": peak["workers"], "pages_per_s": peak["pages_per_s"]},
        "highest_rates": {b: _rates(steps[-1], b) for b in BACKENDS},
        "verdict": verdict(steps, _order(climbs), saturated, first_limit),
    }


def _loop_lag(steps: Sequence[Step], index: int) -> str:
    before, then = _lat_p99(steps[0], "worker.loop_lag"), _lat_p99(steps[index], "worker.loop_lag")
    return f"the workers' event loop lag p99 {before} -> {then} ms"


def verdict(
    steps: Sequence[Step],
    climbed: Sequence[dict[str, Any]],
    saturated: Sequence[dict[str, Any]],
    first_limit: tuple[int, list[str]] | None,
) -> str:
    """The answer in a paragraph: the first saturating backend with figures (latency as
    the workers saw it and the backend's own), what else climbed and why."""
    top, first = steps[-1]["workers"], steps[0]["workers"]
    lines = []
    if saturated:
        c = saturated[0]
        name = BACKENDS[c["backend"]][0]
        lines.append(
            f"First saturating backend: **{name}**, at {_n(c['workers'])}. Its "
            f"`{c['kind']}` p99 climbed from {c['p99_before_ms']:g} ms at {_n(first)} to "
            f"{c['p99_ms']:g} ms ({c['factor']:g}x) and stayed up, and its own figures got worse: "
            f"{c['server_side']}. It then served {c['rates_then']}; at the step before, "
            f"{c['rates_before']}."
        )
        lines.extend(
            f"Then {BACKENDS[o['backend']][0]} at {_n(o['workers'])} "
            f"(`{o['kind']}` {o['factor']:g}x; {o['server_side']})."
            for o in saturated[1:]
        )
    else:
        lines.append(
            f"No backend saturated on its own side up to {_n(top)} (its server-side "
            "time, CPU or connection queue stayed within bounds)."
        )
    named = {c["backend"] for c in saturated}
    for c in climbed:
        if c["backend"] in named:
            continue
        name = BACKENDS[c["backend"]][0]
        why = "; ".join(c["machine_limits_then"]) or "the machine and the workers had room"
        lines.append(
            f"{name}'s latency as the workers saw it climbed from {_n(c['workers'])} "
            f"(`{c['kind']}` p99 {c['p99_before_ms']:g} -> {c['p99_ms']:g} ms) while its own "
            f"figures stayed flat ({c['server_side']}): that is the workers' side, "
            f"{_loop_lag(steps, c['index'])}; {why}."
        )
    quiet = [BACKENDS[b][0] for b in BACKENDS if b not in {c["backend"] for c in climbed}]
    if quiet:
        lines.append(f"Latency flat up to {_n(top)}: {', '.join(quiet)}.")
    lines.append(_limit_sentence(steps, first_limit))
    return " ".join(lines)


def _limit_sentence(steps: Sequence[Step], first_limit: tuple[int, list[str]] | None) -> str:
    if first_limit is None:
        return f"No limit was hit up to {_n(steps[-1]['workers'])}."
    workers, found = first_limit
    return f"First limit hit, at {_n(workers)}: {'; '.join(found)}."


def _n(workers: int) -> str:
    return f"{workers} worker" if workers == 1 else f"{workers} workers"


def _lat_p99(step: Step, kind: str) -> str:
    found = _latency(step, kind)
    return f"{found['p99_ms']:g}" if found else "-"


# -- tables


def _lat(step: Step, kind: str) -> str:
    found = _latency(step, kind)
    if not found or not found["n"]:
        return "-"
    return f"{found['p50_ms']:.2f} / {found['p99_ms']:.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def tables(steps: Sequence[Step]) -> list[str]:
    """The per-step tables of one series: the workers and machine, then each backend."""
    out = ["Workers and machine:", ""]
    out += _table(
        (
            "workers",
            "pages/s",
            "loop CPU % of a core",
            "process CPU %",
            "worker CPU ms/page",
            "loop lag p50 / p99 ms",
            "machine busy %",
            "other processes, % of a core",
            "threads",
        ),
        [
            (
                s["workers"] if s.get("warmed_up", True) else f"{s['workers']}*",
                s["pages_per_s"],
                s["worker"]["loop_cpu_pct"],
                s["worker"]["process_cpu_pct"],
                s["worker"]["cpu_ms_per_page"],
                _lat(s, "worker.loop_lag"),
                s["machine"]["busy_pct"],
                s["machine"]["other_cpu_pct"],
                s["worker"]["threads"],
            )
            for s in steps
        ],
    )
    out += ["", "Redis (latency p50 / p99 in ms, as the worker saw it):", ""]
    out += _table(
        (
            "workers",
            "commands/s",
            "commands/page",
            "server us/command",
            "redis CPU %",
            "seen add",
            "acquire",
            "release",
        ),
        [
            (
                s["workers"],
                s["redis"]["commands_per_s"],
                s["redis"]["commands_per_page"],
                s["redis"]["server_us_per_command"],
                s["redis"]["cpu_pct"],
                _lat(s, "redis.seen_add"),
                _lat(s, "redis.acquire"),
                _lat(s, "redis.release"),
            )
            for s in steps
        ],
    )
    out += ["", "Postgres through PgBouncer (PgBouncer's SHOW STATS; latency p50 / p99 ms):", ""]
    out += _table(
        (
            "workers",
            "queries/s",
            "xacts/s",
            "queries/page",
            "xacts/page",
            "avg query ms",
            "avg wait ms",
            "Postgres CPU %",
            "PgBouncer CPU %",
            "busy backends: running / on locks / awaiting client",
            "register_tasks",
            "finish_tasks",
        ),
        [
            (
                s["workers"],
                s["postgres"]["queries_per_s"],
                s["postgres"]["xacts_per_s"],
                s["postgres"]["queries_per_page"],
                s["postgres"]["xacts_per_page"],
                s["postgres"]["avg_query_ms"],
                s["postgres"]["avg_wait_ms"],
                s["postgres"]["cpu_pct"],
                s["postgres"]["pgbouncer_cpu_pct"],
                _states(s["postgres"]),
                _lat(s, "postgres.register_tasks"),
                _lat(s, "postgres.finish_tasks"),
            )
            for s in steps
        ],
    )
    out += ["", "Pub/Sub (the emulator; counted in the workers' queue adapters):", ""]
    out += _table(
        (
            "workers",
            "publish calls/s",
            "messages/s",
            "acks/s",
            "publish calls/page",
            "messages/page",
            "bytes/message",
            "publish p50 / p99 ms",
            "emulator CPU %",
        ),
        [
            (
                s["workers"],
                s["pubsub"]["publish_calls_per_s"],
                s["pubsub"]["published_per_s"],
                s["pubsub"]["acks_per_s"],
                s["pubsub"]["publish_calls_per_page"],
                s["pubsub"]["published_per_page"],
                s["pubsub"].get("bytes_per_message", "-"),
                _lat(s, "pubsub.publish"),
                s["pubsub"]["emulator_cpu_pct"],
            )
            for s in steps
        ],
    )
    return out


PER_PAGE = (
    ("Redis commands", "redis", "commands_per_page"),
    ("Postgres queries", "postgres", "queries_per_page"),
    ("Postgres transactions", "postgres", "xacts_per_page"),
    ("Pub/Sub publish calls", "pubsub", "publish_calls_per_page"),
    ("Pub/Sub messages published", "pubsub", "published_per_page"),
    ("Pub/Sub acks", "pubsub", "acks_per_page"),
    ("worker CPU ms", "worker", "cpu_ms_per_page"),
)


def per_page(steps: Sequence[Step]) -> dict[str, float]:
    """Each operation per page, the median over the steps whose window was steady (the
    one-execution fan-out done): what a page costs whatever the load."""
    steady = [s for s in steps if s.get("warmed_up", True) and s["pages"]] or list(steps)
    out: dict[str, float] = {}
    for label, backend, key in PER_PAGE:
        values = sorted(float(s[backend][key]) for s in steady)
        if values:
            out[label] = values[len(values) // 2]
    return out


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """The least-squares slope of y over x; None without two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var


def _marginal(
    steps: Sequence[Step], rate: Callable[[Step], float], cpu_pct: Callable[[Step], float]
) -> float:
    """CPU microseconds per operation: the slope of CPU over rate across the steps (what
    one more operation costs, without the server's idle work) when the rates spread wide
    enough, else CPU over rate at the busiest step."""
    rates = [rate(s) for s in steps]
    found = slope([(rate(s), cpu_pct(s) * 1e4) for s in steps])
    # A slope needs rates that differ: over a flat series it is noise.
    if found is not None and found > 0 and max(rates) >= MIN_RATE_SPREAD * min(rates) > 0:
        return round(found, 1)
    busiest = max(steps, key=rate)
    return round(cpu_pct(busiest) * 1e4 / rate(busiest), 1) if rate(busiest) else 0.0


def cost_per_operation(steps: Sequence[Step]) -> dict[str, float]:
    """What one operation costs each server in CPU, the figures a capacity model scales
    (a core does 1e6 / us of them a second)."""
    if not steps:
        return {}
    return {
        "redis_cpu_us_per_command": _marginal(
            steps, lambda s: s["redis"]["commands_per_s"], lambda s: s["redis"]["cpu_pct"]
        ),
        "postgres_cpu_us_per_xact": _marginal(
            steps, lambda s: s["postgres"]["xacts_per_s"], lambda s: s["postgres"]["cpu_pct"]
        ),
        "pgbouncer_cpu_us_per_query": _marginal(
            steps,
            lambda s: s["postgres"]["queries_per_s"],
            lambda s: s["postgres"]["pgbouncer_cpu_pct"],
        ),
        "emulator_cpu_us_per_message": _marginal(
            steps,
            lambda s: s["pubsub"]["published_per_s"],
            lambda s: s["pubsub"]["emulator_cpu_pct"],
        ),
        "worker_cpu_ms_per_page": round(
            _marginal(steps, lambda s: s["pages_per_s"], lambda s: s["worker"]["process_cpu_pct"])
            / 1000,
            3,
        ),
    }


def markdown(result: Mapping[str, Any]) -> str:
    """bench/results/capacity.md: how it was run, every step, the verdicts."""
    config = result["config"]
    tree = result["tree"]
    out = [
        f"# Capacity, {result['stamp']}",
        "",
        f"`{result['command']}`, {result['elapsed_s']:.0f} s on {result['machine']['cores']} "
        f"cores (load average before: {result['machine']['load_before']}).",
        "",
        f"Tree measured: commit `{tree['commit']}`"
        + (
            f", with uncommitted changes to {', '.join(f'`{p}`' for p in tree['modified'])}."
            if tree["modified"]
            else ", no uncommitted changes."
        ),
        "",
        f"Each worker: {config['concurrency']} tasks in flight, its own Pub/Sub subscriber and "
        "publisher, Redis clients and asyncpg pool (through one PgBouncer, "
        f"{config['pgbouncer_pool']} server connections), all in one process. Pages come from "
        f"a synthetic fetcher after {config['fetch_delay_ms']:g} ms (waiting) and "
        f"{config['fetch_cpu_ms']:g} ms of CPU; each has 3-7 links, one of them new after "
        "the fan-out. Part files go to a local directory (GCS is not measured).",
        "",
        "## One execution",
        "",
        f"One execution per step, a site {config['width_factor']} x workers x concurrency "
        f"chains wide; warm-up until that many pages are done (at most "
        f"{config['warmup_max_s']:g} s), then a {config['window_s']:g} s window.",
        "",
    ]
    one = result["one_execution"]
    out += tables(one)
    if not all(s.get("warmed_up", True) for s in one):
        out += [
            "",
            "\\* the warm-up ended at its limit before the fan-out did: more than one task "
            "published per page in that window.",
        ]
    out += ["", result["analysis"]["one_execution"].get("verdict", NO_STEP), ""]
    many = result["many_small"]
    if many:
        out += [
            "## Many small executions",
            "",
            f"{config['small_executions']} executions of {config['small_pages']} pages each, "
            "started at once, run to completion (measured from the workers' start to the "
            "last completion, exports included).",
            "",
        ]
        out += tables(many)
        out += ["", "Completion:", ""]
        out += _table(
            ("workers", "executions completed", "seconds to the last"),
            [(s["workers"], s["completed"], s["seconds"]) for s in many],
        )
        out += ["", result["analysis"]["many_small"].get("verdict", NO_STEP), ""]
    if result.get("skipped"):
        out += [
            f"Skipped to stay within the budget of {config['budget_s']:g} s: "
            f"{', '.join(result['skipped'])}.",
            "",
        ]
    cost = result["analysis"]["cost"]
    if not cost:
        return "\n".join(out)
    series = [("one execution", one), ("many small executions", many)]
    present = [(name, per_page(steps)) for name, steps in series if steps]
    out += ["## Per page", "", "Median over the steps (those whose window was steady):", ""]
    out += _table(
        ("per page", *(name for name, _ in present)),
        [(label, *(f"{p.get(label, 0):g}" for _, p in present)) for label, _, _ in PER_PAGE],
    )
    out.append("")
    out += [
        "## Cost per operation",
        "",
        "CPU per operation, the slope of each process's CPU over its rate across the "
        "one-execution steps (what one more operation costs, idle work left out; where the "
        f"rates did not spread {MIN_RATE_SPREAD:g}x, CPU over rate at the busiest step): "
        f"Redis {cost['redis_cpu_us_per_command']} us per command, the Postgres backends "
        f"{cost['postgres_cpu_us_per_xact']} us per transaction, PgBouncer "
        f"{cost['pgbouncer_cpu_us_per_query']} us per query, the Pub/Sub emulator "
        f"{cost['emulator_cpu_us_per_message']} us per message (an emulator, not Pub/Sub); "
        f"the worker {cost['worker_cpu_ms_per_page']} ms per page (pipeline, adapters, "
        'Pub/Sub client threads). docs/operations.md ("Capacity model") scales these.',
        "",
    ]
    return "\n".join(out)
