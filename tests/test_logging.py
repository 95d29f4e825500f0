"""libnrt logging (docs/behaviour.md §1, §4): line layout, levels, QUIET, syslog, per-component levels and locations."""

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
from nrt_lab.runtime.logging import LogLevel, NrtLogger, format_line, format_syslog_line, parse_log_settings

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
        # The layout docs/behaviour.md §4 prints literally ("%4s" module): one space too few before NRT.
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
    # ERROR lines still reach the console with LOCATION=syslog (docs/behaviour.md, log destinations).
    assert_single_log_line(capsys.readouterr().err, "ERROR", "NRT", "nrt_allocate_neuron_cores",
                           "Neuron cores are not contiguous")
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


@pytest.mark.parametrize("location", [{}, {"NEURON_RT_LOG_LOCATION": "syslog"}])
def test_malformed_value_reaches_console_and_syslog(machine_root: Path, capsys: pytest.CaptureFixture[str],
                                                    location: Mapping[str, str]) -> None:
    capsys.readouterr()
    init_failing(machine_root, {**location, "NEURON_RT_EXEC_TIMEOUT": "abc"})
    console = assert_single_log_line(capsys.readouterr().err, "ERROR", "NRT", "nrt_init")
    (line,) = syslog_lines(machine_root)
    assert line["level"] == "ERROR" and "NEURON_RT_EXEC_TIMEOUT='abc'" in line["message"]
    assert line["message"] == console.message


def test_syslog_busy_line_from_a_real_owner(owner_process: OwnerFactory, machine_root: Path) -> None:
    assert owner_process({"NEURON_RT_VISIBLE_CORES": "4-7"}).cores == (4, 5, 6, 7)
    loser = owner_process({"NEURON_RT_VISIBLE_CORES": "6-9", "NEURON_RT_LOG_LOCATION": "syslog"})
    assert not loser.ok
    assert_single_log_line(loser.stderr(), "ERROR", "NRT", "nrt_allocate_neuron_cores", busy_message("nc6-nc9", 24),
                           pid=loser.pid)
    (line,) = [m for m in syslog_lines(machine_root) if m["level"] == "ERROR"]  # the holder logged its start
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
    assert_single_log_line(capsys.readouterr().err, "ERROR", "NRT", "nrt_allocate_neuron_cores")  # errors only
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
    console = assert_single_log_line(capsys.readouterr().err, "ERROR", "TDRV", "tdrv_init")  # errors still shown
    line = assert_single_log_line(tdrv_log.read_text(encoding="utf-8"), "ERROR", "TDRV", "tdrv_init")
    assert "expected a JSON object" in line.message and line.message == console.message
    # NRT lines go to the console and the syslog, not to TDRV's file.
    (machine_root / "machine.json").unlink()
    init_failing(machine_root, {"NEURON_RT_LOG_LOCATION_TDRV": str(tdrv_log), **NOT_CONTIGUOUS})
    assert_single_log_line(capsys.readouterr().err, "ERROR", "NRT", "nrt_allocate_neuron_cores")
    assert [m["module"] for m in syslog_lines(machine_root)] == ["NRT"]
    assert len(parse_log_lines(tdrv_log.read_text(encoding="utf-8"))) == 1


