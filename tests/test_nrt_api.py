"""nrt_lab.nrt: nrt.h's C functions over real NEFFs, results checked against NumPy, every documented status.

Each test runs on its own emulated trn1.32xlarge (``machine_root``: ``NRT_LAB_ROOT`` in ``tmp_path``) and the
runtime is closed at teardown whatever happened.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nrt_lab
from conftest import run_python
from nrt_lab import nrt
from nrt_lab.neff import GraphBuilder
from nrt_lab.nrt import (
    NRT_CLOSED,
    NRT_EXEC_BAD_INPUT,
    NRT_FAILURE,
    NRT_FRAMEWORK_TYPE_NO_FW,
    NRT_INVALID,
    NRT_INVALID_HANDLE,
    NRT_SUCCESS,
    NRT_TENSOR_PLACEMENT_DEVICE,
    NRT_TENSOR_PLACEMENT_HOST,
    NRT_TENSOR_PLACEMENT_VIRTUAL,
    NRT_UNINITIALIZED,
    ModelRef,
    NrtDtype,
    NrtInstanceInfo,
    NrtStatus,
    NrtTensorDeviceAllocationInfo,
    NrtTensorInfoArray,
    NrtTensorUsage,
    NrtVersion,
    NrtVncMemoryStats,
    Out,
    TensorRef,
    TensorSetRef,
)

SHAPE = (4, 3)
NBYTES = 4 * 3 * 2  # fp16


@pytest.fixture(autouse=True)
def fresh_machine(machine_root: Path) -> Iterator[Path]:
    """A fresh trn1.32xlarge per test; the runtime is closed at the end."""
    yield machine_root
    nrt.nrt_close()


def add_neff() -> bytes:
    """The nrtpy tutorial's kernel: output0 = a_input + b_input, fp16 4x3."""
    g = GraphBuilder(name="add")
    a = g.input("a_input", dtype="float16", shape=SHAPE)
    b = g.input("b_input", dtype="float16", shape=SHAPE)
    g.output("output0", g.op("add", [a, b]))
    return g.build()


def double_neff(requested_cores: int = 1) -> bytes:
    """y = x + x, fp32 (4,): outputs match inputs, so it can run under nrt_execute_repeat."""
    g = GraphBuilder(name="double")
    x = g.input("x", dtype="float32", shape=(4,))
    g.output("y", g.op("add", [x, x]))
    return g.build(requested_cores=requested_cores)


def init_ok() -> None:
    assert nrt.nrt_init(NRT_FRAMEWORK_TYPE_NO_FW, "", "") == NRT_SUCCESS


def load(neff: bytes, vnc: int = -1) -> ModelRef:
    model = ModelRef()
    assert nrt.nrt_load(neff, len(neff), vnc, -1, model) == NRT_SUCCESS
    assert isinstance(model.value, nrt_lab.Model)
    return model


def device_tensor(size: int = NBYTES, vnc: int = 0, name: str = "t", data: Any = None) -> TensorRef:
    ref = TensorRef()
    assert nrt.nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, vnc, size, name, ref) == NRT_SUCCESS
    if data is not None:
        assert nrt.nrt_tensor_write(ref, data, 0, size) == NRT_SUCCESS
    return ref


def tensor_set(**tensors: TensorRef) -> TensorSetRef:
    ref = TensorSetRef()
    assert nrt.nrt_allocate_tensor_set(ref) == NRT_SUCCESS
    for name, tensor in tensors.items():
        assert nrt.nrt_add_tensor_to_tensor_set(ref, name, tensor) == NRT_SUCCESS
    return ref


def fp16(values: Any) -> np.ndarray[Any, Any]:
    return np.asarray(values, dtype=np.float16).reshape(SHAPE)


# ---------------------------------------------------------------------------------------------- lifecycle


