"""Injected hardware faults end to end (docs/behaviour.md §9, §4 infodump, §7 neuron_hw_counters): ``nrt-lab fault``
stores them, a real model execution fires them with the right status, log lines, kernel line, stats page and
ECC counters; ``--after``, ``--probability/--seed``, ``--count``, device targets, list/clear, bad input."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nrt_lab
from conftest import child_environment, parse_log_lines, run_python
from nrt_lab import Model, NrtError, NrtStatus
from nrt_lab.driver import open_machine
from nrt_lab.driver.faults import Fault, hardware_counters, list_faults
from nrt_lab.driver.stats import read_stats
from nrt_lab.driver.sysfs import serial_number
from nrt_lab.models import build_add
from nrt_lab.tools.cli import main

pytestmark = pytest.mark.instance("trn1.2xlarge")

ZERO_COUNTERS = {"mem_ecc_corrected": 0, "mem_ecc_uncorrected": 0, "sram_ecc_uncorrected": 0, "sram_ecc_corrected": 0,
                 "mem_ecc_repairable_uncorrected": 0}
SRAM = ("(FATAL-RT-UNDEFINED-STATE) [ND 0][NC 0] Uncorrectable memory error is detected, metadata: 0x16. Please "
        "terminate or stop/start this instance to prevent future impact from the hardware error.")
HBM = ("(FATAL-RT-UNDEFINED-STATE) Uncorrectable HBM memory error is detected. Execution results may be invalid. "
       "Please terminate this instance to prevent future impact from the hardware error.")
REPAIRABLE = ("(FATAL-RT-UNDEFINED-STATE) Uncorrectable HBM memory error is detected. Execution results may be "
              "invalid. Please reload the neuron driver or reboot your EC2 instance to prevent future impact from the "
              "hardware error.")
DMA = "[MLA 0][NC 0] DMA TX engine 0 is in an abort state"
CASES = {  # kind -> status, TDRV line, kernel error, action, counters that grow
    "sram_ecc_uncorrected": (NrtStatus.EXEC_HW_ERR_NC_UE, SRAM, "SRAM_UNCORRECTABLE_ERROR", "TERMINATE_INSTANCE",
                             {"sram_ecc_uncorrected"}),
    "hbm_ue": (NrtStatus.EXEC_HW_ERR_HBM_UE, HBM, "HBM_UNCORRECTABLE_ERROR", "TERMINATE_INSTANCE",
               {"mem_ecc_uncorrected"}),
    "mem_ecc_uncorrected": (NrtStatus.EXEC_HW_ERR_REPAIRABLE_HBM_UE, REPAIRABLE, "HBM_REPAIRABLE_UNCORRECTABLE_ERROR",
                            "RELOAD_DRIVER", {"mem_ecc_uncorrected", "mem_ecc_repairable_uncorrected"}),
    "dma_abort": (NrtStatus.EXEC_HW_ERR_DMA_ABORT, DMA, "DMA_ERROR", "TERMINATE_INSTANCE", set()),
}


# ---------------------------------------------------------------------------------------------- helpers


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``nrt-lab ARGS`` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        rc = main(list(args))
    except SystemExit as exc:  # argparse errors
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def inputs() -> dict[str, np.ndarray[Any, Any]]:
    return {"a_input": np.arange(12, dtype=np.float16).reshape(4, 3), "b_input": np.full((4, 3), 0.5, np.float16)}


@pytest.fixture
def start(machine_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``start(**env)``: init with NEURON_* variables, load the add model on process-relative core 0 (or ``core``)."""

    def _start(core: int = 0, **env: str) -> Model:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        nrt_lab.init()
        return Model.load(build_add().neff, core)

    try:
        yield _start
    finally:
        nrt_lab.close()


def status_of(model: Model) -> int:
    """Execute once: 0, or the NRT status of the failure."""
    try:
        model.execute(inputs())
    except NrtError as exc:
        return int(exc.status)
    return 0


