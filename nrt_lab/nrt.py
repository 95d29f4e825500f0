"""nrt.h for Python: libnrt's C function names over nrt_lab's runtime, for people porting C code.

Every function keeps its C name, argument order and meaning (docs/behaviour.md §3) and returns an :class:`NrtStatus`
instead of raising: a runtime failure becomes its status (``NRT_INVALID``, ``NRT_EXEC_BAD_INPUT`` …), calls
before ``nrt_init`` return ``NRT_UNINITIALIZED`` (13) and calls after ``nrt_close`` ``NRT_CLOSED`` (14).
Only programming errors that C would not even compile (a ``str`` where a buffer is expected, a read-only
buffer as a destination) raise ``TypeError``. As in nrt.h, ``nrt_close``, ``nrt_tensor_free`` and
``nrt_destroy_tensor_set`` return nothing, ``nrt_tensor_get_size`` returns the size, ``nrt_tensor_get_va``
an address or None (NULL) and ``nrt_get_status_as_str`` a string.

Out-parameters. C returns results through pointers; Python passes a small mutable holder instead:

* a handle (``nrt_model_t **``, ``nrt_tensor_t **``, ``nrt_tensor_set_t **``) → :class:`ModelRef`,
  :class:`TensorRef`, :class:`TensorSetRef`, whose ``.value`` receives the object;
* a scalar or an array pointer (``uint32_t *``, ``nrt_tensor_info_array_t **``) → ``Out[T]`` (``.value``);
* a struct the caller owns (``nrt_version_t *``, ``nrt_instance_info_t *``, ``nrt_vnc_memory_stats_t *``,
  ``nrt_tensor_device_allocation_info_t *``) → the dataclass itself, filled in place (an ``Out`` works too).

Where C passes a handle, both the object and its holder are accepted (``t`` or ``t.value``); ``None`` is
NULL. C's ``sizeof`` arguments (``nrt_get_version(&v, sizeof v)``) are dropped. The same program both ways::

    /* C */                                          # Python
    nrt_model_t *model = NULL;                       model = ModelRef()
    nrt_tensor_t *t = NULL;                          t = TensorRef()
    uint32_t n;                                      n = Out[int]()
    nrt_init(NRT_FRAMEWORK_TYPE_NO_FW, "", "");      nrt_init(NRT_FRAMEWORK_TYPE_NO_FW, "", "")
    nrt_load(buf, len, -1, -1, &model);              nrt_load(buf, len(buf), -1, -1, model)
    nrt_get_model_vnc_count(model, &n);              nrt_get_model_vnc_count(model, n)   # n.value == 1
    nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE,
                        0, 24, "a_input", &t);                           0, 24, "a_input", t)
    nrt_tensor_write(t, host, 0, 24);                nrt_tensor_write(t, host, 0, 24)    # bytes/ndarray
    nrt_tensor_free(&t);                             nrt_tensor_free(t)                  # t.value is None
    nrt_unload(model);                               nrt_unload(model)
    nrt_close();                                     nrt_close()

Indices (``vnc``) are process-relative as in libnrt: 0 is the first NeuronCore this process owns.

Emulation notes: Python frees what nothing references, so a tensor whose last holder goes away releases its
device memory (C would leak it); ``nrt_get_model_tensor_info`` reports FP8 tensors as ``NRT_DTYPE_INT8``, as
libnrt does; ``nrt_get_model_instance_count`` is 1 (each model is staged once); ``nrt_get_vnc_memory_stats``
counts the VNC's own bytes against the size of the HBM it allocates from; ``nrt_get_instance_info`` gives
``arch_name`` as the instance type family (``trn1``, ``inf2`` …) and ``device_revision`` as the device
version (``v2`` …), our reading of fields nrt.h does not document.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, TypeAlias, TypeVar

import numpy as np

from nrt_lab.driver import StateError
from nrt_lab.errors import ConfigError, NrtError, NrtStatus, status_description
from nrt_lab.runtime.allocation import NoCoresVisibleError, NotContiguousError
from nrt_lab.runtime.core import (
    Framework,
    Runtime,
    close,
    init,
    require_runtime,
    total_nc_count,
    visible_nc_count,
)
from nrt_lab.runtime.model import Model
from nrt_lab.runtime.tensor import Tensor, TensorPlacement, TensorSet
from nrt_lab.runtime.version import RUNTIME_GIT_HASH, RUNTIME_VERSION

__all__ = [
    # versions and enums
    "NRT_MAJOR_VERSION",
    "NRT_MINOR_VERSION",
    "NrtStatus",
    "NrtTensorPlacement",
    "NrtFramework",
    "NrtTensorUsage",
    "NrtDtype",
    # holders and structs
    "Out",
    "ModelRef",
    "TensorRef",
    "TensorSetRef",
    "ModelArg",
    "TensorArg",
    "TensorSetArg",
    "NrtVersion",
    "NrtTensorInfo",
    "NrtTensorInfoArray",
    "NrtVncMemoryStats",
    "NrtInstanceInfo",
    "NrtTensorDeviceAllocationInfo",
    "TensorBatchOp",
    # lifecycle
    "nrt_init",
    "nrt_close",
    "nrt_get_version",
    "nrt_get_total_nc_count",
    "nrt_get_visible_nc_count",
    "nrt_get_total_vnc_count",
    "nrt_get_visible_vnc_count",
    # models
    "nrt_load",
    "nrt_unload",
    "nrt_get_model_nc_count",
    "nrt_get_model_vnc_count",
    "nrt_get_model_instance_count",
    "nrt_get_model_tensor_info",
    "nrt_free_model_tensor_info",
    # tensors
    "nrt_tensor_allocate",
    "nrt_tensor_free",
    "nrt_tensor_read",
    "nrt_tensor_write",
    "nrt_tensor_read_batch",
    "nrt_tensor_write_batch",
    "nrt_tensor_memset",
    "nrt_tensor_get_size",
    "nrt_tensor_copy",
    "nrt_tensor_allocate_empty",
    "nrt_tensor_attach_buffer",
    "nrt_tensor_allocate_slice",
    "nrt_tensor_get_va",
    "nrt_tensor_get_device_allocation_info",
    # tensor sets
    "nrt_allocate_tensor_set",
    "nrt_destroy_tensor_set",
    "nrt_add_tensor_to_tensor_set",
    "nrt_get_tensor_from_tensor_set",
    # execution
    "nrt_execute",
    "nrt_execute_repeat",
    # other
    "nrt_get_vnc_memory_stats",
    "nrt_get_instance_info",
    "nrt_get_status_as_str",
    # C constants (NRT_SUCCESS …, NRT_TENSOR_PLACEMENT_*, NRT_FRAMEWORK_TYPE_*, NRT_TENSOR_USAGE_*, NRT_DTYPE_*)
    "NRT_SUCCESS",
    "NRT_FAILURE",
    "NRT_INVALID",
    "NRT_INVALID_HANDLE",
    "NRT_RESOURCE",
    "NRT_TIMEOUT",
    "NRT_HW_ERROR",
    "NRT_QUEUE_FULL",
    "NRT_LOAD_NOT_ENOUGH_NC",
    "NRT_UNSUPPORTED_NEFF_VERSION",
    "NRT_FAIL_HOST_MEM_ALLOC",
    "NRT_UNINITIALIZED",
    "NRT_CLOSED",
    "NRT_QUEUE_EMPTY",
    "NRT_EXEC_UNIT_UNRECOVERABLE",
    "NRT_EXEC_BAD_INPUT",
    "NRT_EXEC_COMPLETED_WITH_NUM_ERR",
    "NRT_EXEC_COMPLETED_WITH_ERR",
    "NRT_EXEC_NC_BUSY",
    "NRT_EXEC_OOB",
    "NRT_COLL_PENDING",
    "NRT_EXEC_HW_ERR_COLLECTIVES",
    "NRT_EXEC_HW_ERR_HBM_UE",
    "NRT_EXEC_HW_ERR_NC_UE",
    "NRT_EXEC_HW_ERR_DMA_ABORT",
    "NRT_EXEC_SW_NQ_OVERFLOW",
    "NRT_EXEC_HW_ERR_REPAIRABLE_HBM_UE",
    "NRT_NETWORK_PROXY_FAILURE",
    "NRT_TENSOR_PLACEMENT_DEVICE",
    "NRT_TENSOR_PLACEMENT_HOST",
    "NRT_TENSOR_PLACEMENT_VIRTUAL",
    "NRT_FRAMEWORK_TYPE_INVALID",
    "NRT_FRAMEWORK_TYPE_NO_FW",
    "NRT_FRAMEWORK_TYPE_TENSORFLOW",
    "NRT_FRAMEWORK_TYPE_PYTORCH",
    "NRT_FRAMEWORK_TYPE_MXNET",
    "NRT_FRAMEWORK_TYPE_PRECHECK",
    "NRT_TENSOR_USAGE_INPUT",
    "NRT_TENSOR_USAGE_OUTPUT",
    "NRT_DTYPE_UNKNOWN",
    "NRT_DTYPE_INVALID",
    "NRT_DTYPE_FP8_E3",
    "NRT_DTYPE_FP8_E4",
    "NRT_DTYPE_FP8_E5",
    "NRT_DTYPE_FLOAT16",
    "NRT_DTYPE_BFLOAT16",
    "NRT_DTYPE_FLOAT32",
    "NRT_DTYPE_FP32R",
    "NRT_DTYPE_UINT8",
    "NRT_DTYPE_UINT16",
    "NRT_DTYPE_UINT32",
    "NRT_DTYPE_UINT64",
    "NRT_DTYPE_INT8",
    "NRT_DTYPE_INT16",
    "NRT_DTYPE_INT32",
    "NRT_DTYPE_INT64",
]

NRT_MAJOR_VERSION = 2
NRT_MINOR_VERSION = 0

T = TypeVar("T")
_log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------- enums

NrtTensorPlacement = TensorPlacement
"""``nrt_tensor_placement_t``: DEVICE 0, HOST 1, VIRTUAL 2."""

NrtFramework = Framework
"""``nrt_framework_type_t``: INVALID 0, NO_FW 1, TF 2, PYTORCH 3, MXNET 4, PRECHECK 5."""


class NrtTensorUsage(enum.IntEnum):
    """``nrt_tensor_usage_t``: whether a model tensor is an input or an output."""

    INPUT = 0
    OUTPUT = 1


class NrtDtype(enum.IntEnum):
    """``nrt_dtype_t`` with nrt.h's values (docs/behaviour.md §3); INVALID is an alias of UNKNOWN."""

    UNKNOWN = 0x0
    INVALID = 0x0
    UINT64 = 0x1
    INT8 = 0x2
    UINT8 = 0x3
    INT16 = 0x4
    UINT16 = 0x5
    BFLOAT16 = 0x6
    FLOAT16 = 0x7
    INT32 = 0x8
    UINT32 = 0x9
    FLOAT32 = 0xA
    FP32R = 0xB
    INT64 = 0xC
    FP8_E3 = 0xD
    FP8_E4 = 0xE
    FP8_E5 = 0xF