def test_component_location_syslog(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    init_failing(machine_root, {"NEURON_RT_LOG_LOCATION": "console", "NEURON_RT_LOG_LOCATION_NRT": "syslog",
                                **NOT_CONTIGUOUS})
    assert_single_log_line(capsys.readouterr().err, "ERROR", "NRT", "nrt_allocate_neuron_cores")
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


# ------------------------------------------------------------------------------------------------ destinations
# The rule (docs/behaviour.md, "log destinations"): by default INFO and above go to the syslog and ERROR and
# above to the console; a level L sets both to L; LOCATION=console: console only; =syslog (or, per component, a
# file): there only, at L, but ERROR lines still reach the console; QUIET silences everything. The expectations
# below are written out by hand from that rule, not computed by the code under test.

LEVEL_LETTERS = {"T": LogLevel.TRACE, "D": LogLevel.DEBUG, "I": LogLevel.INFO, "W": LogLevel.WARN,
                 "E": LogLevel.ERROR}
MODULES = ("NRT", "NMGR", "TDRV", "HAL")  # HAL has no variables of its own: it follows the defaults

# level → (console, syslog) levels that get through, per location: unset, console, syslog; then
# (console, file) for a per-component file location.
DESTINATIONS: dict[str | None, tuple[tuple[str, str], tuple[str, str], tuple[str, str], tuple[str, str]]] = {
    None: (("E", "IWE"), ("E", ""), ("E", "IWE"), ("E", "IWE")),
    "ERROR": (("E", "E"), ("E", ""), ("E", "E"), ("E", "E")),
    "WARNING": (("WE", "WE"), ("WE", ""), ("E", "WE"), ("E", "WE")),
    "WARN": (("WE", "WE"), ("WE", ""), ("E", "WE"), ("E", "WE")),
    "INFO": (("IWE", "IWE"), ("IWE", ""), ("E", "IWE"), ("E", "IWE")),
    "DEBUG": (("DIWE", "DIWE"), ("DIWE", ""), ("E", "DIWE"), ("E", "DIWE")),
    "TRACE": (("TDIWE", "TDIWE"), ("TDIWE", ""), ("E", "TDIWE"), ("E", "TDIWE")),
    "QUIET": (("", ""), ("", ""), ("", ""), ("", "")),
}
LOCATIONS = (None, "console", "syslog")


def emit_everything(env: Mapping[str, str], syslog: Path | None) -> None:
    """One line per module and level through a logger configured from ``env``; message ``<module>.<letter>``."""
    logger = NrtLogger(parse_log_settings(env), syslog)
    for module in MODULES:
        for letter, level in LEVEL_LETTERS.items():
            logger.log(level, module, "nrt_test", f"{module}.{letter}")


def received(console: str, syslog: Path, file: Path | None = None) -> dict[str, dict[str, str]]:
    """Per destination and module, the level letters that arrived (in emission order), layouts checked."""
    got: dict[str, dict[str, str]] = {"console": {}, "syslog": {}, "file": {}}

    def note(where: str, level: str, module: str, message: str) -> None:
        assert message.startswith(f"{module}.") and LEVEL_LETTERS[message[-1]].name == level, (where, message)
        got[where][module] = got[where].get(module, "") + message[-1]

    for line in parse_log_lines(console):
        note("console", line.level, line.module, line.message)
    if syslog.exists():
        for match in syslog_lines(syslog.parent.parent):
            note("syslog", match["level"], match["module"], match["message"])
    if file is not None and file.exists():
        for line in parse_log_lines(file.read_text(encoding="utf-8")):
            note("file", line.level, line.module, line.message)
    return got


def only(letters: str, modules: tuple[str, ...] = MODULES) -> dict[str, str]:
    return {module: letters for module in modules if letters}


@pytest.mark.parametrize("location_index", range(len(LOCATIONS)), ids=[str(x) for x in LOCATIONS])
@pytest.mark.parametrize("level", list(DESTINATIONS), ids=[str(x) for x in DESTINATIONS])
def test_level_and_location_matrix(tmp_path: Path, capsys: pytest.CaptureFixture[str], level: str | None,
                                   location_index: int) -> None:
    syslog = tmp_path / "log" / "syslog"
    syslog.parent.mkdir()
    location = LOCATIONS[location_index]
    env = {**({} if level is None else {"NEURON_RT_LOG_LEVEL": level}),
           **({} if location is None else {"NEURON_RT_LOG_LOCATION": location})}
    capsys.readouterr()
    emit_everything(env, syslog)
    console, to_syslog = DESTINATIONS[level][location_index]
    assert received(capsys.readouterr().err, syslog) == {
        "console": only(console), "syslog": only(to_syslog), "file": {}}


@pytest.mark.parametrize("component", ["NRT", "NMGR", "TDRV"])
@pytest.mark.parametrize("level", list(DESTINATIONS), ids=[str(x) for x in DESTINATIONS])
def test_level_with_a_component_file_location(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              level: str | None, component: str) -> None:
    syslog = tmp_path / "log" / "syslog"
    syslog.parent.mkdir()
    file = tmp_path / f"{component.lower()}.log"
    env = {**({} if level is None else {"NEURON_RT_LOG_LEVEL": level}),
           f"NEURON_RT_LOG_LOCATION_{component}": str(file)}
    capsys.readouterr()
    emit_everything(env, syslog)
    others = tuple(m for m in MODULES if m != component)
    default_console, default_syslog = DESTINATIONS[level][0]
    file_console, to_file = DESTINATIONS[level][3]
    assert received(capsys.readouterr().err, syslog, file) == {
        "console": {**only(default_console, others), **only(file_console, (component,))},
        "syslog": only(default_syslog, others),
        "file": only(to_file, (component,)),
    }


# env → per destination, per module: the letters that arrive.
OVERRIDES: list[tuple[dict[str, str], dict[str, dict[str, str]]]] = [
    ({"NEURON_RT_LOG_LEVEL_NRT": "INFO"},
     {"console": {"NRT": "IWE", "NMGR": "E", "TDRV": "E", "HAL": "E"}, "syslog": only("IWE")}),
    ({"NEURON_RT_LOG_LEVEL": "INFO", "NEURON_RT_LOG_LEVEL_TDRV": "ERROR"},
     {"console": {"NRT": "IWE", "NMGR": "IWE", "TDRV": "E", "HAL": "IWE"},
      "syslog": {"NRT": "IWE", "NMGR": "IWE", "TDRV": "E", "HAL": "IWE"}}),
    ({"NEURON_RT_LOG_LEVEL_NMGR": "debug", "NEURON_RT_LOG_LEVEL_TDRV": "Trace"},
     {"console": {"NRT": "E", "NMGR": "DIWE", "TDRV": "TDIWE", "HAL": "E"},
      "syslog": {"NRT": "IWE", "NMGR": "DIWE", "TDRV": "TDIWE", "HAL": "IWE"}}),
    ({"NEURON_RT_LOG_LOCATION_NMGR": "console"},
     {"console": only("E"), "syslog": {"NRT": "IWE", "TDRV": "IWE", "HAL": "IWE"}}),
    ({"NEURON_RT_LOG_LOCATION": "console", "NEURON_RT_LOG_LOCATION_TDRV": "syslog"},
     {"console": only("E"), "syslog": {"TDRV": "IWE"}}),
    ({"NEURON_RT_LOG_LOCATION": "syslog", "NEURON_RT_LOG_LOCATION_NRT": "console", "NEURON_RT_LOG_LEVEL": "WARN"},
     {"console": {"NRT": "WE", "NMGR": "E", "TDRV": "E", "HAL": "E"},
      "syslog": {"NMGR": "WE", "TDRV": "WE", "HAL": "WE"}}),
    ({"NEURON_RT_LOG_LEVEL_NRT": "QUIET"},
     {"console": {"NMGR": "E", "TDRV": "E", "HAL": "E"}, "syslog": {"NMGR": "IWE", "TDRV": "IWE", "HAL": "IWE"}}),
    ({"NEURON_RT_LOG_LEVEL": "QUIET", "NEURON_RT_LOG_LEVEL_NMGR": "DEBUG"},
     {"console": {"NMGR": "DIWE"}, "syslog": {"NMGR": "DIWE"}}),
    ({"NEURON_RT_LOG_LEVEL_TDRV": "TRACE", "NEURON_RT_LOG_LOCATION_TDRV": "console"},
     {"console": {"NRT": "E", "NMGR": "E", "TDRV": "TDIWE", "HAL": "E"}, "syslog": {"NRT": "IWE", "NMGR": "IWE",
                                                                                    "HAL": "IWE"}}),
    ({"NEURON_RT_LOG_LEVEL_NRT": "WARNING", "NEURON_RT_LOG_LOCATION_NRT": "syslog",
      "NEURON_RT_LOG_LOCATION": "console"},
     {"console": only("E"), "syslog": {"NRT": "WE"}}),
]


@pytest.mark.parametrize(("env", "expected"), OVERRIDES, ids=[" ".join(f"{k[12:]}={v}" for k, v in e.items())
                                                             for e, _ in OVERRIDES])
def test_per_component_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str], env: dict[str, str],
                                 expected: dict[str, dict[str, str]]) -> None:
    syslog = tmp_path / "log" / "syslog"
    syslog.parent.mkdir()
    capsys.readouterr()
    emit_everything(env, syslog)
    assert received(capsys.readouterr().err, syslog) == {"file": {}, **expected}


