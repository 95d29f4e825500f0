"""Reading and loading NEFFs safely (issue 10, defects 2 and 3): one bounded reader of regular files shared by
``Model.load``, nrtpy and ``nrt-lab neff inspect``; loading bounded in time (nothing executes) and memory
(declared sizes checked first); kernels' shape inference as the one rule of the builder and the loader;
execution errors always NrtError; a bad ``NRT_LAB_BACKEND`` reported as an NrtError naming it."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

import nrt_lab
from nrt_lab import Model, NrtError, NrtStatus, Tensor
from nrt_lab.driver.stats import read_stats
from nrt_lab.kernels import BACKEND_ENV, Kernel, registry, reset_backend_cache
from nrt_lab.neff import (
    HEADER_SIZE,
    GraphBuilder,
    NeffHeader,
    build_payload,
    parse_neff,
    read_neff,
    read_neff_bytes,
    write_neff,
)
from nrt_lab.neff import reader as neff_reader
from nrt_lab.runtime import model as model_module

pytestmark = pytest.mark.instance("trn1.2xlarge")

GIB = 2**30


@pytest.fixture
def rt(machine_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[nrt_lab.Runtime]:
    """A live runtime (OOM reports go to ``tmp_path``), closed at teardown."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    try:
        yield nrt_lab.init()
    finally:
        nrt_lab.close()


def relu_neff(shape: Sequence[int], name: str = "relu") -> bytes:
    g = GraphBuilder(name=name)
    g.output("y", g.op("relu", [g.input("x", "float32", shape)]))
    return g.build(uuid=b"r" * 16)


def hand_made(doc: Mapping[str, Any], name: str = "hand") -> bytes:
    """A NEFF around one ``sg00/def.json`` written by hand (no builder checks)."""
    payload = build_payload({"sg00/def.json": json.dumps(doc).encode()})
    header = NeffHeader(
        pkg_version=3, header_size=HEADER_SIZE, data_size=len(payload), neff_version_major=2,
        neff_version_minor=0, build_version="test", num_tpb=1, hash=bytes(32), uuid=b"h" * 16, name=name,
        requested_tpb_count=1, tpb_per_node=bytes([1]).ljust(64, b"\x00"), feature_bits=0, lnc_size=1,
    )
    return header.pack() + payload


def stats_of(runtime: nrt_lab.Runtime, core: int) -> Any:
    assert runtime.stats is not None
    snapshot = read_stats(runtime.stats.path)
    assert snapshot is not None
    return next(c for c in snapshot.cores if c.core == core)


# ---------------------------------------------------------------------------------------------- one reader


@pytest.mark.timeout(20)
def test_fifo_without_writer_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "model.neff"
    os.mkfifo(fifo)
    for read in (read_neff_bytes, read_neff):
        with pytest.raises(NrtError) as info:
            read(fifo)
        assert info.value.status == NrtStatus.INVALID
        assert str(fifo) in info.value.message and "a FIFO" in info.value.message
        assert "a regular NEFF file" in info.value.message


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("path", "kind"), [("/dev/zero", "a character device"),
                                            ("/dev/urandom", "a character device")])
