"""A drop-in for AWS's ``nrtpy``: nrtpy tutorials run unchanged once ``nrtpy`` is imported from here.

Replace ``import nrtpy`` / ``from nrtpy import …`` with ``from nrt_lab import nrtpy`` /
``from nrt_lab.nrtpy import …``; everything else follows AWS's nrtpy reference (model, tensor,
configuration and error pages of the Neuron SDK docs):

* one process holds one runtime singleton, created lazily (``nrt_lab.init()``) by the first tensor or
  model; :func:`configure` sets ``NEURON_RT_VISIBLE_CORES`` before that, :func:`reset` closes the runtime,
  clears the configuration and invalidates every existing tensor and model;
* :class:`NrtpyModel` (``load_from_neff``, ``input_tensors_info``/``output_tensors_info``, ``model(inputs=…)``,
  ``benchmark``) and :class:`NrtpyTensor` (``from_numpy``, ``write_from_numpy``, ``numpy``);
* :class:`NrtError` is :class:`nrt_lab.NrtError` (``NRT Error NRT_FAILURE(1): Failed to load model…``) and
  :class:`NrtpyError` covers state errors; both are ``RuntimeError``.

Differences from AWS's nrtpy (on purpose):

* auto-allocated outputs carry the model's real dtype and shape (AWS's may come back as ``void``, e.g.
  ``|V2``, and the docs advise ``.numpy().view(np.float16)``: that call still works, it is then a no-op);
  FP8 tensors keep their ml_dtypes float8 dtype instead of int8;
* ``cc_enabled=True`` (collectives) raises :class:`NrtpyError`: collectives are not emulated;
* ``save_trace=True`` writes a JSON execution record (host and device times), not a binary NTFF;
* :func:`reset` restores ``NEURON_RT_VISIBLE_CORES`` to its value before :func:`configure`, and clears the
  configuration even when the runtime never started;
* extensions: :meth:`NrtpyTensor.allocate` (zeroed tensor by shape/dtype), :meth:`NrtpyTensor.free`,
  ``NrtpyTensor.size``, :meth:`NrtpyModel.unload`, ``TensorMetadata.dtype``/``.name``.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from nrt_lab.driver import atomic_write_json
from nrt_lab.errors import NrtError
from nrt_lab.runtime.core import Framework, Runtime, get_runtime, init
from nrt_lab.runtime.model import BenchmarkResult, Model, TensorInfo
from nrt_lab.runtime.tensor import Tensor, TensorPlacement
from nrt_lab.runtime.version import RUNTIME_VERSION

__all__ = [
    "configure",
    "reset",
    "get_nrtpy_singleton",
    "NrtpySingleton",
    "NrtpyModel",
    "NrtpyTensor",
    "NrtTensor",
    "TensorMetadata",
    "BenchmarkResult",
    "NrtError",
    "NrtpyError",
]

VISIBLE_CORES_VARIABLE = "NEURON_RT_VISIBLE_CORES"

NrtTensor = Tensor
"""The device tensor an :class:`NrtpyTensor` wraps (``tensor_ref``)."""


class NrtpyError(RuntimeError):
    """An error of the nrtpy layer: a freed tensor, an object used after :func:`reset`, configure while active."""


# ---------------------------------------------------------------------------------------------- singleton


class NrtpySingleton:
    """The process's nrtpy runtime: the live nrt_lab runtime plus whether :func:`reset` retired it."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.active = True

    @property
    def visible_cores(self) -> tuple[int, ...]:
        """Instance-global ids of the NeuronCores this runtime owns (core_id 0 is the first)."""
        return self.runtime.cores

    def free_tensor(self, tensor: NrtpyTensor) -> None:
        """Free ``tensor``'s device memory now instead of at garbage collection (idempotent)."""
        if not isinstance(tensor, NrtpyTensor):
            raise TypeError(f"free_tensor expects an NrtpyTensor, got {type(tensor).__name__}")
        tensor.free()

    def check(self, what: str) -> None:
        """Raise NrtpyError when this runtime was reset (or closed behind nrtpy's back)."""
        if not self.active or self.runtime.closed:
            raise NrtpyError(f"{what} is invalid: the nrtpy runtime it was created on was reset or closed; "
                             "create it again after nrtpy.reset()")

    def __repr__(self) -> str:
        state = "active" if self.active and not self.runtime.closed else "reset"
        return f"NrtpySingleton({state}, cores={list(self.runtime.cores)})"