def test_per_component_file_with_level_and_other_components(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    syslog = tmp_path / "log" / "syslog"
    syslog.parent.mkdir()
    file = tmp_path / "tdrv.log"
    capsys.readouterr()
    emit_everything({"NEURON_RT_LOG_LOCATION": "syslog", "NEURON_RT_LOG_LEVEL_NRT": "WARN",
                     "NEURON_RT_LOG_LOCATION_TDRV": str(file), "NEURON_RT_LOG_LEVEL_TDRV": "DEBUG"}, syslog)
    assert received(capsys.readouterr().err, syslog, file) == {
        "console": only("E"),
        "syslog": {"NRT": "WE", "NMGR": "IWE", "HAL": "IWE"},
        "file": {"TDRV": "DIWE"},
    }


def test_without_a_syslog_default_lines_are_dropped_but_a_named_syslog_falls_back(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    no_syslog = tmp_path / "log" / "syslog"  # never created: the logger is given no syslog path
    capsys.readouterr()
    emit_everything({}, None)  # no machine, hence no syslog: the console still shows the errors
    assert received(capsys.readouterr().err, no_syslog) == {"console": only("E"), "syslog": {}, "file": {}}
    emit_everything({"NEURON_RT_LOG_LOCATION": "syslog"}, None)  # named explicitly: nothing is lost
    assert received(capsys.readouterr().err, no_syslog) == {"console": only("IWE"), "syslog": {}, "file": {}}


def test_enabled_matches_the_destinations() -> None:
    quiet = NrtLogger(parse_log_settings({"NEURON_RT_LOG_LEVEL": "QUIET", "NEURON_RT_LOG_LEVEL_TDRV": "DEBUG"}), None)
    assert not any(quiet.enabled(level, "NRT") for level in LEVEL_LETTERS.values())
    assert [quiet.enabled(level, "TDRV") for level in LEVEL_LETTERS.values()] == [False, True, True, True, True]
    default = NrtLogger(parse_log_settings({}), None)
    assert [default.enabled(level, "NMGR") for level in LEVEL_LETTERS.values()] == [False, False, True, True, True]


def test_control_characters_in_a_message_cannot_forge_lines(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    syslog = tmp_path / "log" / "syslog"
    syslog.parent.mkdir()
    capsys.readouterr()
    NrtLogger(parse_log_settings({}), syslog).error("NRT", "nrt_init", "bad\n2025-Sep-19 fake\x1b[2J\udcff end")
    (line,) = parse_log_lines(capsys.readouterr().err)
    assert line.message == "bad\\n2025-Sep-19 fake\\x1b[2J\\udcff end"
    (entry,) = syslog_lines(tmp_path)
    assert entry["message"] == line.message


# ------------------------------------------------------------------------------------------------ end to end


def test_default_destinations_of_a_real_init(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    init_and_close(machine_root, {"NEURONCORE_GROUP_SIZES": "1,1"})
    assert capsys.readouterr() == ("", "")  # success and the NCG warning: nothing on the console…
    lines = syslog_lines(machine_root)  # …but all of it in the syslog ("verbose")
    assert [(m["level"], m["module"], m["function"]) for m in lines] == [
        ("WARN", "NRT", "nrt_init"), ("INFO", "NRT", "nrt_init"), ("INFO", "NRT", "nrt_close")]
    assert "NEURONCORE_GROUP_SIZES=1,1 is deprecated" in lines[0]["message"]
    assert lines[1]["message"] == started_line()
    init_failing(machine_root, NOT_CONTIGUOUS)  # an error: in both places
    console = assert_single_log_line(capsys.readouterr().err, "ERROR", "NRT", "nrt_allocate_neuron_cores")
    assert syslog_lines(machine_root)[-1]["message"] == console.message == "Neuron cores are not contiguous"


def test_driver_gate_error_reaches_console_and_syslog(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nrt_lab.open_machine(machine_root).uninstall_driver()
    capsys.readouterr()
    error = init_failing(machine_root, {})
    console = assert_single_log_line(capsys.readouterr().err, "ERROR", "NRT", "nrt_init")
    (line,) = syslog_lines(machine_root)
    assert (line["level"], line["function"], line["message"]) == ("ERROR", "nrt_init", console.message)
    assert console.message == error.message


def test_busy_line_reaches_console_and_syslog(owner_process: OwnerFactory, machine_root: Path) -> None:
    assert owner_process({"NEURON_RT_VISIBLE_CORES": "0"}).cores == (0,)
    loser = owner_process({})
    assert not loser.ok
    assert_single_log_line(loser.stderr(), "ERROR", "NRT", "nrt_allocate_neuron_cores", busy_message("nc0-nc31", 31))
    errors = [m for m in syslog_lines(machine_root) if m["level"] == "ERROR"]
    assert [(int(m["pid"]), m["message"]) for m in errors] == [(loser.pid, busy_message("nc0-nc31", 31))]


def test_info_level_shows_info_in_both_places(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    init_and_close(machine_root, {"NEURON_RT_LOG_LEVEL": "INFO"})
    console = [line.message for line in parse_log_lines(capsys.readouterr().err)]
    assert console == [m["message"] for m in syslog_lines(machine_root)] == [
        started_line(), "NeuronCores nc0-nc31 released"]


@pytest.mark.parametrize(
    ("env", "text"),
    [
        ({}, "syslog from INFO, console from ERROR"),
        ({"NEURON_RT_LOG_LEVEL": "info"}, "syslog from INFO, console from INFO"),
        ({"NEURON_RT_LOG_LOCATION": "console"}, "console from ERROR"),
        ({"NEURON_RT_LOG_LEVEL": "QUIET"}, "QUIET"),
        ({"NEURON_RT_LOG_LOCATION": "syslog", "NEURON_RT_LOG_LOCATION_TDRV": "/tmp/tdrv.log",
          "NEURON_RT_LOG_LEVEL_TDRV": "DEBUG"},
         "syslog from INFO, console from ERROR; TDRV: /tmp/tdrv.log from DEBUG, console from ERROR"),
    ],
)
def test_settings_describe_themselves(env: dict[str, str], text: str) -> None:
    assert parse_log_settings(env).describe() == text


@pytest.mark.parametrize("location", [{}, {"NEURON_RT_LOG_LOCATION": "syslog"}])
def test_malformed_value_with_an_unusable_root_still_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                   location: Mapping[str, str]) -> None:
    capsys.readouterr()
    with pytest.raises(NrtError) as info:  # the syslog cannot be found: the error is on the console only
        nrt_lab.init(env={"NRT_LAB_ROOT": str(tmp_path / "a\x00b"), "NEURON_RT_NUM_CORES": "x", **location})
    assert info.value.status == NrtStatus.FAILURE
    line = assert_single_log_line(capsys.readouterr().err, "ERROR", "NRT", "nrt_init")
    assert line.message.startswith("NEURON_RT_NUM_CORES='x' is invalid")
