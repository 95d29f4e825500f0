"""Malformed NEURON_* values, NEURONCORE_GROUP_SIZES rules and LNC checks (SPEC §0, §1, §1.5)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

import nrt_lab
from conftest import assert_single_log_line, parse_log_lines
from nrt_lab import NrtError, NrtStatus
from nrt_lab.driver import Machine

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
