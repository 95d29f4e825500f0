"""Tensors on emulated NeuronCores (docs/behaviour.md §3 "Tensors"): device, host and virtual placement.

A device tensor's bytes live in the backend's memory (a GPU for CuPy, RAM for NumPy) and count against the
HBM of its core; host and virtual tensors live in RAM. Slices share their parent's storage (refcounted, as
``nrt_tensor_allocate_slice``); the storage is released when the last tensor using it is freed or collected.
Every operation checks that the tensor is alive and that its runtime is still open.
"""

from __future__ import annotations

import enum
import threading
import weakref
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import ml_dtypes  # noqa: F401 - registers bfloat16/float8 with NumPy, so users' dtype strings work at runtime
import numpy as np

from nrt_lab.errors import NrtError, NrtStatus
from nrt_lab.kernels import Backend, BackendConfigError, BackendUnavailableError, get_backend

if TYPE_CHECKING:
    from nrt_lab.runtime.core import Runtime

__all__ = ["TensorPlacement", "Tensor", "TensorSet", "HOST_TENSOR_LIMIT", "typed_view", "store_typed",
           "runtime_backend"]

HOST_TENSOR_LIMIT = 4 * 2**20  # NRT_TENSOR_PLACEMENT_HOST: deprecated DMA-able host memory, at most 4 MB
_HOST_KIND_TENSORS = 3  # index of "tensors" in HOST_MEMORY_KINDS


def runtime_backend() -> Backend:
    """The kernels' array backend; a bad ``NRT_LAB_BACKEND`` or an unusable CuPy is NrtError(NRT_FAILURE).

    The kernels raise their own error types (they import nothing of nrt_lab's); the runtime reports a bad
    setting like any other bad variable (docs/behaviour.md §0: NRT_FAILURE), with the kernels' text naming it.
    """
    try:
        return get_backend()
    except (BackendConfigError, BackendUnavailableError) as exc:
        raise NrtError(NrtStatus.FAILURE, str(exc)) from None


def _zeros(xp: Any, size: int, what: str) -> Any:
    """``size`` zeroed bytes, or NRT_FAIL_HOST_MEM_ALLOC (never a raw MemoryError) when memory runs out."""
    try:
        return xp.zeros(size, dtype=xp.uint8)
    except (MemoryError, ValueError) as exc:  # ValueError: more than an array may hold on this platform
        raise NrtError(NrtStatus.FAIL_HOST_MEM_ALLOC, f"cannot allocate {size} bytes for a {what} tensor: "
                                                      f"{exc}") from None


class TensorPlacement(enum.IntEnum):
    """``nrt_tensor_placement_t``."""

    DEVICE = 0
    HOST = 1
    VIRTUAL = 2


def _bf16_bits_to_f32(xp: Any, bits: Any) -> Any:
    return (bits.astype(xp.uint32) << 16).view(xp.float32)


def _f32_to_bf16_bits(xp: Any, values: Any) -> Any:
    bits = values.astype(xp.float32).view(xp.uint32)
    rounding = ((bits >> 16) & 1) + 0x7FFF  # round to nearest even
    return ((bits + rounding) >> 16).astype(xp.uint16)


def typed_view(xp: Any, raw: Any, dtype: np.dtype[Any], shape: tuple[int, ...]) -> Any:
    """View raw uint8 storage as ``dtype``/``shape`` (zero-copy; bfloat16 on CuPy is widened to float32)."""
    if xp is np or dtype.name != "bfloat16":
        return raw.view(dtype).reshape(shape)
    return _bf16_bits_to_f32(xp, raw.view(xp.uint16)).reshape(shape)


def store_typed(xp: Any, raw: Any, dtype: np.dtype[Any], values: Any) -> None:
    """Write ``values`` into raw uint8 storage as ``dtype`` (cast as needed; bfloat16 rounded on CuPy)."""
    if xp is np or dtype.name != "bfloat16":
        target = raw.view(dtype)
        target[...] = values.reshape(-1) if values.ndim else values
        return
    raw.view(xp.uint16)[...] = _f32_to_bf16_bits(xp, values).reshape(-1)


class _Storage:
    """Bytes shared by a tensor and its slices, with the accounting to undo when the last user goes."""

    def __init__(self, runtime: Runtime, placement: TensorPlacement, core: int | None, array: Any,
                 accounted: int, caller_owned: bool) -> None:
        self.runtime = runtime
        self.generation = runtime.generation
        self.placement = placement
        self.core = core
        self.array = array
        self.users = 0
        self.caller_owned = caller_owned
        self._finalizer = weakref.finalize(self, _release_accounting, runtime, placement, core, accounted)

    def add_user(self) -> None:
        self.users += 1

    def drop_user(self) -> None:
        self.users -= 1
        if self.users <= 0:
            self.array = None
            self._finalizer()


