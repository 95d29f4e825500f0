"""The read-side API that every face uses: snapshots of the machine, diagnose()'s findings, ``nrt-lab doctor``.

Each scenario is a real emulated machine in ``tmp_path`` (owners are real child processes); the findings are
checked for their severity *for this process* and for quoting the runtime's own messages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import nrt_lab
from conftest import FakeClock, child_environment
from nrt_lab.driver import Machine, OwnerRecord, parse_driver_version
from nrt_lab.driver.locks import CoreClaim
from nrt_lab.hardware import get_instance
from nrt_lab.monitor import (
    Finding,
    Monitor,
    describe_owner,
    diagnose,
    machine_view_cores,
    printable,
    snapshot,
)
from nrt_lab.runtime import RUNTIME_VERSION, ConfigError, RuntimeConfig, driver_gate
from nrt_lab.tools import cli

_OWNER = r"""
import json, os, sys
import nrt_lab
rt = nrt_lab.init()
print(json.dumps({"pid": os.getpid(), "cores": list(rt.cores)}), flush=True)
sys.stdin.read()
"""




@pytest.fixture
def owner(machine: Machine) -> Iterator[dict[str, object]]:
    """A child process holding 12 cores (tag ``holder``)."""
    proc = subprocess.Popen([sys.executable, "-c", _OWNER], text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            env=child_environment(machine.root, {"NEURON_RT_NUM_CORES": "12",
                                                                 "NEURON_PROCESS_TAG": "holder"}))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        yield json.loads(line)
    finally:
        proc.kill()
        proc.wait(timeout=15)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _find(env: dict[str, str] | None = None) -> dict[str, Finding]:
    return {f.id: f for f in diagnose(Monitor().sample(runtimes=False), env or {})}


def _errors(found: dict[str, Finding]) -> list[str]:
    return [f.id for f in found.values() if f.severity == "error"]


def _doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(["doctor", *args])
    return code, capsys.readouterr().out


# ============================================================================================== snapshots


def test_snapshot_carries_owners_free_cores_and_a_clock_timestamp(machine: Machine, owner: dict[str, object]) -> None:
    clock = FakeClock(5000.0)
    snap = snapshot(interval=30.0, clock=clock)  # the fake clock's sleep: no waiting
    assert clock.now == 5030.0 and snap.timestamp == 5030.0
    (view,) = snap.owners
    assert view.pid == owner["pid"] and view.tag == "holder" and view.is_runtime
    assert list(view.machine_cores) == owner["cores"] == list(range(12))
    assert snap.free_cores == tuple(range(12, 32)) and snap.largest_free_run == 20
    assert set(snap.owner_of()) == set(range(12)) and set(snap.core_owner()) == set(range(12))
    assert snap.driver is not None and snap.errors == () and snap.daemon.text == "not running"
    cheap = Monitor().sample(runtimes=False)
    assert cheap.runtimes == () and cheap.owners == snap.owners


def test_machine_view_cores_maps_between_lnc_views() -> None:
    lnc2 = get_instance("trn2.48xlarge", 2)
    lnc1 = get_instance("trn2.48xlarge", 1)
    assert machine_view_cores(lnc2, 1, [0, 1, 2, 3]) == (0, 1)  # four physical cores = two logical ones
    assert machine_view_cores(lnc1, 2, [0, 1]) == (0, 1, 2, 3)
    assert machine_view_cores(lnc1, 1, [5, 3, 4]) == (3, 4, 5)


def test_unreadable_driver_file_is_reported_not_raised(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    (machine.root / "driver.json").write_text("{not json", encoding="utf-8")
    snap = Monitor().sample(runtimes=False)
    assert snap.driver is None and snap.driver_error and snap.errors == (snap.driver_error,)
    found = _find()
    assert _errors(found) == ["driver:corrupt"]
    code, out = _doctor(capsys)
    assert code == 1 and "ERROR: driver.json is corrupted" in out


# The legacy daemon's findings (from its owner record) are tested in test_coexistence.py.


# ============================================================================================== diagnose


def test_clean_machine_has_no_error(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    assert _errors(_find()) == []
    code, out = _doctor(capsys)
    assert code == 0 and out == "No problem found.\n"


def test_no_driver(machine: Machine, capsys: pytest.CaptureFixture[str]) -> None:
    machine.uninstall_driver()
    finding = _find()["driver:missing"]
    assert finding.severity == "error" and finding.detail == driver_gate(None)
    code, out = _doctor(capsys, "--json")
    data = json.loads(out)
    assert code == 1 and data["errors"] == 1 and data["findings"][0]["detail"] == driver_gate(None)
    with pytest.raises(nrt_lab.NrtError) as failure:
        nrt_lab.init()
    assert finding.detail in str(failure.value)


def test_old_driver(machine: Machine) -> None:
    machine.install_driver(parse_driver_version("2.0.0"))
    finding = _find()["driver:old"]
    assert finding.severity == "error" and finding.detail == (
        "This runtime requires Neuron Driver version 2.0 or greater. Please upgrade aws-neuron-dkms package.")


def test_busy_cores_are_a_warning_for_a_process_that_owns_none(machine: Machine, owner: dict[str, object],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    found = _find()
    assert _errors(found) == [], "cores held by another process are no error of this one"
    busy = found["cores:busy"]
    assert busy.severity == "warning" and busy.detail == "NeuronCore(s) not available - Requested:nc0-nc31 Available:20"
    held = found[f"cores:held:{owner['pid']}"]
    assert held.severity == "info" and f"pid {owner['pid']}" in held.title and "holds nc0-nc11" in held.title
    with pytest.raises(nrt_lab.NrtError) as failure:
        nrt_lab.init()
    assert busy.detail in str(failure.value)
    # Asking for free cores: init() would succeed, so no busy finding; asking for held ones: the exact line.
    assert "cores:busy" not in _find({"NEURON_RT_NUM_CORES": "20"})
    assert _find({"NEURON_RT_NUM_CORES": "21"})["cores:busy"].detail == (
        "NeuronCore(s) not available - Requested:21 Available:20")
    assert _find({"NEURON_RT_VISIBLE_CORES": "10-13"})["cores:busy"].detail == (
        "NeuronCore(s) not available - Requested:nc10-nc13 Available:20")
    code, out = _doctor(capsys)
    assert code == 0 and "WARNING: nrt_lab.init() in this process would fail" in out


@pytest.mark.parametrize("value", ["a", "3-1", "0,2", "40", ""])
def test_malformed_visible_cores_is_an_error_quoting_the_runtime(machine: Machine, value: str) -> None:
    found = _find({"NEURON_RT_VISIBLE_CORES": value})
    (error,) = [f for f in found.values() if f.severity == "error"]
    with pytest.raises(nrt_lab.NrtError) as failure:
        nrt_lab.init(env={"NEURON_RT_VISIBLE_CORES": value})
    assert error.detail in str(failure.value)
    if value in ("a", "3-1"):
        with pytest.raises(ConfigError) as parse:
            RuntimeConfig.from_env({"NEURON_RT_VISIBLE_CORES": value})
        assert error.detail == str(parse.value)


def test_ncg_set(machine: Machine) -> None:
    ncg = _find({"NEURONCORE_GROUP_SIZES": "2,2"})["config:ncg"]
    assert ncg.severity == "warning" and "deprecated" in ncg.title
    conflict = _find({"NEURONCORE_GROUP_SIZES": "4x1", "NEURON_RT_NUM_CORES": "4"})["config:ncg"]
    assert conflict.severity == "error" and "cannot be combined" in conflict.detail


def test_quiet_log_level(machine: Machine) -> None:
    quiet = _find({"NEURON_RT_LOG_LEVEL": "QUIET"})["log:quiet"]
    assert quiet.severity == "warning" and "errors included" in quiet.title
    assert "log:quiet" not in _find({"NEURON_RT_LOG_LEVEL": "ERROR"})


def test_this_process_holding_every_core(machine: Machine) -> None:
    nrt_lab.init()
    found = _find()
    assert found["cores:all-mine"].severity == "warning" and "cores:busy" not in found
    nrt_lab.close()
    assert "cores:all-mine" not in _find()


def test_record_fields_are_shown_with_control_characters_escaped(machine: Machine) -> None:
    claim = CoreClaim(root=machine.root, physical_cores=())
    claim.publish(OwnerRecord(pid=os.getpid() + 1, command="evil \x1b[2J\x1b]0;pwned\x07", runtime_version=RUNTIME_VERSION,
                              cores=(0,), tag="t\x1b[31m", start_time=time.time()))
    try:
        (view,) = Monitor().sample(runtimes=False).owners
        text = describe_owner(view)
        assert "\x1b" not in text and "\\x1b[2J" in text and "\\x1b[31m" in text
        assert all(ch.isprintable() for f in _find().values() for ch in f.title + f.detail + f.remedy)
        assert printable("a\tb\x00") == "a\\tb\\x00"
    finally:
        claim.release()


def test_doctor_reports_an_unusable_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    monkeypatch.setenv("NRT_LAB_ROOT", str(blocker / "state"))
    code, out = _doctor(capsys)
    assert code == 1 and out.startswith("ERROR: The emulated machine cannot be read")


def test_neuron_top_summarises_errors_before_warnings() -> None:
    """neuron-top's title line counts errors and warnings and names the first error; info stays in the doctor."""
    from nrt_lab.monitor import Finding
    from nrt_lab.monitor.top import findings_summary, notable_findings

    info = Finding("x:info", "info", "informational", "", "")
    warning = Finding("x:warn", "warning", "a warning", "", "do this")
    error = Finding("x:err", "error", "the driver is missing", "", "install it")
    assert findings_summary([info]) == ""
    assert notable_findings([info, warning, error]) == [error, warning]
    assert findings_summary([warning, info, error]) == "1 error, 1 warning: the driver is missing (nrt-lab doctor)"
    assert findings_summary([warning, warning]) == "2 warnings: a warning (nrt-lab doctor)"


