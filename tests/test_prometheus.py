"""neuron-monitor-prometheus (docs/behaviour.md §7): metric and label names of AWS's companion script, counters that only
grow, series removed with their runtime, bad input skipped; ``/metrics`` scraped over HTTP on 127.0.0.1 and
parsed with prometheus_client's own parser; the shipped Grafana dashboard uses only exported names."""

from __future__ import annotations

import copy
import json
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_neuron_monitor import WORKLOAD, Child, monitor_command

import nrt_lab
import nrt_lab.tools
from conftest import child_environment, kill_children
from nrt_lab.monitor import DEVICE_MEMORY_KINDS as NEURONCORE_MEMORY_KINDS
from nrt_lab.tools.prometheus import (
    INSTANCE_LABELS,
    NeuronMonitorCollector,
    ReportError,
    make_registry,
)

pytestmark = pytest.mark.instance("trn1.2xlarge")

INSTANCE = {"instance_name": "", "instance_id": "i-0123456789abcdef0", "instance_type": "trn1.2xlarge",
            "instance_availability_zone": "us-west-2b", "instance_availability_zone_id": "usw2-az2",
            "instance_region": "us-west-2", "ami_id": "ami-0011223344556677b", "subnet_id": "subnet-112233ee",
            "error": ""}
INSTANCE_LABEL_VALUES = {"instance_name": "", "instance_id": "i-0123456789abcdef0",
                         "instance_type": "trn1.2xlarge", "availability_zone": "us-west-2b",
                         "region": "us-west-2", "subnet_id": "subnet-112233ee"}
RT = {*INSTANCE_LABELS, "runtime_tag"}
# Label names per metric family as the real exporter prints them (its /metrics pages on inf1 and trn1n).
EXPECTED_LABELS: dict[str, set[str]] = {
    "execution_errors": RT | {"error_type"},
    "execution_status": RT | {"status_type"},
    "execution_latency_seconds": RT | {"percentile"},
    "neuron_runtime_memory_used_bytes": RT | {"memory_location"},
    **{f"neuroncore_memory_usage_{k}": RT | {"memory_location", "neuroncore"} for k in NEURONCORE_MEMORY_KINDS},
    "neuron_runtime_vcpu_usage_ratio": RT | {"usage_type"},
    "neuroncore_utilization_ratio": RT | {"neuroncore"},
    "system_memory_total_bytes": set(INSTANCE_LABELS),
    "system_memory_used_bytes": set(INSTANCE_LABELS),
    "system_swap_total_bytes": set(INSTANCE_LABELS),
    "system_swap_used_bytes": set(INSTANCE_LABELS),
    "hardware_ecc_events": set(INSTANCE_LABELS) | {"event_type", "neuron_device_index"},
    "system_vcpu_count": set(INSTANCE_LABELS),
    "system_vcpu_usage_ratio": set(INSTANCE_LABELS) | {"usage_type"},
    "instance_info": set(INSTANCE_LABELS),
    "neuron_hardware_info": set(INSTANCE_LABELS) | {"neuron_device_count", "neuroncore_per_device_count"},
}
COUNTERS = {"execution_errors", "execution_status", "hardware_ecc_events"}


def runtime_entry(pid: int, tag: str, completed: int = 0, utilization: float = 50.0,
                  latency: float | None = 0.002) -> dict[str, Any]:
    """One neuron_runtime_data entry with every group."""
    percentiles = {f"p{p}": latency for p in (0, 1, 25, 50, 75, 99, 100)} if latency is not None else None
    core = {"constants": 1024, "model_code": 2048, "model_shared_scratchpad": 0, "runtime_memory": 4096,
            "tensors": 512}
    return {"pid": pid, "address": "", "neuron_runtime_tag": tag, "error": "", "report": {
        "neuroncore_counters": {"period": 1.0, "neuroncores_in_use": {
            "0": {"neuroncore_utilization": utilization, "flops": 1000}}, "error": ""},
        "execution_stats": {"period": 1.0,
                            "error_summary": {"generic": 0, "numerical": 1, "transient": 0, "model": 0,
                                              "runtime": 0, "hardware": 0},
                            "execution_summary": {"completed": completed, "completed_with_err": 0,
                                                  "completed_with_num_err": 1, "timed_out": 0,
                                                  "incorrect_input": 0, "failed_to_queue": 0},
                            "latency_stats": {"total_latency": percentiles, "device_latency": percentiles},
                            "error": ""},
        "memory_used": {"period": 1.0, "neuron_runtime_used_bytes": {
            "host": 100, "neuron_device": 7680,
            "usage_breakdown": {"host": {"application_memory": 100, "constants": 0, "dma_buffers": 0, "tensors": 0},
                                "neuroncore_memory_usage": {"0": core}}},
            "loaded_models": [], "error": ""},
        "neuron_runtime_vcpu_usage": {"period": 1.0, "vcpu_usage": {"user": 12.5, "system": 2.5}, "error": ""},
    }}


