"""The stats page under concurrent writers and readers: readers never see a torn update.

A writer in another process updates counters that move together (every execution adds the same busy time and
FLOPs); whatever moment a reader copies the page, the counters it gets must agree with each other. A page
from a dead or foreign file is None, never garbage.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest

from nrt_lab.driver.stats import LATENCY_RING, OUTCOMES, StatsPage, page_bytes, read_stats

BUSY_NS, FLOPS, TOTAL_NS = 1_000, 7, 2_000


def _writer(path: str, seconds: float, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    page = StatsPage(Path(path), [4, 5])
    ready.set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for core in (4, 5):
            page.record_execution(core, 0, BUSY_NS, FLOPS, TOTAL_NS, BUSY_NS, None, 0)
            page.add_device_memory(core, 4, 64)
            page.add_device_memory(core, 4, -64)
    page.enabled = False  # leave the file in place for the final read


def test_concurrent_reads_are_never_torn(tmp_path: Path) -> None:
    path = tmp_path / "123.abcd.stats"
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    writer = ctx.Process(target=_writer, args=(str(path), 1.5, ready))
    writer.start()
    try:
        assert ready.wait(30)
        reads = 0
        while writer.is_alive():
            snap = read_stats(path)
            assert snap is not None
            for core in snap.cores:
                done = core.outcomes["completed"]
                assert core.inferences == done and core.busy_ns == done * BUSY_NS and core.flops == done * FLOPS
                assert core.status["success"] == done
                assert core.memory["tensors"] in (0, 64)
            if snap.latencies.size:
                assert set(np.unique(snap.latencies[:, 1])) == {TOTAL_NS}
                assert snap.latencies.shape[0] <= 2 * LATENCY_RING
            reads += 1
        assert reads > 10
    finally:
        writer.join(30)
    final = read_stats(path)
    assert final is not None and all(c.outcomes["completed"] > 0 for c in final.cores)
    assert sum(final.cores[0].outcomes[k] for k in OUTCOMES) == final.cores[0].inferences


@pytest.mark.parametrize("content", [b"", b"\0" * 100, b"x" * page_bytes(2), b"\xff" * page_bytes(2)])
def test_foreign_or_truncated_files_read_as_none(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "1.dead.stats"
    path.write_bytes(content)
    assert read_stats(path) is None
    assert read_stats(tmp_path / "missing.stats") is None
