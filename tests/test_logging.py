"""libnrt logging (SPEC §1.2, §4): line layout, levels, QUIET, syslog, per-component levels and locations."""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import threading
from collections.abc import Mapping
from pathlib import Path

import pytest

import nrt_lab
from conftest import OwnerFactory, assert_single_log_line, busy_message, parse_log_lines
from nrt_lab import NrtError, NrtStatus
from nrt_lab.runtime.logging import LogLevel, format_line, format_syslog_line

SAMPLE_TIME = dt.datetime(2025, 9, 19, 18, 57, 20, 813269)
NOT_CONTIGUOUS = {"NEURON_RT_VISIBLE_CORES": "3,5,6"}


def started_line(cores: str = "nc0-nc31") -> str:
    return (f"Neuron Runtime {nrt_lab.RUNTIME_VERSION} started on trn1.32xlarge: NeuronCores {cores} "
            f"(lnc 1, tag {os.getpid()})")


def env_of(root: Path, extra: Mapping[str, str]) -> dict[str, str]:
    return {"NRT_LAB_ROOT": str(root), **extra}


def init_and_close(root: Path, extra: Mapping[str, str]) -> None:
    nrt_lab.init(env=env_of(root, extra)).close()


def init_failing(root: Path, extra: Mapping[str, str]) -> NrtError:
    with pytest.raises(NrtError) as info:
        nrt_lab.init(env=env_of(root, extra))
    assert info.value.status == NrtStatus.FAILURE
    return info.value


# ------------------------------------------------------------------------------------------------ layout


def test_format_line_reproduces_the_spec_sample() -> None:
    line = format_line(LogLevel.ERROR, "NRT", "nrt_infodump", "NRT version: 2.34.10.0", pid=4444, tid=4444,
                       now=SAMPLE_TIME)
    assert line == ("2025-Sep-19 18:57:20.813269  4444:4444  ERROR   NRT:nrt_infodump"
                    "                            NRT version: 2.34.10.0")


@pytest.mark.parametrize(
    ("level", "module", "function", "pid", "tid", "expected"),
    [
        (LogLevel.WARN, "TDRV", "tdrv_init", 26638, 26640,
         "2025-Sep-19 18:57:20.813269 26638:26640  WARN  TDRV:tdrv_init" + " " * 31 + "msg"),
        (LogLevel.INFO, "NMGR", "nmgr_load", 7, 12,
         "2025-Sep-19 18:57:20.813269     7:12     INFO  NMGR:nmgr_load" + " " * 31 + "msg"),
        (LogLevel.DEBUG, "HAL", "aws_hal_x", 1234567, 1234568,
         "2025-Sep-19 18:57:20.813269 1234567:1234568 DEBUG   HAL:aws_hal_x" + " " * 31 + "msg"),
        (LogLevel.TRACE, "NRT", "nrt_allocate_neuron_cores", 42, 42,
         "2025-Sep-19 18:57:20.813269    42:42    TRACE   NRT:nrt_allocate_neuron_cores               msg"),
    ],
)
def test_format_line_fields(level: LogLevel, module: str, function: str, pid: int, tid: int, expected: str) -> None:
    line = format_line(level, module, function, "msg", pid=pid, tid=tid, now=SAMPLE_TIME)
    assert line == expected
    (parsed,) = parse_log_lines(line)
    assert (parsed.pid, parsed.tid, parsed.level, parsed.module, parsed.function, parsed.message) == (
        pid, tid, level.name, module, function, "msg")
    assert parsed.stamp == SAMPLE_TIME


def test_timestamp_keeps_six_fraction_digits_and_english_months() -> None:
    line = format_line(LogLevel.ERROR, "NRT", "nrt_init", "m", pid=1, tid=1,
                       now=dt.datetime(2026, 1, 2, 3, 4, 5, 6))
    assert line.startswith("2026-Jan-02 03:04:05.000006 ")


