"""neuron-monitor (docs/behaviour.md §7): reports of real workload processes, checked against a JSON schema of the report.

Workloads are real child processes on the test's own machine (``NRT_LAB_ROOT``) that run a matmul model
built with GraphBuilder, either with a known duty cycle (busy ~50% of every 100 ms) or on command (``run N``
executions). The monitor runs as the ``neuron-monitor`` console script. Every child is killed at teardown.
"""

from __future__ import annotations

import io
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import nrt_lab
from conftest import FakeClock, child_environment
from nrt_lab.tools import neuron_monitor
from nrt_lab.tools.neuron_monitor import (
    DEFAULT_PERIOD_S,
    RUNTIME_METRIC_TYPES,
    SYSTEM_METRIC_TYPES,
    ConfigError,
    MetricGroup,
    MonitorConfig,
    NeuronMonitor,
    RuntimeGroupConfig,
    default_config,
    parse_config,
    parse_period,
    read_hardware_counters,
)

pytestmark = pytest.mark.instance("trn1.32xlarge")

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "neuron_monitor_report.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
ALL_RUNTIME = [{"type": t} for t in RUNTIME_METRIC_TYPES]
ALL_SYSTEM = [{"type": t} for t in SYSTEM_METRIC_TYPES]

# A workload process: loads a 256x256 matmul and either keeps a duty cycle (argv: duty <busy fraction> <cycle s>
# <state file>) or waits for "run N" commands on stdin (argv: idle). It prints one JSON line when ready and one
# per finished command; in duty mode it rewrites <state file> with its cumulative device-busy time every cycle.
WORKLOAD = r"""# nrt-lab-test-workload
import json, os, signal, sys, time
import numpy as np
import nrt_lab
from nrt_lab.neff import GraphBuilder
signal.alarm(120)
def say(**kw):
    sys.stdout.write(json.dumps(kw) + "\n"); sys.stdout.flush()
rt = nrt_lab.init()
g = GraphBuilder(name="duty")
x = g.input("x", "float32", (256, 256))
g.output("y", g.op("matmul", [x, g.constant("w", np.eye(256, dtype=np.float32))]))
model = nrt_lab.Model.load(g.build())
inputs = {"x": np.ones((256, 256), np.float32)}
say(event="ready", pid=os.getpid(), cores=list(rt.cores), tag=rt.tag)
if sys.argv[1] == "duty":
    duty, cycle, state = float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    busy_ns = 0
    while True:
        start = time.monotonic()
        while time.monotonic() - start < duty * cycle:
            model.execute(inputs)
            busy_ns += model.last_device_ns
        with open(state + ".tmp", "w") as fh:
            json.dump({"t": time.monotonic(), "busy_ns": busy_ns}, fh)
        os.replace(state + ".tmp", state)
        time.sleep(max(0.0, cycle - (time.monotonic() - start)))
for line in sys.stdin:
    words = line.split()
    if words and words[0] == "run":
        for _ in range(int(words[1])):
            model.execute(inputs)
        say(event="done", executions=int(words[1]))
"""


# ---------------------------------------------------------------------------------------------- helpers


class Child:
    """A child process with line-oriented stdout read under a timeout."""

    def __init__(self, args: list[str], env: dict[str, str], stdin: bool = False) -> None:
        self.proc = subprocess.Popen(args, env=env, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True)
        self._buffer = b""

    def line(self, timeout: float = 15.0) -> str:
        """The next stdout line (AssertionError after ``timeout`` or at end of output)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            assert left > 0, f"no output line in {timeout} s; stderr: {self.stderr_now()}"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                assert chunk, f"process exited ({self.proc.wait()}) early; stderr: {self.stderr_now()}"
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def json(self, timeout: float = 15.0) -> dict[str, Any]:
        """The next stdout line, decoded."""
        return json.loads(self.line(timeout))  # type: ignore[no-any-return]

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def stderr_now(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(still running)"
        return self.proc.stderr.read().decode(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=15)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


def monitor_command() -> list[str]:
    """How to start this interpreter's ``neuron-monitor`` console script."""
    script = Path(sys.executable).parent / "neuron-monitor"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nrt_lab.tools.neuron_monitor"]


@pytest.fixture
def children(machine_root: Path) -> Iterator[list[Child]]:
    """Every Child a test starts; all are killed at teardown."""
    started: list[Child] = []
    yield started
    for child in started:
        child.kill()


Start = Callable[..., Child]


