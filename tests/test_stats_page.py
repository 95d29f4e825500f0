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


def test_threads_executing_allocating_and_failing_on_one_core_lose_no_count(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Executions account without a stats lock (the core's execution lock orders them); tensor allocations and
    rejected inputs on the same core, from other threads, must neither lose counts nor tear the page."""
    import threading

    import nrt_lab
    from nrt_lab.neff import GraphBuilder

    monkeypatch.setenv("NRT_LAB_ROOT", str(tmp_path / "machine"))
    nrt_lab.open_machine().create("trn1.2xlarge")
    g = GraphBuilder(name="add")
    a, b = g.input("a", "float32", (8, 8)), g.input("b", "float32", (8, 8))
    g.output("out", g.op("add", [a, b]))
    runtime = nrt_lab.init()
    try:
        models = [nrt_lab.Model.load(g.build(), core=0), nrt_lab.Model.load(g.build(), core=1)]
        x = np.ones((8, 8), dtype=np.float32)
        runs, rejects, allocations = 300, 100, 200
        errors: list[BaseException] = []

        def execute(model: nrt_lab.Model) -> None:
            try:
                for _ in range(runs):
                    model.execute({"a": x, "b": x})
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        def reject() -> None:
            for _ in range(rejects):
                with pytest.raises(nrt_lab.NrtError):
                    models[0].execute({"a": x, "wrong": x})

        def allocate() -> None:
            for _ in range(allocations):
                nrt_lab.Tensor.allocate(4096, core=0).free()

        threads = [threading.Thread(target=execute, args=(m,)) for m in models for _ in range(2)]
        threads += [threading.Thread(target=reject), threading.Thread(target=allocate)]
        for t in threads:
            t.start()
        snapshots = []
        while any(t.is_alive() for t in threads):
            assert runtime.stats is not None
            snap = read_stats(runtime.stats.path)
            assert snap is not None
            snapshots.append(snap)
        for t in threads:
            t.join()
        assert not errors and len(snapshots) > 0
        final = read_stats(runtime.stats.path)
        assert final is not None
        by_core = {c.core: c for c in final.cores}
        for core in (0, 1):
            counters = by_core[core]
            # the two threads per core ran `runs` executions each, plus the auto-allocated outputs' executions
            assert counters.outcomes["completed"] == counters.inferences == 2 * runs
            assert counters.status["success"] == 2 * runs
        assert by_core[0].outcomes["incorrect_input"] == rejects and by_core[1].outcomes["incorrect_input"] == 0
        assert by_core[0].status["invalid_error"] == rejects
    finally:
        nrt_lab.close()


def test_a_reader_kept_open_sees_new_counts_and_refuses_a_truncated_page(tmp_path: Path) -> None:
    """A monitor maps each page once and reads it every period: later writes show, and a page truncated under
    the mapping (which would fault on access) reads as None instead of killing the reader."""
    from nrt_lab.driver.stats import StatsReader

    path = tmp_path / "p.stats"
    page = StatsPage(path, [3])
    reader = StatsReader.open(path)
    assert reader is not None
    with reader:
        before = reader.read()
        assert before is not None and before.cores[0].inferences == 0
        page.record_execution(3, 0, 1000, 10, 2000, 1000, None, 0)
        after = reader.read()
        assert after is not None and after.cores[0].inferences == 1 and after.cores[0].busy_ns == 1000
        with open(path, "r+b") as fh:
            fh.truncate(64)
        assert reader.read() is None
    assert reader.read() is None  # closed


def test_a_page_whose_blocks_stay_mid_write_reads_as_unreadable(tmp_path: Path) -> None:
    """Flipped bytes that leave every core's sequence word odd (a write that never ends) make the page unreadable
    (None) — after one patience period for the whole page, not one per core."""
    from nrt_lab.driver import stats

    path = tmp_path / "p.stats"
    page = StatsPage(path, list(range(16)))
    for base in page.base.values():
        page._words[base + stats._C_SEQ] = 1
    started = time.monotonic()
    assert read_stats(path, retries=10) is None
    assert time.monotonic() - started < 16 * stats._READ_PATIENCE_S  # not a patience period per core
