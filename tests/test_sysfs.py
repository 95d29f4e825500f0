"""The driver's sysfs tree (docs/behaviour.md §7) for the live emulated machine: values after executions, totals that
outlive a process (clean exit, SIGKILL via the stale-record hook), reset by a driver reload, LNC views, the
2.24 renames, and ``nrt-lab sysfs [PATH] [--json]``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nrt_lab
from conftest import child_environment
from nrt_lab import Model, Tensor, TensorPlacement
from nrt_lab.driver import open_machine, parse_driver_version
from nrt_lab.driver.counters import MachineCounters
from nrt_lab.driver.locks import allocation_lock, remove_stale_records
from nrt_lab.driver.stats import (
    DEVICE_MEMORY_KINDS,
    ERROR_KINDS,
    HOST_MEMORY_KINDS,
    OUTCOMES,
    SYSFS_STATUS_KINDS,
    CoreCounters,
    StatsSnapshot,
)
from nrt_lab.driver.sysfs import collect_counters, flatten, lookup, read_sysfs, sysfs_tree
from nrt_lab.hardware import get_instance
from nrt_lab.models import build_add
from nrt_lab.tools.cli import main

pytestmark = pytest.mark.instance("trn1.2xlarge")

MICROCODE = 96 * 2**20
RUNTIME_MEMORY = 2 * 2**20


def inputs() -> dict[str, np.ndarray[Any, Any]]:
    return {"a_input": np.ones((4, 3), np.float16), "b_input": np.ones((4, 3), np.float16)}


def core_stats(root: Path, device: int, core: int) -> dict[str, Any]:
    node: dict[str, Any] = read_sysfs(root)[f"neuron{device}"][f"neuron_core{core}"]["stats"]
    return node


def totals(stats: dict[str, Any]) -> dict[str, int]:
    """status name -> total, for the counters that are not zero."""
    return {name: c["total"] for name, c in stats["status"].items() if c["total"]}


@pytest.fixture
def runtime(machine_root: Path) -> Iterator[nrt_lab.Runtime]:
    rt = nrt_lab.init()
    try:
        yield rt
    finally:
        nrt_lab.close()


def test_values_after_executions_close_and_reload(runtime: nrt_lab.Runtime, machine_root: Path) -> None:
    model = Model.load(build_add().neff, 1)
    out = Tensor.allocate(24, TensorPlacement.DEVICE, 1, "out")
    for _ in range(5):
        model.execute(inputs(), {"output_0": out})
    stats = core_stats(machine_root, 0, 1)
    status = stats["status"]
    assert status["success"] == {"total": 5, "present": 5}
    assert set(status) == {*SYSFS_STATUS_KINDS[:-3], "execute_completed_with_error",
                           "execute_completed_with_num_error", "execute_failed_to_queue"}  # driver 2.24.7 names
    other = stats["other_info"]
    assert (other["inference_count"], other["model_load_count"], other["reset_req_count"]) == (5, 1, 1)
    assert other["flop_count"] == 5 * model.flops_per_execution > 0 and other["nc_time_in_use"] > 0
    memory = stats["memory_usage"]["device_mem"]
    assert memory["tensors"] == {"total": 24, "present": 24, "peak": 24}
    assert memory["model_code"]["total"] == MICROCODE and memory["runtime_memory"]["total"] == RUNTIME_MEMORY
    assert memory["collectives"] == {"total": 0, "present": 0, "peak": 0}
    idle = core_stats(machine_root, 0, 0)
    assert totals(idle) == {} and idle["memory_usage"]["device_mem"]["model_code"]["total"] == MICROCODE

    runtime.close()  # totals survive, present and current memory drop
    stats = core_stats(machine_root, 0, 1)
    assert stats["status"]["success"] == {"total": 5, "present": 0}
    assert stats["other_info"]["inference_count"] == 5
    assert stats["memory_usage"]["device_mem"]["tensors"] == {"total": 0, "present": 0, "peak": 24}

    nrt_lab.init()
    again = Model.load(build_add().neff, 1)
    again.execute(inputs())
    again.execute(inputs())
    assert core_stats(machine_root, 0, 1)["status"]["success"] == {"total": 7, "present": 2}
    nrt_lab.close()

    open_machine(machine_root).reload_driver()  # rmmod + modprobe: counters start again
    stats = core_stats(machine_root, 0, 1)
    assert totals(stats) == {} and stats["other_info"]["inference_count"] == 0
    assert stats["memory_usage"]["device_mem"]["tensors"]["peak"] == 0


def test_device_files(runtime: nrt_lab.Runtime, machine_root: Path) -> None:
    device = read_sysfs(machine_root)["neuron0"]
    assert list(device) == ["connected_devices", "core_count", "info", "neuron_core0", "neuron_core1", "stats"]
    assert (device["connected_devices"], device["core_count"]) == ("", 2)
    assert device["info"]["architecture"] == {"arch_type": "NDv2", "device_name": "Trainium1", "instance_type": "Trn1"}
    assert re.fullmatch(r"[0-9a-f]{16}", device["info"]["serial_number"])
    assert device["neuron_core0"]["info"]["architecture"]["arch_type"] == "NCv2"
    assert device["stats"]["hardware"] == {"mem_ecc_uncorrected": 0, "mem_ecc_repairable_uncorrected": 0,
                                           "sram_ecc_uncorrected": 0}
    assert set(device["stats"]["memory_usage"]["host_mem"]) == {
        "application_memory", "constants", "dma_buffers", "dma_rings", "driver_memory", "notifications", "tensors",
        "uncategorized"}
    power = device["stats"]["power"]["utilization"]
    match = re.fullmatch(r"POWER_STATUS_VALID,(\d+),(\d+\.\d\d),(\d+\.\d\d),(\d+\.\d\d)", power)
    assert match and int(match[1]) % 60 == 0 and 0.5 <= float(match[2]) <= float(match[4]) <= float(match[3]) <= 25


def test_injected_errors_show_in_stats_hardware(runtime: nrt_lab.Runtime, machine_root: Path) -> None:
    assert main(["fault", "inject", "--core", "0", "--kind", "hbm_ue"]) == 0
    assert main(["fault", "inject", "--core", "0", "--kind", "mem_ecc_uncorrected", "--after", "1"]) == 0
    model = Model.load(build_add().neff, 0)
    for _ in range(2):
        with pytest.raises(nrt_lab.NrtError):
            model.execute(inputs())
    assert read_sysfs(machine_root)["neuron0"]["stats"]["hardware"] == {
        "mem_ecc_uncorrected": 2, "mem_ecc_repairable_uncorrected": 1, "sram_ecc_uncorrected": 0}
    assert core_stats(machine_root, 0, 0)["status"]["hw_error"] == {"total": 2, "present": 2}


_CHILD = r"""
import sys, numpy as np, nrt_lab
from nrt_lab.models import build_add
nrt_lab.init()
model = nrt_lab.Model.load(build_add().neff, int(sys.argv[2]))
x = {"a_input": np.ones((4, 3), np.float16), "b_input": np.ones((4, 3), np.float16)}
for _ in range(int(sys.argv[1])):
    model.execute(x)
