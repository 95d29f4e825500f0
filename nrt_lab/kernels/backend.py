"""Which array module runs the kernels: CuPy when a GPU really works, NumPy otherwise.

The choice is made once per process (:func:`get_backend`, cached) because arrays of one backend cannot be fed
to the other. ``NRT_LAB_BACKEND`` forces it: ``numpy`` or ``cupy`` (case-insensitive); empty or unset means
"CuPy if ``import cupy`` works *and* a tiny computation on GPU 0 succeeds, else NumPy". Forcing ``cupy``
where it cannot run raises :class:`BackendUnavailableError` instead of silently falling back, so a GPU job
never runs on the CPU by accident.

Each emulated NeuronCore maps to a GPU round-robin (``core % device_count``); :meth:`Backend.use_device`
makes that GPU current. Host<->device movement is explicit (:meth:`Backend.to_device`,
:meth:`Backend.to_host`) and always copies, on both backends, so a caller who mutates its NumPy array after
handing it over never changes "device memory" behind the runtime's back.

On glibc (Linux), choosing a backend also keeps freed host arrays of up to 32 MiB in the process heap
(``mallopt`` M_MMAP_THRESHOLD / M_TRIM_THRESHOLD) instead of returning each to the kernel: every execution
allocates its intermediates afresh, and re-faulting fresh pages for each one cost compiled models up to half
their time. This is a memory pool like onnxruntime's arena; ``NRT_LAB_MALLOC_TUNE=0`` turns it off.

CuPy has no bfloat16 dtype: on the CuPy backend a bfloat16 host array is stored on the GPU as float32 (every
bfloat16 value is exact in float32) and ``to_host(array, dtype=ml_dtypes.bfloat16)`` casts it back.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "BACKEND_ENV",
    "ACCEPTED_BACKENDS",
    "Backend",
    "BackendConfigError",
    "BackendUnavailableError",
    "get_backend",
    "reset_backend_cache",
    "select_backend",
    "namespace_of",
    "is_cupy_array",
    "tune_host_allocator",
]

BACKEND_ENV = "NRT_LAB_BACKEND"
ACCEPTED_BACKENDS: tuple[str, ...] = ("numpy", "cupy")

_ACCEPTED_TEXT = "'numpy', 'cupy' (case-insensitive), or empty/unset to pick CuPy when a GPU works and NumPy otherwise"


class BackendConfigError(ValueError):
    """``NRT_LAB_BACKEND`` holds a value that names no backend; the message names the variable, value and choices.

    The kernels import nothing of nrt_lab's, so this is their own type; the runtime turns it into an NrtError.
    """

    def __init__(self, value: str) -> None:
        self.variable = BACKEND_ENV
        self.value = value
        self.accepted = _ACCEPTED_TEXT
        shown = value if len(value) <= 40 else value[:40] + "…"
        super().__init__(f"{BACKEND_ENV}={shown!r} is invalid: not a known backend; accepted: {_ACCEPTED_TEXT}")


class BackendUnavailableError(RuntimeError):
    """``NRT_LAB_BACKEND=cupy`` was asked for but CuPy cannot run a computation on a GPU here."""


def is_cupy_array(array: object) -> bool:
    """True for a ``cupy.ndarray`` (checked by module name, so cupy is never imported for the test)."""
    return type(array).__module__.split(".", 1)[0] == "cupy"


def namespace_of(arrays: Any) -> Any:
    """The array module (cupy or numpy) that owns ``arrays`` (a sequence); NumPy unless one is a CuPy array."""
    for a in arrays:
        if is_cupy_array(a):
            import cupy  # an array of it exists, so the import works

            return cupy
    return np


def _check_index(what: str, value: object) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)) or int(value) < 0:
        raise ValueError(f"{what} must be an int >= 0, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Backend:
    """The chosen array module and what it runs on.

    ``name`` is "numpy" or "cupy", ``xp`` the module itself, ``device_count`` the number of GPUs (0 for
    NumPy) and ``reason`` a sentence saying why this backend was chosen (shown by tools and notebooks).
    """

    name: str
    xp: Any
    device_count: int
    reason: str

    @property
    def is_gpu(self) -> bool:
        """True when arrays live on a GPU (the CuPy backend)."""
        return self.name == "cupy"

    def device_for_core(self, core_id: int) -> int:
        """The GPU index that emulated NeuronCore ``core_id`` runs on: ``core_id % device_count`` (0 on NumPy)."""
        core = _check_index("core_id", core_id)
        if self.device_count <= 0:
            return 0
        return core % self.device_count

    @contextlib.contextmanager
    def use_device(self, core_id: int) -> Iterator[None]:
        """Make the GPU of ``core_id`` current for the block (``cupy.cuda.Device(i)``); a no-op on NumPy."""
        index = self.device_for_core(core_id)
        if not self.is_gpu:
            yield
            return
        with self.xp.cuda.Device(index):
            yield

    def to_device(self, array: Any, device_index: int | None = None) -> Any:
        """Copy a host array to the backend (GPU ``device_index``, default the current one); a copy on NumPy too."""
        if device_index is not None:
            index = _check_index("device_index", device_index)
            if self.is_gpu and index >= self.device_count:
                raise ValueError(
                    f"device_index {index} is out of range: this machine has {self.device_count} GPU(s) "
                    f"(valid: 0..{self.device_count - 1})"
                )
        else:
            index = None
        if not self.is_gpu:
            return np.array(self._host(array), copy=True)
        cp = self.xp
        if is_cupy_array(array):
            if index is None or int(array.device.id) == index:
                return array.copy()
            with cp.cuda.Device(index):
                return array.copy()  # CuPy copies onto the current device, peer-to-peer
        host = np.asarray(array)
        if host.dtype.name == "bfloat16":
            host = host.astype(np.float32)  # CuPy has no bfloat16: exact in float32
        if index is None:
            return cp.asarray(host)
        with cp.cuda.Device(index):
            return cp.asarray(host)

    def to_host(self, array: Any, dtype: Any = None) -> np.ndarray[Any, Any]:
        """Copy an array back to a NumPy array, cast to ``dtype`` when given (e.g. bfloat16 held as float32)."""
        host = np.array(self._host(array), copy=True)
        if dtype is not None and host.dtype != np.dtype(dtype):
            host = host.astype(dtype)
        return host

    @staticmethod
    def _host(array: Any) -> np.ndarray[Any, Any]:
        if is_cupy_array(array):
            return np.asarray(array.get())
        return np.asarray(array)


def _probe_cupy() -> tuple[Any, int, str]:
    """Try CuPy for real: import, count devices, compute on GPU 0. Returns (module or None, count, reason)."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or CUDA library errors raised while importing
        return None, 0, f"import cupy failed ({type(exc).__name__}: {exc})"
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:
        return None, 0, f"cupy.cuda.runtime.getDeviceCount() failed ({type(exc).__name__}: {exc})"
    if count < 1:
        return None, 0, "CuPy sees no CUDA device (getDeviceCount() returned 0)"
    try:
        with cupy.cuda.Device(0):
            value = int((cupy.arange(4) * 2).sum().get())
    except Exception as exc:
        return None, 0, f"a test computation on GPU 0 failed ({type(exc).__name__}: {exc})"
    if value != 12:
        return None, 0, f"a test computation on GPU 0 returned {value} instead of 12"
    return cupy, count, f"CuPy computes on {count} GPU(s)"