def report(*runtimes: dict[str, Any], ecc: int = 0) -> dict[str, Any]:
    """A full neuron-monitor report (trn1.2xlarge: 1 device, 2 cores) holding ``runtimes``."""
    usage = {"user": 20.0, "nice": 5.0, "system": 10.0, "idle": 60.0, "io_wait": 2.0, "irq": 1.0, "soft_irq": 2.0}
    return {
        "neuron_runtime_data": list(runtimes),
        "system_data": {
            "vcpu_usage": {"period": 1.0, "average_usage": usage, "usage_data": {"0": usage, "1": usage},
                           "context_switch_count": 10, "error": ""},
            "memory_info": {"period": 1.0, "memory_total_bytes": 1000, "memory_used_bytes": 400,
                            "swap_total_bytes": 50, "swap_used_bytes": 5, "error": ""},
            "neuron_hw_counters": {"period": 1.0, "neuron_devices": [
                {"neuron_device_index": 0, "mem_ecc_corrected": ecc, "mem_ecc_uncorrected": 0,
                 "sram_ecc_uncorrected": 0, "sram_ecc_corrected": 0}], "error": ""},
        },
        "instance_info": INSTANCE,
        "neuron_hardware_info": {"neuron_device_type": "trainium", "neuron_device_version": "v2",
                                 "neuroncore_version": "v2", "neuron_device_count": 1,
                                 "neuron_device_memory_size": 34359738368, "neuroncore_per_device_count": 2,
                                 "logical_neuroncore_config": 1, "error": ""},
    }


def families(text: str) -> dict[str, Any]:
    """Metric families by name (``*_created`` companions dropped), parsed by prometheus_client."""
    return {f.name: f for f in text_string_to_metric_families(text) if not f.name.endswith("_created")}


def scrape_collector(collector: NeuronMonitorCollector) -> dict[str, Any]:
    return families(generate_latest(make_registry(collector, process_metrics=False)).decode())


