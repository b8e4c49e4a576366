"""Autoscaled concurrency (worker/autoscale.py): each engine's level rises while pages wait
and the machine has headroom, falls when CPU, memory or the event loop's lag is overloaded,
stays within its range, and engines move independently. Readings are scripted."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from backends.clock import FakeClock
from backends.state import Progress
from trawl.cli_common import concurrency_arg
from trawl.progress import format_line
from trawl.settings import load_settings
from worker.autoscale import Concurrency, EngineLimits, Gate
from worker.autoscale_probe import ProcessProbe, Sample
from worker.endings import HandBack
from worker.telemetry import Telemetry

GIB = 1024**3
CALM = Sample(cpu=0.3, memory=0.3, memory_limit=GIB, lag_s=0.001)
OVERLOADS = {
    "cpu": Sample(cpu=0.99, memory=0.3, memory_limit=GIB, lag_s=0.001),
    "memory": Sample(cpu=0.3, memory=0.95, memory_limit=GIB, lag_s=0.001),
    "loop lag": Sample(cpu=0.3, memory=0.3, memory_limit=GIB, lag_s=0.2),
}
# Every figure between "headroom" and "overloaded": the level stays.
MIDDLING = Sample(cpu=0.9, memory=0.85, memory_limit=GIB, lag_s=0.03)


class Script:
    """A probe that answers what the test says, and remembers the lags it was given."""

    def __init__(self, sample: Sample = CALM) -> None:
        self.next = sample
        self.lags: list[float] = []

    def sample(self, lag_s: float) -> Sample:
        self.lags.append(lag_s)
        return self.next


def auto(**limits: EngineLimits) -> Concurrency:
    return Concurrency.auto(32, limits, Script())


async def occupy(gate: Gate, pages: int) -> list[asyncio.Task[None]]:
    """``pages`` tasks that each hold a permit (or wait for one) until cancelled."""

    async def hold() -> None:
        async with gate.held():
            await asyncio.Event().wait()

    tasks = [asyncio.create_task(hold()) for _ in range(pages)]
    for _ in range(3):
        await asyncio.sleep(0)
    return tasks


async def settle(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_rises_while_pages_wait_and_never_above_the_maximum() -> None:
    scaler = auto(http=EngineLimits(1, 20, 8))
    gate = scaler.gate("http")
    pages = await occupy(gate, 50)  # far more than the maximum: always some waiting
    levels = []
    for _ in range(15):
        levels.append(scaler.step(CALM)["http"])
        await asyncio.sleep(0)
    assert levels[:6] == [9, 10, 11, 12, 13, 14]  # an eighth, at least 1, each interval
    assert levels[-1] == 20 and max(levels) == 20
    assert gate.in_use == 20  # the new permits went to waiting pages at once
    assert scaler.levels() == {"http": 20}
    await settle(pages)


async def test_no_rise_when_no_page_waits() -> None:
    scaler = auto(http=EngineLimits(1, 32, 8))
    pages = await occupy(scaler.gate("http"), 3)
    assert [scaler.step(CALM)["http"] for _ in range(5)] == [8] * 5
    await settle(pages)


@pytest.mark.parametrize("overload", OVERLOADS, ids=str)
async def test_falls_on_each_overload_and_never_below_the_minimum(overload: str) -> None:
    scaler = auto(http=EngineLimits(3, 32, 16))
    pages = await occupy(scaler.gate("http"), 16)
    levels = [scaler.step(OVERLOADS[overload])["http"] for _ in range(8)]
    assert levels[:3] == [12, 9, 6]  # a quarter off each interval
    assert min(levels) == 3 and levels[-1] == 3
    assert f"{overload} overloaded" in scaler.controls["http"].last_change
    await settle(pages)


async def test_stays_between_headroom_and_overload() -> None:
    scaler = auto(http=EngineLimits(1, 32, 8))
    pages = await occupy(scaler.gate("http"), 20)
    assert [scaler.step(MIDDLING)["http"] for _ in range(4)] == [8] * 4
    await settle(pages)


async def test_lowering_lets_pages_in_flight_finish_and_admits_none_until_below() -> None:
    gate = Gate(4)
    holders = [asyncio.Event() for _ in range(4)]
    finished: list[int] = []

    async def page(i: int, release: asyncio.Event) -> None:
        async with gate.held():
            await release.wait()
        finished.append(i)

    running = [asyncio.create_task(page(i, e)) for i, e in enumerate(holders)]
    late = asyncio.Event()
    waiting = asyncio.create_task(page(99, late))
    await asyncio.sleep(0)
    gate.resize(2)
    assert gate.in_use == 4 and not any(t.done() for t in running)  # nothing cancelled
    for i in range(2):
        holders[i].set()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    assert finished == [0, 1] and gate.in_use == 2 and gate.waiting == 1  # still at 2
    holders[2].set()
    for _ in range(3):
        await asyncio.sleep(0)
    assert gate.in_use == 2 and gate.waiting == 0  # 99 took the freed permit
    holders[3].set()
    late.set()
    await asyncio.gather(*running, waiting)
    assert sorted(finished) == [0, 1, 2, 3, 99] and gate.in_use == 0


async def test_a_stop_hands_back_pages_waiting_for_a_place() -> None:
    scaler = auto(http=EngineLimits(1, 8, 1))
    gate = scaler.gate("http")
    release = asyncio.Event()

    async def page() -> str:
        async with gate.held():
            await release.wait()
        return "fetched"

    running = asyncio.create_task(page())
    waiting = asyncio.create_task(page())
    await asyncio.sleep(0)
    scaler.stop_waiting()
    release.set()
    assert await running == "fetched"  # the page in flight finishes
    with pytest.raises(HandBack) as ended:  # the waiting one goes back to the queue untried
        await waiting
    assert ended.value.delay_s == 0.0
    with pytest.raises(HandBack):
        await gate.acquire()
    assert gate.in_use == 0


async def test_engines_move_independently() -> None:
    scaler = auto(http=EngineLimits(1, 32, 8), browser=EngineLimits(1, 8, 4))
    http = await occupy(scaler.gate("http"), 40)  # saturated
    browser = await occupy(scaler.gate("browser"), 2)  # room to spare
    assert scaler.step(CALM) == {"http": 9, "browser": 4}
    await settle(http)
    # Pages waited for http during that interval (then went away): one more rise.
    assert scaler.step(CALM) == {"http": 10, "browser": 4}
    # http idle now: an overload lowers only the busy browser.
    assert scaler.step(OVERLOADS["loop lag"]) == {"http": 10, "browser": 3}
    await settle(browser)


async def test_a_tab_needs_more_memory_headroom_than_a_request() -> None:
    scaler = Concurrency.auto(
        32,
        {
            "http": EngineLimits(1, 32, 4, slot_bytes=4 * 1024**2),
            "browser": EngineLimits(1, 16, 4, slot_bytes=150 * 1024**2),
        },
        Script(),
    )
    pages = [*await occupy(scaler.gate("http"), 10), *await occupy(scaler.gate("browser"), 10)]
    # 70% in use: room for 4 MB more (under 80%), not for a 150 MB tab.
    tight = Sample(cpu=0.3, memory=0.7, memory_limit=GIB, lag_s=0.001)
    assert scaler.step(tight) == {"http": 5, "browser": 4}
    assert scaler.step(CALM) == {"http": 6, "browser": 5}
    await settle(pages)


async def test_the_loop_lag_counts_the_loop_running_and_one_pause_does_not_move_it() -> None:
    clock = FakeClock()
    script = Script()
    # The loop thread's CPU seconds before and after each probe (each takes 150 ms: 100 ms
    # asked for, 50 ms late): it ran the whole time; not at all (the process waited for a
    # CPU, not its own lag); half the time; then the whole time once, and not at all twice.
    ran = iter([0, 0.15, 0.15, 0.15, 0.15, 0.225, 0.225, 0.375, 0.375, 0.375, 0.375, 0.375])
    scaler = Concurrency.auto(8, {"http": EngineLimits(1, 8, 4)}, script, clock=clock)
    scaler.cpu_time = lambda: next(ran)
    scaler.probe_s, scaler.interval_s = 0.1, 0.4
    runner = asyncio.create_task(scaler.run())
    await asyncio.sleep(0)
    for _ in range(6):
        clock.advance(0.15)
        for _ in range(5):
            await asyncio.sleep(0)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    # A decision every three probes, on the median of their lags (50, 0, 25 ms; 50, 0, 0).
    assert script.lags == [pytest.approx(0.025), 0.0]


def test_fixed_concurrency_and_the_argument() -> None:
    fixed = Concurrency.fixed(32)
    assert fixed.ceiling == 32 and not fixed.autoscaled
    assert fixed.gate("browser").limit == 32
    assert concurrency_arg("auto") == "auto" and concurrency_arg("8") == 8
    for bad in ("0", "-1", "many"):
        with pytest.raises(argparse.ArgumentTypeError):
            concurrency_arg(bad)
    settings = load_settings({})
    assert settings.concurrency().autoscaled
    assert settings.concurrency("auto").ceiling == 32
    assert not settings.concurrency(8).autoscaled
    off = load_settings({"TRAWL_WORKER_AUTOSCALE": "0", "TRAWL_WORKER_CONCURRENCY": "12"})
    assert not off.concurrency().autoscaled and off.concurrency().ceiling == 12
    tabs = load_settings({"TRAWL_WORKER_BROWSER_CONCURRENCY": "6"}).concurrency()
    assert tabs.controls["browser"].limits.maximum == 6
    assert tabs.controls["http"].limits.maximum == 32


def test_progress_line_and_summary_show_the_levels() -> None:
    line = format_line(Progress(finished=10), 2.0, {"browser": 3, "http": 24})
    assert line.endswith("5.0 pages/s  2.0s  concurrency browser 3 http 24")
    assert "concurrency" not in format_line(Progress(), 2.0, {})


async def test_summary_names_the_range() -> None:
    scaler = auto(http=EngineLimits(1, 32, 8), browser=EngineLimits(1, 8, 4))
    pages = await occupy(scaler.gate("http"), 40)
    scaler.step(CALM)
    scaler.step(CALM)
    scaler.step(OVERLOADS["cpu"])
    assert scaler.describe() == "http auto 7 (7 to 10)"  # the browser ran nothing
    assert Concurrency.fixed(32).describe() == ""
    await settle(pages)


def test_the_gauge_reports_each_engine() -> None:
    reader = InMemoryMetricReader()
    telemetry = Telemetry.create(meter_provider=MeterProvider(metric_readers=[reader]))
    telemetry.watch_concurrency(lambda: {"http": 24, "browser": 3})
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        dict(point.attributes or {})["trawl.engine"]: point.value
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "trawl.worker.concurrency"
        for point in metric.data.data_points
        if isinstance(point, NumberDataPoint)
    }
    assert points == {"http": 24, "browser": 3}


def test_the_probe_reads_the_process_tree(tmp_path: Path) -> None:
    proc = tmp_path / "proc"

    def stat(pid: int, parent: int, ticks: int, pages: int) -> None:
        (proc / str(pid)).mkdir(parents=True, exist_ok=True)
        fields = ["S", str(parent), *["0"] * 9, str(ticks), "0", *["0"] * 8, str(pages)]
        (proc / str(pid) / "stat").write_text(f"{pid} (a (b) c) {' '.join(fields)}\n")

    stat(100, 1, 0, 1000)  # this process
    stat(101, 100, 0, 2000)  # its child (the browser)
    stat(102, 1, 0, 9000)  # someone else's
    (proc / "meminfo").write_text("MemTotal: 1000000 kB\nMemAvailable: 999000 kB\n")
    clock = FakeClock()
    probe = ProcessProbe(pid=100, proc=proc, cgroup=tmp_path / "no-cgroup", clock=clock)
    probe.cores = 2.0
    page = os.sysconf("SC_PAGE_SIZE")
    assert probe.memory_limit == int((999000 * 1024 + 1000 * page) * 0.7)
    probe.sample(0.0)
    stat(100, 1, 50, 1000)  # half a second of CPU each over one second: half of two CPUs
    stat(101, 100, 50, 2000)
    clock.advance(1.0)
    reading = probe.sample(0.01)
    assert reading.cpu == pytest.approx(0.5)
    assert reading.memory == pytest.approx(3000 * page / probe.memory_limit)
    assert reading.lag_s == 0.01
