"""Backend selection: NRT_LAB_BACKEND values, CuPy probing, core -> GPU mapping, host<->device copies.

No GPU is needed: where the CuPy path is exercised, a fake ``cupy`` module (NumPy underneath, with a
``cuda.Device`` context that records which GPU is current) is put in ``sys.modules``. Only the GPU edge is
faked; the selection logic under test is the real one.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from nrt_lab.kernels import (
    BACKEND_ENV,
    Backend,
    BackendUnavailableError,
    get_backend,
    namespace_of,
    reset_backend_cache,
    run_kernel,
    select_backend,
)


class FakeCupyArray:
    """Just enough of cupy.ndarray: data on a numbered 'device', arithmetic, .get(), .copy()."""

    def __init__(self, data: Any, device_id: int, state: dict[str, Any]) -> None:
        self.data = np.array(data)
        self.device = types.SimpleNamespace(id=device_id)
        self._state = state

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def __mul__(self, other: Any) -> FakeCupyArray:
        return FakeCupyArray(self.data * other, self.device.id, self._state)

    def sum(self) -> FakeCupyArray:
        return FakeCupyArray(self.data.sum(), self.device.id, self._state)

    def get(self) -> Any:
        return self.data.copy()

    def copy(self) -> FakeCupyArray:
        return FakeCupyArray(self.data.copy(), self._state["current"], self._state)


FakeCupyArray.__module__ = "cupy._core.core"  # what is_cupy_array() looks at


def make_fake_cupy(count: int = 2, fail: str = "", result_factor: int = 2) -> Any:
    """A module that quacks like cupy on ``count`` GPUs; ``fail`` names a step that raises."""
    state: dict[str, Any] = {"current": 0, "entered": [], "probed": 0}
    mod: Any = types.ModuleType("cupy")

    class Device:
        def __init__(self, index: int) -> None:
            self.index = index

        def __enter__(self) -> Device:
            state["entered"].append(self.index)
            self.previous = state["current"]
            state["current"] = self.index
            return self

        def __exit__(self, *exc: object) -> None:
            state["current"] = self.previous

    def get_device_count() -> int:
        state["probed"] += 1
        if fail == "count":
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
        return count

    def arange(n: int) -> FakeCupyArray:
        if fail == "compute":
            raise RuntimeError("CUDA_ERROR_NO_BINARY_FOR_GPU")
        return FakeCupyArray(np.arange(n) * (result_factor // 2), state["current"], state)

    def asarray(a: Any) -> FakeCupyArray:
        return FakeCupyArray(a, state["current"], state)

    mod.cuda = types.SimpleNamespace(
        Device=Device, runtime=types.SimpleNamespace(getDeviceCount=get_device_count)
    )
    mod.arange = arange
    mod.asarray = asarray
    mod.ndarray = FakeCupyArray
    mod.state = state
    return mod


@pytest.fixture(autouse=True)
def clean_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    reset_backend_cache()
    yield
    reset_backend_cache()


def no_cupy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import cupy`` fail even on a machine where CuPy is installed."""
    monkeypatch.setitem(sys.modules, "cupy", None)