def core_stats(model: Model) -> Any:
    runtime = nrt_lab.get_runtime()
    assert runtime is not None and runtime.stats is not None
    snapshot = read_stats(runtime.stats.path)
    assert snapshot is not None
    return next(c for c in snapshot.cores if c.core == model.core)


def kernel_lines(root: Path) -> list[str]:
    syslog = root / "log" / "syslog"
    text = syslog.read_text(encoding="utf-8") if syslog.exists() else ""
    return [line for line in text.splitlines() if " kernel: NEURON_HW_ERR=" in line]


# ---------------------------------------------------------------------------------------------- firing


@pytest.mark.parametrize("kind", sorted(CASES))
def test_hardware_error_fires_with_status_lines_and_counters(
        kind: str, start: Any, machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, line, error_name, action, grown = CASES[kind]
    rc, out, _ = cli(capsys, "fault", "inject", "--core", "0", "--kind", kind)
    assert rc == 0 and out.startswith(f"injected f1: {kind} on NeuronCore 0"), out
    model = start(NEURON_PROCESS_TAG="faulty", NEURON_RT_EXEC_TIMEOUT="30")
    capsys.readouterr()
    with pytest.raises(NrtError) as info:
        model.execute(inputs())
    assert info.value.status == status and info.value.message == line
    lines = parse_log_lines(capsys.readouterr().err)
    assert [(x.level, x.module, x.function, x.message) for x in lines[:1]] == [
        ("ERROR", "TDRV", "exec_consume_infer_status_notifications", line)]
    dump = lines[1:]
    assert all((x.level, x.module, x.function) == ("ERROR", "NRT", "nrt_infodump") for x in dump)
    runtime = nrt_lab.get_runtime()
    assert runtime is not None
    messages = [x.message for x in dump]
    assert messages[:3] == ["Neuron runtime information - please include in any support request:",
                            "------------->8------------[ cut here ]------------>8-------------",
                            "NRT version: 2.34.10.0 (8f3c2a1d)"]
    assert f"Instance ID: {runtime.instance_id}" in messages and "Driver version: 2.24.7.0" in messages
    tail = messages[messages.index(f"Failure: {status.c_name} in nrt_execute()"):]
    assert tail == [f"Failure: {status.c_name} in nrt_execute()", "LNC: 0", "Visible cores: 0, 1", "Environment:",
                    "    NEURON_PROCESS_TAG=faulty", "    NEURON_RT_EXEC_TIMEOUT=30",
                    "-------------8<-----------[ cut to here ]-----------8<------------"]
    host = re.escape(socket.gethostname())
    serial = serial_number(runtime.instance_id, 0)
    [kernel] = kernel_lines(machine_root)
    assert re.fullmatch(
        rf"[A-Z][a-z]{{2}} \d\d \d\d:\d\d:\d\d {host} kernel: NEURON_HW_ERR={error_name} "
        rf"instance-id={runtime.instance_id} hostname={host} nd-id=0 nc-id=0 serial-num={serial} action={action}",
        kernel), kernel
    counters = core_stats(model)
    assert counters.outcomes["completed_with_err"] == 1 and counters.errors["hardware"] == 1
    assert counters.status["hw_error"] == 1 and counters.status["success"] == 0
    assert hardware_counters(machine_root) == {0: {**ZERO_COUNTERS, **dict.fromkeys(grown, 1)}}
    assert status_of(model) == 0  # fired once (count 1): the next execution is healthy
    [fault] = list_faults(machine_root)
    assert (fault.fired, fault.seen, fault.state) == (1, 1, "spent")  # a spent fault stops counting
    assert fault.history[0]["pid"] == runtime.pid and fault.history[0]["core"] == 0


def test_hang_blocks_until_the_exec_timeout(start: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "fault", "inject", "--core", "1", "--kind", "hang")[0] == 0
    model = start(1, NEURON_RT_EXEC_TIMEOUT="0.3")
    capsys.readouterr()
    began = time.perf_counter()
    with pytest.raises(NrtError) as info:
        model.execute(inputs())
    assert time.perf_counter() - began >= 0.3
    message = ("execution timeout (300 ms) on Neuron Device 0 NC 1, model add, waiting for execution completion "
               "notification")
    assert info.value.status == NrtStatus.TIMEOUT and info.value.message == message
    [line] = parse_log_lines(capsys.readouterr().err)
    assert (line.module, line.function, line.message) == ("TDRV", "exec_consume_infer_status_notifications", message)
    counters = core_stats(model)
    assert counters.outcomes["timed_out"] == 1 and counters.status["timeout"] == 1
    assert status_of(model) == 0


def test_nan_poisons_outputs_and_fails_only_with_numerical_errors_on(
        start: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "fault", "inject", "--core", "0", "--kind", "nan", "--count", "2")[0] == 0
    model = start(NEURON_FAIL_ON_NAN="1")
    capsys.readouterr()
    with pytest.raises(NrtError) as info:
        model.execute(inputs())
    assert info.value.status == NrtStatus.EXEC_COMPLETED_WITH_NUM_ERR
    assert "INFER_ERROR_SUBTYPE_NUMERICAL" in capsys.readouterr().err
    counters = core_stats(model)
    assert counters.outcomes["completed_with_num_err"] == 1 and counters.errors["numerical"] == 1
    assert counters.status["infer_completed_with_num_error"] == 1
    nrt_lab.close()
    model = start(NEURON_FAIL_ON_NAN="0")  # libnrt ≥ 2.27 default: NaN outputs are not an error
    out = model.execute(inputs())["output_0"].numpy()
    assert np.isnan(out).all()
    assert not np.isnan(model.execute(inputs())["output_0"].numpy()).any()  # both fires used


@pytest.mark.parametrize("kind", ["mem_ecc_corrected", "sram_ecc_corrected"])
def test_corrected_errors_only_count(kind: str, start: Any, machine_root: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "fault", "inject", "--device", "0", "--kind", kind, "--count", "3")[0] == 0
    model = start()
    capsys.readouterr()
    assert [status_of(model) for _ in range(4)] == [0, 0, 0, 0]
    assert capsys.readouterr().err == "" and kernel_lines(machine_root) == []
    assert hardware_counters(machine_root)[0] == {**ZERO_COUNTERS, kind: 3}
    assert core_stats(model).status["success"] == 4


# ---------------------------------------------------------------------------------------------- when it fires


def test_after_skips_executions_then_fires_count_times(start: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "fault", "inject", "--core", "0", "--kind", "dma_abort", "--after", "2", "--count", "2")[0] == 0
    model = start()
    capsys.readouterr()
    assert [status_of(model) for _ in range(6)] == [0, 0, 1203, 1203, 0, 0]
    rc, out, _ = cli(capsys, "fault", "list", "--json")
    [entry] = json.loads(out)
    assert (entry["seen"], entry["fired"], entry["state"]) == (4, 2, "spent")
    assert [h["execution"] for h in entry["history"]] == [2, 3]


def test_other_cores_do_not_fire(start: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "fault", "inject", "--core", "1", "--kind", "hbm_ue")[0] == 0
    model = start(0)
    assert [status_of(model) for _ in range(3)] == [0, 0, 0]
    assert list_faults(open_machine().root)[0].seen == 0


def test_probability_with_seed_is_deterministic(start: Any, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("fault", "inject", "--core", "0", "--kind", "dma_abort", "--probability", "0.4", "--seed", "7",
            "--after", "1", "--count", "100")
    assert cli(capsys, *args)[0] == 0
    model = start()
    capsys.readouterr()
    first = [status_of(model) == 1203 for _ in range(16)]
    [fault] = list_faults(open_machine().root)
    expected = [fault.decides_to_fire(n) for n in range(16)]
    assert first == expected and expected[0] is False and 3 <= sum(expected) <= 13
    assert cli(capsys, "fault", "clear")[0] == 0
    assert cli(capsys, *args)[0] == 0
    assert [status_of(model) == 1203 for _ in range(16)] == first  # same seed, same executions
    other = Fault(id="x", kind="nan", target="core", index=0, instance_id="i-0", physical_cores=(0,), after=1,
                  probability=0.4, seed=8, count=100)  # another seed is another pattern
    assert [other.decides_to_fire(n) for n in range(16)] != expected


def test_after_is_shared_across_processes(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "fault", "inject", "--core", "0", "--kind", "hbm_ue", "--after", "1")[0] == 0
    script = (
        "import numpy as np, nrt_lab\nfrom nrt_lab.models import build_add\n"
        "nrt_lab.init(); m = nrt_lab.Model.load(build_add().neff, 0)\n"
        "x = {'a_input': np.ones((4, 3), np.float16), 'b_input': np.ones((4, 3), np.float16)}\n"
        "try:\n    m.execute(x); print('ok')\nexcept nrt_lab.NrtError as e:\n    print(int(e.status))\n"
    )
    assert run_python(script, machine_root).stdout.strip() == "ok"  # the first execution on nc0 passes
    second = run_python(script, machine_root)
    assert second.stdout.strip() == "1201", second.stderr  # the second one fires, in another process
    assert "Failure: NRT_EXEC_HW_ERR_HBM_UE in nrt_execute()" in second.stderr
    assert hardware_counters(machine_root)[0]["mem_ecc_uncorrected"] == 1  # persists after the process exits


@pytest.mark.instance("trn1.32xlarge")
def test_device_target_matches_any_of_its_cores(start: Any, machine_root: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = cli(capsys, "fault", "inject", "--device", "1", "--kind", "dma_abort", "--count", "2")
    assert rc == 0 and "on device 1 (any of its cores)" in out
    model0 = start(0, NEURON_RT_VISIBLE_CORES="0-3")
    model3 = Model.load(build_add().neff, 3)  # global core 3 = device 1, its second core
    model2 = Model.load(build_add().neff, 2)
    assert status_of(model0) == 0
    capsys.readouterr()
    with pytest.raises(NrtError) as info:
        model3.execute(inputs())
    assert info.value.message == "[MLA 1][NC 1] DMA TX engine 0 is in an abort state"
    assert "LNC: 3" in capsys.readouterr().err
    assert status_of(model2) == 1203
    assert status_of(model2) == 0
    assert "nd-id=1 nc-id=1 " in kernel_lines(machine_root)[0]


# ---------------------------------------------------------------------------------------------- list, clear, bad input


def test_list_and_clear(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "fault", "list") == (0, "no faults\n", "")
    assert cli(capsys, "fault", "inject", "--core", "1", "--kind", "nan")[0] == 0
    rc, out, _ = cli(capsys, "fault", "inject", "--device", "0", "--kind", "hang", "--probability", "0.25",
                     "--seed", "3", "--count", "2")
    assert rc == 0 and "with probability 0.25 (seed 3), 2 times" in out
    rc, out, _ = cli(capsys, "fault", "list")
    assert out.splitlines() == [
        "ID  KIND  TARGET  AFTER  PROBABILITY  SEED  COUNT  FIRED  SEEN  STATE",
        "f1  nan   nc1     0      -            -     1      0      0     armed",
        "f2  hang  nd0     0      0.25         3     2      0      0     armed",
    ]
    entries = json.loads(cli(capsys, "fault", "list", "--json")[1])
    assert [(e["id"], e["kind"], e["target"], e["index"], e["physical_cores"]) for e in entries] == [
        ("f1", "nan", "core", 1, [1]), ("f2", "hang", "device", 0, [0, 1])]
    assert cli(capsys, "fault", "clear", "f1") == (0, "cleared f1\n", "")
    rc, _, err = cli(capsys, "fault", "clear", "f9")
    assert rc == 2 and "no fault 'f9'; stored faults: f2" in err
    assert cli(capsys, "fault", "inject", "--core", "0", "--kind", "nan")[1].startswith("injected f3:")  # ids not reused
    assert cli(capsys, "fault", "clear") == (0, "cleared f2, f3\n", "")
    assert cli(capsys, "fault", "list", "--json")[1].strip() == "[]"


def test_faults_of_a_previous_machine_are_ignored(start: Any, machine_root: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "fault", "inject", "--core", "0", "--kind", "hbm_ue")[0] == 0
    open_machine(machine_root).create("trn1.2xlarge")  # a new instance id
    assert list_faults(machine_root) == []
    assert status_of(start()) == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--kind", "hbm_ue"], "one of the arguments --core --device is required"),
    (["--core", "0", "--device", "0", "--kind", "hbm_ue"], "not allowed with argument"),
    (["--core", "2", "--kind", "hbm_ue"], "NeuronCore 2 does not exist on trn1.2xlarge; accepted: --core 0 to 1"),
    (["--core", "-1", "--kind", "hbm_ue"], "NeuronCore -1 does not exist"),
    (["--device", "1", "--kind", "hbm_ue"], "Neuron device 1 does not exist on trn1.2xlarge; accepted: --device 0 to 0"),
    (["--core", "0", "--kind", "melt"], "invalid choice: 'melt'"),
    (["--core", "0"], "the following arguments are required: --kind"),
    (["--core", "0", "--kind", "nan", "--probability", "1.5"], "--probability 1.5 is invalid; accepted: a number from"),
    (["--core", "0", "--kind", "nan", "--probability", "-0.1"], "--probability -0.1 is invalid"),
    (["--core", "0", "--kind", "nan", "--probability", "nan"], "--probability nan is invalid"),
    (["--core", "0", "--kind", "nan", "--probability", "x"], "invalid float value: 'x'"),
    (["--core", "0", "--kind", "nan", "--after", "-1"], "--after -1 is invalid; accepted: a whole number"),
    (["--core", "0", "--kind", "nan", "--count", "0"], "--count 0 is invalid"),
    (["--core", "0", "--kind", "nan", "--seed", "3"], "--seed only applies with --probability P"),
    (["--core", "x", "--kind", "nan"], "invalid int value: 'x'"),
])
def test_bad_input_stores_nothing(args: list[str], message: str, machine_root: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = cli(capsys, "fault", "inject", *args)
    assert rc == 2 and out == "" and message in err, err
    assert list((machine_root / "faults").glob("f*.json")) == []


def test_concurrent_owners_consume_fires_exactly_once(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two processes (one core each) hammer a device fault at once: every execution counts exactly once."""
    assert cli(capsys, "fault", "inject", "--device", "0", "--kind", "dma_abort", "--after", "30", "--count", "5")[0] == 0
    script = (
        "import sys, numpy as np, nrt_lab\nfrom nrt_lab.models import build_add\n"
        "nrt_lab.init(); m = nrt_lab.Model.load(build_add().neff, 0)\n"
        "x = {'a_input': np.ones((4, 3), np.float16), 'b_input': np.ones((4, 3), np.float16)}\n"
        "print('ready', flush=True); sys.stdin.readline()\n"
        "failed = 0\nfor _ in range(40):\n    try:\n        m.execute(x)\n"
        "    except nrt_lab.NrtError as e:\n        assert int(e.status) == 1203; failed += 1\nprint(failed)\n"
    )
    env = child_environment(machine_root, {"NEURON_RT_NUM_CORES": "1", "NEURON_RT_LOG_LEVEL": "QUIET"})
    procs = [subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for proc in procs:  # release both into their loops together
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        failures = [int(p.communicate(timeout=60)[0]) for p in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert sum(failures) == 5
    [fault] = list_faults(machine_root)
    assert (fault.seen, fault.fired) == (35, 5)
    assert sorted(h["execution"] for h in fault.history) == [30, 31, 32, 33, 34]
    assert {h["pid"] for h in fault.history} <= {p.pid for p in procs}