@pytest.fixture
def workload(machine_root: Path, children: list[Child]) -> Start:
    """Factory: ``workload("idle", tag="x")`` or ``workload("duty", "0.5", "0.1", state_path)``; waits ready."""

    def start(*argv: str, tag: str | None = None) -> Child:
        env = {"NEURON_RT_NUM_CORES": "1", **({"NEURON_PROCESS_TAG": tag} if tag else {})}
        child = Child([sys.executable, "-c", WORKLOAD, *argv], child_environment(machine_root, env), stdin=True)
        children.append(child)
        ready = child.json(timeout=30)
        assert ready["event"] == "ready", ready
        child.pid = ready["pid"]  # type: ignore[attr-defined]
        return child

    return start


@pytest.fixture
def monitor(machine_root: Path, children: list[Child], tmp_path: Path) -> Start:
    """Factory: ``monitor(config_dict_or_None, *extra_args)`` starts neuron-monitor with that configuration."""

    def start(config: dict[str, Any] | None, *extra: str) -> Child:
        args = [*monitor_command(), *extra]
        if config is not None:
            path = tmp_path / f"monitor-{len(children)}.json"
            path.write_text(json.dumps(config))
            args += ["-c", str(path)]
        child = Child(args, child_environment(machine_root))
        children.append(child)
        return child

    return start


def runtime_of(report: dict[str, Any], pid: int) -> dict[str, Any] | None:
    return next((r for r in report["neuron_runtime_data"] if r["pid"] == pid), None)