@pytest.mark.parametrize(
    "bad",
    [
        # The layout SPEC §4 prints literally ("%4s" module): one space too few before NRT.
        "2025-Sep-19 18:57:20.813269  4444:4444  ERROR  NRT:nrt_infodump                            x",
        # Four fraction digits (pre-2024 libnrt).
        "2025-Sep-19 18:57:20.8132  4444:4444  ERROR   NRT:nrt_infodump                            x",
        # Function not padded to 40.
        "2025-Sep-19 18:57:20.813269  4444:4444  ERROR   NRT:nrt_infodump x",
    ],
)
def test_layout_checker_rejects_other_layouts(bad: str) -> None:
    with pytest.raises(AssertionError):
        parse_log_lines(bad)


def test_syslog_line_reproduces_the_spec_sample() -> None:
    line = format_syslog_line(LogLevel.ERROR, "TDRV", "db_vtpb_get_mla_and_tpb", "Could not find VNC id n",
                              pid=26638, tid=26638, now=SAMPLE_TIME)
    assert line == (f"Sep 19 18:57:20 {socket.gethostname()} nrt[26638]: "
                    "NRT:  26638:26638 ERROR  TDRV:db_vtpb_get_mla_and_tpb  Could not find VNC id n")


# ------------------------------------------------------------------------------------------------ levels