# NEFF dtype name -> what nrt_get_model_tensor_info reports. FP8 tensors report as int8, as libnrt does
# (docs/behaviour.md §3; nrtpy documents the same quirk).
_DTYPE_OF_NAME: dict[str, NrtDtype] = {
    "uint64": NrtDtype.UINT64, "int8": NrtDtype.INT8, "uint8": NrtDtype.UINT8, "int16": NrtDtype.INT16,
    "uint16": NrtDtype.UINT16, "bfloat16": NrtDtype.BFLOAT16, "float16": NrtDtype.FLOAT16,
    "int32": NrtDtype.INT32, "uint32": NrtDtype.UINT32, "float32": NrtDtype.FLOAT32, "int64": NrtDtype.INT64,
    "float8_e3m4": NrtDtype.INT8, "float8_e4m3": NrtDtype.INT8, "float8_e4m3fn": NrtDtype.INT8,
    "float8_e5m2": NrtDtype.INT8,
}  # fmt: skip

# ---------------------------------------------------------------------------------------------- holders


@dataclass
class Out(Generic[T]):
    """An out-parameter: C's ``T *out`` / ``T **out``; the call stores its result in ``.value``."""

    value: T | None = None


@dataclass
class ModelRef(Out[Model]):
    """``nrt_model_t *`` variable: pass it where C passes ``&model`` (``nrt_load``) or ``model``."""


