"""What the autoscaler (worker/autoscale.py) measures of the machine: the CPU and memory of
this process and its children (Chromium runs as children of the Playwright driver), against
what the container or the machine allows.

Linux only (``/proc``, cgroups v1 and v2); elsewhere every reading is 0, so only the event
loop's lag steers the concurrency. Reading costs a few file reads a sample: the process tree
is looked up in ``/proc`` once every ``TREE_EVERY`` samples, the members' own figures every
time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from backends.clock import Clock, SystemClock

PROC = Path("/proc")
CGROUP = Path("/sys/fs/cgroup")
# Samples between two scans of /proc for the process tree (a browser restart makes new pids).
TREE_EVERY = 20
# Without a memory limit of its own (cgroup or setting), the process tree may use this share
# of what was available when it started, its own size included.
AVAILABLE_SHARE = 0.7
_NO_LIMIT = 1 << 60  # what cgroup v1 reports for "unlimited" is about 2**63


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading. ``cpu``: the share of the CPU the process tree may use that it used
    since the last reading (1.0: all of it); ``memory``: the larger of the tree's resident
    memory over its limit and the share of the machine's memory in use; ``memory_limit``:
    that limit in bytes; ``lag_s``: how late the event loop's timers fired, on average."""

    cpu: float
    memory: float
    memory_limit: int
    lag_s: float


class ProcessProbe:
    """Readings of this process's tree for the autoscaler; ``memory_limit_mb`` 0: the
    cgroup's limit, else ``AVAILABLE_SHARE`` of the memory available at start."""

    def __init__(
        self,
        *,
        memory_limit_mb: int = 0,
        clock: Clock | None = None,
        pid: int | None = None,
        proc: Path = PROC,
        cgroup: Path = CGROUP,
    ) -> None:
        self._clock = clock or SystemClock()
        self._pid = pid or os.getpid()
        self._proc = proc
        self._cgroup = cgroup
        self._ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._tree: list[int] = [self._pid]
        self._samples = 0
        self._last_ticks: dict[int, int] = {}  # CPU ticks of each member at the last reading
        self._last_at: float | None = None
        self.cores = cpu_capacity(cgroup)
        if memory_limit_mb > 0:
            self.memory_limit = memory_limit_mb * 1024 * 1024
        else:
            own = cgroup_memory_limit(cgroup)
            _, available = meminfo(proc)
            rss = self._tree_usage()[2]
            self.memory_limit = own or int((available + rss) * AVAILABLE_SHARE) or _NO_LIMIT

    def sample(self, lag_s: float) -> Sample:
        """The tree's CPU since the last call, its memory now, and ``lag_s`` as measured."""
        if self._samples % TREE_EVERY == 0:
            self._tree = process_tree(self._pid, self._proc)
        self._samples += 1
        ticks, new, rss = self._tree_usage()
        now = self._clock.now()
        cpu = 0.0
        if self._last_at is not None and now > self._last_at:
            cpu = new / self._ticks / (now - self._last_at) / self.cores
        self._last_ticks, self._last_at = ticks, now
        total, available = meminfo(self._proc)
        system = 1.0 - available / total if total else 0.0
        return Sample(
            cpu=cpu,
            memory=max(rss / self.memory_limit, system),
            memory_limit=self.memory_limit,
            lag_s=lag_s,
        )

    def _tree_usage(self) -> tuple[dict[int, int], int, int]:
        """The CPU ticks of each member of the tree (those still alive), the ticks they used
        since the last reading (a member new to the tree counts from its first reading, not
        its start) and their resident bytes."""
        ticks: dict[int, int] = {}
        new = rss_pages = 0
        for pid in self._tree:
            fields = _stat_fields(self._proc / str(pid) / "stat")
            if fields is None:
                continue
            ticks[pid] = int(fields[11]) + int(fields[12])  # utime, stime
            new += max(ticks[pid] - self._last_ticks.get(pid, ticks[pid]), 0)
            rss_pages += int(fields[21])
        return ticks, new, rss_pages * self._page


def _stat_fields(path: Path) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3, state, is [0])."""
    try:
        text = path.read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def process_tree(pid: int, proc: Path = PROC) -> list[int]:
    """``pid`` and every process descending from it."""
    children: dict[int, list[int]] = {}
    try:
        entries = [e for e in os.listdir(proc) if e.isdigit()]
    except OSError:
        return [pid]
    for entry in entries:
        try:
            with open(f"{proc}/{entry}/stat", "rb") as file:
                text = file.read()
        except OSError:
            continue
        parent = int(text[text.rfind(b")") + 4 :].split(b" ", 1)[0])
        children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def meminfo(proc: Path = PROC) -> tuple[int, int]:
    """The machine's memory: (total, available) in bytes; (0, 0) when unknown."""
    values: dict[str, int] = {}
    try:
        for line in (proc / "meminfo").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("MemTotal", "MemAvailable"):
                values[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return 0, 0
    return values.get("MemTotal", 0), values.get("MemAvailable", 0)


def cgroup_memory_limit(cgroup: Path = CGROUP) -> int:
    """The container's memory limit in bytes (cgroup v2 ``memory.max``, else v1's
    ``memory.limit_in_bytes``); 0 when there is none."""
    for path in (cgroup / "memory.max", cgroup / "memory" / "memory.limit_in_bytes"):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < _NO_LIMIT:
            return int(text)
        return 0
    return 0


def cpu_capacity(cgroup: Path = CGROUP) -> float:
    """The CPUs this process may use: the cgroup's quota (v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us``) when there is one, else the CPUs it may run on."""
    try:
        cores = float(len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        cores = float(os.cpu_count() or 1)
    quota = 0.0
    try:
        limit, period = (cgroup / "cpu.max").read_text().split()[:2]
        if limit != "max":
            quota = int(limit) / int(period)
    except (OSError, ValueError):
        try:
            limit = (cgroup / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (cgroup / "cpu" / "cpu.cfs_period_us").read_text().strip()
            if int(limit) > 0:
                quota = int(limit) / int(period)
        except (OSError, ValueError):
            pass
    return min(cores, quota) if quota > 0 else max(cores, 1.0)