_lock = threading.RLock()
_singleton: NrtpySingleton | None = None
_MISSING = object()
_saved_environment: object = _MISSING  # NEURON_RT_VISIBLE_CORES before configure() (None: it was unset)


def _forget_in_child() -> None:
    """A forked child owns no cores: the parent's singleton and its objects are invalid there."""
    global _singleton, _lock
    if _singleton is not None:
        _singleton.active = False
    _singleton = None
    _lock = threading.RLock()


os.register_at_fork(after_in_child=_forget_in_child)


def _is_active() -> bool:
    runtime = get_runtime()
    return runtime is not None and not runtime.closed


def get_nrtpy_singleton() -> NrtpySingleton:
    """The runtime singleton, created (``nrt_lab.init()``) on first use; NrtError if init fails."""
    global _singleton
    with _lock:
        current = _singleton
        if current is not None and current.active and current.runtime is get_runtime():
            return current
        if current is not None:
            current.active = False  # closed behind our back (nrt_lab.close()): its objects are stale
        runtime = get_runtime()  # a runtime started through nrt_lab.init() is shared, as libnrt's is
        if runtime is None or runtime.closed:
            runtime = init(Framework.NO_FW)
        _singleton = NrtpySingleton(runtime)
        return _singleton


def configure(visible_cores: Iterable[int] | None = None) -> None:
    """Set ``NEURON_RT_VISIBLE_CORES`` before the runtime starts (None: leave it); NrtpyError while active."""
    global _saved_environment
    with _lock:
        if _is_active():
            raise NrtpyError("nrtpy.configure() cannot be called while the runtime is active; "
                             "call nrtpy.reset() first")
        if visible_cores is None:
            return
        if isinstance(visible_cores, (int, np.integer)):
            raise TypeError(f"visible_cores must be an iterable of NeuronCore ids such as [0, 1] or range(4), "
                            f"not an int ({visible_cores!r})")
        cores = list(visible_cores)
        for core in cores:
            if isinstance(core, (bool, np.bool_)) or not isinstance(core, (int, np.integer)):
                raise TypeError(f"visible_cores must hold integers, got {core!r} ({type(core).__name__})")
            if core < 0:
                raise ValueError(f"visible_cores must not be negative, got {int(core)}")
        if _saved_environment is _MISSING:
            _saved_environment = os.environ.get(VISIBLE_CORES_VARIABLE)
        os.environ[VISIBLE_CORES_VARIABLE] = ",".join(str(int(c)) for c in cores)


def reset() -> None:
    """Close the runtime (if nrtpy started one) and clear the configuration; existing objects become invalid."""
    global _singleton, _saved_environment
    with _lock:
        current, _singleton = _singleton, None
        if current is not None:
            current.active = False
            current.runtime.close()
        if _saved_environment is not _MISSING:
            if _saved_environment is None:
                os.environ.pop(VISIBLE_CORES_VARIABLE, None)
            else:
                os.environ[VISIBLE_CORES_VARIABLE] = str(_saved_environment)
            _saved_environment = _MISSING


# ---------------------------------------------------------------------------------------------- tensors


def _shape(shape: tuple[int, ...] | list[int] | int) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(int(d) for d in shape)


