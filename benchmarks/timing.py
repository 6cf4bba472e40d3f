"""Timing helpers shared by the benchmarks: best-of-N wall clock with its CPU seconds.

On a shared machine the wall clock understates what free cores do; CPU seconds of the same run
say what the work costs whatever the load, so the benchmarks print both.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(what: Callable[[], T], repeat: int = 3, warm_up: bool = False) -> tuple[float, float, T]:
    """Best wall-clock seconds over `repeat` runs, the CPU seconds of that run, its result."""
    if warm_up:
        what()
    runs = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), cpu_seconds()
        result = what()
        runs.append((time.perf_counter() - wall, cpu_seconds() - cpu, result))
    return min(runs, key=lambda run: run[0])


def parcels_line(name: str, n: int, wall: float, cpu: float | None) -> None:
    """Print one throughput line: parcels per second and, when known, per CPU-second."""
    per_cpu = f"; {n / cpu:,.0f} parcels per CPU-second" if cpu else ""
    print(f"  {name:<34} {n / wall:>9,.0f} parcels/s  ({wall:.2f} s{per_cpu})")
