"""Execution semantics through the public API (docs/behaviour.md §3 "Models", "Execution", §4 OOM report, docs/architecture.md (Runtime)):
outputs, execute_repeat, benchmark, input checks, handle life cycle, load errors, timeouts, NaN, device memory
accounting, per-core serialization of threads and the stats page."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nrt_lab
from conftest import parse_log_lines
from nrt_lab import Model, NrtError, NrtStatus, Tensor, TensorPlacement
from nrt_lab.driver import open_machine
from nrt_lab.driver.stats import read_stats
from nrt_lab.kernels import Kernel, registry
from nrt_lab.models import build_add, build_mlp, example_inputs
from nrt_lab.neff import GraphBuilder, write_neff
from nrt_lab.runtime import model as model_module

pytestmark = pytest.mark.instance("trn1.2xlarge")

GIB = 2**30
MICROCODE = 96 * 2**20


# ---------------------------------------------------------------------------------------------- helpers


@pytest.fixture
def start(machine_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """``start(**env)``: set NEURON_* variables, then ``nrt_lab.init()``; the runtime is closed at teardown.

    The system temp dir is redirected to ``tmp_path`` so OOM reports do not litter /tmp.
    """
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def _start(**env: str) -> nrt_lab.Runtime:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return nrt_lab.init()

    try:
        yield _start
    finally:
        nrt_lab.close()


@pytest.fixture
def rt(start: Any) -> nrt_lab.Runtime:
    """A live runtime with the default environment."""
    runtime: nrt_lab.Runtime = start()
    return runtime


def neff_file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    write_neff(path, data)
    return path


def add_inputs() -> dict[str, np.ndarray[Any, Any]]:
    return {"a_input": np.arange(12, dtype=np.float16).reshape(4, 3),
            "b_input": np.full((4, 3), 0.5, dtype=np.float16)}


def plus_one_neff(shape: Sequence[int] = (8,)) -> bytes:
    """``y = x + 1`` (float32): its output matches its input, as execute_repeat needs."""
    g = GraphBuilder(name="plus_one")
    x = g.input("x", "float32", shape)
    g.output("y", g.op("add", [x, g.constant("one", np.ones(shape, dtype=np.float32))]))
    return g.build(uuid=b"p" * 16)


def errors_of(text: str) -> list[tuple[str, str, str]]:
    """(module, function, message) of every ERROR line in ``text``."""
    return [(line.module, line.function, line.message) for line in parse_log_lines(text) if line.level == "ERROR"]


def stats_of(runtime: nrt_lab.Runtime, core: int) -> Any:
    assert runtime.stats is not None
    snapshot = read_stats(runtime.stats.path)
    assert snapshot is not None
    return next(c for c in snapshot.cores if c.core == core)


# ---------------------------------------------------------------------------------------------- outputs


def test_outputs_are_allocated_on_the_model_core(rt: nrt_lab.Runtime) -> None:
    model = Model.load(build_add().neff, 1)
    assert model.core == rt.cores[1]
    out = model.execute(add_inputs())
    assert list(out) == ["output_0"]
    tensor = out["output_0"]
    assert tensor.placement == TensorPlacement.DEVICE and tensor.core == rt.cores[1]
    assert tensor.size == 24
    np.testing.assert_array_equal(tensor.numpy(), add_inputs()["a_input"] + np.float16(0.5))
    assert model(add_inputs())["output_0"] is not tensor  # a fresh tensor per call


def test_outputs_are_written_into_given_tensors(rt: nrt_lab.Runtime) -> None:
    model = Model.load(build_add().neff)
    inputs = {name: Tensor.from_numpy(array, name=name) for name, array in add_inputs().items()}
    target = Tensor.allocate(24, TensorPlacement.DEVICE, 0, "result")
    out = model.execute(inputs, {"output_0": target})
    assert out["output_0"] is target
    np.testing.assert_array_equal(target.numpy(np.float16, (4, 3)), add_inputs()["a_input"] + np.float16(0.5))
    # host (virtual) tensors work as inputs and outputs too
    virtual_out = Tensor.allocate(24, TensorPlacement.VIRTUAL, name="v")
    host_in = {n: Tensor.from_numpy(a, TensorPlacement.VIRTUAL, name=n) for n, a in add_inputs().items()}
    model.execute(host_in, {"output_0": virtual_out})
    np.testing.assert_array_equal(virtual_out.numpy(np.float16, (4, 3)), target.numpy(np.float16, (4, 3)))


# ---------------------------------------------------------------------------------------------- execute_repeat


def test_execute_repeat_feeds_outputs_back(rt: nrt_lab.Runtime) -> None:
    model = Model.load(plus_one_neff())
    x = np.arange(8, dtype=np.float32)
    out = model.execute_repeat({"x": x}, None, 5)
    np.testing.assert_array_equal(out["y"].numpy(), x + 5)
    given = Tensor.allocate(32, TensorPlacement.DEVICE, 0, "y", dtype=np.float32, shape=(8,))
    assert model.execute_repeat({"x": Tensor.from_numpy(x)}, {"y": given}, 1)["y"] is given
    np.testing.assert_array_equal(given.numpy(), x + 1)
    assert model.executions == 6
    with pytest.raises(NrtError) as info:
        model.execute_repeat({"x": x}, None, 0)
    assert info.value.status == NrtStatus.INVALID


def test_execute_repeat_needs_outputs_matching_inputs(rt: nrt_lab.Runtime, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    model = Model.load(neff_file(tmp_path, "add.neff", build_add().neff))
    capsys.readouterr()
    with pytest.raises(NrtError) as info:
        model.execute_repeat(add_inputs(), None, 3)
    assert info.value.status == NrtStatus.INVALID
    (line,) = errors_of(capsys.readouterr().err)
    assert line[:2] == ("NRT", "nrt_execute_repeat")
    assert line[2].startswith("Failed to execute model add.neff with status 2")


def test_execute_repeat_failure_logs_the_status(rt: nrt_lab.Runtime, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    model = Model.load(neff_file(tmp_path, "plus_one.neff", plus_one_neff()))
    capsys.readouterr()
    with pytest.raises(NrtError) as info:
        model.execute_repeat({"x": np.zeros(4, np.float32)}, None, 2)
    assert info.value.status == NrtStatus.EXEC_BAD_INPUT
    lines = errors_of(capsys.readouterr().err)
    assert ("NRT", "nrt_execute_repeat", "Failed to execute model plus_one.neff with status 1002") in lines


# ---------------------------------------------------------------------------------------------- benchmark


def test_benchmark_fields(rt: nrt_lab.Runtime) -> None:
    model = Model.load(build_add().neff)
    inputs = {n: Tensor.from_numpy(a) for n, a in add_inputs().items()}
    for mode in ("device", "host"):
        result = model.benchmark(inputs, warmup=2, iterations=4, mode=mode)
        assert (result.iterations, result.warmup_iterations) == (4, 2)
        assert len(result.durations_ms) == 4 and all(d > 0 for d in result.durations_ms)
        assert result.min_ms == min(result.durations_ms) and result.max_ms == max(result.durations_ms)
        assert result.min_ms <= result.mean_ms <= result.max_ms
        assert result.mean_ms == pytest.approx(sum(result.durations_ms) / 4)
        assert result.std_dev_ms >= 0
    assert model.executions == 12
    with pytest.raises(ValueError, match="mode 'gpu' is invalid"):
        model.benchmark(inputs, mode="gpu")
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="iterations"):
            model.benchmark(inputs, iterations=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="warmup"):
        model.benchmark(inputs, warmup=-1)
    assert model.executions == 12


# ---------------------------------------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    ("inputs", "status"),
    [
        ({"a_input": add_inputs()["a_input"]}, NrtStatus.INVALID),
        ({**add_inputs(), "c_input": add_inputs()["a_input"]}, NrtStatus.INVALID),
        ({"a": add_inputs()["a_input"], "b": add_inputs()["b_input"]}, NrtStatus.INVALID),
        ({**add_inputs(), "b_input": np.zeros((4, 4), np.float16)}, NrtStatus.EXEC_BAD_INPUT),
        ({**add_inputs(), "b_input": np.zeros((4, 3), np.float32)}, NrtStatus.EXEC_BAD_INPUT),
        ({**add_inputs(), "b_input": np.zeros((4, 3), np.int16)}, NrtStatus.EXEC_BAD_INPUT),
    ],
    ids=["missing", "unknown", "renamed", "wrong-size", "wrong-dtype-size", "wrong-dtype"],
)
def test_bad_inputs(inputs: Mapping[str, Any], status: NrtStatus, rt: nrt_lab.Runtime,
                    capsys: pytest.CaptureFixture[str]) -> None:
    model = Model.load(build_add().neff)
    capsys.readouterr()
    with pytest.raises(NrtError) as info:
        model.execute(inputs)
    assert info.value.status == status
    (line,) = errors_of(capsys.readouterr().err)
    assert line[:2] == ("NRT", "nrt_execute")
    counters = stats_of(rt, model.core)
    assert counters.outcomes["incorrect_input"] == 1
    assert counters.outcomes["completed"] == 0
    key = "exec_bad_input" if status == NrtStatus.EXEC_BAD_INPUT else "invalid_error"
    assert counters.status[key] == 1
    assert model.executions == 0


def test_bad_tensors(rt: nrt_lab.Runtime) -> None:
    model = Model.load(build_add().neff)
    good = {n: Tensor.from_numpy(a) for n, a in add_inputs().items()}
    cases: list[tuple[dict[str, Any], dict[str, Tensor] | None, NrtStatus]] = [
        ({**good, "b_input": Tensor.allocate(48)}, None, NrtStatus.EXEC_BAD_INPUT),
        ({**good, "b_input": Tensor.from_numpy(np.zeros((4, 3), np.int16))}, None, NrtStatus.EXEC_BAD_INPUT),
        (good, {"output_0": Tensor.allocate(12)}, NrtStatus.EXEC_BAD_INPUT),
        (good, {"out": Tensor.allocate(24)}, NrtStatus.INVALID),
        (good, {}, NrtStatus.INVALID),
    ]
    for inputs, outputs, status in cases:
        with pytest.raises(NrtError) as info:
            model.execute(inputs, outputs)
        assert info.value.status == status, info.value
    # an untyped tensor of the right size is accepted (libnrt only sees bytes)
    untyped = Tensor.allocate(24)
    untyped.write(add_inputs()["b_input"])
    out = model.execute({**good, "b_input": untyped})
    np.testing.assert_array_equal(out["output_0"].numpy(), add_inputs()["a_input"] + np.float16(0.5))
    assert stats_of(rt, model.core).outcomes["incorrect_input"] == len(cases)


# ---------------------------------------------------------------------------------------------- handle life cycle


def test_unloaded_model_is_an_invalid_handle(rt: nrt_lab.Runtime) -> None:
    model = Model.load(build_add().neff)
    assert model.loaded
    model.unload()
    assert not model.loaded
    for call in (lambda: model.execute(add_inputs()), lambda: model.unload(),
                 lambda: model.benchmark(add_inputs()), lambda: model.execute_repeat(add_inputs(), None, 1)):
        with pytest.raises(NrtError) as info:
            call()
        assert info.value.status == NrtStatus.INVALID_HANDLE
    assert model.model_id not in rt.models
    assert rt.memory.stats_of(model.core)["constants"] == 0
    assert rt.memory.stats_of(model.core)["runtime_memory"] == 0


def test_everything_is_closed_after_close(rt: nrt_lab.Runtime) -> None:
    model = Model.load(build_add().neff)
    tensor = Tensor.from_numpy(np.ones(4, np.float32))
    nrt_lab.close()
    for call in (lambda: model.execute(add_inputs()), lambda: model.unload(), tensor.read,
                 lambda: tensor.write(b"\x00"), lambda: Model.load(build_add().neff), lambda: Tensor.allocate(8)):
        with pytest.raises(NrtError) as info:
            call()
        assert info.value.status == NrtStatus.CLOSED
    nrt_lab.close()  # idempotent
    # a new runtime does not revive the old handles
    nrt_lab.init()
    for call in (lambda: model.execute(add_inputs()), tensor.read):
        with pytest.raises(NrtError) as info:
            call()
        assert info.value.status == NrtStatus.CLOSED
    assert Model.load(build_add().neff).execute(add_inputs())["output_0"].numpy().shape == (4, 3)


def test_freed_tensor_is_an_invalid_handle(rt: nrt_lab.Runtime) -> None:
    model = Model.load(build_add().neff)
    a = Tensor.from_numpy(add_inputs()["a_input"], name="a")
    used = rt.memory.stats_of(rt.cores[0])["tensors"]
    a.free()
    assert a.freed
    assert rt.memory.stats_of(rt.cores[0])["tensors"] == used - 24
    a.free()  # freeing twice is harmless, as nrt_tensor_free(&NULL)
    for call in (a.read, lambda: a.write(b"\x00"), a.numpy, lambda: a.memset(0), lambda: a.size,
                 lambda: model.execute({"a_input": a, "b_input": add_inputs()["b_input"]})):
        with pytest.raises(NrtError) as info:
            call()
        assert info.value.status == NrtStatus.INVALID_HANDLE


# ---------------------------------------------------------------------------------------------- load errors


def test_neff_needing_more_cores_than_visible(rt: nrt_lab.Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    g = GraphBuilder(name="big")
    g.output("y", g.op("relu", [g.input("x", "float32", (4,))]))
    capsys.readouterr()
    with pytest.raises(NrtError) as info:
        Model.load(g.build(requested_cores=3))
    assert info.value.status == NrtStatus.LOAD_NOT_ENOUGH_NC
    lines = errors_of(capsys.readouterr().err)
    assert ("NMGR", "nmgr_load", "Failed to load NN: big, err: 9") in lines
    two = g.build(requested_cores=2)
    with pytest.raises(NrtError) as info:
        Model.load(two, 1)
    assert info.value.status == NrtStatus.LOAD_NOT_ENOUGH_NC
    model = Model.load(two, 0)
    assert model.cores == tuple(rt.cores[:2])
    np.testing.assert_array_equal(model.execute({"x": np.array([-1, 2, -3, 4], np.float32)})["y"].numpy(),
                                  [0, 2, 0, 4])


def test_neff_version_3_is_unsupported(rt: nrt_lab.Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    g = GraphBuilder(name="future")
    g.output("y", g.op("relu", [g.input("x", "float32", (4,))]))
    capsys.readouterr()
    with pytest.raises(NrtError) as info:
        Model.load(g.build(neff_version=(3, 0)))
    assert info.value.status == NrtStatus.UNSUPPORTED_NEFF_VERSION
    assert info.value.message == "NEFF version mismatch supported: 2.0 received: 3.0"
    assert errors_of(capsys.readouterr().err) == [
        ("NMGR", "nmgr_load_neff", "NEFF version mismatch supported: 2.0 received: 3.0")]
    assert stats_of(rt, rt.cores[0]).status["unsupported_neff_version"] == 1


def _corrupted_constant_neff() -> tuple[bytes, bytes]:
    """``y = x + c``, and the same NEFF with one byte of ``c`` changed in the payload (header unchanged)."""
    g = GraphBuilder(name="with_constant")
    c = np.full(16, 2.0, dtype=np.float32)
    g.output("y", g.op("add", [g.input("x", "float32", (16,)), g.constant("c", c)]))
    good = g.build(uuid=b"c" * 16)
    at = good.index(c.tobytes())
    bad = bytearray(good)
    bad[at + 3] ^= 0x01  # the sign/exponent byte of c[0]: 2.0 becomes 8.0
    return good, bytes(bad)


def test_corrupted_payload_without_hash_validation_loads(start: Any) -> None:
    start()
    _, bad = _corrupted_constant_neff()
    out = Model.load(bad).execute({"x": np.zeros(16, np.float32)})["y"].numpy()
    assert out[0] != 2.0 and (out[1:] == 2.0).all()


def test_corrupted_payload_fails_hash_validation(start: Any, capsys: pytest.CaptureFixture[str]) -> None:
    start(NEURON_RT_VALIDATE_HASH="TRUE")
    good, bad = _corrupted_constant_neff()
    Model.load(good)
    capsys.readouterr()
    with pytest.raises(NrtError) as info:
        Model.load(bad)
    assert info.value.status == NrtStatus.INVALID
    assert "hash mismatch" in info.value.message
    ((module, function, _),) = errors_of(capsys.readouterr().err)
    assert (module, function) == ("NMGR", "nmgr_load_neff")


def test_unknown_op_is_invalid(rt: nrt_lab.Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    g = GraphBuilder(name="alien")
    g.output("y", g.op("frobnicate", [g.input("x", "float32", (4,))], shape=(4,), dtype="float32"))
    with pytest.raises(NrtError) as info:
        Model.load(g.build())
    assert info.value.status == NrtStatus.INVALID
    assert "frobnicate" in info.value.message
    assert rt.models == {}
    assert rt.memory.stats_of(rt.cores[0])["constants"] == 0


def test_missing_neff_file_fails(rt: nrt_lab.Runtime, tmp_path: Path) -> None:
    with pytest.raises(NrtError) as info:
        Model.load(tmp_path / "missing.neff")
    assert info.value.status == NrtStatus.FAILURE


def test_core_index_out_of_range(rt: nrt_lab.Runtime) -> None:
    for core in (2, 7, -2):
        with pytest.raises(NrtError) as info:
            Model.load(build_add().neff, core)
        assert info.value.status == NrtStatus.INVALID, core
    assert Model.load(build_add().neff, -1).core in rt.cores


# ---------------------------------------------------------------------------------------------- timeout and NaN


def _slow_neff(n: int = 512, steps: int = 2) -> bytes:
    g = GraphBuilder(name="slow")
    x = g.input("x", "float32", (n, n))
    w = g.constant("w", np.eye(n, dtype=np.float32))
    for _ in range(steps):
        x = g.op("matmul", [x, w])
    g.output("y", x)
    return g.build(uuid=b"s" * 16)


def test_execution_timeout(start: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = start(NEURON_RT_EXEC_TIMEOUT="0.001")
    model = Model.load(_slow_neff())
    capsys.readouterr()
    ticks = iter(range(1000))  # the deadline clock advances 10 ms per reading, whatever the machine's speed
    monkeypatch.setattr(model_module, "_deadline_clock", lambda: next(ticks) * 0.01)
    with pytest.raises(NrtError) as info:
        model.execute({"x": np.ones((512, 512), np.float32)})
    assert info.value.status == NrtStatus.TIMEOUT
    lines = errors_of(capsys.readouterr().err)
    assert len(lines) == 1
    module, function, message = lines[0]
    assert (module, function) == ("TDRV", "exec_consume_infer_status_notifications")
    assert message.startswith("execution timeout (1 ms) on Neuron Device 0 NC 0, model slow")
    counters = stats_of(runtime, model.core)
    assert counters.outcomes["timed_out"] == 1 and counters.status["timeout"] == 1
    assert counters.outcomes["completed"] == 0
    # the core is usable again afterwards (time stands still now: a 1 ms budget is never exceeded)
    monkeypatch.setattr(model_module, "_deadline_clock", lambda: 0.0)
    fast = Model.load(build_add().neff)
    fast.execute(add_inputs())


def _nan_neff() -> bytes:
    g = GraphBuilder(name="nan")
    x = g.input("x", "float32", (4,))
    g.output("y", g.op("div", [x, x]))  # 0/0 = NaN
    return g.build(uuid=b"n" * 16)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_nan_fails_with_fail_on_nan(start: Any, capsys: pytest.CaptureFixture[str]) -> None:
    runtime = start(NEURON_FAIL_ON_NAN="1")
    model = Model.load(_nan_neff())
    capsys.readouterr()
    with pytest.raises(NrtError) as info:
        model.execute({"x": np.array([0, 1, 2, 3], np.float32)})
    assert info.value.status == NrtStatus.EXEC_COMPLETED_WITH_NUM_ERR
    assert [line[:2] for line in errors_of(capsys.readouterr().err)] == [("NRT", "nrt_execute")]
    counters = stats_of(runtime, model.core)
    assert counters.outcomes["completed_with_num_err"] == 1 and counters.errors["numerical"] == 1
    model.execute({"x": np.ones(4, np.float32)})  # no NaN: fine
    assert stats_of(runtime, model.core).outcomes["completed"] == 1


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_nan_is_not_an_error_by_default(start: Any, capsys: pytest.CaptureFixture[str]) -> None:
    runtime = start()
    model = Model.load(_nan_neff())
    out = model.execute({"x": np.array([0, 1, 2, 3], np.float32)})["y"].numpy()
    assert np.isnan(out[0]) and (out[1:] == 1).all()
    assert capsys.readouterr().err == ""
    assert stats_of(runtime, model.core).outcomes["completed"] == 1


# ---------------------------------------------------------------------------------------------- device memory


def test_oom_report(start: Any, tmp_path: Path, machine_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runtime = start()
    hbm = runtime.memory.hbm_limit(runtime.cores[0])
    assert hbm == 16 * GIB  # trn1: 32 GiB per device, 2 HBM stacks, one per NeuronCore
    model = Model.load(neff_file(tmp_path, "add.neff", build_add().neff))
    before = {core: runtime.memory.stats_of(core) for core in runtime.cores}
    capsys.readouterr()
    with pytest.raises(NrtError) as info:
        Tensor.allocate(17 * GIB, TensorPlacement.DEVICE, 0, "huge")
    assert info.value.status == NrtStatus.RESOURCE
    lines = errors_of(capsys.readouterr().err)
    assert all((module, function) == ("TDRV", "log_dev_mem") for module, function, _ in lines)
    messages = [message for _, _, message in lines]
    assert messages[0] == "Failed to allocate 17.000GB (alignment: none, usage: tensors) on ND 0:NC 0"
    table = messages[1:]
    assert table[0].split()[:3] == ["TOTAL", "Model", "Code"]
    assert table[1].startswith("ND 0 Overall")
    assert table[2].startswith("\\_NC 0")
    assert table[3].strip().startswith(f"\\_NEFF {model.model_id}")
    assert table[-2:] == ["NEFF id to name mapping:", f"  {model.model_id}: add.neff"]
    saved = tmp_path / "neuron_mem_table_device_0_hbm_0.log"
    assert saved.read_text() == "\n".join(table) + "\n"
    syslog = (machine_root / "log" / "syslog").read_text()
    assert "neuron:mc_alloc: device mempool [0:0] total 17179869184" in syslog
    # nothing changed: accounting, the other core, the model, the machine
    assert {core: runtime.memory.stats_of(core) for core in runtime.cores} == before
    assert stats_of(runtime, runtime.cores[0]).memory["tensors"] == before[runtime.cores[0]]["tensors"]
    big = Tensor.allocate(8 * GIB, TensorPlacement.DEVICE, 1, "fits on NC 1")
    assert runtime.memory.core_total(runtime.cores[1]) == MICROCODE + 8 * GIB
    big.free()
    model.execute(add_inputs())
    owners = open_machine(machine_root).owners()
    assert [o.cores for o in owners] == [tuple(runtime.cores)]
    # what is left on the HBM can still be allocated, one byte more cannot
    free = hbm - runtime.memory.hbm_used(runtime.cores[0])
    with pytest.raises(NrtError):
        Tensor.allocate(free + 1, TensorPlacement.DEVICE, 0)


def test_load_oom_releases_everything(start: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runtime = start()
    core = runtime.cores[0]
    filler = 16 * GIB - MICROCODE - 2**20
    runtime.memory.reserve(core, filler, "tensors")  # 1 MiB left: mlp needs ~3.6 MB
    before = runtime.memory.stats_of(core)
    capsys.readouterr()
    with pytest.raises(NrtError) as info:
        Model.load(neff_file(tmp_path, "mlp.neff", build_mlp().neff), 0)
    assert info.value.status == NrtStatus.RESOURCE
    messages = [message for _, _, message in errors_of(capsys.readouterr().err)]
    assert messages[0].startswith("Failed to allocate ") and messages[0].endswith(" on ND 0:NC 0")
    assert messages[-1] == "Failed to load NN: mlp.neff, err: 4"
    assert runtime.memory.stats_of(core) == before
    assert runtime.models == {}
    assert stats_of(runtime, core).status["resource_error"] == 1
    runtime.memory.release(core, filler, "tensors")
    Model.load(build_mlp().neff, 0).execute(example_inputs("mlp"))  # once there is room it loads


@pytest.mark.instance("trn2.48xlarge", lnc=1)
def test_oom_names_the_neighbour_sharing_the_hbm(start: Any, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    runtime = start(NEURON_RT_VISIBLE_CORES="4-5")
    assert runtime.cores == (4, 5) and runtime.lnc == 1
    hbm = runtime.memory.hbm_limit(4)
    assert hbm == 24 * GIB  # trn2: 96 GiB per device, 4 HBM stacks, NC 4 and NC 5 share the third
    # NC 5 fills most of the HBM (accounted directly: no need to map 20 GiB to make the point)
    runtime.memory.reserve(5, 20 * GIB, "tensors")
    capsys.readouterr()
    with pytest.raises(NrtError) as info:
        Tensor.allocate(4 * GIB, TensorPlacement.DEVICE, 0, "victim")
    assert info.value.status == NrtStatus.RESOURCE
    messages = [message for _, _, message in errors_of(capsys.readouterr().err)]
    assert messages[0] == "Failed to allocate 4.000GB (alignment: none, usage: tensors) on ND 0:NC 4"
    assert messages[1] == "LNC size is 1. Neuron Cores using this HBM: NC 4 and NC 5"
    assert any(m.startswith("\\_NC 4") for m in messages) and any(m.startswith("\\_NC 5") for m in messages)
    assert (tmp_path / "neuron_mem_table_device_0_hbm_2.log").is_file()
    small = Tensor.allocate(GIB, TensorPlacement.DEVICE, 0, "fits")
    small.free()


# ---------------------------------------------------------------------------------------------- threads


class _Probe:
    """A kernel that records how many executions are inside it at once, and can wait for a partner."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.calls = 0
        self.armed = False
        self.barrier = threading.Barrier(2)
        self.timeout = 10.0
        self.met = 0
        self.missed = 0

    def __call__(self, xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
        if not self.armed:  # executions before the test arms the probe pass straight through
            return inputs[0]
        with self.lock:
            self.active += 1
            self.calls += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self.barrier.wait(timeout=self.timeout)  # passes only if another execution is inside at the same time
            with self.lock:
                self.met += 1
        except threading.BrokenBarrierError:
            with self.lock:
                self.missed += 1
        finally:
            with self.lock:
                self.active -= 1
        return inputs[0]


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> _Probe:
    """Registers the ``test_probe`` kernel for the duration of one test."""
    fn = _Probe()
    kernel = Kernel("test_probe", fn, lambda shapes, attrs: 1, lambda specs, attrs: specs[0], ("float32",),
                    "test_probe(x): returns x")
    monkeypatch.setitem(registry._KERNELS, "test_probe", kernel)
    return fn


def _probe_neff() -> bytes:
    g = GraphBuilder(name="probe")
    g.output("y", g.op("test_probe", [g.input("x", "float32", (4,))], shape=(4,), dtype="float32"))
    return g.build(uuid=b"t" * 16)


def _run_in_threads(models: Sequence[Model]) -> list[BaseException]:
    errors: list[BaseException] = []

    def work(model: Model) -> None:
        try:
            model.execute({"x": np.ones(4, np.float32)})
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return errors


def test_threads_on_one_core_serialize(rt: nrt_lab.Runtime, probe: _Probe) -> None:
    first, second = Model.load(_probe_neff(), 0), Model.load(_probe_neff(), 0)
    probe.armed = True
    probe.timeout = 0.3  # the first execution waits this long for a partner that cannot come in
    assert _run_in_threads([first, second]) == []
    assert probe.calls == 2
    assert probe.max_active == 1  # never two executions inside the core at once
    assert probe.met == 0 and probe.missed == 2
    assert not rt.core_locks[rt.cores[0]].locked()


def test_threads_on_two_cores_run_in_parallel(rt: nrt_lab.Runtime, probe: _Probe) -> None:
    first, second = Model.load(_probe_neff(), 0), Model.load(_probe_neff(), 1)
    probe.armed = True
    assert _run_in_threads([first, second]) == []
    assert probe.calls == 2
    assert probe.max_active == 2  # both executions were inside their cores at the same time
    assert probe.met == 2 and probe.missed == 0


# ---------------------------------------------------------------------------------------------- stats page


def test_stats_page_counts_executions(rt: nrt_lab.Runtime) -> None:
    model = Model.load(build_mlp().neff, 1)
    core = model.core
    loaded = stats_of(rt, core)
    assert loaded.model_loads == 1
    assert loaded.memory["model_code"] == MICROCODE
    assert loaded.memory["constants"] == sum(int(a.nbytes) for a in model.neff.subgraphs[0].constants.values())
    assert loaded.memory["constants"] > 900_000
    assert loaded.memory["runtime_memory"] == 2 * 2**20
    assert loaded.memory["model_shared_scratchpad"] > 0
    inputs = {"x": Tensor.from_numpy(example_inputs("mlp")["x"], core=1)}
    outputs = {"probs": Tensor.allocate(32 * 10 * 4, TensorPlacement.DEVICE, 1)}
    n = 5
    for _ in range(n):
        model.execute(inputs, outputs)
    counters = stats_of(rt, core)
    assert counters.outcomes["completed"] == n == counters.inferences
    assert counters.status["success"] == n
    assert counters.flops == n * model.flops_per_execution
    assert model.flops_per_execution > 2 * 32 * (784 * 256 + 256 * 128 + 128 * 10)
    assert counters.busy_ns > 0
    assert counters.memory["tensors"] == 32 * 784 * 4 + 32 * 10 * 4
    other = stats_of(rt, rt.cores[0])
    assert other.inferences == 0 and other.flops == 0 and other.memory["tensors"] == 0
    with pytest.raises(NrtError):
        model.execute({"x": np.zeros((32, 783), np.float32)}, outputs)
    counters = stats_of(rt, core)
    assert counters.outcomes["incorrect_input"] == 1
    assert counters.status["exec_bad_input"] == 1
    assert counters.outcomes["completed"] == n and counters.flops == n * model.flops_per_execution
    assert rt.stats is not None
    snapshot = read_stats(rt.stats.path)
    assert snapshot is not None and snapshot.executions_total == n


def test_a_loaded_model_holds_host_memory_until_unloaded(rt: nrt_lab.Runtime) -> None:
    """neuron-monitor's usage_breakdown.host (and neuron-top, the widgets) show what a model keeps on the host:
    its constants and its inputs' and outputs' staging buffers; unload gives them back."""
    assert rt.stats is not None
    page = read_stats(rt.stats.path)
    assert page is not None and sum(page.host_memory.values()) == 0
    built = build_mlp()
    model = Model.load(built.neff)
    io_bytes = sum(i.size for i in model.inputs.values()) + sum(o.size for o in model.outputs.values())
    page = read_stats(rt.stats.path)
    assert page is not None
    assert page.host_memory["dma_buffers"] == io_bytes > 0
    assert page.host_memory["constants"] == model.memory_by_kind()["constants"] > 0
    model.unload()
    page = read_stats(rt.stats.path)
    assert page is not None and page.host_memory["constants"] == page.host_memory["dma_buffers"] == 0