def test_devices_are_refused_before_reading(path: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist here")

    def no_read(fd: int, n: int) -> bytes:
        raise AssertionError("the reader read from a non-regular file")

    monkeypatch.setattr(neff_reader.os, "read", no_read)
    with pytest.raises(NrtError) as info:
        read_neff_bytes(path)
    assert info.value.status == NrtStatus.INVALID
    assert info.value.message == f"NEFF {path} is {kind}; accepted: a regular NEFF file"


def test_directory_and_symlinks(tmp_path: Path) -> None:
    with pytest.raises(NrtError, match="is a directory; accepted: a regular NEFF file"):
        read_neff_bytes(tmp_path)
    real = tmp_path / "real.neff"
    write_neff(real, relu_neff((4,)))
    link = tmp_path / "link.neff"
    link.symlink_to(real)
    assert read_neff_bytes(link) == real.read_bytes()  # users point at models through links: followed
    if os.path.exists("/dev/zero"):
        bad = tmp_path / "zero.neff"
        bad.symlink_to("/dev/zero")
        with pytest.raises(NrtError, match="character device"):
            read_neff_bytes(bad)


def test_size_bound_is_checked_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.neff"
    path.write_bytes(bytes(5000))
    monkeypatch.setattr(neff_reader.os, "read", lambda fd, n: pytest.fail("read despite the size bound"))
    with pytest.raises(NrtError) as info:
        read_neff_bytes(path, max_size=4096)
    assert info.value.status == NrtStatus.INVALID and "too large: 5000 bytes, limit 4096" in info.value.message


def test_missing_file_is_failed_to_load_model(tmp_path: Path) -> None:
    with pytest.raises(NrtError) as info:
        read_neff_bytes(tmp_path / "nope.neff")
    assert info.value.status == NrtStatus.FAILURE
    assert info.value.message.startswith("Failed to load model: cannot read NEFF ")


@pytest.mark.timeout(20)
def test_model_load_and_nrtpy_share_the_reader(rt: nrt_lab.Runtime, tmp_path: Path) -> None:
    from nrt_lab.nrtpy import NrtpyModel

    fifo = tmp_path / "fifo.neff"
    os.mkfifo(fifo)
    for load in (Model.load, NrtpyModel.load_from_neff):
        with pytest.raises(NrtError) as info:
            load(fifo)
        assert info.value.status == NrtStatus.INVALID and "a regular NEFF file" in info.value.message
    if os.path.exists("/dev/zero"):
        with pytest.raises(NrtError, match="/dev/zero is a character device"):
            Model.load("/dev/zero")
    path = tmp_path / "ok.neff"
    write_neff(path, relu_neff((4,)))
    assert Model.load(path).path == str(path)


# ---------------------------------------------------------------------------------------------- bounded loading


class _Counter:
    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
        self.calls += 1
        return self.fn(xp, inputs, attrs)


def test_loading_executes_nothing(rt: nrt_lab.Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 400-matmul chain of 1024x1024 operands loads without running one op (it took 13.8 s before)."""
    monkeypatch.setenv("NEURON_RT_EXEC_TIMEOUT", "1")
    monkeypatch.setattr(model_module, "host_memory_budget", lambda: 1 << 40)
    original = registry.get_kernel("matmul")
    counter = _Counter(original.fn)
    monkeypatch.setitem(registry._KERNELS, "matmul", Kernel("matmul", counter, original.flops, original.infer,
                                                           original.accepted_dtypes, original.doc))
    g = GraphBuilder(name="chain")
    w = g.input("w", "float32", (1024, 1024))
    y = g.input("x", "float32", (1024, 1024))
    for _ in range(400):
        y = g.op("matmul", [y, w])
    g.output("y", y)
    data = g.build(uuid=b"c" * 16)
    assert len(data) < 200_000
    model = Model.load(data)
    assert counter.calls == 0
    assert model.flops_per_execution == 400 * 2 * 1024**3


def test_declared_gigabyte_input_loads_without_allocating_it(rt: nrt_lab.Runtime,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_module, "host_memory_budget", lambda: 1 << 40)
    data = relu_neff((GIB // 4,))  # a 1 GiB float32 input and output, in a NEFF of a few KB
    assert len(data) < 20_000
    process = psutil.Process()
    before = process.memory_info().rss
    model = Model.load(data)
    assert process.memory_info().rss - before < 128 * 2**20
    assert model.inputs["x"].size == GIB


@pytest.mark.parametrize("shape", [(10**6, 10**6), (2**30,), (2**32 - 1, 2**16)])
def test_huge_declared_shapes_never_escape_as_raw_errors(rt: nrt_lab.Runtime, shape: tuple[int, ...]) -> None:
    """1e12 elements, 4 GiB, more than the schema allows: loaded without allocating, or an NrtError, never
    MemoryError/OverflowError/ValueError (4 GiB fits the 16 GiB HBM; it loads where the host budget allows)."""
    try:
        model = Model.load(relu_neff(shape))
    except NrtError as exc:
        assert exc.status in (NrtStatus.RESOURCE, NrtStatus.INVALID)
    else:
        assert model.inputs["x"].shape == shape


def test_hbm_bound_names_the_sizes(rt: nrt_lab.Runtime) -> None:
    with pytest.raises(NrtError) as info:
        Model.load(relu_neff((10**6, 10**6)))
    assert info.value.status == NrtStatus.RESOURCE
    assert info.value.message.startswith("NEFF relu declares ") and "input/output tensors" in info.value.message


def test_host_budget_is_checked_before_allocation(rt: nrt_lab.Runtime, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(model_module, "host_memory_budget", lambda: 2**20)
    used = rt.memory.core_total(rt.cores[0])
    with pytest.raises(NrtError) as info:
        Model.load(relu_neff((2**20,)))  # 4 MiB in + 4 MiB out
    assert info.value.status == NrtStatus.RESOURCE
    assert "host memory per execution" in info.value.message and "1.000MB" in info.value.message
    assert "Failed to load NN: relu, err: 4" in capsys.readouterr().err
    assert rt.memory.core_total(rt.cores[0]) == used  # nothing was reserved


def test_real_oom_still_reports_like_libnrt(rt: nrt_lab.Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    core = rt.cores[0]
    free = rt.memory.hbm_limit(core) - rt.memory.hbm_used(core)
    rt.memory.reserve(core, free - 2**20, "tensors")  # accounting only: 1 MiB stays free
    capsys.readouterr()
    with pytest.raises(NrtError) as info:
        Model.load(relu_neff((4,)))  # its runtime memory (2 MiB) no longer fits
    assert info.value.status == NrtStatus.RESOURCE
    assert "log_dev_mem" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- shape rules


def test_reduce_graph_uses_the_kernel_attribute_and_matches_numpy(rt: nrt_lab.Runtime) -> None:
    g = GraphBuilder(name="reduce")
    x = g.input("x", "float32", (3, 4, 5))
    s = g.op("reduce_sum", [x], {"axes": [1], "keepdims": True})
    assert s.shape == (3, 1, 5)
    g.output("s", s)
    g.output("m", g.op("reduce_mean", [x], {"axes": -1}))
    g.output("mx", g.op("reduce_max", [x]))
    model = Model.load(g.build(uuid=b"s" * 16))
    data = np.arange(60, dtype=np.float32).reshape(3, 4, 5) / 7
    out = {name: t.numpy() for name, t in model.execute({"x": data}).items()}
    np.testing.assert_allclose(out["s"], data.sum(axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(out["m"], data.mean(axis=-1), rtol=1e-6)
    np.testing.assert_allclose(out["mx"], data.max())


def test_unknown_attribute_fails_at_build_time() -> None:
    g = GraphBuilder()
    x = g.input("x", "float32", (3, 4))
    with pytest.raises(NrtError) as info:
        g.op("reduce_sum", [x], {"axis": 1})
    assert info.value.status == NrtStatus.INVALID
    assert "unknown attribute 'axis'=1; accepted attributes: axes, keepdims" in info.value.message


def test_builder_takes_dtype_from_the_kernel() -> None:
    g = GraphBuilder()
    a = g.input("a", "int8", (2, 3))
    assert g.op("matmul", [a, g.input("b", "int8", (3, 4))]).dtype == "int32"
    assert g.op("reduce_mean", [a]).dtype == "float32"
    with pytest.raises(NrtError, match="the kernel produces float32 \\[2\\] but shape=\\(3,\\)"):
        g.op("relu", [g.input("f", "float32", (2,))], shape=(3,))


def test_int8_matmul_executes_exactly(rt: nrt_lab.Runtime) -> None:
    g = GraphBuilder(name="i8")
    a, b = g.input("a", "int8", (2, 3)), g.input("b", "int8", (3, 2))
    g.output("y", g.op("matmul", [a, b]))
    model = Model.load(g.build(uuid=b"i" * 16))
    x = np.full((2, 3), 100, np.int8)
    y = np.full((3, 2), 100, np.int8)
    assert model.execute({"a": x, "b": y})["y"].numpy().tolist() == [[30000, 30000], [30000, 30000]]


def _relu_doc(out_shape: list[int], out_dtype: str = "float32") -> dict[str, Any]:
    size = int(np.prod(out_shape)) * np.dtype(out_dtype).itemsize
    return {"schema": "nrt_lab.neff.def/1", "var": [
        {"name": "x", "type": "input", "dtype": "float32", "shape": [4], "size": 16},
        {"name": "y", "type": "output", "dtype": out_dtype, "shape": out_shape, "size": size},
    ], "nodes": [{"name": "r", "op": "relu", "inputs": ["x"], "outputs": ["y"], "attrs": {},
                  "executor": "Neuron Core"}]}


@pytest.mark.parametrize(("shape", "dtype"), [([2, 2], "float32"), ([4], "int32")])
def test_declared_output_must_be_what_the_kernel_produces(rt: nrt_lab.Runtime, shape: list[int],
                                                          dtype: str) -> None:
    data = hand_made(_relu_doc(shape, dtype))
    parse_neff(data)  # structurally valid
    with pytest.raises(NrtError) as info:
        Model.load(data)
    assert info.value.status == NrtStatus.INVALID
    assert info.value.message == (f"op r (relu) produces float32 [4] but the NEFF declares its output 'y' as "
                                  f"{dtype} {shape}")


def test_state_buffers_are_refused_clearly(rt: nrt_lab.Runtime) -> None:
    g = GraphBuilder(name="kv")
    x = g.input("x", "float32", (1, 8))
    cache = g.state_buffer("cache", "float32", (1, 8))
    g.output("y", g.op("add", [cache, x]))
    with pytest.raises(NrtError) as info:
        Model.load(g.build(uuid=b"k" * 16))
    assert info.value.status == NrtStatus.INVALID and "state buffer 'cache'" in info.value.message


# ---------------------------------------------------------------------------------------------- execution errors


def test_any_kernel_error_at_execution_is_an_nrt_error_and_counted(rt: nrt_lab.Runtime,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    def broken(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
        raise ValueError("operands could not be broadcast together")

    kernel = Kernel("test_broken", broken, lambda shapes, attrs: 1, lambda specs, attrs: specs[0], ("float32",),
                    "test_broken(x): always fails")
    monkeypatch.setitem(registry._KERNELS, "test_broken", kernel)
    g = GraphBuilder(name="broken")
    g.output("y", g.op("test_broken", [g.input("x", "float32", (4,))]))
    model = Model.load(g.build(uuid=b"b" * 16))
    capsys.readouterr()
    with pytest.raises(NrtError) as info:
        model.execute({"x": np.ones(4, np.float32)})
    assert info.value.status == NrtStatus.EXEC_COMPLETED_WITH_ERR
    assert "ValueError: operands could not be broadcast together" in info.value.message
    assert "nrt_execute" in capsys.readouterr().err
    counters = stats_of(rt, model.core)
    assert counters.outcomes["completed_with_err"] == 1 and counters.outcomes["completed"] == 0


# ---------------------------------------------------------------------------------------------- NRT_LAB_BACKEND


@pytest.fixture
def fresh_backend() -> Iterator[None]:
    reset_backend_cache()
    yield
    reset_backend_cache()


@pytest.mark.parametrize("value", ["bogus", "9" * 5000])
def test_bad_backend_is_an_nrt_error_naming_the_variable(rt: nrt_lab.Runtime, monkeypatch: pytest.MonkeyPatch,
                                                         fresh_backend: None, value: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(BACKEND_ENV, value)
    for action in (lambda: Model.load(relu_neff((4,))), lambda: Tensor.allocate(16)):
        with pytest.raises(NrtError) as info:
            action()
        message = info.value.message
        assert info.value.status == NrtStatus.FAILURE
        assert message.startswith(f"{BACKEND_ENV}={value[:40]!r}"[:-1]) and "'numpy', 'cupy'" in message
        assert len(message) < 300


# ---------------------------------------------------------------------------------------------- execution deadline


class _FakeClock:
    """Advances ``step`` seconds each time it is read: time as the runtime sees it, independent of the machine."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_exec_timeout_is_checked_between_ops(rt: nrt_lab.Runtime, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """NEURON_RT_EXEC_TIMEOUT=1 with each op "taking" 0.4 s: the run stops after the third of six ops."""
    monkeypatch.setenv("NEURON_RT_EXEC_TIMEOUT", "1")
    nrt_lab.close()
    runtime = nrt_lab.init()
    original = registry.get_kernel("add")
    counter = _Counter(original.fn)
    monkeypatch.setitem(registry._KERNELS, "add", Kernel("add", counter, original.flops, original.infer,
                                                        original.accepted_dtypes, original.doc))
    g = GraphBuilder(name="chain")
    y = x = g.input("x", "int8", (4,))  # int8: the checked kernel, so the counter sees every op
    for _ in range(6):
        y = g.op("add", [y, x])
    g.output("y", y)
    model = Model.load(g.build(uuid=b"d" * 16))
    monkeypatch.setattr(model_module, "_deadline_clock", _FakeClock(0.4))
    capsys.readouterr()
    with pytest.raises(NrtError) as info:
        model.execute({"x": np.ones(4, np.int8)})
    assert info.value.status == NrtStatus.TIMEOUT
    assert counter.calls == 3  # deadline 0.4 + 1 = 1.4; the checks after ops 1, 2, 3 read 0.8, 1.2, 1.6
    assert stats_of(runtime, model.core).outcomes["timed_out"] == 1


@pytest.mark.parametrize("path", ["bad\x00name.neff", 42, None])
def test_unusable_paths_are_nrt_errors(path: Any) -> None:
    with pytest.raises(NrtError) as info:
        read_neff_bytes(path)
    assert info.value.status == NrtStatus.INVALID and "NEFF path" in info.value.message


@pytest.mark.parametrize("size", [10**30, 2**62])
def test_huge_virtual_tensor_is_an_nrt_error(rt: nrt_lab.Runtime, size: int) -> None:
    from nrt_lab import TensorPlacement

    with pytest.raises(NrtError) as info:
        Tensor.allocate(size, TensorPlacement.VIRTUAL)
    assert info.value.status == NrtStatus.FAIL_HOST_MEM_ALLOC and str(size) in info.value.message


@pytest.mark.parametrize("core", ["0", 1.0, True])
def test_core_index_must_be_an_integer(rt: nrt_lab.Runtime, core: Any) -> None:
    with pytest.raises(NrtError) as info:
        Model.load(relu_neff((4,)), core)
    assert info.value.status == NrtStatus.INVALID and "is not an integer" in info.value.message