def value(fams: dict[str, Any], name: str, **labels: str) -> float:
    """The value of the one sample of ``name`` whose labels include ``labels``."""
    family = name[:-6] if name.endswith("_total") else name
    found = [s.value for s in fams[family].samples
             if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return float(found[0])


# ---------------------------------------------------------------------------------------------- the collector


def test_metric_and_label_names_match_the_real_exporter() -> None:
    collector = NeuronMonitorCollector()
    assert collector.update(report(runtime_entry(10, "app", completed=3))) == []
    fams = scrape_collector(collector)
    assert set(fams) == set(EXPECTED_LABELS)
    for name, family in fams.items():
        assert family.type == ("counter" if name in COUNTERS else "gauge"), name
        for sample in family.samples:
            assert set(sample.labels) == EXPECTED_LABELS[name], (name, sample.labels)
            assert {k: sample.labels[k] for k in INSTANCE_LABELS} == INSTANCE_LABEL_VALUES
    assert value(fams, "instance_info") == 1.0
    assert value(fams, "neuron_hardware_info", neuron_device_count="1", neuroncore_per_device_count="2") == 1.0
    assert {s.labels["memory_location"] for s in fams["neuroncore_memory_usage_tensors"].samples} == {"None"}


def test_values_are_converted_as_the_real_exporter_does() -> None:
    collector = NeuronMonitorCollector()
    collector.update(report(runtime_entry(10, "app", utilization=42.0, latency=0.003)))
    fams = scrape_collector(collector)
    assert value(fams, "neuroncore_utilization_ratio", neuroncore="0", runtime_tag="app") == pytest.approx(0.42)
    assert value(fams, "neuron_runtime_vcpu_usage_ratio", usage_type="user") == pytest.approx(0.125)
    assert value(fams, "neuron_runtime_vcpu_usage_ratio", usage_type="system") == pytest.approx(0.025)
    assert value(fams, "neuron_runtime_memory_used_bytes", memory_location="neuron_device") == 7680
    assert value(fams, "neuron_runtime_memory_used_bytes", memory_location="host") == 100
    assert value(fams, "neuroncore_memory_usage_model_code", neuroncore="0") == 2048
    assert value(fams, "execution_latency_seconds", percentile="p99") == pytest.approx(0.003)
    assert value(fams, "system_vcpu_count") == 2
    assert value(fams, "system_vcpu_usage_ratio", usage_type="user") == pytest.approx(0.25)  # user + nice
    assert value(fams, "system_vcpu_usage_ratio", usage_type="system") == pytest.approx(0.15)  # + io_wait, irq, soft
    assert value(fams, "system_memory_used_bytes") == 400 and value(fams, "system_swap_total_bytes") == 50

    busy = report()
    busy["system_data"]["vcpu_usage"]["average_usage"].update(user=90.0, nice=20.0)
    collector.update(busy)
    assert value(scrape_collector(collector), "system_vcpu_usage_ratio", usage_type="user") == 1.0  # capped


def test_counters_add_each_period_and_never_decrease() -> None:
    collector = NeuronMonitorCollector()
    seen = []
    for completed, ecc in ((5, 1), (0, 0), (7, 2), (-3, 0)):
        collector.update(report(runtime_entry(10, "app", completed=completed), ecc=ecc))
        fams = scrape_collector(collector)
        seen.append((value(fams, "execution_status_total", status_type="completed"),
                     value(fams, "execution_status_total", status_type="completed_with_num_err"),
                     value(fams, "execution_errors_total", error_type="numerical"),
                     value(fams, "hardware_ecc_events_total", event_type="mem_ecc_corrected",
                           neuron_device_index="0")))
    assert seen == [(5, 1, 1, 1), (5, 2, 2, 1), (12, 3, 3, 3), (12, 4, 4, 3)]


def test_latency_keeps_its_last_value_over_a_period_without_executions() -> None:
    collector = NeuronMonitorCollector()
    collector.update(report(runtime_entry(10, "app", latency=0.004)))
    collector.update(report(runtime_entry(10, "app", latency=None)))
    assert value(scrape_collector(collector), "execution_latency_seconds", percentile="p50") == pytest.approx(0.004)


def test_series_of_a_runtime_that_exited_are_removed() -> None:
    collector = NeuronMonitorCollector()
    collector.update(report(runtime_entry(10, "stays", completed=1), runtime_entry(11, "leaves", completed=2)))
    fams = scrape_collector(collector)
    assert {s.labels["runtime_tag"] for s in fams["neuroncore_utilization_ratio"].samples} == {"stays", "leaves"}
    collector.update(report(runtime_entry(10, "stays")))
    fams = scrape_collector(collector)
    for name in EXPECTED_LABELS:
        if "runtime_tag" in EXPECTED_LABELS[name]:
            assert {s.labels["runtime_tag"] for s in fams[name].samples} == {"stays"}, name
    collector.update(report())
    fams = scrape_collector(collector)
    assert not any("runtime_tag" in EXPECTED_LABELS[name] for name in fams)
    assert "system_memory_used_bytes" in fams and "instance_info" in fams


def test_bad_lines_are_rejected_and_bad_groups_skipped() -> None:
    collector = NeuronMonitorCollector()
    for line, phrase in (("garbage", "not JSON"), ("[1, 2]", "the report is not a JSON object"),
                         ('{"neuron_runtime_data": []}', "instance_info is not a JSON object"),
                         (json.dumps({**report(), "neuron_runtime_data": {}}), "neuron_runtime_data is not")):
        with pytest.raises(ReportError, match=phrase):
            collector.update_line(line)
    assert scrape_collector(collector) == {}

    collector.update(report(runtime_entry(10, "app", utilization=30.0)))
    bad = report(runtime_entry(10, "app", utilization=80.0))
    bad["neuron_runtime_data"][0]["report"]["neuroncore_counters"]["neuroncores_in_use"]["0"][
        "neuroncore_utilization"] = "high"
    bad["neuron_runtime_data"][0]["report"]["memory_used"]["error"] = "device gone"
    bad["system_data"]["memory_info"]["error"] = "no /proc/meminfo"
    warnings = collector.update(bad)
    assert warnings == [
        'skipping neuroncore_counters of runtime tag app: neuroncores_in_use.0.neuroncore_utilization is "high", '
        "not a number",
        "Error getting memory_used for runtime tag app: device gone",
        "Error getting memory_info: no /proc/meminfo",
    ]
    fams = scrape_collector(collector)
    assert value(fams, "neuroncore_utilization_ratio", runtime_tag="app") == pytest.approx(0.3)  # unchanged
    failing = report(runtime_entry(10, "app"))
    failing["neuron_runtime_data"][0]["error"] = "stats page unreadable"
    assert collector.update(failing) == ["Runtime app error: stats page unreadable"]


def test_a_report_of_the_real_monitor_is_accepted(machine_root: Path) -> None:
    from nrt_lab.tools.neuron_monitor import (
        RUNTIME_METRIC_TYPES,
        SYSTEM_METRIC_TYPES,
        MetricGroup,
        MonitorConfig,
        NeuronMonitor,
        RuntimeGroupConfig,
    )

    nrt_lab.init()
    now = [0.0]
    mon = NeuronMonitor(MonitorConfig((RuntimeGroupConfig(None, tuple(MetricGroup(t, 0.1) for t in RUNTIME_METRIC_TYPES)),),
                                      tuple(MetricGroup(t, 0.1) for t in SYSTEM_METRIC_TYPES)), clock=lambda: now[0])
    mon.start()
    now[0] = 0.12  # every group is due
    collector = NeuronMonitorCollector()
    assert collector.update_line(json.dumps(mon.collect())) == []
    fams = scrape_collector(collector)
    assert value(fams, "instance_info", instance_type="trn1.2xlarge") == 1.0
    assert value(fams, "system_vcpu_count") >= 1
    assert {s.labels["neuroncore"] for s in fams["neuroncore_utilization_ratio"].samples} == {"0", "1"}


def test_the_grafana_dashboard_uses_only_exported_metrics() -> None:
    path = Path(nrt_lab.tools.__file__).parent / "grafana" / "neuron-dashboard.json"
    dashboard = json.loads(path.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    # metric selectors name{...} and label_values(name, ...)
    pairs = [pair for e in exprs for pair in re.findall(r"([a-z_][a-z0-9_]*)\{|label_values\(([a-z_0-9]+)", e)]
    used = {selector or label_source for selector, label_source in pairs}
    exported = {f"{n}_total" if n in COUNTERS else n for n in EXPECTED_LABELS}
    assert used <= exported, used - exported
    assert used == exported  # every exported metric is on the dashboard
    assert all(p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
               for p in dashboard["panels"] if p["type"] != "row")


# ---------------------------------------------------------------------------------------------- over HTTP


def exporter_command() -> list[str]:
    script = Path(sys.executable).parent / "neuron-monitor-prometheus"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nrt_lab.tools.prometheus"]


def scrape(port: int) -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy for 127.0.0.1
    with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        return families(response.read().decode())


def wait_for(port: int, condition: Any, timeout: float = 15.0) -> dict[str, Any]:
    """Scrape until ``condition(families)`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        fams = scrape(port)
        if condition(fams):
            return fams
        assert time.monotonic() < deadline, f"condition not met in {timeout} s: {sorted(fams)}"
        time.sleep(0.1)


@pytest.fixture
def processes(machine_root: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    kill_children(started)


def start_exporter(processes: list[subprocess.Popen[bytes]], root: Path,
                   stdin: Any = subprocess.PIPE) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen([*exporter_command(), "--port", "0"], stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=child_environment(root), close_fds=True)
    processes.append(proc)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    assert ready, "the exporter did not start"
    line = proc.stdout.readline().decode()
    match = re.fullmatch(r"Running HTTP prometheus server at port (\d+)\n", line)
    assert match, line
    return proc, int(match[1])


def test_exporter_serves_metrics_and_skips_bad_lines(machine_root: Path,
                                                     processes: list[subprocess.Popen[bytes]]) -> None:
    proc, port = start_exporter(processes, machine_root)
    assert proc.stdin is not None
    assert "instance_info" not in scrape(port)
    lines = ["{not json", json.dumps(report(runtime_entry(10, "app", completed=4))), "",
             json.dumps(report(runtime_entry(10, "app", completed=6)))]
    proc.stdin.write("\n".join(lines).encode() + b"\n")
    proc.stdin.flush()
    fams = wait_for(port, lambda f: "execution_status" in f
                    and value(f, "execution_status_total", status_type="completed") == 10)
    assert value(fams, "neuroncore_utilization_ratio", runtime_tag="app") == pytest.approx(0.5)
    assert "process_cpu_seconds" in fams  # like the real script's default registry
    proc.stdin.close()
    assert proc.wait(timeout=15) == 0  # end of input ends the exporter
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    assert err.startswith("neuron-monitor-prometheus: skipping line 1: not JSON ("), err
    assert err.count("\n") == 1


def test_monitor_to_exporter_pipeline_with_a_real_workload(machine_root: Path, tmp_path: Path,
                                                           processes: list[subprocess.Popen[bytes]]) -> None:
    workload = Child([sys.executable, "-c", WORKLOAD, "duty", "0.3", "0.1", str(tmp_path / "state.json")],
                     child_environment(machine_root, {"NEURON_RT_NUM_CORES": "1", "NEURON_PROCESS_TAG": "piped"}),
                     stdin=True)
    try:
        assert workload.json(timeout=30)["event"] == "ready"
        config = tmp_path / "monitor.json"
        config.write_text(json.dumps({"period": "500ms",
                                      "neuron_runtimes": [{"metrics": [{"type": "neuroncore_counters"},
                                                                       {"type": "execution_stats"}]}],
                                      "system_metrics": [{"type": "memory_info"},
                                                         {"type": "neuron_hw_counters"}]}))
        monitor = subprocess.Popen([*monitor_command(), "-c", str(config)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=child_environment(machine_root), close_fds=True)
        processes.append(monitor)
        exporter, port = start_exporter(processes, machine_root, stdin=monitor.stdout)
        fams = wait_for(port, lambda f: "execution_status" in f)
        previous = value(fams, "execution_status_total", status_type="completed", runtime_tag="piped")
        for _ in range(3):  # each new report with executions adds to the counter: wait for it, never sleep
            before = previous
            fams = wait_for(port, lambda f, before=before: value(
                f, "execution_status_total", status_type="completed", runtime_tag="piped") > before)
            previous = value(fams, "execution_status_total", status_type="completed", runtime_tag="piped")
            assert 0.0 <= value(fams, "neuroncore_utilization_ratio", runtime_tag="piped") <= 1.0
        assert previous > 0
        assert value(fams, "instance_info", instance_type="trn1.2xlarge") == 1.0
        assert value(fams, "hardware_ecc_events_total", event_type="sram_ecc_uncorrected",
                     neuron_device_index="0") == 0
    finally:
        workload.kill()
    fams = wait_for(port, lambda f: "neuroncore_utilization_ratio" not in f and "execution_status" not in f)
    assert "system_memory_used_bytes" in fams
    for proc in (monitor, exporter):
        proc.send_signal(signal.SIGTERM)
    assert monitor.wait(timeout=15) == 0
    assert exporter.wait(timeout=15) == 0


def test_exporter_refuses_a_busy_port(machine_root: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    _first, port = start_exporter(processes, machine_root)
    second = subprocess.run([*exporter_command(), "--port", str(port)], input=b"", capture_output=True,
                            env=child_environment(machine_root), timeout=30, check=False)
    assert second.returncode == 1
    assert second.stderr.decode().startswith(f"neuron-monitor-prometheus: error: cannot listen on 127.0.0.1:{port}")
    assert second.stdout == b""


def test_collector_is_safe_to_copy_reports() -> None:
    original = report(runtime_entry(10, "app", completed=1))
    kept = copy.deepcopy(original)
    NeuronMonitorCollector().update(original)
    assert original == kept  # the collector never mutates its input