def _release_accounting(runtime: Runtime, placement: TensorPlacement, core: int | None, accounted: int) -> None:
    if accounted <= 0 or runtime.closed:
        return
    if placement == TensorPlacement.DEVICE and core is not None:
        runtime.memory.release(core, accounted, "tensors")
    elif runtime.stats is not None:
        runtime.stats.add_host_memory(_HOST_KIND_TENSORS, -accounted)


class Tensor:
    """An ``nrt_tensor_t``: a named byte buffer with a placement, optionally typed (dtype/shape) for NumPy I/O."""

    _ids = iter(range(1, 2**62))
    _ids_lock = threading.Lock()

    def __init__(self, storage: _Storage | None, offset: int, size: int, name: str,
                 dtype: np.dtype[Any] | None = None, shape: tuple[int, ...] | None = None) -> None:
        self._storage = storage
        self._offset = offset
        self._size = size
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self._freed = False
        self.version = 0  # bumped whenever the bytes behind this handle change place (attach, free)
        self._typed: dict[tuple[np.dtype[Any], tuple[int, ...]], Any] = {}
        with Tensor._ids_lock:
            self.tensor_id = next(Tensor._ids)
        if storage is not None:
            storage.add_user()

    # ------------------------------------------------------------------ construction
    @classmethod
    def allocate(cls, size: int, placement: TensorPlacement | int = TensorPlacement.DEVICE, core: int = 0,
                 name: str = "", *, dtype: Any = None, shape: tuple[int, ...] | None = None) -> Tensor:
        """``nrt_tensor_allocate``: ``size`` zeroed bytes on process-relative ``core`` (ignored for host/virtual)."""
        from nrt_lab.runtime.core import require_runtime

        runtime = require_runtime()
        try:
            where = TensorPlacement(placement)
        except ValueError:
            raise NrtError(NrtStatus.INVALID, f"tensor placement {placement!r} is invalid; accepted: 0 (DEVICE), "
                                              "1 (HOST), 2 (VIRTUAL)") from None
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size <= 0:
            raise NrtError(NrtStatus.INVALID, f"tensor size {size!r} is invalid; accepted: a positive number of bytes")
        size = int(size)
        if where == TensorPlacement.DEVICE:
            global_core = runtime.global_core(core)
            runtime.memory.reserve(global_core, size, "tensors")
            try:
                backend = runtime_backend()
                with backend.use_device(global_core):
                    array = _zeros(backend.xp, size, "device")
            except Exception:
                runtime.memory.release(global_core, size, "tensors")
                raise
            storage = _Storage(runtime, where, global_core, array, size, False)
        else:
            if where == TensorPlacement.HOST and size > HOST_TENSOR_LIMIT:
                raise NrtError(NrtStatus.RESOURCE, f"host tensor of {size} bytes exceeds the {HOST_TENSOR_LIMIT} bytes "
                                                   "DMA-able host memory allows; use VIRTUAL placement")
            array = _zeros(np, size, where.name.lower())
            if runtime.stats is not None:
                runtime.stats.add_host_memory(_HOST_KIND_TENSORS, size)
            storage = _Storage(runtime, where, None, array, size, False)
        return cls(storage, 0, size, name, _dtype_or_none(dtype), shape)

    @classmethod
    def empty(cls, name: str = "") -> Tensor:
        """``nrt_tensor_allocate_empty``: a tensor with no storage until a buffer is attached."""
        from nrt_lab.runtime.core import require_runtime

        require_runtime()
        return cls(None, 0, 0, name)

    @classmethod
    def from_numpy(cls, array: np.ndarray[Any, Any], placement: TensorPlacement | int = TensorPlacement.DEVICE,
                   core: int = 0, name: str = "") -> Tensor:
        """Allocate a tensor the size of ``array`` and copy it in; dtype and shape are remembered for numpy()."""
        host = np.ascontiguousarray(array)
        tensor = cls.allocate(host.nbytes, placement, core, name, dtype=host.dtype, shape=host.shape)
        tensor.write(host)
        return tensor

    def attach_buffer(self, buffer: np.ndarray[Any, Any] | bytearray | memoryview) -> None:
        """``nrt_tensor_attach_buffer``: use caller-owned memory; the tensor becomes VIRTUAL, old storage freed."""
        self._check()
        view = np.frombuffer(buffer, dtype=np.uint8) if not isinstance(buffer, np.ndarray) else buffer.reshape(-1).view(np.uint8)
        if view.size == 0:
            raise NrtError(NrtStatus.INVALID, "cannot attach an empty buffer; accepted: a buffer of at least 1 byte")
        runtime = self._runtime()
        if self._storage is not None:
            self._storage.drop_user()
        self._typed.clear()
        self.version += 1
        self._storage = _Storage(runtime, TensorPlacement.VIRTUAL, None, view, 0, True)
        self._storage.add_user()
        self._offset, self._size = 0, int(view.size)

    # ------------------------------------------------------------------ properties
    def _runtime(self) -> Runtime:
        from nrt_lab.runtime.core import require_runtime

        return require_runtime()

    def _check(self) -> _Storage | None:
        if self._freed:
            raise NrtError(NrtStatus.INVALID_HANDLE, f"tensor {self.name!r} was freed")
        storage = self._storage
        if storage is not None:
            runtime = storage.runtime
            if runtime.closed or runtime.generation != storage.generation:
                raise NrtError(NrtStatus.CLOSED, f"tensor {self.name!r} belongs to a runtime that was closed")
        return storage

    def _live(self) -> _Storage:
        storage = self._check()
        if storage is None or storage.array is None:
            raise NrtError(NrtStatus.INVALID, f"tensor {self.name!r} has no storage (allocate_empty without attach)")
        return storage

    @property
    def size(self) -> int:
        """Bytes (``nrt_tensor_get_size``)."""
        self._check()
        return self._size

    @property
    def placement(self) -> TensorPlacement:
        """Where the bytes live."""
        storage = self._check()
        return TensorPlacement.VIRTUAL if storage is None else storage.placement

    @property
    def core(self) -> int | None:
        """Instance-global NeuronCore of a device tensor, None for host/virtual."""
        storage = self._check()
        return None if storage is None else storage.core

    @property
    def freed(self) -> bool:
        """True once :meth:`free` was called."""
        return self._freed

    def raw(self) -> Any:
        """The backend uint8 array of exactly this tensor's bytes (a view: no copy)."""
        storage = self._live()
        return storage.array[self._offset : self._offset + self._size]

    def typed(self, xp: Any, dtype: np.dtype[Any], shape: tuple[int, ...]) -> Any:
        """This tensor's bytes viewed as ``dtype``/``shape`` (cached: executions reuse the same view)."""
        self._live()
        key = (dtype, shape)
        view = self._typed.get(key)
        if view is None:
            view = typed_view(xp, self.raw(), dtype, shape)
            if xp is np or dtype.name != "bfloat16":  # a widened bfloat16 copy must not be cached
                self._typed[key] = view
        return view

    # ------------------------------------------------------------------ I/O
    def _bounds(self, offset: int, length: int, what: str) -> None:
        if offset < 0 or length < 0 or offset + length > self._size:
            raise NrtError(
                NrtStatus.INVALID,
                f"{what} of {length} bytes at offset {offset} is outside tensor {self.name!r} of {self._size} bytes",
            )

    def write(self, data: bytes | bytearray | memoryview | np.ndarray[Any, Any], offset: int = 0) -> None:
        """``nrt_tensor_write``: copy host bytes (or an array's bytes) in at ``offset``."""
        storage = self._live()
        src = np.ascontiguousarray(data).reshape(-1).view(np.uint8) if isinstance(data, np.ndarray) else \
            np.frombuffer(data, dtype=np.uint8)
        self._bounds(offset, src.size, "write")
        start = self._offset + offset
        if storage.placement == TensorPlacement.DEVICE:
            backend = get_backend()
            with backend.use_device(storage.core or 0):
                storage.array[start : start + src.size] = backend.xp.asarray(src) if backend.is_gpu else src
        else:
            storage.array[start : start + src.size] = src

    def read(self, size: int | None = None, offset: int = 0) -> bytes:
        """``nrt_tensor_read``: ``size`` bytes (default: to the end) from ``offset``."""
        storage = self._live()
        length = self._size - offset if size is None else size
        self._bounds(offset, length, "read")
        start = self._offset + offset
        chunk = storage.array[start : start + length]
        return bytes(get_backend().to_host(chunk).tobytes()) if storage.placement == TensorPlacement.DEVICE \
            else chunk.tobytes()

    def numpy(self, dtype: Any = None, shape: tuple[int, ...] | None = None) -> np.ndarray[Any, Any]:
        """A host copy, typed by ``dtype``/``shape`` or by what the tensor remembers (else raw uint8)."""
        storage = self._live()
        want = _dtype_or_none(dtype) or self.dtype or np.dtype(np.uint8)
        if self._size % want.itemsize:
            raise NrtError(NrtStatus.INVALID, f"tensor {self.name!r} of {self._size} bytes is not a whole number of "
                                              f"{want.name} elements")
        raw = storage.array[self._offset : self._offset + self._size]
        host = get_backend().to_host(raw) if storage.placement == TensorPlacement.DEVICE else np.array(raw)
        out = host.view(want)
        target = shape if shape is not None else (self.shape if dtype is None or want == self.dtype else None)
        if target is not None:
            if int(np.prod(target)) != out.size:
                raise NrtError(NrtStatus.INVALID, f"shape {target} does not hold the {out.size} {want.name} elements "
                                                  f"of tensor {self.name!r}")
            out = out.reshape(target)
        return out

    def memset(self, value: int, offset: int = 0, size: int | None = None) -> None:
        """``nrt_tensor_memset``: set ``size`` bytes from ``offset`` to ``value`` (0-255)."""
        storage = self._live()
        if not 0 <= int(value) <= 255:
            raise NrtError(NrtStatus.INVALID, f"memset value {value} is invalid; accepted: 0-255")
        length = self._size - offset if size is None else size
        self._bounds(offset, length, "memset")
        start = self._offset + offset
        storage.array[start : start + length] = int(value)

    def copy_to(self, dst: Tensor, size: int | None = None, src_offset: int = 0, dst_offset: int = 0) -> None:
        """``nrt_tensor_copy``: device-to-device copies only within one NeuronCore (else NRT_INVALID)."""
        src_storage, dst_storage = self._live(), dst._live()
        length = min(self._size - src_offset, dst._size - dst_offset) if size is None else size
        self._bounds(src_offset, length, "copy source")
        dst._bounds(dst_offset, length, "copy destination")
        src_dev = src_storage.placement == TensorPlacement.DEVICE
        dst_dev = dst_storage.placement == TensorPlacement.DEVICE
        if src_dev and dst_dev and src_storage.core != dst_storage.core:
            raise NrtError(NrtStatus.INVALID, f"tensor_copy between device tensors on different NeuronCores "
                                              f"(nc{src_storage.core} -> nc{dst_storage.core}); accepted: same NeuronCore")
        backend = get_backend()
        chunk = src_storage.array[self._offset + src_offset : self._offset + src_offset + length]
        if src_dev != dst_dev and backend.is_gpu:
            chunk = backend.xp.asarray(chunk) if dst_dev else backend.to_host(chunk)
        start = dst._offset + dst_offset
        dst_storage.array[start : start + length] = chunk

    def slice(self, offset: int, size: int, name: str = "") -> Tensor:
        """``nrt_tensor_allocate_slice``: a tensor sharing ``size`` bytes from ``offset`` of this one."""
        storage = self._live()
        if size <= 0:
            raise NrtError(NrtStatus.INVALID, f"slice size {size} is invalid; accepted: a positive number of bytes")
        self._bounds(offset, size, "slice")
        return Tensor(storage, self._offset + offset, size, name or f"{self.name}[{offset}:{offset + size}]")

    def device_allocation_info(self) -> dict[str, int]:
        """``nrt_tensor_get_device_allocation_info``: physical address, size and HBM index (device tensors)."""
        storage = self._live()
        if storage.placement != TensorPlacement.DEVICE or storage.core is None:
            raise NrtError(NrtStatus.INVALID, f"tensor {self.name!r} is not a device tensor")
        instance = storage.runtime.instance
        device, hbm = instance.hbm_of_core(storage.core)
        base = (device << 40) | (hbm << 36)
        return {"physical_address": base + (id(storage) & 0xFFFFFFFF) * 64 + self._offset, "size": self._size,
                "hbm_index": hbm}

    def free(self) -> None:
        """``nrt_tensor_free``: this handle becomes unusable; storage goes when no slice still uses it."""
        if self._freed:
            return
        self._freed = True
        self.version += 1
        self._typed.clear()
        if self._storage is not None:
            self._storage.drop_user()
            self._storage = None

    def __repr__(self) -> str:
        state = "freed" if self._freed else f"{self._size} bytes"
        where = "?" if self._freed or self._storage is None else self._storage.placement.name
        return f"Tensor(name={self.name!r}, {state}, placement={where}, core={getattr(self._storage, 'core', None)})"


def _dtype_or_none(dtype: Any) -> np.dtype[Any] | None:
    if dtype is None:
        return None
    return np.dtype(dtype)  # type: ignore[no-any-return]


class TensorSet(Mapping[str, Tensor]):
    """``nrt_tensor_set_t``: named tensors for execute; keys may differ from the tensors' own names."""

    def __init__(self, tensors: Mapping[str, Tensor] | None = None) -> None:
        self._tensors: dict[str, Tensor] = dict(tensors or {})

    def add(self, name: str, tensor: Tensor) -> None:
        """``nrt_add_tensor_to_tensor_set``: add or replace."""
        self._tensors[name] = tensor

    def get_tensor(self, name: str) -> Tensor:
        """``nrt_get_tensor_from_tensor_set``: a missing name is NRT_FAILURE."""
        try:
            return self._tensors[name]
        except KeyError:
            raise NrtError(NrtStatus.FAILURE, f"tensor set has no tensor named {name!r}; names: "
                                              f"{sorted(self._tensors)}") from None

    def __getitem__(self, name: str) -> Tensor:
        return self._tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)