def test_a_polling_monitor_reparses_state_files_only_when_they_change(
        machine: Machine, owner: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    """machine.json, driver.json, owner records and model lists are replaced whole when they change: a monitor
    sampling every second reads them again only then, and still sees every change (here a driver reinstall)."""
    import nrt_lab.driver.locks as locks
    import nrt_lab.driver.machine as machine_module

    calls = {"machine": 0, "record": 0}
    read_machine, read_record = machine_module.read_machine, locks.read_owner_record

    def counting_machine(root: Path) -> object:
        calls["machine"] += 1
        return read_machine(root)

    def counting_record(path: Path) -> object:
        calls["record"] += 1
        return read_record(path)

    monkeypatch.setattr(machine_module, "read_machine", counting_machine)
    monkeypatch.setattr(locks, "read_owner_record", counting_record)
    monitor = Monitor()
    first = monitor.sample()
    for _ in range(5):
        again = monitor.sample()
    assert calls == {"machine": 1, "record": 1}
    assert again.owners == first.owners and again.runtimes[0].pid == owner["pid"]
    machine.install_driver(parse_driver_version("2.23.0.0"))
    assert str(monitor.sample().driver.installed) == "2.23.0.0"  # type: ignore[union-attr]


def test_doctor_text_counts_each_severity_in_words() -> None:
    from nrt_lab.monitor import Finding
    from nrt_lab.tools.doctor import render_text

    findings = [Finding("a", "warning", "w1", "", "r"), Finding("b", "warning", "w2", "", "r"),
                Finding("c", "info", "i", "", "r")]
    assert render_text(findings).splitlines()[-1] == "0 errors, 2 warnings, 1 info"
    assert render_text([Finding("d", "error", "e", "", "r")]).splitlines()[-1] == "1 error, 0 warnings, 0 info"
    assert render_text([]) == "No problem found.\n"