class NrtpyTensor:
    """A tensor in device memory (HBM) with NumPy I/O; its memory is freed when it is garbage collected."""

    def __init__(self, tensor_ref: Tensor, shape: tuple[int, ...] | list[int] | int, dtype: npt.DTypeLike,
                 name: str | None = None) -> None:
        if not isinstance(tensor_ref, Tensor):
            raise TypeError(f"tensor_ref must be an nrtpy.NrtTensor, got {type(tensor_ref).__name__}")
        self._owner = get_nrtpy_singleton()
        self.shape: tuple[int, ...] = _shape(shape)
        self.dtype: np.dtype[Any] = np.dtype(dtype)
        self.name: str = tensor_ref.name if name is None else name
        nbytes = math.prod(self.shape) * self.dtype.itemsize
        if nbytes != tensor_ref.size:
            raise ValueError(f"shape {self.shape} of {self.dtype.name} is {nbytes} bytes but the tensor holds "
                             f"{tensor_ref.size} bytes")
        self._tensor = tensor_ref
        self._freed = False

    @classmethod
    def from_numpy(cls, array: npt.ArrayLike, name: str | None = None, core_id: int = 0) -> NrtpyTensor:
        """Allocate a device tensor on ``core_id`` and copy ``array`` (made contiguous) into it."""
        get_nrtpy_singleton()
        host = np.ascontiguousarray(array)
        tensor = Tensor.from_numpy(host, TensorPlacement.DEVICE, core_id, name or "")
        return cls(tensor, host.shape, host.dtype, name)

    @classmethod
    def allocate(cls, shape: tuple[int, ...] | list[int] | int, dtype: npt.DTypeLike, name: str | None = None,
                 core_id: int = 0) -> NrtpyTensor:
        """(nrt_lab extension) A zeroed device tensor of ``shape`` and ``dtype`` on ``core_id``."""
        get_nrtpy_singleton()
        dims, kind = _shape(shape), np.dtype(dtype)
        tensor = Tensor.allocate(math.prod(dims) * kind.itemsize, TensorPlacement.DEVICE, core_id, name or "",
                                 dtype=kind, shape=dims)
        return cls(tensor, dims, kind, name)

    def _live(self) -> Tensor:
        if self._freed:
            raise NrtpyError(f"tensor {self.name!r} was freed")
        self._owner.check(f"tensor {self.name!r}")
        return self._tensor

    @property
    def tensor_ref(self) -> Tensor:
        """The underlying device tensor (NrtpyError once freed or reset)."""
        return self._live()

    @property
    def size(self) -> int:
        """(nrt_lab extension) Bytes of device memory."""
        return math.prod(self.shape) * self.dtype.itemsize

    def write_from_numpy(self, array: npt.ArrayLike) -> None:
        """Overwrite the tensor in place; ValueError unless ``array`` has exactly the tensor's byte size."""
        tensor = self._live()
        host = np.ascontiguousarray(array)
        if host.nbytes != tensor.size:
            raise ValueError(f"array of {host.nbytes} bytes does not match tensor {self.name!r} of "
                             f"{tensor.size} bytes")
        tensor.write(host)

    def numpy(self) -> np.ndarray[Any, Any]:
        """A host copy with the tensor's shape and dtype."""
        return self._live().numpy(dtype=self.dtype, shape=self.shape)

    def free(self) -> None:
        """(nrt_lab extension) Free the device memory now; later use raises NrtpyError (idempotent)."""
        if self._freed:
            return
        self._freed = True
        self._tensor.free()

    def __repr__(self) -> str:
        state = "freed" if self._freed else ("reset" if not self._owner.active else "live")
        return f"NrtpyTensor(name={self.name!r}, shape={self.shape}, dtype={self.dtype}, {state})"


# ---------------------------------------------------------------------------------------------- models


@dataclass(frozen=True)
class TensorMetadata:
    """What a model expects of one input or output: ``shape`` (a list, as nrtpy prints it), ``size`` in bytes."""

    name: str
    shape: list[int]
    size: int
    dtype: np.dtype[Any]


def _metadata(info: TensorInfo) -> TensorMetadata:
    return TensorMetadata(name=info.name, shape=list(info.shape), size=info.size, dtype=info.np_dtype)


def _unload_quietly(model: Model) -> None:
    if model.loaded:
        with contextlib.suppress(NrtError):
            model.unload()