def test_default_level_is_error_and_success_is_silent(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    init_and_close(machine_root, {})
    assert capsys.readouterr() == ("", "")
    init_failing(machine_root, NOT_CONTIGUOUS)
    assert_single_log_line(capsys.readouterr().err, "ERROR", "NRT", "nrt_allocate_neuron_cores",
                           "Neuron cores are not contiguous")


@pytest.mark.parametrize("value", ["INFO", "info", "DEBUG", "TRACE", " Info "])
def test_info_and_lower_levels_show_start_and_close(machine_root: Path, capsys: pytest.CaptureFixture[str],
                                                    value: str) -> None:
    capsys.readouterr()
    init_and_close(machine_root, {"NEURON_RT_LOG_LEVEL": value})
    start, stop = parse_log_lines(capsys.readouterr().err)
    assert (start.level, start.module, start.function, start.message) == ("INFO", "NRT", "nrt_init", started_line())
    assert (stop.level, stop.function, stop.message) == ("INFO", "nrt_close", "NeuronCores nc0-nc31 released")
    assert start.pid == os.getpid() and start.tid == threading.get_native_id()


@pytest.mark.parametrize("value", ["WARNING", "WARN", "warning", "Warn"])
def test_warning_level_both_spellings(machine_root: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    capsys.readouterr()
    init_and_close(machine_root, {"NEURON_RT_LOG_LEVEL": value, "NEURONCORE_GROUP_SIZES": "1,1"})
    line = assert_single_log_line(capsys.readouterr().err, "WARN", "NRT", "nrt_init")  # no INFO lines
    assert "deprecated" in line.message


def test_error_level_hides_warnings(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    init_and_close(machine_root, {"NEURON_RT_LOG_LEVEL": "ERROR", "NEURONCORE_GROUP_SIZES": "1,1"})
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "extra",
    [
        NOT_CONTIGUOUS,  # allocation failure
        {"NEURON_RT_VISIBLE_CORES": "a"},  # malformed value of another variable
        {"NEURON_RT_NUM_CORES": "-2"},
        {"NEURONCORE_GROUP_SIZES": "2", "NEURON_RT_NUM_CORES": "2"},  # NCG conflict (warning and error)
    ],
)
@pytest.mark.parametrize("quiet", ["QUIET", "quiet"])
def test_quiet_prints_nothing_even_on_error(machine_root: Path, capsys: pytest.CaptureFixture[str],
                                            extra: Mapping[str, str], quiet: str) -> None:
    capsys.readouterr()
    init_failing(machine_root, {"NEURON_RT_LOG_LEVEL": quiet, **extra})
    assert capsys.readouterr() == ("", "")
    assert not (machine_root / "log" / "syslog").exists()


def test_quiet_silences_the_driver_gate(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nrt_lab.open_machine(machine_root).uninstall_driver()
    capsys.readouterr()
    error = init_failing(machine_root, {"NEURON_RT_LOG_LEVEL": "QUIET"})
    assert "Unable to determine Neuron Driver version" in error.message
    assert capsys.readouterr() == ("", "")


def test_busy_line_with_quiet_in_a_real_owner(owner_process: OwnerFactory) -> None:
    holder = owner_process({"NEURON_RT_VISIBLE_CORES": "0"})
    assert holder.cores == (0,)
    quiet = owner_process({"NEURON_RT_LOG_LEVEL": "QUIET"})
    assert quiet.result()["message"] == busy_message("nc0-nc31", 31)
    assert quiet.stderr() == ""


# ------------------------------------------------------------------------------------------------ locations

SYSLOG_BODY = re.compile(
    r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d (?P<host>\S+) nrt\[(?P<pid>\d+)\]: "
    r"NRT: +(?P=pid):(?P<tid>\d+) +(?P<level>[A-Z]+) +(?P<module>[A-Z]+):(?P<function>\S+)  (?P<message>.*)$"
)


def syslog_lines(root: Path) -> list[re.Match[str]]:
    text = (root / "log" / "syslog").read_text(encoding="utf-8")
    matches = [SYSLOG_BODY.match(line) for line in text.splitlines()]
    assert all(matches), text
    return [m for m in matches if m is not None]


def test_syslog_location_writes_the_machine_syslog(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    init_failing(machine_root, {"NEURON_RT_LOG_LOCATION": "syslog", **NOT_CONTIGUOUS})
    assert capsys.readouterr() == ("", "")
    (line,) = syslog_lines(machine_root)
    assert (line["host"], int(line["pid"]), int(line["tid"])) == (
        socket.gethostname(), os.getpid(), threading.get_native_id())
    assert (line["level"], line["module"], line["function"], line["message"]) == (
        "ERROR", "NRT", "nrt_allocate_neuron_cores", "Neuron cores are not contiguous")
    init_and_close(machine_root, {"NEURON_RT_LOG_LOCATION": "SYSLOG", "NEURON_RT_LOG_LEVEL": "INFO"})
    assert capsys.readouterr() == ("", "")
    lines = syslog_lines(machine_root)
    assert [(m["level"], m["function"]) for m in lines] == [
        ("ERROR", "nrt_allocate_neuron_cores"), ("INFO", "nrt_init"), ("INFO", "nrt_close")]
    assert lines[1]["message"] == started_line()


def test_syslog_location_for_a_malformed_value(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    init_failing(machine_root, {"NEURON_RT_LOG_LOCATION": "syslog", "NEURON_RT_EXEC_TIMEOUT": "abc"})
    assert capsys.readouterr() == ("", "")
    (line,) = syslog_lines(machine_root)
    assert line["level"] == "ERROR" and "NEURON_RT_EXEC_TIMEOUT='abc'" in line["message"]


def test_syslog_busy_line_from_a_real_owner(owner_process: OwnerFactory, machine_root: Path) -> None:
    assert owner_process({"NEURON_RT_VISIBLE_CORES": "4-7"}).cores == (4, 5, 6, 7)
    loser = owner_process({"NEURON_RT_VISIBLE_CORES": "6-9", "NEURON_RT_LOG_LOCATION": "syslog"})
    assert not loser.ok
    assert loser.stderr() == ""
    (line,) = syslog_lines(machine_root)
    assert int(line["pid"]) == loser.pid
    assert (line["function"], line["message"]) == ("nrt_allocate_neuron_cores", busy_message("nc6-nc9", 24))


def test_component_level_override(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    init_and_close(machine_root, {"NEURON_RT_LOG_LEVEL_NRT": "INFO"})  # default stays ERROR
    assert [line.function for line in parse_log_lines(capsys.readouterr().err)] == ["nrt_init", "nrt_close"]
    init_and_close(machine_root, {"NEURON_RT_LOG_LEVEL": "INFO", "NEURON_RT_LOG_LEVEL_NRT": "ERROR"})
    assert capsys.readouterr().err == ""
    init_and_close(machine_root, {"NEURON_RT_LOG_LEVEL": "INFO", "NEURON_RT_LOG_LEVEL_TDRV": "ERROR"})
    assert len(parse_log_lines(capsys.readouterr().err)) == 2


def test_component_quiet_only_silences_that_component(machine_root: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    init_failing(machine_root, {"NEURON_RT_LOG_LEVEL_NRT": "QUIET", **NOT_CONTIGUOUS})
    assert capsys.readouterr().err == ""
    (machine_root / "machine.json").write_text("{", encoding="utf-8")
    init_failing(machine_root, {"NEURON_RT_LOG_LEVEL_NRT": "QUIET"})
    line = assert_single_log_line(capsys.readouterr().err, "ERROR", "TDRV", "tdrv_init")
    assert "machine.json" in line.message


def test_component_location_file(machine_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log_file = tmp_path / "nrt.log"
    capsys.readouterr()
    extra = {"NEURON_RT_LOG_LOCATION_NRT": str(log_file), "NEURON_RT_LOG_LEVEL": "INFO"}
    init_and_close(machine_root, extra)
    init_failing(machine_root, {**extra, **NOT_CONTIGUOUS})
    assert capsys.readouterr() == ("", "")
    lines = parse_log_lines(log_file.read_text(encoding="utf-8"))
    assert [(line.level, line.function) for line in lines] == [
        ("INFO", "nrt_init"), ("INFO", "nrt_close"), ("ERROR", "nrt_allocate_neuron_cores")]
    assert lines[0].message == started_line()


def test_component_location_tdrv_file_keeps_nrt_on_console(machine_root: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    tdrv_log = tmp_path / "tdrv.log"
    (machine_root / "machine.json").write_text("[]", encoding="utf-8")
    capsys.readouterr()
    init_failing(machine_root, {"NEURON_RT_LOG_LOCATION_TDRV": str(tdrv_log)})
    assert capsys.readouterr().err == ""
    line = assert_single_log_line(tdrv_log.read_text(encoding="utf-8"), "ERROR", "TDRV", "tdrv_init")
    assert "expected a JSON object" in line.message
    # NRT lines still go to the console.
    (machine_root / "machine.json").unlink()
    init_failing(machine_root, {"NEURON_RT_LOG_LOCATION_TDRV": str(tdrv_log), **NOT_CONTIGUOUS})
    assert_single_log_line(capsys.readouterr().err, "ERROR", "NRT", "nrt_allocate_neuron_cores")
    assert len(parse_log_lines(tdrv_log.read_text(encoding="utf-8"))) == 1


def test_component_location_syslog(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    init_failing(machine_root, {"NEURON_RT_LOG_LOCATION_NRT": "syslog", **NOT_CONTIGUOUS})
    assert capsys.readouterr().err == ""
    (line,) = syslog_lines(machine_root)
    assert line["message"] == "Neuron cores are not contiguous"


def test_unwritable_log_file_falls_back_to_console(machine_root: Path, machine: nrt_lab.Machine, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-dir" / "nrt.log"
    capsys.readouterr()
    with nrt_lab.init(env=env_of(machine_root, {"NEURON_RT_LOG_LOCATION_NRT": str(missing),
                                                "NEURON_RT_LOG_LEVEL": "INFO"})) as runtime:
        assert runtime.cores == tuple(range(32))
    assert machine.owners() == []  # nothing leaked by a log line that could not be written
    assert [line.function for line in parse_log_lines(capsys.readouterr().err)] == ["nrt_init", "nrt_close"]
    init_failing(machine_root, {"NEURON_RT_LOG_LOCATION_NRT": str(missing), **NOT_CONTIGUOUS})
    assert_single_log_line(capsys.readouterr().err, "ERROR", "NRT", "nrt_allocate_neuron_cores")
    assert not missing.parent.exists()


def test_syslog_of_an_unusable_state_root_falls_back_to_console(machine_root: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    machine_root.chmod(0o777)
    try:
        capsys.readouterr()
        init_failing(machine_root, {"NEURON_RT_LOG_LOCATION": "syslog"})
        line = assert_single_log_line(capsys.readouterr().err, "ERROR", "TDRV", "tdrv_init")
        assert "unsafe permissions 0777" in line.message
    finally:
        machine_root.chmod(0o700)
    assert not (machine_root / "log" / "syslog").exists()
