"""How many CPU threads torch uses: the cores this process may run on, less those that
other processes keep busy, re-checked as the load changes.

On a shared machine, torch's default (one thread per core, spinning while it waits for
the others) collapses as soon as another process takes a core: a thread that is not
scheduled stalls every parallel region, and the spinning ones steal time from it.
Measured on 2 cores, training PaiNN beside a one-core busy loop ran 3.7x slower with 2
threads than with 1. So by default mlff

- counts the cores it may use (CPU affinity, and a cgroup CPU quota if one is set),
- measures how many of them other processes keep busy (``/proc/stat`` over the cores in
  its affinity set, less this process's own CPU time),
- uses the remaining cores (at least one), and re-checks at most every few seconds
  (:meth:`ThreadGovernor.update`, called every training step and calculator call).

OpenMP's wait policy is left as it is: letting waiting threads sleep
(``OMP_WAIT_POLICY=PASSIVE``, which users may still set) made idle training with
2 threads 19% slower here (153 against 190 structures/s), while the re-check already
drops to one thread within seconds of another process taking a core.

An explicit choice always wins and is never changed: ``threads:`` in a training config,
``MLFF_NUM_THREADS`` or ``OMP_NUM_THREADS`` in the environment.
"""

from __future__ import annotations

import math
import os
import resource
import time
from dataclasses import dataclass

_CHECK_SECONDS = 5.0  # how often an automatic choice is re-checked
_SAMPLE_SECONDS = 0.2  # the first load measurement, before this process does any work
_ENV_VARIABLES = ("MLFF_NUM_THREADS", "OMP_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, math.ceil(quota)) if quota is not None else cores)


def _cgroup_quota() -> float | None:
    """CPUs granted by a cgroup quota (v2 ``cpu.max`` or v1 ``cfs_quota_us``), or None."""
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as handle:
            quota, period = handle.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", encoding="ascii") as handle:
            quota = int(handle.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us", encoding="ascii") as handle:
            period = int(handle.read())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def _busy_seconds() -> float | None:
    """CPU seconds spent busy so far on the cores of this process's affinity set (all
    processes), from ``/proc/stat``; None where it cannot be read."""
    try:
        allowed = os.sched_getaffinity(0)
        ticks = os.sysconf("SC_CLK_TCK")
        busy = 0
        with open("/proc/stat", encoding="ascii") as handle:
            for line in handle:
                name, *fields = line.split()
                if not name.startswith("cpu") or name == "cpu":
                    continue
                if int(name[3:]) in allowed:
                    values = [int(v) for v in fields[:8]]
                    busy += sum(values) - values[3] - values[4]  # all but idle and iowait
        return busy / ticks
    except (OSError, ValueError, AttributeError):
        return None


def _own_seconds() -> float:
    """CPU seconds this process has used (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def explicit_threads() -> int | None:
    """A thread count the user set in the environment (``MLFF_NUM_THREADS``, then
    ``OMP_NUM_THREADS``), or None."""
    for name in _ENV_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


@dataclass(frozen=True)
class ThreadChoice:
    """A thread count and why it was chosen."""

    threads: int
    cores: int
    busy_elsewhere: float | None  # cores other processes kept busy; None if not measured
    source: str  # "config", "environment" or "automatic"

    def describe(self) -> str:
        """One line for logs, e.g. ``2 threads (automatic: 2 cores, 0.0 busy elsewhere)``."""
        wait = os.environ.get("OMP_WAIT_POLICY", "default")
        if self.source != "automatic":
            return f"{self.threads} thread{'s' * (self.threads != 1)} ({self.source}; " \
                   f"{self.cores} cores; OMP_WAIT_POLICY {wait})"
        busy = "not measured" if self.busy_elsewhere is None else f"{self.busy_elsewhere:.1f}"
        return (f"{self.threads} thread{'s' * (self.threads != 1)} (automatic: {self.cores} "
                f"cores, busy elsewhere {busy}; OMP_WAIT_POLICY {wait})")


class ThreadGovernor:
    """Chooses torch's intra-op thread count and keeps it matched to the free cores.

    Args:
        threads: an explicit count (e.g. the training config's ``threads``); None chooses
            from the environment or automatically.
        share: divide the cores among this many processes of one job (DDP ranks on a node).
        interval: seconds between automatic re-checks.
    """

    def __init__(self, threads: int | None = None, share: int = 1,
                 interval: float = _CHECK_SECONDS) -> None:
        self.share = max(1, share)
        self.interval = interval
        self.cores = max(1, available_cores() // self.share)
        fixed, source = ((threads, "config") if threads is not None
                         else (explicit_threads(), "environment"))
        self._last: tuple[float, float, float] | None = None
        if fixed is not None:
            self.choice = ThreadChoice(fixed, self.cores, None, source)
        else:
            self._mark()
            time.sleep(_SAMPLE_SECONDS)
            self.choice = self._measure() or ThreadChoice(self.cores, self.cores, None, "automatic")
        self._apply()

    @property
    def threads(self) -> int:
        """The current thread count."""
        return self.choice.threads

    def update(self) -> ThreadChoice | None:
        """Re-check the load if the choice is automatic and ``interval`` has passed; returns
        the new choice when the thread count changed, else None."""
        if self.choice.source != "automatic" or self._last is None:
            return None
        if time.monotonic() - self._last[0] < self.interval:
            return None
        choice = self._measure()
        if choice is None or choice.threads == self.choice.threads:
            if choice is not None:
                self.choice = choice
            return None
        self.choice = choice
        self._apply()
        return choice

    def _mark(self) -> None:
        busy = _busy_seconds()
        self._last = None if busy is None else (time.monotonic(), busy, _own_seconds())

    def _measure(self) -> ThreadChoice | None:
        """Cores kept busy by other processes since the last mark, and the choice it gives."""
        if self._last is None:
            return None
        start, busy_start, own_start = self._last
        busy = _busy_seconds()
        if busy is None:
            return None
        now, own = time.monotonic(), _own_seconds()
        elapsed = max(now - start, 1e-3)
        elsewhere = max(0.0, (busy - busy_start) - (own - own_start)) / elapsed / self.share
        self._last = (now, busy, own)
        # a core counts as taken once another process keeps it more than 60% busy
        threads = max(1, self.cores - int(elsewhere + 0.4))
        return ThreadChoice(threads, self.cores, elsewhere, "automatic")

    def _apply(self) -> None:
        import torch

        if torch.get_num_threads() != self.choice.threads:
            torch.set_num_threads(self.choice.threads)


_shared: ThreadGovernor | None = None


def governor(threads: int | None = None) -> ThreadGovernor:
    """A governor for ``threads`` (an explicit count), or else the process's one automatic
    governor, made (and the load first measured) on the first call."""
    global _shared
    if threads is not None:
        return ThreadGovernor(threads)
    if _shared is None:
        _shared = ThreadGovernor()
    return _shared
