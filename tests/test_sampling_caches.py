"""What a fast poller (a 10 Hz widget) reuses between samples is reused only while it is right.

The stats reader keeps each core block's counters while the block's words are unchanged and copies only the new
latency-ring entries; the Monitor keeps idle cores' CoreSamples, its per-process handles and (for at most
``system_interval`` seconds of its clock) the host CPU/memory reading; TopView keeps the per-core values whose
samples did not change. Each cache is shown to give way: a changed core is re-read, a vanished runtime
disappears, an unchanged one is reused (the very same object).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nrt_lab
from conftest import FakeClock
from nrt_lab import Model
from nrt_lab.driver.stats import LATENCY_RING, OUTCOMES, StatsPage, StatsReader, read_stats
from nrt_lab.models import build_add
from nrt_lab.monitor import Monitor, percentiles
from nrt_lab.widgets import TopView


def _reader(page: StatsPage) -> StatsReader:
    reader = StatsReader.open(page.path)
    assert reader is not None
    return reader


def _execute(page: StatsPage, core: int, total_ns: int = 2000, outcome: int = 0) -> None:
    page.record_execution(core, outcome, busy_ns=1000, flops=10, total_ns=total_ns, device_ns=total_ns // 2,
                          error_kind=None, status_kind=0)


# ---------------------------------------------------------------------------------------------- stats reader


def test_reader_reuses_unchanged_blocks_and_rereads_changed_ones(tmp_path: Path) -> None:
    page = StatsPage(tmp_path / "p.stats", [4, 5, 6])
    with _reader(page) as reader:
        first = reader.read()
        assert first is not None
        _execute(page, 5)
        second = reader.read()
        assert second is not None
        assert second.cores[0] is first.cores[0] and second.cores[2] is first.cores[2]  # untouched: reused
        assert second.cores[1] is not first.cores[1]
        assert (second.cores[1].inferences, second.cores[1].busy_ns, second.cores[1].ring_position) == (1, 1000, 1)
        # A change outside executions (a rejected input, under the block's other sequence word) is seen too.
        page.record_failure(6, OUTCOMES.index("incorrect_input"), None, 3)
        page.add_device_memory(4, 1, 4096)
        third = reader.read()
        assert third is not None and third.cores[1] is second.cores[1]
        assert third.cores[2].outcomes["incorrect_input"] == 1 and third.cores[0].memory["model_code"] == 4096
        fresh = read_stats(page.path)
        assert fresh is not None
        assert third.cores == fresh.cores  # what a new reader sees
        assert third.outcome_totals == fresh.outcome_totals and third.error_totals == fresh.error_totals
        assert third.outcome_totals["completed"] == 1 and third.outcome_totals["incorrect_input"] == 1
        # The running word is stored without a sequence word (one word): a block whose only change is that word
        # is copied again all the same.
        page.set_running(6, 12345)
        running = reader.read()
        assert running is not None and running.cores[2].running_since_ns == 12345
        assert running.cores[0] is third.cores[0] and running.cores[2] is not third.cores[2]
        page.set_running(6, 0)
        idle = reader.read()
        assert idle is not None and idle.cores[2].running_since_ns == 0 and idle.cores[2] == third.cores[2]


def test_page_summaries_follow_every_change(tmp_path: Path) -> None:
    """The page's execution/error summaries are moved by what each changed block added: after any mix of
    executions and failures they equal what a reader that never saw the page before computes."""
    page = StatsPage(tmp_path / "p.stats", list(range(8)))
    rng = random.Random(9)
    with _reader(page) as reader:
        for _ in range(60):
            core = rng.randrange(8)
            if rng.random() < 0.7:
                _execute(page, core, outcome=rng.choice([0, 0, 1, 3]))
            else:
                page.record_failure(core, rng.randrange(len(OUTCOMES)), rng.randrange(6), rng.randrange(14))
            if rng.random() < 0.5:
                mine, fresh = reader.read(history=rng.random() < 0.5), read_stats(page.path)
                assert mine is not None and fresh is not None
                assert (mine.outcome_totals, mine.error_totals, mine.executions_total) == (
                    fresh.outcome_totals, fresh.error_totals, fresh.executions_total)
                assert mine.cores == fresh.cores


def test_new_latencies_are_the_executions_since_the_previous_read(tmp_path: Path) -> None:
    page = StatsPage(tmp_path / "p.stats", [0, 1])
    with _reader(page) as reader:
        empty = reader.read(history=False)
        assert empty is not None and empty.new_latencies.shape == (0, 4) and empty.latencies.shape == (0, 4)
        _execute(page, 0, 1000)
        _execute(page, 1, 2000)
        _execute(page, 0, 3000)
        snap = reader.read(history=False)
        assert snap is not None and snap.latencies.size == 0  # history=False: only the new rows are copied
        assert snap.new_latencies[:, 1].tolist() == [1000, 2000, 3000]  # oldest first
        assert snap.new_latencies[:, 3].tolist() == [0, 1, 0]  # the core of each execution
        assert not snap.new_latencies.flags.writeable
        again = reader.read(history=False)
        assert again is not None and again.new_latencies.size == 0  # nothing ran since
        _execute(page, 1, 4000)
        full = reader.read()  # history: every kept entry, and still only the new one as new
        assert full is not None
        assert full.latencies[:, 1].tolist() == [1000, 2000, 3000, 4000]
        assert full.new_latencies[:, 1].tolist() == [4000]
        # More executions than the ring holds between two reads: what the ring still holds is new.
        for index in range(LATENCY_RING + 40):
            _execute(page, 0, 10_000 + index)
        burst = reader.read(history=False)
        # (The ring's oldest slot is the one a write in progress would overwrite: a reader keeps RING - 1.)
        assert burst is not None and burst.new_latencies.shape == (LATENCY_RING - 1, 4)
        assert burst.new_latencies[:, 1].tolist() == list(range(10_041, 10_000 + LATENCY_RING + 40))
        fresh = read_stats(page.path)
        assert fresh is not None
        assert fresh.latencies[fresh.latencies[:, 3] == 0][:, 1].tolist() == burst.new_latencies[:, 1].tolist()


# ---------------------------------------------------------------------------------------------- monitor


@pytest.fixture
def runtime(machine_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[nrt_lab.Runtime]:
    """A runtime of this process holding 4 cores (closed at teardown)."""
    monkeypatch.setenv("NEURON_RT_NUM_CORES", "4")
    rt = nrt_lab.init()
    yield rt
    nrt_lab.close()


def _add_inputs() -> dict[str, np.ndarray[Any, Any]]:
    return {"a_input": np.arange(12, dtype=np.float16).reshape(4, 3),
            "b_input": np.full((4, 3), 0.5, dtype=np.float16)}


def test_monitor_reuses_idle_cores_and_rereads_a_core_that_ran(machine_root: Path, runtime: nrt_lab.Runtime) -> None:
    model = Model.load(build_add().neff, 1)
    model.execute(_add_inputs())
    clock = FakeClock()
    monitor = Monitor(machine_root, clock=clock)
    monitor.sample()  # the period since the runtime started
    clock.advance(0.125)
    quiet = monitor.sample()
    (rt,) = quiet.runtimes
    assert all(c.utilization == 0.0 and c.flops_per_s == 0.0 for c in rt.cores)
    clock.advance(0.125)
    still = monitor.sample()
    assert all(a is b for a, b in zip(still.runtimes[0].cores, rt.cores, strict=True))  # idle: the same samples
    assert still.owners == quiet.owners and still.owners[0] is quiet.owners[0]  # the same record: the same view
    assert still.runtimes[0].total_latency is None  # no execution in the period

    model.execute(_add_inputs())
    clock.advance(0.125)
    busy = monitor.sample().runtimes[0]
    ran = busy.cores[1]
    assert ran is not rt.cores[1] and ran.inferences == rt.cores[1].inferences + 1
    assert ran.flops_per_s > 0 and ran.utilization > 0
    assert all(busy.cores[i] is rt.cores[i] for i in (0, 2, 3))
    assert busy.execution_summary["completed"] == 2 and busy.total_latency is not None
    assert [m.core for m in busy.models] == [runtime.cores[1]]
    clock.advance(0.125)
    after = monitor.sample().runtimes[0]
    assert after.cores[1] is not ran and after.cores[1].utilization == 0.0  # idle again: a new zero-rate sample
    clock.advance(0.125)
    assert monitor.sample().runtimes[0].cores[1] is after.cores[1]  # …then reused


def test_monitor_latency_percentiles_cover_only_the_period(machine_root: Path, runtime: nrt_lab.Runtime) -> None:
    assert runtime.stats is not None
    clock = FakeClock()
    monitor = Monitor(machine_root, clock=clock)
    monitor.sample()
    page = runtime.stats
    for total in (4000, 1000, 3000):
        _execute(page, runtime.cores[2], total)
    clock.advance(0.25)
    rt = monitor.sample().runtimes[0]
    expected = percentiles(np.asarray([4000, 1000, 3000]))
    assert rt.total_latency == expected and rt.device_latency == percentiles(np.asarray([2000, 500, 1500]))
    _execute(page, runtime.cores[0], 9000)
    clock.advance(0.25)
    assert monitor.sample().runtimes[0].total_latency == percentiles(np.asarray([9000]))


def test_monitor_forgets_a_runtime_that_went_away(machine_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEURON_RT_NUM_CORES", "2")
    nrt_lab.init()
    clock = FakeClock()
    monitor = Monitor(machine_root, clock=clock)
    monitor.sample()
    clock.advance(0.125)
    assert len(monitor.sample().runtimes) == 1 and monitor._pages and monitor._processes and monitor._previous
    nrt_lab.close()
    clock.advance(0.125)
    gone = monitor.sample()
    assert gone.runtimes == () and gone.owners == ()
    assert not monitor._pages and not monitor._processes and not monitor._previous  # nothing kept for it
    nrt_lab.init()  # a new runtime of the same pid is a new runtime: nothing of the old one is reused
    try:
        clock.advance(0.125)
        (fresh,) = monitor.sample().runtimes
        assert (fresh.pid, fresh.start_time) in monitor._pages and len(monitor._pages) == 1
        assert fresh.execution_summary["completed"] == 0 and fresh.vcpu_user is not None
    finally:
        nrt_lab.close()


def test_monitor_reads_host_cpu_and_memory_at_most_every_system_interval(machine_root: Path) -> None:
    clock = FakeClock()
    monitor = Monitor(machine_root, clock=clock)
    first = monitor.sample()
    assert first.system.timestamp == clock.time() and first.period == 0.0 and first.system.vcpu_count > 0
    assert first.system.period == 0.0  # rates since boot: the next sample reads again
    clock.advance(0.125)
    second = monitor.sample()
    assert second.system is not first.system and second.system.period == 0.125 and second.period == 0.125
    clock.advance(0.125)
    third = monitor.sample()
    assert third.system is second.system and third.period == 0.125  # reused; the sample's own period is kept
    clock.advance(0.375)  # 0.5 s since the last reading: read again, its rates over those 0.5 s
    fourth = monitor.sample()
    assert fourth.system is not second.system
    assert fourth.system.timestamp == clock.time() and fourth.system.period == 0.5 and fourth.period == 0.375
    assert monitor.sample_system()[0] is not fourth.system  # asked for explicitly: always read
    eager = Monitor(machine_root, clock=clock, system_interval=0.0)
    eager.sample()
    assert eager.sample().system is not eager.sample().system


# ---------------------------------------------------------------------------------------------- TopView


def test_top_view_rebuilds_only_changed_cores_and_drops_a_gone_runtime(machine_root: Path,
                                                                       runtime: nrt_lab.Runtime) -> None:
    model = Model.load(build_add().neff, 2)
    clock = FakeClock()
    view = TopView(root=machine_root, autostart=False, clock=clock, charts=False)
    try:
        clock.advance(0.25)
        view.refresh()
        clock.advance(0.25)
        view.refresh()
        before = view.current_state()
        owned = list(runtime.cores)
        total = int(before["inst"]["total"])
        assert all(before[f"c{core}"] == [0.0, 0.0, 0, 0] for core in range(total) if core not in owned)
        built = {core: view._core_cache[core][1] for core in owned}  # the values the last update built
        model.execute(_add_inputs())
        clock.advance(0.25)
        view.refresh()
        after = view.current_state()
        busy, pid = runtime.cores[2], os.getpid()
        assert after[f"c{busy}"][1] > 0 and after[f"c{busy}"][2] == pid  # re-read: TFLOPS moved
        assert {k for k in view.delta["set"] if k.startswith("c")} == {f"c{busy}"}  # the only core sent
        assert view._core_cache[busy][1] is not built[busy]
        assert all(view._core_cache[core][1] is built[core] for core in owned if core != busy)  # reused as is
        assert after[f"x{pid}"][0] == 1  # one completed execution
        nrt_lab.close()
        clock.advance(0.25)
        view.refresh()
        gone = view.current_state()
        assert not [k for k in gone if k.startswith(("p", "x", "l", "m", "v")) and k.lstrip("pxlmdv").isdigit()]
        assert all(gone[f"c{core}"] == [0.0, 0.0, 0, 0] for core in range(total))
        assert view._process_cache == {} and view._core_cache == {}
    finally:
        view.close()


def test_process_cpu_times_through_a_kept_descriptor_match_psutil() -> None:
    """vCPU usage reads /proc/<pid>/stat through a descriptor kept open per runtime: the same seconds psutil
    reports (to a clock tick or two), and an error, never a wrong value, once the process is gone."""
    import subprocess
    import sys

    import psutil

    snapshot_module = sys.modules["nrt_lab.monitor.snapshot"]  # (nrt_lab.monitor.snapshot is also a function)
    times = snapshot_module._CpuTimes(os.getpid())
    sum(i * i for i in range(200_000))  # some CPU time of our own
    user, system = times.read()
    reference = psutil.Process().cpu_times()
    assert abs(user - reference.user) <= 0.05 and abs(system - reference.system) <= 0.05
    times.close()
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    gone = snapshot_module._CpuTimes(child.pid)
    assert gone.read()[0] >= 0.0
    assert child.stdin is not None
    child.stdin.close()
    child.wait(timeout=30)
    with pytest.raises(OSError):
        gone.read()
    gone.close()