def test_version_and_counts_work_before_init(monkeypatch: pytest.MonkeyPatch) -> None:
    version = NrtVersion()
    assert nrt.nrt_get_version(version) == NRT_SUCCESS
    assert (version.rt_major, version.rt_minor, version.rt_patch, version.rt_maintenance) == (2, 34, 10, 0)
    assert version.git_hash and nrt_lab.RUNTIME_VERSION in version.rt_detail
    holder: Out[NrtVersion] = Out()
    assert nrt.nrt_get_version(holder) == NRT_SUCCESS and holder.value == version
    assert (nrt.NRT_MAJOR_VERSION, nrt.NRT_MINOR_VERSION) == (2, 0)

    count: Out[int] = Out()
    for getter in (nrt.nrt_get_total_nc_count, nrt.nrt_get_total_vnc_count,
                   nrt.nrt_get_visible_nc_count, nrt.nrt_get_visible_vnc_count):
        count.value = None
        assert getter(count) == NRT_SUCCESS and count.value == 32
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "4-7")
    assert nrt.nrt_get_visible_vnc_count(count) == NRT_SUCCESS and count.value == 4
    assert nrt.nrt_get_total_vnc_count(count) == NRT_SUCCESS and count.value == 32
    init_ok()
    assert nrt.nrt_get_visible_nc_count(count) == NRT_SUCCESS and count.value == 4
    assert nrt_lab.get_runtime() is not None and nrt_lab.get_runtime().cores == (4, 5, 6, 7)  # type: ignore[union-attr]
    nrt.nrt_close()
    for bad in ("a", "3,5", ""):
        monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", bad)
        count.value = None
        assert nrt.nrt_get_visible_vnc_count(count) == NRT_FAILURE and count.value is None
    assert nrt.nrt_init(NRT_FRAMEWORK_TYPE_NO_FW, "", "") == NRT_FAILURE  # "" = no core visible


def test_init_arguments_and_close_is_idempotent() -> None:
    assert nrt.nrt_init(9, "", "") == NRT_INVALID
    with pytest.raises(TypeError):
        nrt.nrt_init(NRT_FRAMEWORK_TYPE_NO_FW, None, "")  # type: ignore[arg-type]
    assert nrt.nrt_init(nrt.NRT_FRAMEWORK_TYPE_PYTORCH, "2.1", "2.1.0") == NRT_SUCCESS
    assert nrt.nrt_init(NRT_FRAMEWORK_TYPE_NO_FW, "", "") == NRT_SUCCESS  # already up: kept as is
    assert nrt.nrt_close() is None  # type: ignore[func-returns-value]
    assert nrt.nrt_close() is None  # type: ignore[func-returns-value]
    init_ok()  # a later init is allowed


def _runtime_calls() -> list[tuple[str, Callable[[], Any]]]:
    """One call of every function that needs a live runtime, with valid-looking arguments."""
    neff = add_neff()
    info: Out[NrtTensorInfoArray] = Out()
    return [
        ("nrt_load", lambda: nrt.nrt_load(neff, len(neff), -1, -1, ModelRef())),
        ("nrt_tensor_allocate", lambda: nrt.nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, 8, "t", TensorRef())),
        ("nrt_tensor_allocate_empty_host", lambda: nrt.nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_HOST, -1, 8, "t",
                                                                           TensorRef())),
        ("nrt_tensor_allocate_empty", lambda: nrt.nrt_tensor_allocate_empty("e", TensorRef())),
        ("nrt_allocate_tensor_set", lambda: nrt.nrt_allocate_tensor_set(TensorSetRef())),
        ("nrt_get_vnc_memory_stats", lambda: nrt.nrt_get_vnc_memory_stats(0, NrtVncMemoryStats())),
        ("nrt_get_instance_info", lambda: nrt.nrt_get_instance_info(NrtInstanceInfo())),
        ("nrt_get_model_tensor_info", lambda: nrt.nrt_get_model_tensor_info(ModelRef(), info)),
        ("nrt_unload", lambda: nrt.nrt_unload(ModelRef())),
        ("nrt_execute", lambda: nrt.nrt_execute(ModelRef(), TensorSetRef(), TensorSetRef())),
        ("nrt_tensor_read", lambda: nrt.nrt_tensor_read(TensorRef(), bytearray(8), 0, 8)),
        ("nrt_tensor_write", lambda: nrt.nrt_tensor_write(TensorRef(), bytes(8), 0, 8)),
        ("nrt_tensor_memset", lambda: nrt.nrt_tensor_memset(TensorRef(), 0, 1, 8)),
        ("nrt_tensor_copy", lambda: nrt.nrt_tensor_copy(TensorRef(), 0, TensorRef(), 0, 8)),
        ("nrt_tensor_read_batch", lambda: nrt.nrt_tensor_read_batch([])),
    ]


