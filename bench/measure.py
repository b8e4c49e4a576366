"""Run a command and measure its whole process tree: wall time, CPU seconds, peak RSS.

Browsers and some crawlers run child processes, so one process's numbers say little:

- CPU is the larger of two counts: ``wait4``'s rusage of the command (its own time plus
  every descendant it and they reaped: Chromium's renderers, Playwright's driver), and the
  sum over every process seen in the tree of its last sampled user+system time (catches a
  descendant nobody reaped before the end).
- RSS is sampled every ``interval_s`` (default 100 ms) and summed over the tree; the peak
  of those sums is reported. Pages shared between processes (Chromium's renderers share a
  lot) are counted once per process, as ``ps`` would, which overstates a multi-process
  crawler's footprint; so PSS (shared pages divided among their users, from
  /proc/PID/smaps_rollup) is summed too, every ``pss_every`` samples, as a fairer figure.

The tree's membership is refreshed every few samples (listing children scans /proc, the
costly part); reading a known process's RSS is one small file.
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

MB = 1024 * 1024


@dataclass
class Sample:
    t_s: float
    rss_bytes: int
    processes: int


@dataclass
class Measured:
    """One command's run."""

    argv: list[str]
    returncode: int | None
    timed_out: bool
    wall_s: float
    cpu_s: float
    cpu_wait4_s: float
    cpu_sampled_s: float
    peak_rss_bytes: int
    peak_pss_bytes: int
    peak_processes: int
    cpu_by_kind: dict[str, float] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    stdout_path: Path | None = None
    stderr_path: Path | None = None

    def tail(self, lines: int = 15) -> str:
        """The end of stderr then stdout: why a run failed."""
        out = []
        for path in (self.stderr_path, self.stdout_path):
            if path is not None and path.exists():
                text = path.read_text(errors="replace").strip().splitlines()
                out.extend(text[-lines:])
        return "\n".join(out)


SampleHook = Callable[[Sample], None]


def run_measured(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    log_dir: Path,
    name: str,
    timeout_s: float = 900.0,
    interval_s: float = 0.1,
    refresh_every: int = 5,
    pss_every: int = 10,
    keep_samples: bool = False,
    on_sample: SampleHook | None = None,
) -> Measured:
    """Run ``argv`` to completion (or ``timeout_s``), sampling its tree every ``interval_s``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stdout_path = log_dir / f"{name}.stdout"
    stderr_path = log_dir / f"{name}.stderr"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: a timeout kills the whole tree
        )
        tree = _Tree(proc.pid)
        exited = _ExitWaiter(proc.pid)
        samples: list[Sample] = []
        peak_rss = peak_pss = peak_procs = 0
        status = rusage = None
        timed_out = False
        tick = 0
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            now = time.perf_counter() - started
            if now > timeout_s:
                timed_out = True
                _kill_group(proc.pid)
                _, status, rusage = os.wait4(proc.pid, 0)
                break
            if tick % refresh_every == 0:
                tree.refresh()
            if tick % pss_every == 1:
                peak_pss = max(peak_pss, tree.pss())
            tick += 1
            sample = Sample(now, tree.rss(), len(tree.procs))
            peak_rss = max(peak_rss, sample.rss_bytes)
            peak_procs = max(peak_procs, sample.processes)
            if keep_samples:
                samples.append(sample)
            if on_sample is not None:
                on_sample(sample)
            exited(interval_s)
        wall = time.perf_counter() - started
        exited.close()
        proc.returncode = os.waitstatus_to_exitcode(status) if status is not None else None
        # Whatever the command left running (a daemonised helper) goes with it.
        _kill_group(proc.pid)
    cpu_wait4 = rusage.ru_utime + rusage.ru_stime if rusage is not None else 0.0
    cpu_sampled = sum(tree.last_cpu.values())
    return Measured(
        argv=list(argv),
        returncode=proc.returncode,
        timed_out=timed_out,
        wall_s=wall,
        cpu_s=max(cpu_wait4, cpu_sampled),
        cpu_wait4_s=cpu_wait4,
        cpu_sampled_s=cpu_sampled,
        peak_rss_bytes=peak_rss,
        peak_pss_bytes=peak_pss,
        peak_processes=peak_procs,
        cpu_by_kind=tree.cpu_by_kind(),
        samples=samples,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
    )


class _Tree:
    """The processes under one root, as last listed; their RSS, PSS and CPU seconds."""

    def __init__(self, root_pid: int) -> None:
        self.root = psutil.Process(root_pid)
        self.procs: dict[int, psutil.Process] = {root_pid: self.root}
        self.last_cpu: dict[int, float] = {}  # per pid, kept after the process is gone
        self.kinds: dict[int, str] = {root_pid: _kind(self.root)}

    def refresh(self) -> None:
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in self.root.children(recursive=True):
                if child.pid not in self.procs:
                    self.procs[child.pid] = child
                    self.kinds[child.pid] = _kind(child)

    def cpu_by_kind(self) -> dict[str, float]:
        """Sampled CPU seconds per kind of process (python, node, chromium renderer, ...)."""
        out: dict[str, float] = {}
        for pid, cpu in self.last_cpu.items():
            kind = self.kinds.get(pid, "?")
            out[kind] = round(out.get(kind, 0.0) + cpu, 2)
        return out

    def rss(self) -> int:
        total = 0
        for pid, proc in list(self.procs.items()):
            try:
                with proc.oneshot():
                    total += proc.memory_info().rss
                    times = proc.cpu_times()
                self.last_cpu[pid] = times.user + times.system
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                del self.procs[pid]
        return total

    def pss(self) -> int:
        return sum(_pss(pid) for pid in self.procs)


def _kind(proc: psutil.Process) -> str:
    """``chromium renderer``, ``node``, ``python3.11``...: what a tree's CPU went to."""
    try:
        name = proc.name()
        kind = next((a[7:] for a in proc.cmdline() if a.startswith("--type=")), None)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "?"
    return f"{name} {kind}" if kind else name


def _pss(pid: int) -> int:
    """Proportional set size in bytes (0 if the process is gone or the kernel lacks it)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class _ExitWaiter:
    """Waits up to the given seconds, returning as soon as the process exits (a pidfd on
    Linux), so the wall time ends when the command does, not at the next sample (up to
    ``interval_s`` later: 50 ms on average, 2-3% of a 2-second crawl). A plain sleep where
    pidfds are missing."""

    def __init__(self, pid: int) -> None:
        try:
            self._fd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self._fd = None

    def __call__(self, seconds: float) -> None:
        if self._fd is None:
            time.sleep(seconds)
        else:
            select.select([self._fd], [], [], seconds)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, 9)


def self_cpu_s() -> float:
    """This process's own CPU seconds (the benchmark driver's overhead)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
