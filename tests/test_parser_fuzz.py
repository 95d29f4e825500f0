"""Fuzzing of every parser that reads user input: environment variables, state files, monitor configs.

Each parser must either return a well-formed value or raise its documented error naming the problem; never
another exception. Examples per test: NRT_LAB_FUZZ_EXAMPLES (default 200, kept small for CI).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nrt_lab.driver import StateError, parse_driver_version
from nrt_lab.driver.state import read_machine
from nrt_lab.errors import ConfigError, shown_value
from nrt_lab.runtime.config import RuntimeConfig, parse_ncg, parse_visible_cores
from nrt_lab.tools.neuron_monitor import ConfigError as MonitorConfigError
from nrt_lab.tools.neuron_monitor import parse_config, parse_period

EXAMPLES = int(os.environ.get("NRT_LAB_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text that looks like core lists often, and like anything else sometimes.
core_text = st.one_of(
    st.text(alphabet="0123456789,- x", max_size=24),
    st.text(max_size=24),
    st.lists(st.tuples(st.integers(-3, 200), st.integers(-3, 200)), max_size=6).map(
        lambda items: ",".join(f"{a}-{b}" if b % 3 else str(a) for a, b in items)
    ),
)


@FUZZ
@given(core_text)
def test_visible_cores_parser_returns_sorted_unique_ids_or_names_the_value(raw: str) -> None:
    try:
        spec = parse_visible_cores(raw)
    except ConfigError as exc:
        assert exc.variable == "NEURON_RT_VISIBLE_CORES" and repr(raw) in str(exc) and "accepted:" in str(exc)
        return
    assert list(spec.cores) == sorted(set(spec.cores)) and all(c >= 0 for c in spec.cores)
    if raw.strip() == "":
        assert spec.cores == ()


@FUZZ
@given(st.text(alphabet="0123456789,x ", max_size=16) | st.text(max_size=16))
def test_ncg_parser(raw: str) -> None:
    try:
        spec = parse_ncg(raw)
    except ConfigError as exc:
        assert exc.variable == "NEURONCORE_GROUP_SIZES" and "accepted:" in str(exc)
        return
    assert spec.sizes and all(size > 0 for size in spec.sizes)


@FUZZ
@given(st.dictionaries(
    st.sampled_from(["NEURON_RT_VISIBLE_CORES", "NEURON_RT_NUM_CORES", "NEURON_LOGICAL_NC_CONFIG",
                     "NEURON_RT_LOG_LEVEL", "NEURON_RT_LOG_LOCATION", "NEURON_RT_EXEC_TIMEOUT",
                     "NEURON_RT_VALIDATE_HASH", "NEURON_PROCESS_TAG", "NEURONCORE_GROUP_SIZES",
                     "NEURON_RT_LOG_LEVEL_NRT", "NEURON_FAIL_ON_NAN", "NEURON_RT_VIRTUAL_CORE_SIZE"]),
    st.text(max_size=12), max_size=5))
def test_runtime_config_from_any_environment(env: dict[str, str]) -> None:
    try:
        config = RuntimeConfig.from_env(env, pid=4242)
    except ConfigError as exc:
        assert exc.variable in env and "accepted:" in str(exc)
        return
    assert config.process_tag  # defaults to the pid
    assert config.lnc in (None, 1, 2)


# Values that defeat naive number parsing: more digits than int() converts (4,300), Unicode decimal digits that
# int()/float() accept, digit strings mixed into ranges and lists, and exponents that overflow a float.
unicode_digits = st.text(alphabet=st.characters(categories=["Nd"]), min_size=1, max_size=6)
huge_digits = st.integers(4290, 12_000).map(lambda n: "9" * n) | st.integers(4290, 12_000).map(lambda n: "0" * n + "1")
numberish = st.one_of(
    huge_digits,
    unicode_digits,
    st.tuples(huge_digits | unicode_digits | st.sampled_from(["0", "1", "31"]),
              st.sampled_from(["-", ",", "x", ".", "e", "-0,", "x1,"]),
              huge_digits | unicode_digits | st.sampled_from(["0", "2", "400"])).map("".join),
    st.integers(0, 400).map(lambda n: f"1e{n}"),
    st.from_regex(r"[+-]?[0-9\u0660-\u0669\uff10-\uff19_]{1,8}(\.[0-9]{0,3})?", fullmatch=True),
)
NUMERIC_VARIABLES = ["NEURON_RT_VISIBLE_CORES", "NEURON_RT_NUM_CORES", "NEURON_LOGICAL_NC_CONFIG",
                     "NEURON_RT_VIRTUAL_CORE_SIZE", "NEURONCORE_GROUP_SIZES", "NEURON_RT_EXEC_TIMEOUT"]


@FUZZ
@given(st.sampled_from(NUMERIC_VARIABLES), numberish)
def test_numeric_variables_never_leak_a_raw_error(variable: str, raw: str) -> None:
    try:
        config = RuntimeConfig.from_env({variable: raw}, pid=4242)
    except ConfigError as exc:
        message = str(exc)
        assert exc.variable == variable and exc.value == raw and "accepted:" in message
        assert message.startswith(f"{variable}={shown_value(raw)} is invalid: ")
        assert len(message) < 800  # a huge value is shown shortened
        return
    assert raw.strip().isascii()  # Unicode digits are never taken for numbers
    if variable == "NEURON_RT_NUM_CORES":
        assert config.num_cores is not None and 0 <= config.num_cores <= 65536
    elif variable == "NEURON_RT_EXEC_TIMEOUT":
        assert config.exec_timeout_s is not None and 0 < config.exec_timeout_s <= 1e9
    elif variable == "NEURON_RT_VISIBLE_CORES":
        assert config.visible_cores is not None and all(0 <= c <= 65535 for c in config.visible_cores.cores)
    elif variable == "NEURONCORE_GROUP_SIZES":
        assert config.ncg is not None and 0 < len(config.ncg.sizes) <= 4096


@FUZZ
@given(st.text(alphabet=st.characters(categories=["Nd", "No", "Zs", "Pd"]) | st.sampled_from("0123456789,-"),
               max_size=16))
def test_core_list_with_unicode_digits_and_dashes(raw: str) -> None:
    try:
        parse_visible_cores(raw)
    except ConfigError as exc:
        assert exc.variable == "NEURON_RT_VISIBLE_CORES" and "accepted:" in str(exc)
        return
    digits = [ch for ch in raw if ch.isdigit()]
    assert all(ch in "0123456789" for ch in digits)


@FUZZ
@given(st.text(max_size=20))
def test_driver_version_parser(raw: str) -> None:
    try:
        version = parse_driver_version(raw)
    except ValueError as exc:
        assert "accepted:" in str(exc)
        return
    assert str(version).count(".") == 3


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(json_values)
def test_monitor_config_parser(data: Any) -> None:
    try:
        parse_config(data)
    except MonitorConfigError as exc:
        assert "accepted" in str(exc) or "is" in str(exc)


@FUZZ
@given(st.one_of(st.text(max_size=10), st.integers(), st.floats(), st.none()))
def test_monitor_period_parser(value: Any) -> None:
    try:
        seconds = parse_period(value)
    except MonitorConfigError:
        return
    assert 0.1 <= seconds <= 86400


machine_documents = st.fixed_dictionaries(
    {},
    optional={
        "schema_version": st.one_of(st.just(1), json_values),
        "instance_type": st.one_of(st.sampled_from(["trn1.32xlarge", "inf2.xlarge", "trn2.48xlarge"]), json_values),
        "lnc": st.one_of(st.sampled_from([1, 2]), json_values),
        "instance_id": st.one_of(st.just("i-0123456789abcdef0"), json_values),
        "created": st.one_of(st.just(1.0), json_values),
        "instance": json_values,
    },
)


@FUZZ
@given(st.one_of(machine_documents, json_values, st.binary(max_size=64)))
def test_machine_file_reader(tmp_path_factory: pytest.TempPathFactory, document: Any) -> None:
    root = tmp_path_factory.mktemp("machine")
    path = Path(root) / "machine.json"
    if isinstance(document, bytes):
        path.write_bytes(document)
    else:
        path.write_text(json.dumps(document), encoding="utf-8")
    before = path.read_bytes()
    try:
        state = read_machine(Path(root))
    except StateError as exc:
        assert str(path) in str(exc)
    else:
        assert state is not None and state.instance.total_cores > 0
    assert path.read_bytes() == before  # reading never rewrites


def test_largest_core_list_an_environment_can_hold_is_cheap() -> None:
    # Linux caps one environment string at 128 KiB: 16,000 overlapping full ranges. Expanding each range into
    # a set took ~60 s of CPU; merging ranges takes milliseconds. CPU time (not wall time) keeps the bound
    # meaningful on a loaded machine; the margin is over 50x.
    raw = ",".join(["0-65535"] * 16_000)
    start = time.process_time()
    spec = parse_visible_cores(raw)
    assert time.process_time() - start < 5.0
    assert spec.cores == tuple(range(65536)) and spec.contiguous


@pytest.mark.parametrize(("raw", "cores"), [
    ("6,5,4", (4, 5, 6)), ("3-5,6", (3, 4, 5, 6)), ("1,1,0-2,2", (0, 1, 2)), ("5-9,0-3,2-6", tuple(range(10))),
    ("3,5,6", (3, 5, 6)), ("7,0-1", (0, 1, 7)), ("0-0,0", (0,)), ("65535", (65535,)),
])
def test_core_list_ranges_merge(raw: str, cores: tuple[int, ...]) -> None:
    assert parse_visible_cores(raw).cores == cores