def assert_valid(report: dict[str, Any]) -> None:
    errors = sorted(VALIDATOR.iter_errors(report), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


# ---------------------------------------------------------------------------------------------- configuration


def test_default_config_is_every_group_every_five_seconds() -> None:
    config = default_config()
    assert DEFAULT_PERIOD_S == 5.0
    assert [(g.type, g.period) for g in config.runtimes[0].metrics] == [(t, 5.0) for t in RUNTIME_METRIC_TYPES]
    assert [(g.type, g.period) for g in config.system] == [(t, 5.0) for t in SYSTEM_METRIC_TYPES]
    assert config.runtimes[0].matches("anything") and config.runtimes[0].matches("")


@pytest.mark.parametrize(("text", "seconds"), [("1s", 1.0), ("5s", 5.0), ("500ms", 0.5), ("2m", 120.0),
                                                ("1h", 3600.0), ("100ms", 0.1), (" 3s ", 3.0)])
def test_period_syntax(text: str, seconds: float) -> None:
    assert parse_period(text) == seconds


@pytest.mark.parametrize("text", ["500", "1.0s", "0.5s", "-1s", "0ms", "99ms", "25h", "1 s", "1S", "s", ""])
def test_invalid_period_strings(text: str) -> None:
    with pytest.raises(ConfigError, match=r"accepted: a whole number followed by s"):
        parse_period(text, "period")


def test_periods_are_inherited_root_then_runtime_then_group() -> None:
    config = parse_config({
        "period": "2s",
        "neuron_runtimes": [{"tag_filter": "^a", "period": "3s",
                             "metrics": [{"type": "memory_used"}, {"type": "execution_stats", "period": "7s"}]},
                            {"metrics": [{"type": "neuroncore_counters"}]}],
        "system_metrics": [{"type": "memory_info"}, {"type": "neuron_hw_counters", "period": "500ms"}],
    })
    assert config == MonitorConfig(
        (RuntimeGroupConfig("^a", (MetricGroup("memory_used", 3.0), MetricGroup("execution_stats", 7.0))),
         RuntimeGroupConfig(None, (MetricGroup("neuroncore_counters", 2.0),))),
        (MetricGroup("memory_info", 2.0), MetricGroup("neuron_hw_counters", 0.5)),
    )
    assert config.runtimes[0].matches("abc") and not config.runtimes[0].matches("bca")


BAD_CONFIGS: list[tuple[str, str | None, str]] = [
    # (id, file content or None = missing file, a phrase the message must hold)
    ("missing-file", None, "does not exist"),
    ("not-json", '{"period": "1s",', "is not valid JSON"),
    ("not-an-object", '["period"]', "accepted: a JSON object"),
    ("unknown-metric-type", '{"neuron_runtimes": [{"metrics": [{"type": "gpu_usage"}]}]}',
     '"gpu_usage" is not accepted here (unknown metric type); accepted types: neuroncore_counters'),
    ("system-type-in-runtime", '{"neuron_runtimes": [{"metrics": [{"type": "memory_info"}]}]}',
     "it is a system_metrics type"),
    ("renamed-type", '{"neuron_runtimes": [{"metrics": [{"type": "inference_stats"}]}]}',
     "it was renamed execution_stats"),
    ("bad-period", '{"period": "fast"}', 'period "fast" is not a valid period; accepted: a whole number'),
    ("decimal-period", '{"period": "1.5s"}', "decimals are not accepted"),
    ("zero-period", '{"system_metrics": [{"type": "memory_info", "period": "0s"}]}', "is out of range"),
    ("period-not-string", '{"period": 5}', "period is 5, a number; accepted: a string"),
    ("bad-regex", '{"neuron_runtimes": [{"tag_filter": "([a-z", "metrics": []}]}',
     "is not a valid regular expression"),
    ("tag-filter-not-string", '{"neuron_runtimes": [{"tag_filter": 3}]}', "tag_filter is a JSON number"),
    ("metrics-not-array", '{"neuron_runtimes": [{"metrics": {"type": "memory_used"}}]}',
     "metrics is a JSON object; accepted: an array"),
    ("runtimes-not-array", '{"neuron_runtimes": {}}', "neuron_runtimes is a JSON object; accepted: an array"),
    ("unknown-root-key", '{"perod": "1s"}', 'has unknown key "perod"; accepted keys: period, neuron_runtimes'),
    ("missing-type", '{"system_metrics": [{"period": "1s"}]}', 'has no "type"'),
    ("type-not-string", '{"system_metrics": [{"type": 7}]}', ".type is a JSON number"),
    ("duplicate-type", '{"system_metrics": [{"type": "memory_info"}, {"type": "memory_info"}]}', "listed twice"),
]


@pytest.mark.parametrize(("content", "phrase"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_exits_2_with_one_clear_message(content: str | None, phrase: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "monitor.json"
    if content is not None:
        path.write_text(content)
    assert neuron_monitor.main(["-c", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("neuron-monitor: error: ") and err.count("\n") == 1, err
    assert phrase in err, err
    if content is not None:
        assert str(path) in err


def test_bad_config_in_a_real_process_writes_nothing_on_stdout(monitor: Start, tmp_path: Path) -> None:
    child = monitor({"neuron_runtimes": [{"metrics": [{"type": "neuroncore_counters", "period": "2x"}]}]})
    assert child.proc.wait(timeout=30) == 2
    assert child.proc.stdout is not None and child.proc.stdout.read() == b""
    err = child.stderr_now()
    assert 'neuron_runtimes[0].metrics[0].period "2x" is not a valid period' in err, err


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--verbose", "5"], ["--count", "0"], ["--bogus"]):
        with pytest.raises(SystemExit) as info:
            neuron_monitor.main(args)
        assert info.value.code == 2
    assert capsys.readouterr().out == ""




# ---------------------------------------------------------------------------------------------- hardware counters


def test_hardware_counters_are_zero_without_fault_injection(machine_root: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nrt_lab.driver.faults", None)  # the module is absent: import fails
    devices, error = read_hardware_counters(machine_root, 3)
    assert error == ""
    assert devices == [{"neuron_device_index": i, "mem_ecc_corrected": 0, "mem_ecc_uncorrected": 0,
                        "sram_ecc_uncorrected": 0, "sram_ecc_corrected": 0} for i in range(3)]


def test_hardware_counters_come_from_fault_injection_per_period(machine_root: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    counts: dict[int, dict[str, int]] = {1: {"mem_ecc_corrected": 4}}
    fake = types.ModuleType("nrt_lab.driver.faults")
    fake.hardware_counters = lambda root: {k: dict(v) for k, v in counts.items()}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nrt_lab.driver.faults", fake)
    devices, error = read_hardware_counters(machine_root, 16)
    assert error == "" and devices[1]["mem_ecc_corrected"] == 4 and devices[0]["mem_ecc_corrected"] == 0

    clock = FakeClock(1000.0)
    mon = NeuronMonitor(MonitorConfig((), (MetricGroup("neuron_hw_counters", 0.1),)), clock=clock)
    mon.start()  # baseline: the 4 events before the monitor started belong to no period
    counts[1] = {"mem_ecc_corrected": 6, "sram_ecc_uncorrected": 1}
    clock.advance(0.12)
    group = mon.collect()["system_data"]["neuron_hw_counters"]
    assert len(group["neuron_devices"]) == 16 and group["error"] == ""
    assert group["neuron_devices"][1] == {"neuron_device_index": 1, "mem_ecc_corrected": 2,
                                          "mem_ecc_uncorrected": 0, "sram_ecc_uncorrected": 1,
                                          "sram_ecc_corrected": 0}
    clock.advance(0.12)
    group = mon.collect()["system_data"]["neuron_hw_counters"]
    assert all(d[k] == 0 for d in group["neuron_devices"] for k in neuron_monitor.HW_COUNTER_NAMES)

    fake.hardware_counters = lambda root: 1 / 0  # type: ignore[attr-defined]
    clock.advance(0.12)
    group = mon.collect()["system_data"]["neuron_hw_counters"]
    assert group["error"].startswith("failed to read hardware counters: division by zero")


def test_hardware_counters_follow_the_driver_fault_counters(machine_root: Path) -> None:
    faults = pytest.importorskip("nrt_lab.driver.faults")
    if not hasattr(faults, "record_hardware_event"):
        pytest.skip("nrt_lab.driver.faults has no record_hardware_event")
    instance_id = nrt_lab.open_machine().state().instance_id
    clock = FakeClock(1000.0)
    mon = NeuronMonitor(MonitorConfig((), (MetricGroup("neuron_hw_counters", 0.1),)), clock=clock)
    mon.start()
    faults.record_hardware_event(machine_root, instance_id, 3, ["sram_ecc_uncorrected", "mem_ecc_corrected"])
    clock.advance(0.12)
    devices = mon.collect()["system_data"]["neuron_hw_counters"]["neuron_devices"]
    assert [d for d in devices if any(d[k] for k in neuron_monitor.HW_COUNTER_NAMES)] == [
        {"neuron_device_index": 3, "mem_ecc_corrected": 1, "mem_ecc_uncorrected": 0, "sram_ecc_uncorrected": 1,
         "sram_ecc_corrected": 0}]


# ---------------------------------------------------------------------------------------------- in-process reports


def test_only_due_groups_are_reported_but_every_runtime_is_listed(machine_root: Path) -> None:
    rt = nrt_lab.init()
    config = MonitorConfig((RuntimeGroupConfig(".*", (MetricGroup("neuroncore_counters", 60.0),)),),
                           (MetricGroup("memory_info", 0.1),))
    clock = FakeClock(1000.0)
    mon = NeuronMonitor(config, clock=clock)
    mon.start()
    clock.advance(0.12)
    report = mon.collect()
    assert_valid(report)
    assert list(report["system_data"]) == ["memory_info"]
    entry = runtime_of(report, os.getpid())
    assert entry == {"pid": os.getpid(), "address": "", "neuron_runtime_tag": rt.tag, "error": "", "report": {}}
    assert report["instance_info"]["instance_type"] == "trn1.32xlarge"
    assert report["instance_info"]["instance_id"] == nrt_lab.open_machine().state().instance_id
    assert report["neuron_hardware_info"] == {
        "neuron_device_type": "trainium", "neuron_device_version": "v2", "neuroncore_version": "v2",
        "neuron_device_count": 16, "neuron_device_memory_size": 32 * 2**30, "neuroncore_per_device_count": 2,
        "logical_neuroncore_config": 1, "error": ""}


def test_nothing_configured_writes_nothing_until_stopped(machine_root: Path) -> None:
    mon = NeuronMonitor(parse_config({"neuron_runtimes": [], "system_metrics": []}))
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    out = io.StringIO()
    assert mon.run(out, None, stop) == 0 and out.getvalue() == ""


@pytest.mark.instance("trn2.48xlarge")
def test_trn2_cores_carry_their_physical_v3d_utilization(machine_root: Path) -> None:
    nrt_lab.init()
    clock = FakeClock(1000.0)
    mon = NeuronMonitor(MonitorConfig((RuntimeGroupConfig(None, (MetricGroup("neuroncore_counters", 0.1),)),), ()),
                        clock=clock)
    mon.start()
    clock.advance(0.12)
    report = mon.collect()
    assert_valid(report)
    cores = runtime_of(report, os.getpid())["report"]["neuroncore_counters"]["neuroncores_in_use"]  # type: ignore[index]
    assert len(cores) == 64
    assert cores["5"]["v3d"] == {"nc_v3.10": {"neuroncore_utilization": 0.0}, "nc_v3.11": {"neuroncore_utilization": 0.0}}
    assert report["neuron_hardware_info"]["neuroncore_version"] == "v3d"


# ---------------------------------------------------------------------------------------------- real processes


def test_reports_match_the_schema_and_count_executions_per_period(workload: Start, monitor: Start) -> None:
    app = workload("idle", tag="schema_app")
    mon = monitor({"period": "1s", "neuron_runtimes": [{"tag_filter": ".*", "metrics": ALL_RUNTIME}],
                   "system_metrics": ALL_SYSTEM})
    first = mon.json()
    app.send("run 25")
    assert app.json()["event"] == "done"
    reports = [first, mon.json(), mon.json()]
    completed = 0
    for report in reports:
        assert_valid(report)
        assert set(report["system_data"]) == set(SYSTEM_METRIC_TYPES)
        entry = runtime_of(report, app.pid)  # type: ignore[attr-defined]
        assert entry is not None and entry["neuron_runtime_tag"] == "schema_app" and entry["error"] == ""
        assert list(entry["report"]) == list(RUNTIME_METRIC_TYPES)
        for group in [*entry["report"].values(), *report["system_data"].values()]:
            assert group["error"] == "" and group["period"] > 0, group
        completed += entry["report"]["execution_stats"]["execution_summary"]["completed"]
        memory = entry["report"]["memory_used"]
        assert [m["name"] for m in memory["loaded_models"]] == ["duty"]
        assert list(memory["loaded_models"][0]["subgraphs"]) == ["sg_00"]
        core = next(iter(memory["neuron_runtime_used_bytes"]["usage_breakdown"]["neuroncore_memory_usage"]))
        assert memory["loaded_models"][0]["subgraphs"]["sg_00"]["neuroncore_index"] == int(core)
    assert completed == 25  # counts are per period: the run of 25 shows up once, in whichever periods it fell
    stats = [runtime_of(r, app.pid)["report"]["execution_stats"] for r in reports]  # type: ignore[attr-defined,index]
    assert any(s["latency_stats"]["total_latency"] is not None for s in stats)
    assert stats[-1]["execution_summary"]["completed"] == 0 or stats[-2]["execution_summary"]["completed"] == 0
    assert reports[0]["instance_info"]["instance_type"] == "trn1.32xlarge"


def test_utilization_follows_the_workload_duty_cycle(workload: Start, monitor: Start, tmp_path: Path) -> None:
    state = tmp_path / "duty.json"
    app = workload("duty", "0.5", "0.1", str(state))
    mon = monitor({"period": "1s", "neuron_runtimes": [{"metrics": [{"type": "neuroncore_counters"}]}],
                   "system_metrics": []})
    mon.line()  # the first period may include the workload's start
    start = json.loads(state.read_text())
    weighted = seconds = 0.0
    flops = []
    for _ in range(3):
        report = mon.json()
        group = runtime_of(report, app.pid)["report"]["neuroncore_counters"]  # type: ignore[attr-defined,index]
        (core,) = group["neuroncores_in_use"].values()
        weighted += core["neuroncore_utilization"] * group["period"]
        seconds += group["period"]
        flops.append(core["flops"])
    end = json.loads(state.read_text())
    measured = weighted / seconds
    # The workload measures its own busy time (device time of its executions, as the runtime reports it) over
    # the same ~3 s: on a loaded machine its duty cycle drifts, and the monitor must follow what really ran.
    duty = 100.0 * (end["busy_ns"] - start["busy_ns"]) / 1e9 / (end["t"] - start["t"])
    # No assertion on the duty cycle itself (a loaded machine stretches it): only that the workload ran and
    # that the monitor reports what it measured.
    assert duty > 1.0, f"the workload did not run ({duty:.1f}%)"
    assert abs(measured - duty) <= 10.0, (measured, duty)
    assert all(f > 0 for f in flops)


def test_tag_filter_selects_runtimes_and_merges_their_groups(workload: Start, monitor: Start) -> None:
    alpha = workload("idle", tag="alpha-1")
    beta = workload("idle", tag="beta-1")
    mon = monitor({"period": "1s",
                   "neuron_runtimes": [{"tag_filter": "^alpha", "metrics": [{"type": "neuroncore_counters"}]},
                                       {"tag_filter": "-1$", "metrics": [{"type": "memory_used"}]}]},
                  "--count", "1")
    report = mon.json()
    assert_valid(report)
    entries = {r["neuron_runtime_tag"]: r for r in report["neuron_runtime_data"]}
    assert set(entries) == {"alpha-1", "beta-1"}
    assert entries["alpha-1"]["pid"] == alpha.pid  # type: ignore[attr-defined]
    assert entries["beta-1"]["pid"] == beta.pid  # type: ignore[attr-defined]
    assert list(entries["alpha-1"]["report"]) == ["neuroncore_counters", "memory_used"]
    assert list(entries["beta-1"]["report"]) == ["memory_used"]
    assert report["system_data"] == {}
    assert mon.proc.wait(timeout=10) == 0


def test_groups_are_reported_at_their_own_periods(workload: Start) -> None:
    app = workload("idle", tag="periods")
    config = parse_config({"period": "1s",
                           "neuron_runtimes": [{"tag_filter": "^periods$",
                                                "metrics": [{"type": "neuroncore_counters"},
                                                            {"type": "execution_stats", "period": "2s"}]}],
                           "system_metrics": [{"type": "memory_info", "period": "3s"}]})
    clock = FakeClock(1000.0)
    mon = NeuronMonitor(config, clock=clock, wait=clock.wait)
    out = io.StringIO()
    assert mon.run(out, count=4) == 4
    assert clock.now == 1004.0  # the monitor waited exactly until each report was due
    reports = [json.loads(line) for line in out.getvalue().splitlines()]
    groups = []
    for report in reports:
        assert_valid(report)
        (entry,) = report["neuron_runtime_data"]
        assert entry["pid"] == app.pid  # type: ignore[attr-defined]
        groups.append((sorted(entry["report"]), sorted(report["system_data"])))
    assert groups == [
        (["neuroncore_counters"], []),
        (["execution_stats", "neuroncore_counters"], []),
        (["neuroncore_counters"], ["memory_info"]),
        (["execution_stats", "neuroncore_counters"], []),
    ]


def test_a_process_that_exits_disappears_from_the_next_report(workload: Start, monitor: Start) -> None:
    stays = workload("idle", tag="stays")
    leaves = workload("idle", tag="leaves")
    mon = monitor({"period": "1s", "neuron_runtimes": [{"metrics": [{"type": "neuroncore_counters"}]}]})
    report = mon.json()
    assert {r["pid"] for r in report["neuron_runtime_data"]} == {stays.pid, leaves.pid}  # type: ignore[attr-defined]
    leaves.kill()
    report = mon.json()
    assert [r["pid"] for r in report["neuron_runtime_data"]] == [stays.pid]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- process control


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_end_the_monitor_cleanly(monitor: Start, sig: signal.Signals) -> None:
    mon = monitor({"system_metrics": [{"type": "memory_info", "period": "200ms"}]})
    assert_valid(mon.json())
    mon.proc.send_signal(sig)
    assert mon.proc.wait(timeout=10) == 0
    assert mon.proc.stdout is not None
    rest = mon._buffer + mon.proc.stdout.read()
    for line in rest.decode().splitlines():
        assert_valid(json.loads(line))  # never half a report
    assert rest == b"" or rest.endswith(b"\n")
    assert mon.stderr_now() == ""


def test_a_closed_stdout_ends_the_monitor_cleanly(monitor: Start) -> None:
    mon = monitor({"system_metrics": [{"type": "memory_info", "period": "100ms"}]})
    mon.line()
    assert mon.proc.stdout is not None
    mon.proc.stdout.close()
    assert mon.proc.wait(timeout=10) == 0
    assert mon.stderr_now() == ""


def test_verbose_levels_log_to_stderr_only(monitor: Start) -> None:
    config = {"system_metrics": [{"type": "memory_info", "period": "100ms"}]}
    quiet = monitor(config, "--count", "2")
    loud = monitor(config, "--count", "2", "--verbose", "4")
    for child in (quiet, loud):
        assert child.proc.wait(timeout=20) == 0
        assert child.proc.stdout is not None
        lines = child.proc.stdout.read().decode().splitlines()
        assert len(lines) == 2 and all(assert_valid(json.loads(line)) is None for line in lines)
    assert quiet.stderr_now() == ""
    err = loud.stderr_now()
    assert " neuron-monitor INFO: monitoring 1 metric groups" in err
    assert err.count(" neuron-monitor INFO: report: 0 runtimes, groups memory_info") == 2
    assert " neuron-monitor DEBUG: system groups memory_info @0.1s in " in err