def fake_cupy(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> Any:
    mod = make_fake_cupy(**kwargs)
    monkeypatch.setitem(sys.modules, "cupy", mod)
    return mod


@pytest.mark.parametrize("value", ["numpy", "NUMPY", " NumPy "])
def test_forced_numpy_never_probes_cupy(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    mod = fake_cupy(monkeypatch)
    monkeypatch.setenv(BACKEND_ENV, value)
    b = get_backend()
    assert (b.name, b.xp, b.device_count) == ("numpy", np, 0)
    assert BACKEND_ENV in b.reason and "NumPy" in b.reason
    assert mod.state["probed"] == 0
    assert not b.is_gpu


def test_auto_without_cupy_falls_back_to_numpy_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    no_cupy(monkeypatch)
    b = get_backend()
    assert b.name == "numpy" and b.xp is np
    assert "import cupy failed" in b.reason and "NumPy" in b.reason


@pytest.mark.parametrize("value", ["cupy", "CuPy"])
def test_forced_cupy_without_cupy_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    no_cupy(monkeypatch)
    monkeypatch.setenv(BACKEND_ENV, value)
    with pytest.raises(BackendUnavailableError) as info:
        get_backend()
    msg = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert f"{BACKEND_ENV}={value}" in msg and "import cupy failed" in msg
    assert "'numpy'" in msg and "'cupy'" in msg


@pytest.mark.parametrize(
    "fail, count, reason",
    [("count", 2, "no CUDA-capable device"), ("", 0, "no CUDA device"), ("compute", 1, "NO_BINARY_FOR_GPU")],
)
def test_forced_cupy_without_a_usable_gpu(monkeypatch: pytest.MonkeyPatch, fail: str, count: int, reason: str) -> None:
    fake_cupy(monkeypatch, fail=fail, count=count)
    monkeypatch.setenv(BACKEND_ENV, "cupy")
    with pytest.raises(BackendUnavailableError, match=reason):
        get_backend()
    monkeypatch.delenv(BACKEND_ENV)
    b = select_backend(None)
    assert b.name == "numpy" and reason in b.reason


def test_auto_rejects_cupy_that_computes_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cupy(monkeypatch, result_factor=4)
    b = get_backend()
    assert b.name == "numpy" and "returned 24 instead of 12" in b.reason


@pytest.mark.parametrize("value", ["bogus", "gpu", "auto", "numpy,cupy"])
def test_unknown_value_is_a_value_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(BACKEND_ENV, value)
    with pytest.raises(ValueError) as info:
        get_backend()
    msg = str(info.value)
    assert not isinstance(info.value, BackendUnavailableError)
    assert BACKEND_ENV in msg and repr(value) in msg and "'numpy'" in msg and "'cupy'" in msg and "unset" in msg


@pytest.mark.parametrize("value", [None, "CUPY"])
def test_working_cupy_is_picked(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    mod = fake_cupy(monkeypatch, count=2)
    if value is not None:
        monkeypatch.setenv(BACKEND_ENV, value)
    b = get_backend()
    assert b.name == "cupy" and b.xp is mod and b.device_count == 2 and b.is_gpu
    assert "2 GPU(s)" in b.reason
    assert mod.state["entered"] == [0]  # the probe ran on GPU 0


def test_cores_map_round_robin_and_use_device_switches_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = fake_cupy(monkeypatch, count=3)
    b = get_backend()
    assert [b.device_for_core(c) for c in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    state = mod.state
    state["entered"].clear()
    with b.use_device(4):
        assert state["current"] == 1
    assert state["entered"] == [1] and state["current"] == 0
    with pytest.raises(ValueError, match="core_id"):
        b.device_for_core(-1)


def test_cupy_to_device_and_back(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = fake_cupy(monkeypatch, count=2)
    b = get_backend()
    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    dev = b.to_device(host, 1)
    assert isinstance(dev, FakeCupyArray) and dev.device.id == 1
    host[0, 0] = 99  # the device copy is independent
    back = b.to_host(dev)
    assert isinstance(back, np.ndarray) and back[0, 0] == 0 and back.shape == (2, 3)
    moved = b.to_device(dev, 0)
    assert moved.device.id == 0 and moved is not dev
    bf = np.array([1.5, -2.25], dtype=ml_dtypes.bfloat16)
    dev_bf = b.to_device(bf, 0)
    assert dev_bf.dtype == np.float32  # CuPy has no bfloat16
    out = b.to_host(dev_bf, dtype=ml_dtypes.bfloat16)
    assert out.dtype == np.dtype(ml_dtypes.bfloat16) and out.tolist() == [1.5, -2.25]
    with pytest.raises(ValueError, match="device_index 2 is out of range"):
        b.to_device(host, 2)
    assert namespace_of([host, dev]) is mod
    assert mod.state["current"] == 0


def test_numpy_backend_copies_and_ignores_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKEND_ENV, "numpy")
    b = get_backend()
    host = np.ones(3, dtype=np.float16)
    dev = b.to_device(host, 5)
    host[:] = 7
    assert dev.tolist() == [1, 1, 1] and dev.dtype == np.float16
    back = b.to_host(dev)
    dev[:] = 3
    assert back.tolist() == [1, 1, 1]
    assert b.device_for_core(9) == 0
    with b.use_device(9):
        pass
    with pytest.raises(ValueError, match="device_index"):
        b.to_device(host, -1)
    assert namespace_of([host]) is np


def test_choice_is_cached_until_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKEND_ENV, "numpy")
    first = get_backend()
    monkeypatch.setenv(BACKEND_ENV, "bogus")
    assert get_backend() is first
    reset_backend_cache()
    with pytest.raises(ValueError, match="bogus"):
        get_backend()


def test_backend_is_frozen() -> None:
    b = Backend("numpy", np, 0, "test")
    with pytest.raises(AttributeError):
        b.name = "cupy"  # type: ignore[misc]


def test_kernels_run_on_the_selected_numpy_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKEND_ENV, "numpy")
    b = get_backend()
    a = b.to_device(np.array([[1.0, 2.0]], dtype=np.float32), 0)
    out = run_kernel("matmul", [a, a.T], xp=b.xp)
    assert b.to_host(out).tolist() == [[5.0]]