print("ready", flush=True)
sys.stdin.readline()
"""


def test_totals_survive_exit_and_sigkill(machine_root: Path, tmp_path: Path) -> None:
    env = child_environment(machine_root, {"NEURON_RT_NUM_CORES": "1"})

    def child(count: int, core: int = 0) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(count), str(core)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        return proc

    clean, killed = child(3), child(4)  # nc0 and nc1
    try:
        assert core_stats(machine_root, 0, 0)["status"]["success"] == {"total": 3, "present": 3}
        clean.communicate("\n", timeout=30)  # exits without calling close: the kernel drops its locks
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(timeout=30)
    finally:
        for proc in (clean, killed):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert len(list((machine_root / "procs").glob("*.stats"))) == 2  # the pages survive their processes
    before = [core_stats(machine_root, 0, c)["status"]["success"] for c in (0, 1)]
    assert before == [{"total": 3, "present": 0}, {"total": 4, "present": 0}]  # dead pages, not folded yet
    with allocation_lock(machine_root):
        assert remove_stale_records(machine_root) == 2  # the stale-record hook folds them into the totals
    assert list((machine_root / "procs").iterdir()) == []
    assert [core_stats(machine_root, 0, c)["status"]["success"] for c in (0, 1)] == before
    assert core_stats(machine_root, 0, 1)["other_info"]["inference_count"] == 4
    assert main(["driver", "reload"]) == 0
    assert [core_stats(machine_root, 0, c)["status"]["success"]["total"] for c in (0, 1)] == [0, 0]


# ---------------------------------------------------------------------------------------------- pure tree


def _page(cores: list[int], success: int, busy_ns: int = 0, tensors: int = 0) -> StatsSnapshot:
    status = dict.fromkeys(SYSFS_STATUS_KINDS, 0) | {"success": success}
    memory = dict.fromkeys(DEVICE_MEMORY_KINDS, 0) | {"tensors": tensors}
    return StatsSnapshot(
        pid=1, taken_ns=0, created=0.0, host_memory=dict.fromkeys(HOST_MEMORY_KINDS, 0),
        host_memory_peak=dict.fromkeys(HOST_MEMORY_KINDS, 0), latencies=np.zeros((0, 4), np.int64),
        executions_total=success, cores=tuple(CoreCounters(
            core=c, busy_ns=busy_ns, running_since_ns=0, flops=10 * success, outcomes=dict.fromkeys(OUTCOMES, 0),
            errors=dict.fromkeys(ERROR_KINDS, 0), memory=memory, memory_peak=memory, status=status,
            model_loads=1, inferences=success) for c in cores),
    )


def test_tree_maps_other_lnc_runtimes_through_physical_cores() -> None:
    machine = get_instance("trn2.48xlarge", 2)  # the machine numbers logical cores at LNC 2
    live = [(_page([2, 3], success=5, busy_ns=10**9, tensors=100), 1)]  # a runtime at LNC 1: physical 2 and 3
    dead = [(_page([0], success=2), 2)]  # an LNC 2 runtime on logical 0 that died
    counters = collect_counters(machine, MachineCounters("i-1"), live, dead, now=2.0)
    tree = sysfs_tree(machine, counters, instance_id="i-1", driver_version=parse_driver_version("2.23"))
    assert list(tree) == [f"neuron{d}" for d in range(16)] and tree["neuron0"]["core_count"] == 4
    assert tree["neuron0"]["connected_devices"] == "12, 3, 4, 1"
    core1 = tree["neuron0"]["neuron_core1"]["stats"]
    assert core1["status"]["success"] == {"total": 10, "present": 10}
    assert "infer_completed_with_error" in core1["status"]  # names before driver 2.24
    assert core1["memory_usage"]["device_mem"]["tensors"] == {"total": 200, "present": 200, "peak": 200}
    assert core1["other_info"]["flop_count"] == 100 and core1["other_info"]["nc_time_in_use"] == 2 * 10**6
    assert tree["neuron0"]["neuron_core0"]["stats"]["status"]["success"] == {"total": 2, "present": 0}
    assert tree["neuron0"]["stats"]["power"]["utilization"] == "POWER_STATUS_VALID,0,0.50,12.75,3.56"
    assert tree["neuron1"]["stats"]["power"]["utilization"] == "POWER_STATUS_VALID,0,0.50,0.50,0.50"
    assert tree["neuron1"]["info"]["architecture"]["device_name"] == "Trainium2"


def test_lookup_and_flatten() -> None:
    tree = {"neuron0": {"core_count": 2, "info": {"serial_number": "ab"}}}
    assert lookup(tree, "/sys/devices/virtual/neuron_device/neuron0/core_count") == 2
    assert lookup(tree, "neuron0/info/") == {"serial_number": "ab"}
    assert flatten(lookup(tree, "neuron0"), "neuron0") == [("neuron0/core_count", 2),
                                                            ("neuron0/info/serial_number", "ab")]
    with pytest.raises(ValueError, match="entries of neuron0: core_count, info; top-level entries: neuron0"):
        lookup(tree, "neuron0/nope")
    with pytest.raises(ValueError, match="neuron0/core_count is a file"):
        lookup(tree, "neuron0/core_count/total")


# ---------------------------------------------------------------------------------------------- CLI


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli(runtime: nrt_lab.Runtime, machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Model.load(build_add().neff, 0).execute(inputs())
    assert run(capsys, "sysfs", "neuron0/neuron_core0/stats/status/success/total") == (0, "1\n", "")
    assert run(capsys, "sysfs", "/sys/devices/virtual/neuron_device/neuron0/core_count") == (0, "2\n", "")
    rc, out, _ = run(capsys, "sysfs", "neuron0/neuron_core0/stats/status/success")
    assert out == ("neuron0/neuron_core0/stats/status/success/total: 1\n"
                   "neuron0/neuron_core0/stats/status/success/present: 1\n")
    rc, out, _ = run(capsys, "sysfs", "neuron0/info", "--json")
    assert json.loads(out)["architecture"]["arch_type"] == "NDv2"
    assert run(capsys, "sysfs", "neuron0/info/architecture/arch_type", "--json")[1] == '"NDv2"\n'
    rc, out, _ = run(capsys, "sysfs")
    lines = out.splitlines()
    assert rc == 0 and "neuron0/neuron_core1/stats/other_info/inference_count: 0" in lines
    assert all(re.fullmatch(r"neuron0/[a-z0-9_/]+: \S*", line) for line in lines)
    everything = json.loads(run(capsys, "sysfs", "--json")[1])
    assert everything["neuron0"]["neuron_core0"]["stats"]["other_info"]["inference_count"] == 1
    rc, out, err = run(capsys, "sysfs", "neuron3")
    assert (rc, out) == (2, "") and "no such sysfs entry: 'neuron3'" in err and "top-level entries: neuron0" in err


def test_cli_without_a_loaded_driver(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    open_machine(machine_root).uninstall_driver()
    rc, out, err = run(capsys, "sysfs")
    assert (rc, out) == (1, "")
    assert "/sys/devices/virtual/neuron_device does not exist: the neuron module is not loaded" in err
