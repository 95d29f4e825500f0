"""Shared timing helper for the benchmarks: side-by-side measurements that machine noise hits alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

__all__ = ["interleaved_us"]


def interleaved_us(fns: list[Callable[[], object]], repeat: int = 15, number: int = 1000) -> list[float]:
    """Median per-call µs of each function, measured in alternating batches so machine noise hits all alike."""
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for index, fn in enumerate(fns):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            samples[index].append((time.perf_counter() - start) / number * 1e6)
    return [statistics.median(s) for s in samples]