class NrtpyModel:
    """A NEFF loaded on a NeuronCore; call it with ``inputs={name: NrtpyTensor}`` to execute."""

    def __init__(self, model: Model, neff_path: Path, core_id: int) -> None:
        self._owner = get_nrtpy_singleton()
        self._model = model
        self.name = model.name
        self.neff_path = neff_path
        self.core_id = core_id
        self.input_tensors_info: dict[str, TensorMetadata] = {n: _metadata(i) for n, i in model.inputs.items()}
        self.output_tensors_info: dict[str, TensorMetadata] = {n: _metadata(i) for n, i in model.outputs.items()}
        self._finalizer = weakref.finalize(self, _unload_quietly, model)
        self._finalizer.atexit = False

    @classmethod
    def load_from_neff(cls, neff_path: str | os.PathLike[str], name: str | None = None, core_id: int = 0,
                       cc_enabled: bool = False, rank_id: int = 0, world_size: int = 1) -> NrtpyModel:
        """Load a NEFF on ``core_id`` (name: the file stem unless given); collectives are not emulated."""
        if cc_enabled:
            raise NrtpyError(f"collective communication (cc_enabled=True, rank_id={rank_id}, world_size="
                             f"{world_size}) is not emulated by nrt_lab; load with cc_enabled=False")
        get_nrtpy_singleton()
        path = Path(neff_path)
        label = path.stem if name is None else name
        return cls(Model.load(path, core_id, name=label), path, core_id)

    def _live(self) -> Model:
        self._owner.check(f"model {self.name!r}")
        if not self._model.loaded:
            raise NrtpyError(f"model {self.name!r} was unloaded")
        return self._model

    def _tensors(self, tensors: Mapping[str, NrtpyTensor], what: str) -> dict[str, Tensor]:
        if not isinstance(tensors, Mapping):
            raise TypeError(f"{what} must be a dict of name -> NrtpyTensor, got {type(tensors).__name__}")
        result: dict[str, Tensor] = {}
        for key, value in tensors.items():
            if not isinstance(value, NrtpyTensor):
                raise TypeError(f"{what}[{key!r}] must be an NrtpyTensor, got {type(value).__name__}")
            result[key] = value._live()
        return result

    def __call__(self, inputs: Mapping[str, NrtpyTensor], outputs: Mapping[str, NrtpyTensor] | None = None,
                 save_trace: bool = False, ntff_name: str | os.PathLike[str] | None = None,
                 ) -> dict[str, NrtpyTensor] | None:
        """Execute once; returns the auto-allocated outputs when ``outputs`` is None, else None."""
        model = self._live()
        ins = self._tensors(inputs, "inputs")
        outs = None if outputs is None else self._tensors(outputs, "outputs")
        started = time.time_ns()
        host_start = time.perf_counter_ns()
        produced = model.execute(ins, outs)
        host_ns = time.perf_counter_ns() - host_start
        if save_trace:
            self._write_trace(ntff_name, started, host_ns)
        if outputs is not None:
            return None
        return {name: NrtpyTensor(produced[name], info.shape, info.np_dtype, name)
                for name, info in model.outputs.items()}

    def _write_trace(self, ntff_name: str | os.PathLike[str] | None, started_ns: int, host_ns: int) -> None:
        path = Path(ntff_name) if ntff_name is not None else self.neff_path.with_suffix(".ntff")
        model = self._model
        atomic_write_json(path, {
            "format": "nrt_lab execution trace (JSON; not a binary NTFF)",
            "runtime_version": RUNTIME_VERSION,
            "model": self.name,
            "neff": str(self.neff_path),
            "core_id": self.core_id,
            "neuron_core": model.core,
            "flops": model.flops_per_execution,
            "events": [{"start_ns": started_ns, "host_ns": host_ns,
                        "device_ns": int(getattr(model, "last_device_ns", 0))}],
        })

    def benchmark(self, inputs: Mapping[str, NrtpyTensor], outputs: Mapping[str, NrtpyTensor] | None = None,
                  warmup_iter: int = 5, benchmark_iter: int = 5, mode: str = "device") -> BenchmarkResult:
        """Time ``benchmark_iter`` executions after ``warmup_iter``: ``device`` (core time) or ``host`` (wall)."""
        if mode not in ("device", "host"):
            raise ValueError(f"mode must be 'device' or 'host', got {mode!r}")
        if isinstance(benchmark_iter, bool) or not isinstance(benchmark_iter, int) or benchmark_iter < 1:
            raise ValueError(f"benchmark_iter must be at least 1, got {benchmark_iter!r}")
        if isinstance(warmup_iter, bool) or not isinstance(warmup_iter, int) or warmup_iter < 0:
            raise ValueError(f"warmup_iter must be a non-negative integer, got {warmup_iter!r}")
        model = self._live()
        ins = self._tensors(inputs, "inputs")
        outs = None if outputs is None else self._tensors(outputs, "outputs")
        return model.benchmark(ins, outs, warmup=warmup_iter, iterations=benchmark_iter, mode=mode)

    def unload(self) -> None:
        """(nrt_lab extension) Unload now instead of at garbage collection; later calls raise NrtpyError."""
        self._live()
        self._finalizer()

    def __repr__(self) -> str:
        return (f"NrtpyModel(name={self.name!r}, core_id={self.core_id}, inputs={list(self.input_tensors_info)}, "
                f"outputs={list(self.output_tensors_info)})")