@dataclass
class TensorRef(Out[Tensor]):
    """``nrt_tensor_t *`` variable: ``nrt_tensor_allocate`` fills it, ``nrt_tensor_free`` sets it to None."""


@dataclass
class TensorSetRef(Out[TensorSet]):
    """``nrt_tensor_set_t *`` variable: ``nrt_allocate_tensor_set`` fills it, ``nrt_destroy_tensor_set`` clears it."""


ModelArg: TypeAlias = "Model | Out[Model] | None"
"""A model handle as C passes it: the object, its holder, or None (NULL)."""
TensorArg: TypeAlias = "Tensor | Out[Tensor] | None"
"""A tensor handle: the object, its holder, or None (NULL)."""
TensorSetArg: TypeAlias = "TensorSet | Out[TensorSet] | None"
"""A tensor set handle: the object, its holder, or None (NULL)."""


# ---------------------------------------------------------------------------------------------- structs


@dataclass
class NrtVersion:
    """``nrt_version_t``."""

    rt_major: int = 0
    rt_minor: int = 0
    rt_patch: int = 0
    rt_maintenance: int = 0
    rt_detail: str = ""
    git_hash: str = ""


@dataclass(frozen=True)
class NrtTensorInfo:
    """``nrt_tensor_info_t``: one input or output of a loaded model."""

    name: str
    usage: NrtTensorUsage
    size: int
    dtype: NrtDtype
    shape: tuple[int, ...]
    ndim: int


@dataclass
class NrtTensorInfoArray:
    """``nrt_tensor_info_array_t``: inputs first, then outputs, in NEFF order; iterable and indexable."""

    tensor_array: list[NrtTensorInfo] = field(default_factory=list)
    freed: bool = False

    @property
    def tensor_count(self) -> int:
        """Number of entries (``tensor_count``)."""
        return len(self.tensor_array)

    def __len__(self) -> int:
        return len(self.tensor_array)

    def __iter__(self) -> Iterator[NrtTensorInfo]:
        return iter(self.tensor_array)

    def __getitem__(self, index: int) -> NrtTensorInfo:
        return self.tensor_array[index]


@dataclass
class NrtVncMemoryStats:
    """``nrt_vnc_memory_stats_t``: device bytes this VNC uses and the size of the HBM it allocates from."""

    bytes_used: int = 0
    bytes_limit: int = 0


@dataclass
class NrtInstanceInfo:
    """``nrt_instance_info_t``: ``family``/``size`` are nrt.h's NRT_INSTANCE_* / NRT_INSTANCE_SIZE_* numbers."""

    family: int = 0
    size: int = 0
    arch_name: str = ""
    device_revision: str = ""


@dataclass
class NrtTensorDeviceAllocationInfo:
    """``nrt_tensor_device_allocation_info_t``."""

    physical_address: int = 0
    size: int = 0
    hbm_index: int = 0


TensorBatchOp = tuple[Any, Any, int, int]
"""One batch entry for ``nrt_tensor_{read,write}_batch``: ``(tensor, buffer, offset, size)``."""

# ---------------------------------------------------------------------------------------------- helpers


class _Status:
    """``with _Status() as st:`` runs a body and turns an NrtError (or a bad environment) into ``st.status``."""

    def __init__(self, *, environment: bool = False) -> None:
        self.status = NrtStatus.SUCCESS
        self._environment = environment

    def __enter__(self) -> _Status:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if isinstance(exc, NrtError):
            self.status = exc.status
            return True
        if self._environment and isinstance(exc, (ConfigError, StateError, NotContiguousError, NoCoresVisibleError)):
            _log.debug("nrt: %s", exc)
            self.status = NrtStatus.FAILURE
            return True
        return False