def select_backend(value: str | None) -> Backend:
    """Choose a backend for an ``NRT_LAB_BACKEND`` value (None/empty = auto); uncached, for tools and tests."""
    raw = "" if value is None else value
    choice = raw.strip().lower()
    if choice not in ("",) + ACCEPTED_BACKENDS:
        raise BackendConfigError(raw)
    if choice == "numpy":
        return Backend("numpy", np, 0, f"{BACKEND_ENV}={raw} forces NumPy")
    cupy, count, why = _probe_cupy()
    if choice == "cupy":
        if cupy is None:
            raise BackendUnavailableError(
                f"{BACKEND_ENV}={raw} asks for CuPy, but CuPy cannot run on a GPU here: {why}. "
                f"Accepted values: {_ACCEPTED_TEXT}; set {BACKEND_ENV}=numpy (or unset it) to run on the CPU."
            )
        return Backend("cupy", cupy, count, f"{BACKEND_ENV}={raw} forces CuPy; {why}")
    if cupy is None:
        return Backend("numpy", np, 0, f"{BACKEND_ENV} unset and CuPy unusable ({why}): using NumPy")
    return Backend("cupy", cupy, count, f"{BACKEND_ENV} unset and {why}: using CuPy")


_lock = threading.Lock()
_cached: Backend | None = None
_allocator_tuned = False


def tune_host_allocator() -> bool:
    """Keep freed arrays of up to 32 MiB in the heap (glibc only; module doc); True when the setting was applied."""
    global _allocator_tuned
    if _allocator_tuned or os.environ.get("NRT_LAB_MALLOC_TUNE", "1").strip() == "0":
        return _allocator_tuned
    try:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("c")
        if name is None:
            return False
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 256 << 20))
    _allocator_tuned = ok
    return ok


def get_backend() -> Backend:
    """The process-wide backend, chosen on first call from ``NRT_LAB_BACKEND`` and then cached."""
    global _cached
    cached = _cached  # the hot path (every execution) takes no lock once the choice is made
    if cached is not None:
        return cached
    with _lock:
        if _cached is None:
            _cached = select_backend(os.environ.get(BACKEND_ENV))
            tune_host_allocator()
        return _cached


def reset_backend_cache() -> None:
    """Forget the cached choice so the next :func:`get_backend` decides again (tests, notebooks)."""
    global _cached
    with _lock:
        _cached = None