_UNINITIALIZED_SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from test_nrt_api import _runtime_calls
from nrt_lab import nrt
result = {name: int(call()) for name, call in _runtime_calls()}
result["size"] = nrt.nrt_tensor_get_size(nrt.TensorRef())
result["va"] = nrt.nrt_tensor_get_va(nrt.TensorRef())
print(json.dumps(result))
"""


def test_calls_before_init_return_uninitialized(machine_root: Path) -> None:
    # A fresh interpreter: once a process has closed a runtime, libnrt answers NRT_CLOSED instead.
    proc = run_python(_UNINITIALIZED_SCRIPT.replace("sys.argv[1]", repr(str(Path(__file__).parent))), machine_root)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result.pop("size") == 0 and result.pop("va") is None
    assert result == {name: int(NRT_UNINITIALIZED) for name, _ in _runtime_calls()}
    assert nrt.nrt_get_status_as_str(NRT_UNINITIALIZED) == "Neuron runtime is not initialized"


def test_calls_after_close_return_closed() -> None:
    init_ok()
    neff = add_neff()
    model = load(neff)
    t = device_tensor(data=fp16(np.ones(SHAPE)))
    t2 = device_tensor(data=fp16(np.ones(SHAPE)))
    inputs = tensor_set(a_input=t, b_input=t2)
    nrt.nrt_close()
    for name, call in _runtime_calls():
        assert call() == NRT_CLOSED, name
    # handles from the closed runtime answer NRT_CLOSED as well
    assert nrt.nrt_execute(model, inputs, TensorSetRef()) == NRT_CLOSED
    assert nrt.nrt_tensor_read(t, bytearray(NBYTES), 0, NBYTES) == NRT_CLOSED
    assert nrt.nrt_get_model_vnc_count(model, Out()) == NRT_CLOSED
    assert nrt.nrt_tensor_get_size(t) == 0
    nrt.nrt_tensor_free(t)
    assert t.value is None
    # a new runtime: the old handles stay dead
    init_ok()
    assert nrt.nrt_tensor_read(t2, bytearray(NBYTES), 0, NBYTES) == NRT_CLOSED
    assert nrt.nrt_unload(model) == NRT_INVALID_HANDLE


# ---------------------------------------------------------------------------------------------- models


def test_add_kernel_end_to_end_matches_numpy() -> None:
    init_ok()
    neff = add_neff()
    model = load(neff)
    rng = np.random.default_rng(7)
    a, b = fp16(rng.standard_normal(SHAPE)), fp16(rng.standard_normal(SHAPE))
    ta = device_tensor(name="a", data=a)
    tb = device_tensor(name="b", data=memoryview(b.tobytes()))
    out = device_tensor(name="out")
    inputs = tensor_set(a_input=ta, b_input=tb)
    outputs = tensor_set(output0=out)
    assert nrt.nrt_execute(model, inputs, outputs) == NRT_SUCCESS

    result = np.empty(SHAPE, dtype=np.float16)
    assert nrt.nrt_tensor_read(out, result, 0, NBYTES) == NRT_SUCCESS  # ndarray written in place
    np.testing.assert_array_equal(result, a + b)
    raw = bytearray(NBYTES)
    assert nrt.nrt_tensor_read(out.value, raw, 0, NBYTES) == NRT_SUCCESS  # the object or its holder
    np.testing.assert_array_equal(np.frombuffer(raw, np.float16).reshape(SHAPE), a + b)
    half = bytearray(8)
    assert nrt.nrt_tensor_read(out, memoryview(half), 4, 8) == NRT_SUCCESS
    assert bytes(half) == (a + b).tobytes()[4:12]

    # the set's keys are what execution matches, not the tensors' own names; host tensors work as inputs
    host = TensorRef()
    assert nrt.nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_VIRTUAL, -1, NBYTES, None, host) == NRT_SUCCESS
    assert nrt.nrt_tensor_write(host, fp16(np.full(SHAPE, 2.0)), 0, NBYTES) == NRT_SUCCESS
    assert nrt.nrt_add_tensor_to_tensor_set(inputs, "b_input", host) == NRT_SUCCESS  # replaces
    assert nrt.nrt_execute(model, inputs, outputs) == NRT_SUCCESS
    assert nrt.nrt_tensor_read(out, result, 0, NBYTES) == NRT_SUCCESS
    np.testing.assert_array_equal(result, a + np.float16(2))
    assert nrt.nrt_unload(model) == NRT_SUCCESS


def test_load_failures() -> None:
    init_ok()
    neff = add_neff()
    model = ModelRef()
    assert nrt.nrt_load(b"not a neff" * 100, 1000, -1, -1, model) == NRT_INVALID and model.value is None
    assert nrt.nrt_load(neff, len(neff) + 1, -1, -1, model) == NRT_INVALID  # size beyond the buffer
    assert nrt.nrt_load(neff, len(neff) - 10, -1, -1, model) == NRT_INVALID  # truncated NEFF
    assert nrt.nrt_load(neff, len(neff), 32, -1, model) == NRT_INVALID  # vnc out of range (32 visible)
    assert nrt.nrt_load(neff, len(neff), -7, -1, model) == NRT_INVALID
    assert model.value is None
    assert nrt.nrt_load(double_neff(2), 10**6, 31, -1, model) == NRT_INVALID
    two = double_neff(2)
    assert nrt.nrt_load(two, len(two), 31, -1, model) == nrt.NRT_LOAD_NOT_ENOUGH_NC
    assert nrt.nrt_load(bytearray(neff), len(neff), 5, 1, model) == NRT_SUCCESS  # vnc_count ignored
    assert model.value is not None and model.value.core == 5
    with pytest.raises(TypeError):
        nrt.nrt_load("add.neff", 8, -1, -1, model)  # type: ignore[arg-type]


def test_unload_twice_and_queries_after_unload() -> None:
    init_ok()
    model = load(add_neff())
    count: Out[int] = Out()
    assert nrt.nrt_get_model_vnc_count(model, count) == NRT_SUCCESS and count.value == 1
    assert nrt.nrt_get_model_nc_count(model, count) == NRT_SUCCESS and count.value == 1
    assert nrt.nrt_get_model_instance_count(model, count) == NRT_SUCCESS and count.value >= 1
    assert nrt.nrt_unload(model) == NRT_SUCCESS
    assert nrt.nrt_unload(model) == NRT_INVALID_HANDLE
    assert nrt.nrt_get_model_vnc_count(model, count) == NRT_INVALID_HANDLE
    assert nrt.nrt_get_model_instance_count(model, count) == NRT_INVALID_HANDLE
    assert nrt.nrt_get_model_tensor_info(model, Out()) == NRT_INVALID_HANDLE
    t = device_tensor(data=fp16(np.ones(SHAPE)))
    assert nrt.nrt_execute(model, tensor_set(a_input=t, b_input=t), tensor_set(output0=t)) == NRT_INVALID_HANDLE
    assert nrt.nrt_unload(ModelRef()) == NRT_INVALID  # NULL


def test_model_spanning_two_cores() -> None:
    init_ok()
    model = load(double_neff(requested_cores=2), vnc=4)
    count: Out[int] = Out()
    assert nrt.nrt_get_model_vnc_count(model, count) == NRT_SUCCESS and count.value == 2
    assert nrt.nrt_get_model_nc_count(model, count) == NRT_SUCCESS and count.value == 2


def test_model_tensor_info() -> None:
    init_ok()
    g = GraphBuilder(name="typed")
    h = g.input("h", dtype="bfloat16", shape=(2, 3))
    q = g.input("q", dtype="int32", shape=(5,))
    g.output("h_out", g.op("relu", [h]))
    g.output("q_out", g.op("relu", [q]))
    typed = load(g.build())
    info: Out[NrtTensorInfoArray] = Out()
    assert nrt.nrt_get_model_tensor_info(typed, info) == NRT_SUCCESS
    array = info.value
    assert array is not None and array.tensor_count == len(array) == 4
    assert [(e.name, e.usage, e.dtype, e.shape, e.ndim, e.size) for e in array] == [
        ("h", NrtTensorUsage.INPUT, NrtDtype.BFLOAT16, (2, 3), 2, 12),
        ("q", NrtTensorUsage.INPUT, NrtDtype.INT32, (5,), 1, 20),
        ("h_out", NrtTensorUsage.OUTPUT, NrtDtype.BFLOAT16, (2, 3), 2, 12),
        ("q_out", NrtTensorUsage.OUTPUT, NrtDtype.INT32, (5,), 1, 20),
    ]
    assert (int(NrtDtype.BFLOAT16), int(NrtDtype.INT32), int(nrt.NRT_TENSOR_USAGE_OUTPUT)) == (6, 8, 1)
    assert nrt.nrt_free_model_tensor_info(array) == NRT_SUCCESS and array.tensor_count == 0
    assert nrt.nrt_free_model_tensor_info(array) == NRT_INVALID

    add = load(add_neff())
    assert nrt.nrt_get_model_tensor_info(add, info) == NRT_SUCCESS and info.value is not None
    assert [(e.name, int(e.usage), int(e.dtype), e.size) for e in info.value] == [
        ("a_input", 0, 7, NBYTES), ("b_input", 0, 7, NBYTES), ("output0", 1, 7, NBYTES),
    ]
    assert nrt.nrt_free_model_tensor_info(info) == NRT_SUCCESS


# ---------------------------------------------------------------------------------------------- execution


def test_execute_failures() -> None:
    init_ok()
    model = load(add_neff())
    t = device_tensor(data=fp16(np.ones(SHAPE)))
    small = device_tensor(size=NBYTES - 2)
    out = device_tensor()
    outputs = tensor_set(output0=out)
    assert nrt.nrt_execute(model, tensor_set(a_input=t, wrong=t), outputs) == NRT_INVALID
    assert nrt.nrt_execute(model, tensor_set(a_input=t), outputs) == NRT_INVALID
    assert nrt.nrt_execute(model, tensor_set(a_input=t, b_input=small), outputs) == NRT_EXEC_BAD_INPUT
    inputs = tensor_set(a_input=t, b_input=t)
    assert nrt.nrt_execute(model, inputs, tensor_set(output0=small)) == NRT_EXEC_BAD_INPUT
    assert nrt.nrt_execute(model, inputs, tensor_set(result=out)) == NRT_INVALID
    assert nrt.nrt_execute(model, inputs, TensorSetRef()) == NRT_INVALID  # NULL set
    freed = device_tensor()
    nrt.nrt_tensor_free(freed.value)  # the tensor itself: freed, the holder keeps a dangling handle
    assert nrt.nrt_execute(model, inputs, tensor_set(output0=freed)) == NRT_INVALID_HANDLE
    assert nrt.nrt_execute(model, inputs, outputs) == NRT_SUCCESS
    result = np.empty(SHAPE, np.float16)
    assert nrt.nrt_tensor_read(out, result, 0, NBYTES) == NRT_SUCCESS
    np.testing.assert_array_equal(result, np.full(SHAPE, 2, np.float16))


def test_execute_repeat_feeds_outputs_back() -> None:
    init_ok()
    model = load(double_neff())
    x = np.array([1, 2, 3, 4], np.float32)
    tx = device_tensor(16, data=x)
    ty = device_tensor(16)
    inputs, outputs = tensor_set(x=tx), tensor_set(y=ty)
    assert nrt.nrt_execute_repeat(model, inputs, outputs, 3) == NRT_SUCCESS
    y = np.empty(4, np.float32)
    assert nrt.nrt_tensor_read(ty, y, 0, 16) == NRT_SUCCESS
    np.testing.assert_array_equal(y, x * 8)
    assert nrt.nrt_execute_repeat(model, inputs, outputs, 0) == NRT_INVALID
    add = load(add_neff())  # two inputs, one output: not a repeat NEFF
    t = device_tensor(data=fp16(np.ones(SHAPE)))
    assert nrt.nrt_execute_repeat(add, tensor_set(a_input=t, b_input=t), tensor_set(output0=t), 2) == NRT_INVALID


# ---------------------------------------------------------------------------------------------- tensors


def test_tensor_allocation_and_free() -> None:
    init_ok()
    ref = device_tensor(size=64, vnc=31, name="last")
    assert nrt.nrt_tensor_get_size(ref) == 64 and nrt.nrt_tensor_get_size(ref.value) == 64
    for placement, vnc in ((NRT_TENSOR_PLACEMENT_HOST, -1), (NRT_TENSOR_PLACEMENT_VIRTUAL, -1)):
        host = TensorRef()
        assert nrt.nrt_tensor_allocate(placement, vnc, 16, "h", host) == NRT_SUCCESS
        assert host.value is not None and host.value.placement == placement
    bad = TensorRef()
    assert nrt.nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 32, 16, "x", bad) == NRT_INVALID  # vnc range
    assert nrt.nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, -1, 16, "x", bad) == NRT_INVALID
    assert nrt.nrt_tensor_allocate(7, 0, 16, "x", bad) == NRT_INVALID  # placement
    assert nrt.nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, 0, "x", bad) == NRT_INVALID  # size
    assert nrt.nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_HOST, -1, 5 * 2**20, "x", bad) == nrt.NRT_RESOURCE  # >4 MB
    assert nrt.nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, 17 * 2**30, "x", bad) == nrt.NRT_RESOURCE
    assert bad.value is None
    tensor = ref.value
    nrt.nrt_tensor_free(ref)
    assert ref.value is None
    assert nrt.nrt_tensor_get_size(tensor) == 0
    assert nrt.nrt_tensor_write(tensor, bytes(4), 0, 4) == NRT_INVALID_HANDLE
    nrt.nrt_tensor_free(ref)  # freeing NULL is harmless
    with pytest.raises(TypeError):
        nrt.nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, 16, "x", None)  # type: ignore[arg-type]


def test_tensor_io_memset_bounds_and_buffers() -> None:
    init_ok()
    t = device_tensor(size=16)
    assert nrt.nrt_tensor_write(t, np.arange(4, dtype=np.int32), 0, 16) == NRT_SUCCESS
    assert nrt.nrt_tensor_memset(t, 4, 0xFF, 4) == NRT_SUCCESS
    out = np.empty(4, np.int32)
    assert nrt.nrt_tensor_read(t, out, 0, 16) == NRT_SUCCESS
    np.testing.assert_array_equal(out, [0, -1, 2, 3])
    assert nrt.nrt_tensor_write(t, b"\x07\x00\x00\x00", 8, 4) == NRT_SUCCESS  # bytes are fine as a source
    assert nrt.nrt_tensor_read(t, out, 0, 16) == NRT_SUCCESS and out[2] == 7
    # out of bounds, short buffers, bad memset values: NRT_INVALID, nothing changes
    assert nrt.nrt_tensor_read(t, bytearray(16), 8, 16) == NRT_INVALID
    assert nrt.nrt_tensor_write(t, bytes(16), 4, 16) == NRT_INVALID
    assert nrt.nrt_tensor_read(t, bytearray(4), 0, 16) == NRT_INVALID
    assert nrt.nrt_tensor_write(t, bytes(4), 0, 16) == NRT_INVALID
    assert nrt.nrt_tensor_memset(t, 12, 1, 8) == NRT_INVALID
    assert nrt.nrt_tensor_memset(t, 0, 256, 4) == NRT_INVALID
    assert nrt.nrt_tensor_read(t, out, 0, 16) == NRT_SUCCESS
    np.testing.assert_array_equal(out, [0, -1, 7, 3])
    # a destination must be a writable, contiguous buffer: a programming error, not a status
    with pytest.raises(TypeError):
        nrt.nrt_tensor_read(t, bytes(16), 0, 16)
    with pytest.raises(TypeError):
        nrt.nrt_tensor_read(t, np.empty((4, 4), np.int32)[:, 0], 0, 16)
    with pytest.raises(TypeError):
        nrt.nrt_tensor_write(t, "text", 0, 4)


def test_tensor_batches_check_everything_first() -> None:
    init_ok()
    a, b = device_tensor(size=8), device_tensor(size=8)
    assert nrt.nrt_tensor_write_batch([(a, bytes(range(8)), 0, 8), (b, b"\x09\x09", 6, 2)]) == NRT_SUCCESS
    ra, rb = bytearray(8), bytearray(4)
    assert nrt.nrt_tensor_read_batch([(a, ra, 0, 8), (b.value, rb, 4, 4)], unsafe=True) == NRT_SUCCESS
    assert bytes(ra) == bytes(range(8)) and bytes(rb) == b"\x00\x00\x09\x09"
    # the second entry is out of bounds: the first write must not happen either
    assert nrt.nrt_tensor_write_batch([(a, bytes(8), 0, 8), (b, bytes(8), 4, 8)]) == NRT_INVALID
    assert nrt.nrt_tensor_read_batch([(a, ra, 0, 8)]) == NRT_SUCCESS and bytes(ra) == bytes(range(8))
    assert nrt.nrt_tensor_read_batch([(a, bytearray(2), 0, 8)]) == NRT_INVALID
    assert nrt.nrt_tensor_read_batch([(TensorRef(), ra, 0, 8)]) == NRT_INVALID
    assert nrt.nrt_tensor_read_batch([]) == NRT_SUCCESS


def test_tensor_copy_slice_empty_attach_va_and_allocation_info() -> None:
    init_ok()
    src = device_tensor(size=16, vnc=0, data=bytes(range(16)))
    same = device_tensor(size=16, vnc=0)
    other = device_tensor(size=16, vnc=1)
    host = TensorRef()
    assert nrt.nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_VIRTUAL, -1, 16, "host", host) == NRT_SUCCESS
    assert nrt.nrt_tensor_copy(src, 4, same, 0, 8) == NRT_SUCCESS
    buf = bytearray(16)
    assert nrt.nrt_tensor_read(same, buf, 0, 16) == NRT_SUCCESS and bytes(buf[:8]) == bytes(range(4, 12))
    assert nrt.nrt_tensor_copy(src, 0, other, 0, 16) == NRT_INVALID  # device tensors on different cores
    assert nrt.nrt_tensor_copy(src, 0, host, 0, 16) == NRT_SUCCESS  # device -> host is fine
    assert nrt.nrt_tensor_copy(host, 0, other, 0, 16) == NRT_SUCCESS  # host -> any device
    assert nrt.nrt_tensor_read(other, buf, 0, 16) == NRT_SUCCESS and bytes(buf) == bytes(range(16))
    assert nrt.nrt_tensor_copy(src, 10, same, 0, 8) == NRT_INVALID  # past the source's end

    piece = TensorRef()
    assert nrt.nrt_tensor_allocate_slice(src, 8, 4, "piece", piece) == NRT_SUCCESS
    assert nrt.nrt_tensor_get_size(piece) == 4
    assert nrt.nrt_tensor_write(piece, b"\xaa\xbb\xcc\xdd", 0, 4) == NRT_SUCCESS  # shared storage
    assert nrt.nrt_tensor_read(src, buf, 0, 16) == NRT_SUCCESS and bytes(buf[8:12]) == b"\xaa\xbb\xcc\xdd"
    assert nrt.nrt_tensor_allocate_slice(src, 14, 4, "", TensorRef()) == NRT_INVALID
    nrt.nrt_tensor_free(src)  # the slice keeps the storage alive
    assert nrt.nrt_tensor_read(piece, buf, 0, 4) == NRT_SUCCESS and bytes(buf[:4]) == b"\xaa\xbb\xcc\xdd"

    empty = TensorRef()
    assert nrt.nrt_tensor_allocate_empty("empty", empty) == NRT_SUCCESS
    assert nrt.nrt_tensor_get_size(empty) == 0 and nrt.nrt_tensor_get_va(empty) is None
    assert nrt.nrt_tensor_read(empty, buf, 0, 1) == NRT_INVALID
    caller = np.zeros(8, np.uint8)
    assert nrt.nrt_tensor_attach_buffer(empty, caller, 8) == NRT_SUCCESS
    assert nrt.nrt_tensor_write(empty, b"\x01\x02", 2, 2) == NRT_SUCCESS
    assert caller.tolist() == [0, 0, 1, 2, 0, 0, 0, 0]  # the tensor uses the caller's memory
    assert nrt.nrt_tensor_get_va(empty) == caller.ctypes.data
    assert empty.value is not None and empty.value.placement == NRT_TENSOR_PLACEMENT_VIRTUAL

    va = nrt.nrt_tensor_get_va(same)
    assert isinstance(va, int) and va > 0
    info = NrtTensorDeviceAllocationInfo()
    assert nrt.nrt_tensor_get_device_allocation_info(same, info) == NRT_SUCCESS
    assert info.size == 16 and info.hbm_index in (0, 1) and info.physical_address > 0
    other_info = NrtTensorDeviceAllocationInfo()
    assert nrt.nrt_tensor_get_device_allocation_info(other, other_info) == NRT_SUCCESS
    assert other_info.hbm_index != info.hbm_index  # trn1: one HBM per NeuronCore
    assert nrt.nrt_tensor_get_device_allocation_info(host, NrtTensorDeviceAllocationInfo()) == NRT_INVALID
    nrt.nrt_tensor_free(same)
    assert nrt.nrt_tensor_get_va(same) is None


def test_tensor_sets() -> None:
    init_ok()
    t = device_tensor(name="own-name")
    s = tensor_set(key=t)
    found = TensorRef()
    assert nrt.nrt_get_tensor_from_tensor_set(s, "key", found) == NRT_SUCCESS and found.value is t.value
    sentinel = device_tensor()
    untouched = TensorRef(sentinel.value)
    assert nrt.nrt_get_tensor_from_tensor_set(s, "own-name", untouched) == NRT_FAILURE
    assert untouched.value is sentinel.value  # left as it was
    assert nrt.nrt_get_tensor_from_tensor_set(TensorSetRef(), "key", found) == NRT_INVALID
    assert nrt.nrt_add_tensor_to_tensor_set(s, "null", TensorRef()) == NRT_INVALID
    nrt.nrt_destroy_tensor_set(s)
    assert s.value is None
    assert nrt.nrt_tensor_write(t, bytes(NBYTES), 0, NBYTES) == NRT_SUCCESS  # the tensors outlive the set


# ---------------------------------------------------------------------------------------------- other


def test_vnc_memory_stats() -> None:
    init_ok()
    before = NrtVncMemoryStats()
    assert nrt.nrt_get_vnc_memory_stats(3, before) == NRT_SUCCESS
    assert before.bytes_limit == 16 * 2**30 and 0 < before.bytes_used < before.bytes_limit  # microcode
    held = device_tensor(size=2**20, vnc=3)
    after: Out[NrtVncMemoryStats] = Out()
    assert nrt.nrt_get_vnc_memory_stats(3, after) == NRT_SUCCESS and after.value is not None
    assert after.value.bytes_used == before.bytes_used + 2**20
    nrt.nrt_tensor_free(held)
    assert nrt.nrt_get_vnc_memory_stats(3, before) == NRT_SUCCESS and before.bytes_used == after.value.bytes_used - 2**20
    assert nrt.nrt_get_vnc_memory_stats(32, NrtVncMemoryStats()) == NRT_INVALID
    assert nrt.nrt_get_vnc_memory_stats(-1, NrtVncMemoryStats()) == NRT_INVALID


def test_instance_info_trn1() -> None:
    init_ok()
    info = NrtInstanceInfo()
    assert nrt.nrt_get_instance_info(info) == NRT_SUCCESS
    assert (info.family, info.size, info.arch_name, info.device_revision) == (2, 6, "trn1", "v2")


@pytest.mark.instance("inf2.xlarge")
def test_instance_info_inf2_and_its_single_core() -> None:
    init_ok()
    info: Out[NrtInstanceInfo] = Out()
    assert nrt.nrt_get_instance_info(info) == NRT_SUCCESS and info.value is not None
    assert (info.value.family, info.value.size, info.value.arch_name) == (4, 0, "inf2")
    count: Out[int] = Out()
    assert nrt.nrt_get_total_vnc_count(count) == NRT_SUCCESS and count.value == 2
    assert nrt.nrt_get_vnc_memory_stats(2, NrtVncMemoryStats()) == NRT_INVALID


def test_status_strings_and_constants() -> None:
    assert nrt.nrt_get_status_as_str(NrtStatus.EXEC_COMPLETED_WITH_ERR) == "Execution was completed with other errors"
    assert nrt.nrt_get_status_as_str(0) == "Success"
    assert nrt.nrt_get_status_as_str(1002) == "Invalid input has been submitted to execution"
    assert nrt.nrt_get_status_as_str(9999) == "Unknown status 9999"
    assert (int(NRT_UNINITIALIZED), int(NRT_CLOSED), int(NRT_EXEC_BAD_INPUT), int(nrt.NRT_EXEC_OOB)) == (
        13, 14, 1002, 1006)
    assert nrt.NrtFramework is nrt_lab.Framework and nrt.NrtTensorPlacement is nrt_lab.TensorPlacement
    assert (int(nrt.NRT_DTYPE_FLOAT32), int(nrt.NRT_DTYPE_FP8_E5), nrt.NRT_DTYPE_INVALID) == (0xA, 0xF, 0)
    assert set(nrt.__all__) <= set(dir(nrt))
