"""Malformed NEURON_* values, NEURONCORE_GROUP_SIZES rules and LNC checks (docs/behaviour.md §0, §1, §1)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

import nrt_lab
import nrt_lab.runtime.config as config_module
import nrt_lab.runtime.logging as logging_module
from conftest import assert_single_log_line, parse_log_lines
from nrt_lab import NrtError, NrtStatus
from nrt_lab.driver import Machine
from nrt_lab.errors import ConfigError
from nrt_lab.runtime.config import (
    ASYNC_REMOVED_WARNING,
    KNOWN_VARIABLES,
    RuntimeConfig,
    closest_known_variable,
    ncg_conflict,
    ncg_deprecation_warning,
)
from nrt_lab.runtime.logging import COMPONENTS

LONG_TAG = "t" * 256

# (variable, value, fragment the ERROR line must contain besides the variable name; None = the value's repr)
MALFORMED: list[tuple[str, str, str | None]] = [
    ("NEURON_RT_VISIBLE_CORES", "a", None),
    ("NEURON_RT_VISIBLE_CORES", "3-1", None),
    ("NEURON_RT_VISIBLE_CORES", "-1", None),
    ("NEURON_RT_VISIBLE_CORES", "1-", None),
    ("NEURON_RT_VISIBLE_CORES", "32", None),
    ("NEURON_RT_VISIBLE_CORES", "30-33", None),
    ("NEURON_RT_VISIBLE_CORES", "1,,2", None),
    ("NEURON_RT_VISIBLE_CORES", ",", None),
    ("NEURON_RT_VISIBLE_CORES", "1-2-3", None),
    ("NEURON_RT_VISIBLE_CORES", "0x1", None),
    ("NEURON_RT_VISIBLE_CORES", "1;2", None),
    ("NEURON_RT_VISIBLE_CORES", "99999999", None),
    ("NEURON_RT_VISIBLE_CORES", "nc0", None),
    ("NEURON_RT_NUM_CORES", "x", None),
    ("NEURON_RT_NUM_CORES", "-2", None),
    ("NEURON_RT_NUM_CORES", "1.5", None),
    ("NEURON_RT_NUM_CORES", "", None),
    ("NEURON_RT_NUM_CORES", "3 cores", None),
    ("NEURON_LOGICAL_NC_CONFIG", "3", None),
    ("NEURON_LOGICAL_NC_CONFIG", "0", None),
    ("NEURON_LOGICAL_NC_CONFIG", "two", None),
    ("NEURON_LOGICAL_NC_CONFIG", "2", "NEURON_LOGICAL_NC_CONFIG=2"),  # trn1 has no logical NeuronCores
    ("NEURON_RT_VIRTUAL_CORE_SIZE", "4", None),
    ("NEURON_RT_LOG_LEVEL", "LOUD", None),
    ("NEURON_RT_LOG_LEVEL", "", None),
    ("NEURON_RT_LOG_LEVEL_NRT", "verbose", None),
    ("NEURON_RT_LOG_LOCATION", "stdout", None),
    ("NEURON_RT_LOG_LOCATION", "/tmp/nrt.log", None),  # a path is accepted only per component
    ("NEURON_RT_EXEC_TIMEOUT", "0", None),
    ("NEURON_RT_EXEC_TIMEOUT", "-5", None),
    ("NEURON_RT_EXEC_TIMEOUT", "nan", None),
    ("NEURON_RT_EXEC_TIMEOUT", "inf", None),
    ("NEURON_RT_EXEC_TIMEOUT", "abc", None),
    ("NEURON_RT_VALIDATE_HASH", "maybe", None),
    ("NEURON_FAIL_ON_NAN", "sometimes", None),
    ("NEURON_RT_NUMERICAL_ERRORS_VERBOSITY", "loud", None),
    ("NEURON_RT_RESET_CORES", "2", None),
    ("NEURON_PROCESS_TAG", LONG_TAG, "256 characters"),
    ("NEURON_PROCESS_TAG", "job\tone", None),
    ("NEURONCORE_GROUP_SIZES", "0", None),
    ("NEURONCORE_GROUP_SIZES", "axb", None),
    ("NEURONCORE_GROUP_SIZES", "2,,2", None),
    ("NEURONCORE_GROUP_SIZES", "0x4", None),
    ("NEURONCORE_GROUP_SIZES", "", None),
    ("NEURONCORE_GROUP_SIZES", "-1", None),
]


@pytest.mark.parametrize(("variable", "value", "fragment"), MALFORMED,
                         ids=[f"{v}={val[:12]!r}" for v, val, _ in MALFORMED])
def test_malformed_value_fails_cleanly(machine_root: Path, machine: Machine, capsys: pytest.CaptureFixture[str],
                                       variable: str, value: str, fragment: str | None) -> None:
    before = sorted(p.name for p in (machine_root / "procs").iterdir())
    capsys.readouterr()
    with pytest.raises(NrtError) as info:
        nrt_lab.init(env={"NRT_LAB_ROOT": str(machine_root), variable: value})
    assert info.value.status == NrtStatus.FAILURE
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = parse_log_lines(captured.err)
    assert [line.level for line in lines] == ["ERROR"], captured.err
    message = lines[0].message
    assert variable in message
    assert (fragment if fragment is not None else f"{variable}={value!r}") in message
    assert "accepted" in message
    assert "accepted" in info.value.message and variable in info.value.message
    # Nothing changed on the machine: no owner, no record, and a plain init gets every core.
    assert nrt_lab.get_runtime() is None
    assert machine.owners() == []
    assert sorted(p.name for p in (machine_root / "procs").iterdir()) == before
    with nrt_lab.init(env={"NRT_LAB_ROOT": str(machine_root)}) as runtime:
        assert runtime.cores == tuple(range(32))


def test_malformed_table_is_large_enough() -> None:
    assert len(MALFORMED) >= 30
    assert len({(v, val) for v, val, _ in MALFORMED}) == len(MALFORMED)


def test_out_of_range_visible_id_names_the_valid_range(machine_root: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(NrtError):
        nrt_lab.init(env={"NRT_LAB_ROOT": str(machine_root), "NEURON_RT_VISIBLE_CORES": "32"})
    line = assert_single_log_line(capsys.readouterr().err, "ERROR", "NRT", "nrt_init")
    assert "NeuronCore 32 does not exist on trn1.32xlarge (32 NeuronCores)" in line.message
    assert "between 0 and 31" in line.message


@pytest.mark.parametrize(
    ("env", "expected_timeout"),
    [({}, 600.0), ({"NEURON_RT_EXEC_TIMEOUT": "2.5"}, 2.5), ({"NEURON_RT_EXEC_TIMEOUT": " 45 "}, 45.0)],
)
def test_exec_timeout_values(machine_root: Path, env: Mapping[str, str], expected_timeout: float) -> None:
    with nrt_lab.init(env={"NRT_LAB_ROOT": str(machine_root), **env}) as runtime:
        assert runtime.exec_timeout_s == expected_timeout


@pytest.mark.instance("inf1.xlarge")
def test_exec_timeout_default_is_30_s_on_inf1(machine_root: Path) -> None:
    with nrt_lab.init() as runtime:
        assert runtime.exec_timeout_s == 30.0


@pytest.mark.parametrize(("value", "expected"), [("TRUE", True), ("false", False), ("1", True), ("off", False)])
def test_validate_hash_accepts_booleans(machine_root: Path, value: str, expected: bool) -> None:
    with nrt_lab.init(env={"NRT_LAB_ROOT": str(machine_root), "NEURON_RT_VALIDATE_HASH": value}) as runtime:
        assert runtime.config.validate_hash is expected


def test_process_tag_of_255_characters_is_accepted(machine_root: Path, machine: Machine) -> None:
    tag = "x" * 255
    with nrt_lab.init(env={"NRT_LAB_ROOT": str(machine_root), "NEURON_PROCESS_TAG": tag}) as runtime:
        assert runtime.tag == tag
        assert [o.tag for o in machine.owners()] == [tag]


# ------------------------------------------------------------------------------------------------ NCG


def _init_with_warnings(root: Path, env: Mapping[str, str], framework: nrt_lab.Framework = nrt_lab.Framework.NO_FW
                        ) -> nrt_lab.Runtime:
    return nrt_lab.init(framework, env={"NRT_LAB_ROOT": str(root), "NEURON_RT_LOG_LEVEL": "WARNING", **env})


@pytest.mark.parametrize(
    ("env", "framework", "cores"),
    [
        ({"NEURONCORE_GROUP_SIZES": "2,4,3,4"}, nrt_lab.Framework.TF, tuple(range(32))),
        ({"NEURONCORE_GROUP_SIZES": "4x1", "NEURON_RT_VISIBLE_CORES": "0-3"}, nrt_lab.Framework.PYTORCH, (0, 1, 2, 3)),
        ({"NEURONCORE_GROUP_SIZES": "1,2", "NEURON_RT_VISIBLE_CORES": "4-7"}, nrt_lab.Framework.TF, (4, 5, 6, 7)),
        ({"NEURONCORE_GROUP_SIZES": "4"}, nrt_lab.Framework.MXNET, tuple(range(32))),
    ],
)
def test_ncg_within_limits_warns_once_and_is_ignored(machine_root: Path, capsys: pytest.CaptureFixture[str],
                                                     env: Mapping[str, str], framework: nrt_lab.Framework,
                                                     cores: tuple[int, ...]) -> None:
    capsys.readouterr()
    with _init_with_warnings(machine_root, env, framework) as runtime:
        assert runtime.cores == cores  # never used for allocation
    line = assert_single_log_line(capsys.readouterr().err, "WARN", "NRT", "nrt_init")
    assert f"NEURONCORE_GROUP_SIZES={env['NEURONCORE_GROUP_SIZES']}" in line.message
    assert "deprecated" in line.message
    assert "NEURON_RT_VISIBLE_CORES" in line.message and "NEURON_RT_NUM_CORES" in line.message


def test_ncg_warning_is_not_shown_at_the_default_error_level(machine_root: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    with nrt_lab.init(env={"NRT_LAB_ROOT": str(machine_root), "NEURONCORE_GROUP_SIZES": "2,2"}) as runtime:
        assert runtime.cores == tuple(range(32))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("env", "framework", "reason"),
    [
        ({"NEURONCORE_GROUP_SIZES": "2,2", "NEURON_RT_NUM_CORES": "4"}, nrt_lab.Framework.TF,
         "cannot be combined with NEURON_RT_NUM_CORES=4"),
        ({"NEURONCORE_GROUP_SIZES": "2,4,3,4", "NEURON_RT_VISIBLE_CORES": "0-3"}, nrt_lab.Framework.PYTORCH,
         "needs 13 NeuronCores but NEURON_RT_VISIBLE_CORES=0-3 makes 4 visible"),
        ({"NEURONCORE_GROUP_SIZES": "5x1", "NEURON_RT_VISIBLE_CORES": "0-3"}, nrt_lab.Framework.TF,
         "needs 5 NeuronCores"),
        ({"NEURONCORE_GROUP_SIZES": "1", "NEURON_RT_VISIBLE_CORES": "0-3"}, nrt_lab.Framework.MXNET,
         "cannot be combined with NEURON_RT_VISIBLE_CORES with MXNet"),
    ],
)
def test_ncg_conflicts_fail_init(machine_root: Path, machine: Machine, capsys: pytest.CaptureFixture[str],
                                 env: Mapping[str, str], framework: nrt_lab.Framework, reason: str) -> None:
    capsys.readouterr()
    with pytest.raises(NrtError) as info:
        _init_with_warnings(machine_root, env, framework)
    assert info.value.status == NrtStatus.FAILURE
    assert reason in info.value.message
    warn, error = parse_log_lines(capsys.readouterr().err)
    assert (warn.level, warn.function) == ("WARN", "nrt_init") and "deprecated" in warn.message
    assert (error.level, error.module, error.function) == ("ERROR", "NRT", "nrt_init")
    assert reason in error.message
    assert machine.owners() == []


def test_async_inflight_requests_only_warns(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    env = {"NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS": "3"}
    with _init_with_warnings(machine_root, env) as runtime:
        assert runtime.cores == tuple(range(32))
    line = assert_single_log_line(capsys.readouterr().err, "WARN", "NRT", "nrt_init")
    assert "NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS" in line.message and "removed" in line.message


# ------------------------------------------------------------------------------------------------ LNC


def test_logical_nc_config_2_on_trn1_fails(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    with pytest.raises(NrtError) as info:
        nrt_lab.init(env={"NRT_LAB_ROOT": str(machine_root), "NEURON_LOGICAL_NC_CONFIG": "2"})
    assert info.value.status == NrtStatus.FAILURE
    line = assert_single_log_line(capsys.readouterr().err, "ERROR", "NRT", "nrt_init")
    assert "NEURON_LOGICAL_NC_CONFIG=2 is invalid" in line.message and "accepted: 1" in line.message
    # LNC=1, the trn1 value, is accepted.
    with nrt_lab.init(env={"NRT_LAB_ROOT": str(machine_root), "NEURON_LOGICAL_NC_CONFIG": "1"}) as runtime:
        assert runtime.lnc == 1 and len(runtime.cores) == 32


@pytest.mark.instance("trn2.48xlarge")
def test_contradicting_legacy_virtual_core_size_fails(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    env = {"NRT_LAB_ROOT": str(machine_root), "NEURON_LOGICAL_NC_CONFIG": "2", "NEURON_RT_VIRTUAL_CORE_SIZE": "1"}
    with pytest.raises(NrtError) as info:
        nrt_lab.init(env=env)
    assert info.value.status == NrtStatus.FAILURE
    line = assert_single_log_line(capsys.readouterr().err, "ERROR", "NRT", "nrt_init")
    assert "NEURON_RT_VIRTUAL_CORE_SIZE='1'" in line.message and "NEURON_LOGICAL_NC_CONFIG" in line.message


def test_env_argument_does_not_leak_into_os_environ(machine_root: Path) -> None:
    with nrt_lab.init(env={"NRT_LAB_ROOT": str(machine_root), "NEURON_RT_VISIBLE_CORES": "2"}) as runtime:
        assert runtime.cores == (2,)
    assert "NEURON_RT_VISIBLE_CORES" not in os.environ


# ------------------------------------------------------------------------------------------------ huge and odd values
# Python's int() refuses strings of more than 4,300 digits with a ValueError of its own, and accepts Unicode
# digits ("٣", "２") that libnrt would not: every numeric variable must give one ConfigError naming it instead.

HUGE = "1" * 5000
HUGE_VALUES: list[tuple[str, str]] = [
    ("NEURON_RT_NUM_CORES", HUGE),
    ("NEURON_RT_VISIBLE_CORES", HUGE),
    ("NEURON_RT_VISIBLE_CORES", "0-" + HUGE),
    ("NEURON_RT_VISIBLE_CORES", ",".join(["0"] * 3000) + ",x"),
    ("NEURON_LOGICAL_NC_CONFIG", HUGE),
    ("NEURON_RT_VIRTUAL_CORE_SIZE", HUGE),
    ("NEURONCORE_GROUP_SIZES", HUGE),
    ("NEURONCORE_GROUP_SIZES", HUGE + "x1"),
    ("NEURONCORE_GROUP_SIZES", "1x" + HUGE),
    ("NEURONCORE_GROUP_SIZES", ",".join(["1"] * 5000)),
    ("NEURON_RT_EXEC_TIMEOUT", HUGE),
    ("NEURON_RT_EXEC_TIMEOUT", "1" * 300),
    ("NEURON_RT_EXEC_TIMEOUT", "1e999"),
    ("NEURON_RT_EXEC_TIMEOUT", "1e300"),
    ("NEURON_PROCESS_TAG", "t" * 100_000),
]

UNICODE_DIGITS: list[tuple[str, str]] = [
    ("NEURON_RT_NUM_CORES", "٣"),  # ARABIC-INDIC DIGIT THREE: int() would accept it
    ("NEURON_RT_NUM_CORES", "２"),  # FULLWIDTH DIGIT TWO
    ("NEURON_RT_VISIBLE_CORES", "１"),
    ("NEURON_RT_VISIBLE_CORES", "0-٣"),
    ("NEURON_LOGICAL_NC_CONFIG", "١"),
    ("NEURON_RT_VIRTUAL_CORE_SIZE", "۱"),  # EXTENDED ARABIC-INDIC DIGIT ONE
    ("NEURONCORE_GROUP_SIZES", "٢x١"),
    ("NEURONCORE_GROUP_SIZES", "2,٢"),
    ("NEURON_RT_EXEC_TIMEOUT", "٣٠"),  # float() would accept it too
    ("NEURON_RT_EXEC_TIMEOUT", "1_000"),  # so would it this
    ("NEURON_RT_EXEC_TIMEOUT", "infinity"),
    ("NEURON_RT_LOG_LEVEL", "ınfo"),  # DOTLESS I: "ınfo".upper() == "INFO"
    ("NEURON_RT_LOG_LEVEL", "quıet"),
]


@pytest.mark.parametrize(("variable", "value"), HUGE_VALUES + UNICODE_DIGITS,
                         ids=[f"{v}={val[:10]!r}…{len(val)}" for v, val in HUGE_VALUES + UNICODE_DIGITS])
def test_huge_and_non_ascii_values_fail_cleanly(machine_root: Path, machine: Machine,
                                                capsys: pytest.CaptureFixture[str], variable: str,
                                                value: str) -> None:
    capsys.readouterr()
    with pytest.raises(NrtError) as info:
        nrt_lab.init(env={"NRT_LAB_ROOT": str(machine_root), variable: value})
    assert info.value.status == NrtStatus.FAILURE
    line = assert_single_log_line(capsys.readouterr().err, "ERROR", "NRT", "nrt_init")
    assert line.message == info.value.message
    assert line.message.startswith(f"{variable}=") and "accepted: " in line.message
    if len(value) > 200:  # shown shortened: the first 40 characters and the length
        assert line.message.startswith(f"{variable}={value[:40]!r}… ({len(value)} characters) is invalid: ")
        assert len(line.message) < 600
    else:
        assert f"{variable}={value!r}" in line.message
    assert machine.owners() == []


def test_leading_zeros_are_not_a_huge_number(machine_root: Path) -> None:
    env = {"NRT_LAB_ROOT": str(machine_root), "NEURON_RT_NUM_CORES": "0" * 4999 + "2",
           "NEURON_RT_EXEC_TIMEOUT": "0" * 30 + "45"}
    with nrt_lab.init(env=env) as runtime:
        assert runtime.cores == (0, 1) and runtime.exec_timeout_s == 45.0
    with nrt_lab.init(env={"NRT_LAB_ROOT": str(machine_root), "NEURON_RT_VISIBLE_CORES": "0" * 5000 + "3-04"}) as rt:
        assert rt.cores == (3, 4)


def test_config_error_keeps_the_whole_value() -> None:
    with pytest.raises(ConfigError) as info:
        RuntimeConfig.from_env({"NEURON_RT_NUM_CORES": HUGE})
    assert info.value.value == HUGE and info.value.variable == "NEURON_RT_NUM_CORES"
    assert str(info.value) == (f"NEURON_RT_NUM_CORES={HUGE[:40]!r}… (5000 characters) is invalid: the number is "
                               "out of range; accepted: a whole number of NeuronCores from 0 to 65536 (0 means all)")


@pytest.mark.parametrize("value", ["1e3", "2.5", ".5", "+30", "1E2", "600."])
def test_exec_timeout_decimal_forms(value: str) -> None:
    assert RuntimeConfig.from_env({"NEURON_RT_EXEC_TIMEOUT": value}).exec_timeout_s == float(value)


# ------------------------------------------------------------------------------------------------ one source


def test_every_variable_the_runtime_reads_is_known() -> None:
    names: set[str] = set()
    for module in (config_module, logging_module):
        source = Path(module.__file__ or "").read_text(encoding="utf-8")
        names |= set(re.findall(r'"((?:NEURON|AWS_NEURON)[A-Z0-9_]*[A-Z0-9])"', source))
    names |= {f"NEURON_RT_LOG_{kind}_{c}" for kind in ("LEVEL", "LOCATION") for c in COMPONENTS}
    assert names and names <= set(KNOWN_VARIABLES), sorted(names - set(KNOWN_VARIABLES))
    read = {name for name, info in KNOWN_VARIABLES.items() if info.status != "accepted"}
    assert read <= names | {"NEURON_RT_LOG_LEVEL_NRT"}, sorted(read - names)  # documented ones are really read
    assert all(info.name == name and name.isupper() for name, info in KNOWN_VARIABLES.items())
    assert all(info.instead for info in KNOWN_VARIABLES.values() if info.status in ("deprecated", "removed", "legacy"))


@pytest.mark.parametrize(("typo", "meant"), [
    ("NEURON_RT_VISIBLE_CORE", "NEURON_RT_VISIBLE_CORES"),
    ("NEURON_RT_NUM_CORE", "NEURON_RT_NUM_CORES"),
    ("NEURON_RT_EXEC_TIMEOUTS", "NEURON_RT_EXEC_TIMEOUT"),
    ("NEURON_RT_VISIBLE_CORES", None),
    ("NEURON_RT_SOMETHING_ELSE", None),
])
def test_closest_known_variable(typo: str, meant: str | None) -> None:
    assert closest_known_variable(typo) == meant


def test_init_logs_the_shared_messages(machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    env = {"NEURONCORE_GROUP_SIZES": "1,1", "NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS": "3"}
    with _init_with_warnings(machine_root, env):
        pass
    assert [line.message for line in parse_log_lines(capsys.readouterr().err)] == [
        ncg_deprecation_warning("1,1"), ASYNC_REMOVED_WARNING]
    config = RuntimeConfig.from_env({"NEURONCORE_GROUP_SIZES": "1", "NEURON_RT_VISIBLE_CORES": "0-3"})
    assert ncg_conflict(config, mxnet=False) is None
    assert "with MXNet" in (ncg_conflict(config, mxnet=True) or "")