def _deref(obj: Any, kind: type[T], what: str) -> T:
    """The object behind ``obj`` (itself or a holder's value); NULL is NRT_INVALID, a wrong type TypeError."""
    value = obj.value if isinstance(obj, Out) else obj
    if value is None:
        raise NrtError(NrtStatus.INVALID, f"{what} is NULL")
    if not isinstance(value, kind):
        raise TypeError(f"{what} must be a {kind.__name__} (or its holder), got {type(value).__name__}")
    return value


def _check_model(model: Any) -> Model:
    require_runtime()
    m = _deref(model, Model, "model")
    if not m.loaded:
        raise NrtError(NrtStatus.INVALID_HANDLE, f"model {m.name} (id {m.model_id}) is not loaded")
    return m


def _out(holder: Any, what: str) -> Out[Any]:
    if not isinstance(holder, Out):
        raise TypeError(f"{what} must be an out-parameter holder (Out, ModelRef, TensorRef, TensorSetRef), "
                        f"got {type(holder).__name__}")
    return holder


def _fill(target: Any, value: Any, what: str) -> None:
    """Store a struct into a caller-owned dataclass of the same type (in place) or into an ``Out`` holder."""
    if isinstance(target, Out):
        target.value = value
    elif type(target) is type(value):
        for f in dataclasses.fields(value):
            setattr(target, f.name, getattr(value, f.name))
    else:
        raise TypeError(f"{what} must be a {type(value).__name__} or an Out holder, got {type(target).__name__}")


def _bytes_view(buf: Any, writable: bool, what: str) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """A flat uint8 NumPy view of a buffer (bytearray, memoryview, NumPy array, ctypes array …), no copy."""
    if isinstance(buf, np.ndarray):
        if not buf.flags.c_contiguous:
            raise TypeError(f"{what} must be a C-contiguous array")
        if writable and not buf.flags.writeable:
            raise TypeError(f"{what} is read-only")
        return buf.reshape(-1).view(np.uint8)
    if isinstance(buf, str):
        raise TypeError(f"{what} must be a bytes-like buffer, not str")
    try:
        view = memoryview(buf)
    except TypeError:
        raise TypeError(f"{what} must support the buffer protocol, got {type(buf).__name__}") from None
    if writable and view.readonly:
        raise TypeError(f"{what} is read-only ({type(buf).__name__}); pass a bytearray, memoryview or ndarray")
    if not view.c_contiguous:
        raise TypeError(f"{what} must be contiguous")
    return np.frombuffer(view.cast("B"), dtype=np.uint8)


def _length(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if value < 0:
        raise NrtError(NrtStatus.INVALID, f"{what} {value} is negative")
    return int(value)


def _span(buffer: np.ndarray[Any, np.dtype[np.uint8]], size: int, what: str) -> np.ndarray[Any, Any]:
    if buffer.size < size:
        raise NrtError(NrtStatus.INVALID, f"{what} holds {buffer.size} bytes, fewer than the {size} requested")
    return buffer[:size]


# ---------------------------------------------------------------------------------------------- lifecycle


def nrt_init(framework: Framework | int, fw_version: str, fal_version: str) -> NrtStatus:
    """Initialize the runtime: read NEURON_RT_* variables and claim NeuronCores (``""`` versions with NO_FW)."""
    for value, what in ((fw_version, "fw_version"), (fal_version, "fal_version")):
        if not isinstance(value, str):
            raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    from nrt_lab.monitor import mxnet_1_5_error

    with _Status() as st:
        refused = mxnet_1_5_error(fw_version) if framework == Framework.MXNET else None
        if refused:  # the seed's FAQ: Neuron MXNet 1.5.1 needs neuron-rtd (docs/legacy.md)
            sys.stderr.write(f"nrt_init: {refused}; use Neuron MXNet 1.8 with Runtime 2.x\n")
            raise NrtError(NrtStatus.FAILURE, refused)
        init(framework)
    return st.status


def nrt_close() -> None:
    """Release this process's NeuronCores; a later ``nrt_init`` is allowed. Returns nothing, like nrt.h."""
    close()


def nrt_get_version(version: NrtVersion | Out[NrtVersion]) -> NrtStatus:
    """Fill ``version`` with the runtime version (2.x, allowed before init)."""
    numbers = [int(p) for p in RUNTIME_VERSION.split(".")] + [0, 0, 0, 0]
    _fill(version, NrtVersion(rt_major=numbers[0], rt_minor=numbers[1], rt_patch=numbers[2],
                              rt_maintenance=numbers[3], rt_detail=f"nrt_lab emulation of libnrt {RUNTIME_VERSION}",
                              git_hash=RUNTIME_GIT_HASH), "version")
    return NrtStatus.SUCCESS


def _count(out: Out[int], getter: Any) -> NrtStatus:
    holder = _out(out, "count")
    with _Status(environment=True) as st:
        holder.value = int(getter())
    return st.status


def nrt_get_total_nc_count(nc_count: Out[int]) -> NrtStatus:
    """(Deprecated alias) NeuronCores on the instance, whatever the variables say; allowed before init."""
    return _count(nc_count, total_nc_count)


def nrt_get_total_vnc_count(vnc_count: Out[int]) -> NrtStatus:
    """Virtual (logical) NeuronCores on the instance, whatever the variables say; allowed before init."""
    return _count(vnc_count, total_nc_count)


def nrt_get_visible_nc_count(nc_count: Out[int]) -> NrtStatus:
    """(Deprecated alias) NeuronCores owned (after init) or that the variables would claim (before)."""
    return _count(nc_count, visible_nc_count)


def nrt_get_visible_vnc_count(vnc_count: Out[int]) -> NrtStatus:
    """Virtual NeuronCores owned (after init) or that the variables would claim (before)."""
    return _count(vnc_count, visible_nc_count)


# ---------------------------------------------------------------------------------------------- models


def nrt_load(neff_bytes: bytes | bytearray | memoryview, size: int, vnc: int, vnc_count: int,
             model: ModelRef | Out[Model]) -> NrtStatus:
    """Load ``size`` bytes of NEFF on process-relative ``vnc`` (-1: the runtime picks); ``vnc_count`` is ignored."""
    holder = _out(model, "model")
    data = _bytes_view(neff_bytes, False, "neff_bytes")
    with _Status() as st:
        runtime = require_runtime()
        length = _length(size, "size")
        if isinstance(vnc, bool) or not isinstance(vnc, int):
            raise TypeError(f"vnc must be an int, got {type(vnc).__name__}")
        if vnc_count != -1:
            runtime.logger.warn("NRT", "nrt_load", f"vnc_count={vnc_count} is deprecated and ignored; always use -1")
        neff = _span(data, length, "neff_bytes").tobytes()
        holder.value = Model.load(neff, None if vnc == -1 else vnc)
    return st.status


def nrt_unload(model: ModelArg) -> NrtStatus:
    """Unload ``model`` and free its device memory; a second unload is NRT_INVALID_HANDLE."""
    with _Status() as st:
        _check_model(model).unload()
    return st.status


def nrt_get_model_nc_count(model: ModelArg, nc_count: Out[int]) -> NrtStatus:
    """(Deprecated alias) number of VNCs ``model`` runs on."""
    return nrt_get_model_vnc_count(model, nc_count)


def nrt_get_model_vnc_count(model: ModelArg, vnc_count: Out[int]) -> NrtStatus:
    """Number of VNCs ``model`` runs on."""
    holder = _out(vnc_count, "vnc_count")
    with _Status() as st:
        holder.value = len(_check_model(model).cores)
    return st.status


def nrt_get_model_instance_count(model: ModelArg, instance_count: Out[int]) -> NrtStatus:
    """Optimal number of threads calling ``nrt_execute`` on ``model`` (≥ 1; nrt_lab stages each model once)."""
    holder = _out(instance_count, "instance_count")
    with _Status() as st:
        _check_model(model)
        holder.value = 1
    return st.status


def nrt_get_model_tensor_info(model: ModelArg, tensor_info: Out[NrtTensorInfoArray]) -> NrtStatus:
    """Describe ``model``'s inputs then outputs (name, usage, size, nrt_dtype_t, shape, ndim)."""
    holder = _out(tensor_info, "tensor_info")
    with _Status() as st:
        m = _check_model(model)
        entries = [
            NrtTensorInfo(name=info.name, usage=usage, size=info.size,
                          dtype=_DTYPE_OF_NAME.get(info.dtype, NrtDtype.UNKNOWN), shape=tuple(info.shape),
                          ndim=len(info.shape))
            for usage, infos in ((NrtTensorUsage.INPUT, m.inputs), (NrtTensorUsage.OUTPUT, m.outputs))
            for info in infos.values()
        ]
        holder.value = NrtTensorInfoArray(entries)
    return st.status


def nrt_free_model_tensor_info(tensor_info: NrtTensorInfoArray | Out[NrtTensorInfoArray]) -> NrtStatus:
    """Release an array from ``nrt_get_model_tensor_info`` (its entries are cleared; twice is NRT_INVALID)."""
    with _Status() as st:
        info = _deref(tensor_info, NrtTensorInfoArray, "tensor_info")
        if info.freed:
            raise NrtError(NrtStatus.INVALID, "tensor_info was already freed")
        info.freed = True
        info.tensor_array.clear()
    return st.status


# ---------------------------------------------------------------------------------------------- tensors


def nrt_tensor_allocate(placement: TensorPlacement | int, vnc: int, size: int, name: str | None,
                        tensor: TensorRef | Out[Tensor]) -> NrtStatus:
    """Allocate ``size`` zeroed bytes on process-relative ``vnc`` (-1 for host/virtual placement)."""
    holder = _out(tensor, "tensor")
    with _Status() as st:
        require_runtime()
        length = _length(size, "size")
        try:
            where = TensorPlacement(placement)
        except ValueError:
            where = None
        core = 0 if where in (TensorPlacement.HOST, TensorPlacement.VIRTUAL) else vnc
        holder.value = Tensor.allocate(length, placement, core, name or "")
    return st.status


def nrt_tensor_free(tensor: TensorArg) -> None:
    """Free a tensor and set the caller's variable to None (NULL); storage shared with slices lives on."""
    value = tensor.value if isinstance(tensor, Out) else tensor
    if isinstance(value, Tensor):
        value.free()
    if isinstance(tensor, Out):
        tensor.value = None


def nrt_tensor_read(tensor: TensorArg, buf: Any, offset: int, size: int) -> NrtStatus:
    """Copy ``size`` bytes from ``offset`` of ``tensor`` into the start of the writable buffer ``buf``."""
    dst = _bytes_view(buf, True, "buf")
    with _Status() as st:
        require_runtime()
        t = _deref(tensor, Tensor, "tensor")
        length = _length(size, "size")
        target = _span(dst, length, "buf")
        target[:] = np.frombuffer(t.read(length, _length(offset, "offset")), dtype=np.uint8)
    return st.status


def nrt_tensor_write(tensor: TensorArg, buf: Any, offset: int, size: int) -> NrtStatus:
    """Copy the first ``size`` bytes of ``buf`` into ``tensor`` at ``offset``."""
    src = _bytes_view(buf, False, "buf")
    with _Status() as st:
        require_runtime()
        t = _deref(tensor, Tensor, "tensor")
        length = _length(size, "size")
        t.write(_span(src, length, "buf"), _length(offset, "offset"))
    return st.status


def _batch(ops: Sequence[TensorBatchOp], writable: bool) -> list[tuple[Tensor, np.ndarray[Any, Any], int, int]]:
    """Check every op of a batch before any runs, so a bad entry leaves every tensor as it was."""
    checked = []
    for index, op in enumerate(ops):
        if not isinstance(op, tuple) or len(op) != 4:
            raise TypeError(f"batch entry {index} must be a (tensor, buffer, offset, size) tuple")
        tensor, buf, offset, size = op
        view = _bytes_view(buf, writable, f"batch entry {index} buffer")
        t = _deref(tensor, Tensor, f"batch entry {index} tensor")
        length, start = _length(size, "size"), _length(offset, "offset")
        if start + length > t.size:
            raise NrtError(NrtStatus.INVALID, f"batch entry {index}: {length} bytes at offset {start} are outside "
                                              f"tensor {t.name!r} of {t.size} bytes")
        checked.append((t, _span(view, length, f"batch entry {index} buffer"), start, length))
    return checked


def nrt_tensor_read_batch(batches: Sequence[TensorBatchOp], unsafe: bool = False) -> NrtStatus:
    """Run several reads, each ``(tensor, buf, offset, size)``; all are checked first (``unsafe`` is ignored)."""
    with _Status() as st:
        require_runtime()
        for t, target, offset, length in _batch(batches, True):
            target[:] = np.frombuffer(t.read(length, offset), dtype=np.uint8)
    return st.status


def nrt_tensor_write_batch(batches: Sequence[TensorBatchOp], unsafe: bool = False) -> NrtStatus:
    """Run several writes, each ``(tensor, buf, offset, size)``; all are checked first (``unsafe`` is ignored)."""
    with _Status() as st:
        require_runtime()
        for t, source, offset, _size in _batch(batches, False):
            t.write(source, offset)
    return st.status


def nrt_tensor_memset(tensor: TensorArg, offset: int, value: int, size: int) -> NrtStatus:
    """Set ``size`` bytes of ``tensor`` from ``offset`` to ``value`` (0-255)."""
    with _Status() as st:
        require_runtime()
        _deref(tensor, Tensor, "tensor").memset(value, _length(offset, "offset"), _length(size, "size"))
    return st.status


def nrt_tensor_get_size(tensor: TensorArg) -> int:
    """Size of ``tensor`` in bytes (``size_t`` in C: 0 for a NULL, freed or closed tensor)."""
    try:
        require_runtime()
        return _deref(tensor, Tensor, "tensor").size
    except NrtError:
        return 0


def nrt_tensor_copy(src: TensorArg, src_offset: int, dst: TensorArg, dst_offset: int,
                    size: int) -> NrtStatus:
    """Copy ``size`` bytes between tensors; two device tensors must be on the same NeuronCore (NRT_INVALID)."""
    with _Status() as st:
        require_runtime()
        source = _deref(src, Tensor, "src")
        target = _deref(dst, Tensor, "dst")
        source.copy_to(target, _length(size, "size"), _length(src_offset, "src_offset"),
                       _length(dst_offset, "dst_offset"))
    return st.status


def nrt_tensor_allocate_empty(name: str | None, tensor: TensorRef | Out[Tensor]) -> NrtStatus:
    """A tensor with no storage until ``nrt_tensor_attach_buffer``."""
    holder = _out(tensor, "tensor")
    with _Status() as st:
        holder.value = Tensor.empty(name or "")
    return st.status


def nrt_tensor_attach_buffer(tensor: TensorArg, buffer: Any, size: int) -> NrtStatus:
    """Use the first ``size`` bytes of the caller's writable ``buffer`` as storage (the tensor becomes VIRTUAL)."""
    view = _bytes_view(buffer, True, "buffer")
    with _Status() as st:
        require_runtime()
        t = _deref(tensor, Tensor, "tensor")
        t.attach_buffer(_span(view, _length(size, "size"), "buffer"))
    return st.status


def nrt_tensor_allocate_slice(tensor_source: TensorArg, offset: int, size: int, name: str | None,
                              tensor_slice: TensorRef | Out[Tensor]) -> NrtStatus:
    """A tensor sharing ``size`` bytes from ``offset`` of ``tensor_source`` (no copy)."""
    holder = _out(tensor_slice, "tensor_slice")
    with _Status() as st:
        require_runtime()
        source = _deref(tensor_source, Tensor, "tensor_source")
        holder.value = source.slice(_length(offset, "offset"), _length(size, "size"), name or "")
    return st.status


def nrt_tensor_get_va(tensor: TensorArg) -> int | None:
    """Address of the tensor's bytes in this process (host or GPU memory), or None (NULL) on failure."""
    try:
        require_runtime()
        raw = _deref(tensor, Tensor, "tensor").raw()
    except NrtError:
        return None
    interface = getattr(raw, "__cuda_array_interface__", None) or getattr(raw, "__array_interface__", None)
    if not interface:
        return None
    return int(interface["data"][0])


def nrt_tensor_get_device_allocation_info(tensor: TensorArg,
                                          alloc_info: NrtTensorDeviceAllocationInfo | Out[Any]) -> NrtStatus:
    """Physical address, size and HBM index of a device tensor (NRT_INVALID for host/virtual tensors)."""
    with _Status() as st:
        require_runtime()
        info = _deref(tensor, Tensor, "tensor").device_allocation_info()
        _fill(alloc_info, NrtTensorDeviceAllocationInfo(physical_address=info["physical_address"],
                                                        size=info["size"], hbm_index=info["hbm_index"]),
              "alloc_info")
    return st.status


# ---------------------------------------------------------------------------------------------- tensor sets


def nrt_allocate_tensor_set(result: TensorSetRef | Out[TensorSet]) -> NrtStatus:
    """A new empty tensor set."""
    holder = _out(result, "result")
    with _Status() as st:
        require_runtime()
        holder.value = TensorSet()
    return st.status


def nrt_destroy_tensor_set(tensor_set: TensorSetArg) -> None:
    """Forget a tensor set and set the caller's variable to None; the tensors in it are not freed."""
    if isinstance(tensor_set, Out):
        tensor_set.value = None


def nrt_add_tensor_to_tensor_set(tensor_set: TensorSetArg, tensor_name: str,
                                 tensor: TensorArg) -> NrtStatus:
    """Add or replace the tensor under ``tensor_name`` (which may differ from the tensor's own name)."""
    with _Status() as st:
        require_runtime()
        target = _deref(tensor_set, TensorSet, "tensor_set")
        if not isinstance(tensor_name, str):
            raise TypeError(f"tensor_name must be a str, got {type(tensor_name).__name__}")
        target.add(tensor_name, _deref(tensor, Tensor, "tensor"))
    return st.status


def nrt_get_tensor_from_tensor_set(tensor_set: TensorSetArg, tensor_name: str,
                                   tensor: TensorRef | Out[Tensor]) -> NrtStatus:
    """Look a tensor up by name; a missing name is NRT_FAILURE and leaves ``tensor`` untouched."""
    holder = _out(tensor, "tensor")
    with _Status() as st:
        require_runtime()
        holder.value = _deref(tensor_set, TensorSet, "tensor_set").get_tensor(tensor_name)
    return st.status


# ---------------------------------------------------------------------------------------------- execution


def nrt_execute(model: ModelArg, input_set: TensorSetArg,
                output_set: TensorSetArg) -> NrtStatus:
    """Run ``model`` once: names must match (else NRT_INVALID), sizes too (else NRT_EXEC_BAD_INPUT)."""
    with _Status() as st:
        m = _check_model(model)
        inputs = _deref(input_set, TensorSet, "input_set")
        outputs = _deref(output_set, TensorSet, "output_set")
        m.execute(inputs, outputs)
    return st.status


def nrt_execute_repeat(model: ModelArg, input_set: TensorSetArg,
                       output_set: TensorSetArg, repeat_count: int) -> NrtStatus:
    """Run ``model`` ``repeat_count`` times, outputs of run n-1 feeding run n (needs outputs shaped as inputs)."""
    with _Status() as st:
        m = _check_model(model)
        inputs = _deref(input_set, TensorSet, "input_set")
        outputs = _deref(output_set, TensorSet, "output_set")
        m.execute_repeat(inputs, outputs, repeat_count)
    return st.status


# ---------------------------------------------------------------------------------------------- other


def nrt_get_vnc_memory_stats(vnc: int, stats: NrtVncMemoryStats | Out[NrtVncMemoryStats]) -> NrtStatus:
    """Device bytes used by process-relative ``vnc`` and the size of its HBM (NRT_INVALID past the last VNC)."""
    with _Status() as st:
        runtime: Runtime = require_runtime()
        if isinstance(vnc, bool) or not isinstance(vnc, int):
            raise TypeError(f"vnc must be an int, got {type(vnc).__name__}")
        core = runtime.global_core(vnc)
        _fill(stats, NrtVncMemoryStats(bytes_used=runtime.memory.core_total(core),
                                       bytes_limit=runtime.memory.hbm_limit(core)), "stats")
    return st.status


def nrt_get_instance_info(info: NrtInstanceInfo | Out[NrtInstanceInfo]) -> NrtStatus:
    """Instance family and size numbers (nrt.h's NRT_INSTANCE_*), architecture name and device revision."""
    with _Status() as st:
        instance = require_runtime().instance
        _fill(info, NrtInstanceInfo(family=instance.nrt_family, size=instance.nrt_size,
                                    arch_name=instance.sysfs_arch[2].lower()[:15],
                                    device_revision=instance.neuron_device_version[:7]), "info")
    return st.status


def nrt_get_status_as_str(status: NrtStatus | int) -> str:
    """libnrt's description of a status number (``"Unknown status N"`` for numbers nrt_status.h lacks)."""
    return status_description(int(status))


# ---------------------------------------------------------------------------------------------- C constants

NRT_SUCCESS = NrtStatus.SUCCESS
NRT_FAILURE = NrtStatus.FAILURE
NRT_INVALID = NrtStatus.INVALID
NRT_INVALID_HANDLE = NrtStatus.INVALID_HANDLE
NRT_RESOURCE = NrtStatus.RESOURCE
NRT_TIMEOUT = NrtStatus.TIMEOUT
NRT_HW_ERROR = NrtStatus.HW_ERROR
NRT_QUEUE_FULL = NrtStatus.QUEUE_FULL
NRT_LOAD_NOT_ENOUGH_NC = NrtStatus.LOAD_NOT_ENOUGH_NC
NRT_UNSUPPORTED_NEFF_VERSION = NrtStatus.UNSUPPORTED_NEFF_VERSION
NRT_FAIL_HOST_MEM_ALLOC = NrtStatus.FAIL_HOST_MEM_ALLOC
NRT_UNINITIALIZED = NrtStatus.UNINITIALIZED
NRT_CLOSED = NrtStatus.CLOSED
NRT_QUEUE_EMPTY = NrtStatus.QUEUE_EMPTY
NRT_EXEC_UNIT_UNRECOVERABLE = NrtStatus.EXEC_UNIT_UNRECOVERABLE
NRT_EXEC_BAD_INPUT = NrtStatus.EXEC_BAD_INPUT
NRT_EXEC_COMPLETED_WITH_NUM_ERR = NrtStatus.EXEC_COMPLETED_WITH_NUM_ERR
NRT_EXEC_COMPLETED_WITH_ERR = NrtStatus.EXEC_COMPLETED_WITH_ERR
NRT_EXEC_NC_BUSY = NrtStatus.EXEC_NC_BUSY
NRT_EXEC_OOB = NrtStatus.EXEC_OOB
NRT_COLL_PENDING = NrtStatus.COLL_PENDING
NRT_EXEC_HW_ERR_COLLECTIVES = NrtStatus.EXEC_HW_ERR_COLLECTIVES
NRT_EXEC_HW_ERR_HBM_UE = NrtStatus.EXEC_HW_ERR_HBM_UE
NRT_EXEC_HW_ERR_NC_UE = NrtStatus.EXEC_HW_ERR_NC_UE
NRT_EXEC_HW_ERR_DMA_ABORT = NrtStatus.EXEC_HW_ERR_DMA_ABORT
NRT_EXEC_SW_NQ_OVERFLOW = NrtStatus.EXEC_SW_NQ_OVERFLOW
NRT_EXEC_HW_ERR_REPAIRABLE_HBM_UE = NrtStatus.EXEC_HW_ERR_REPAIRABLE_HBM_UE
NRT_NETWORK_PROXY_FAILURE = NrtStatus.NETWORK_PROXY_FAILURE

NRT_TENSOR_PLACEMENT_DEVICE = TensorPlacement.DEVICE
NRT_TENSOR_PLACEMENT_HOST = TensorPlacement.HOST
NRT_TENSOR_PLACEMENT_VIRTUAL = TensorPlacement.VIRTUAL

NRT_FRAMEWORK_TYPE_INVALID = Framework.INVALID
NRT_FRAMEWORK_TYPE_NO_FW = Framework.NO_FW
NRT_FRAMEWORK_TYPE_TENSORFLOW = Framework.TF
NRT_FRAMEWORK_TYPE_PYTORCH = Framework.PYTORCH
NRT_FRAMEWORK_TYPE_MXNET = Framework.MXNET
NRT_FRAMEWORK_TYPE_PRECHECK = Framework.PRECHECK

NRT_TENSOR_USAGE_INPUT = NrtTensorUsage.INPUT
NRT_TENSOR_USAGE_OUTPUT = NrtTensorUsage.OUTPUT

NRT_DTYPE_UNKNOWN = NrtDtype.UNKNOWN
NRT_DTYPE_INVALID = NrtDtype.INVALID
NRT_DTYPE_FP8_E3 = NrtDtype.FP8_E3
NRT_DTYPE_FP8_E4 = NrtDtype.FP8_E4
NRT_DTYPE_FP8_E5 = NrtDtype.FP8_E5
NRT_DTYPE_FLOAT16 = NrtDtype.FLOAT16
NRT_DTYPE_BFLOAT16 = NrtDtype.BFLOAT16
NRT_DTYPE_FLOAT32 = NrtDtype.FLOAT32
NRT_DTYPE_FP32R = NrtDtype.FP32R
NRT_DTYPE_UINT8 = NrtDtype.UINT8
NRT_DTYPE_UINT16 = NrtDtype.UINT16
NRT_DTYPE_UINT32 = NrtDtype.UINT32
NRT_DTYPE_UINT64 = NrtDtype.UINT64
NRT_DTYPE_INT8 = NrtDtype.INT8
NRT_DTYPE_INT16 = NrtDtype.INT16
NRT_DTYPE_INT32 = NrtDtype.INT32
NRT_DTYPE_INT64 = NrtDtype.INT64
