"""Models on emulated NeuronCores: load a NEFF, execute it for real on NumPy or CuPy, benchmark, unload.

Execution follows libnrt (docs/behaviour.md §3 "Execution", docs/architecture.md (Runtime)): a core runs one execution at a time
(threads of the process queue on it; different cores run in parallel), inputs and outputs must match the
NEFF's names and sizes, ``NEURON_RT_EXEC_TIMEOUT`` bounds an execution (checked between ops, so a run that
overruns is reported as NRT_TIMEOUT), NaN outputs are NRT_EXEC_COMPLETED_WITH_NUM_ERR when numerical errors
are on (``NEURON_FAIL_ON_NAN=1`` or ``NEURON_RT_NUMERICAL_ERRORS_VERBOSITY=critical``: libnrt ≥ 2.27 turned
them off by default); any other failure of a kernel is NRT_EXEC_COMPLETED_WITH_ERR, never a raw exception.
Every load and execution feeds the process's stats page.

Loading is bounded (docs/architecture.md): the file comes through the one NEFF reader (regular files only, size
checked first); each op is checked with its kernel's declared shape inference, nothing is executed, so load
time does not grow with the cost of the ops; the sizes the NEFF declares are checked against the HBM of the
core and a host-memory budget before anything is reserved or allocated (NRT_RESOURCE otherwise).
"""

from __future__ import annotations

import functools
import os
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nrt_lab.driver.state import atomic_write_json
from nrt_lab.driver.stats import HOST_MEMORY_KINDS
from nrt_lab.errors import NrtError, NrtStatus
from nrt_lab.kernels import Kernel, KernelError, TensorSpec, fast_kernel, get_backend, get_kernel
from nrt_lab.neff import NeffModel, numpy_dtype, parse_neff, read_neff_bytes, thaw
from nrt_lab.runtime.core import Runtime, require_runtime
from nrt_lab.runtime.memory import format_size
from nrt_lab.runtime.tensor import Tensor, TensorPlacement, runtime_backend, store_typed, typed_view

__all__ = ["Model", "TensorInfo", "BenchmarkResult", "RUNTIME_MEMORY_PER_MODEL", "HOST_MEMORY_FRACTION",
           "host_memory_budget"]

RUNTIME_MEMORY_PER_MODEL = 2 * 2**20  # DMA rings and instruction buffers libnrt keeps per loaded model

HOST_MEMORY_FRACTION = 0.5
"""Share of the machine's RAM one execution of a model may hold on the host (its inputs, intermediates and
outputs all live in host memory while the emulator computes): a NEFF declaring more is refused at load."""


def host_memory_budget() -> int:
    """Bytes of host memory one execution may use: :data:`HOST_MEMORY_FRACTION` of the machine's RAM."""
    import psutil  # imported here: only loading a model needs it

    return int(psutil.virtual_memory().total * HOST_MEMORY_FRACTION)

# Indices into the stats page vectors (nrt_lab.driver.stats: OUTCOMES, ERROR_KINDS, SYSFS_STATUS_KINDS).
_COMPLETED, _WITH_ERR, _WITH_NUM_ERR, _TIMED_OUT, _INCORRECT_INPUT = 0, 1, 2, 3, 4
_ERR_GENERIC, _ERR_NUMERICAL, _ERR_MODEL, _ERR_HARDWARE = 0, 1, 3, 5
_S_SUCCESS, _S_FAILURE, _S_TIMEOUT, _S_BAD_INPUT, _S_HW = 0, 1, 2, 3, 4
_S_INVALID, _S_UNSUPPORTED, _S_WITH_ERR, _S_WITH_NUM_ERR = 8, 9, 11, 12
_S_RESOURCE = 6


@dataclass(frozen=True)
class TensorInfo:
    """An input or output of a loaded model (``nrt_tensor_info_t``)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    size: int
    usage: str  # "input" or "output"

    @functools.cached_property
    def np_dtype(self) -> np.dtype[Any]:
        """The NumPy dtype (bfloat16 through ml_dtypes)."""
        return numpy_dtype(self.dtype)


@dataclass(frozen=True)
class BenchmarkResult:
    """nrtpy's BenchmarkResult: timings in milliseconds over the timed iterations."""

    mean_ms: float
    min_ms: float
    max_ms: float
    std_dev_ms: float
    iterations: int
    warmup_iterations: int
    durations_ms: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class _Step:
    kernel: Kernel
    inputs: tuple[str, ...]
    output: str
    attrs: Mapping[str, Any]
    flops: int
    run: Callable[[Any, Sequence[Any], Mapping[str, Any]], Any]  # the checked kernel, or its unchecked fast path


_model_ids_lock = threading.Lock()

_deadline_clock: Callable[[], float] = time.perf_counter
"""Seconds against which NEURON_RT_EXEC_TIMEOUT is checked between ops; tests substitute a fake clock."""


def _read_source(source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> tuple[bytes, str]:
    """NEFF bytes and the path they came from ("" for bytes): paths go through the one bounded NEFF reader."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), ""
    return read_neff_bytes(source), os.fspath(source)


class Model:
    """A NEFF loaded on a NeuronCore of this process's runtime (``nrt_model_t``)."""

    def __init__(self, runtime: Runtime, neff: NeffModel, core: int, path: str, name: str) -> None:
        self._runtime = runtime
        self._generation = runtime.generation
        self.neff = neff
        self.core = core  # instance-global id of the first core
        self.cores = tuple(range(core, core + max(1, neff.requested_cores)))
        self.path = path
        self.name = name
        with _model_ids_lock:
            self.model_id = next(runtime.model_ids)  # per runtime, like libnrt's NEFF ids: 1001, 1002, …
        self.inputs: dict[str, TensorInfo] = {
            i.name: TensorInfo(i.name, i.dtype, tuple(i.shape), i.size, "input") for i in neff.input_infos()
        }
        self.outputs: dict[str, TensorInfo] = {
            o.name: TensorInfo(o.name, o.dtype, tuple(o.shape), o.size, "output") for o in neff.output_infos()
        }
        self._steps: tuple[_Step, ...] = ()
        self._constants: dict[str, Any] = {}
        self._reserved: list[tuple[int, int, str]] = []
        self._host_reserved: list[tuple[int, int]] = []  # (HOST_MEMORY_KINDS index, bytes) held on the host
        self._unloaded = False
        self._binding: tuple[Any, ...] | None = None
        self._locks = tuple(runtime.core_locks[c] for c in self.cores)  # a core runs one execution at a time
        # Read at load, as libnrt reads NEURON_RT_EXEC_TIMEOUT and the numerical-error setting (docs/behaviour.md §1).
        self._timeout_s = runtime.exec_timeout_s
        self._nan_errors = runtime.numerical_errors
        self._quiet = False
        self.last_device_ns = 0
        self.flops_per_execution = 0
        self.executions = 0

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, source: str | os.PathLike[str] | bytes | bytearray | memoryview, core: int | None = None,
             *, name: str | None = None) -> Model:
        """``nrt_load``: parse, check and place a NEFF on process-relative ``core`` (None or -1: least loaded)."""
        runtime = require_runtime()
        logger = runtime.logger
        try:
            runtime_backend()  # a bad NRT_LAB_BACKEND is reported here, before anything is read
        except NrtError as exc:
            logger.error("NRT", "nrt_load", exc.message)
            raise
        data, path = _read_source(source)
        try:
            neff = parse_neff(data, validate_hash=runtime.config.validate_hash)
        except NrtError as exc:
            logger.error("NMGR", "nmgr_load_neff", exc.message)
            kind = _S_UNSUPPORTED if exc.status == NrtStatus.UNSUPPORTED_NEFF_VERSION else _S_INVALID
            if runtime.stats is not None:
                runtime.stats.record_failure(None, None, _ERR_MODEL, kind)
            raise
        label = name or (Path(path).name if path else (neff.name or "model"))
        if neff.lnc != runtime.lnc:
            message = (f"NEFF {label} was compiled for logical NeuronCore size {neff.lnc} but this runtime uses "
                       f"{runtime.lnc} (NEURON_LOGICAL_NC_CONFIG); recompile with -lnc={runtime.lnc}")
            logger.error("NRT", "nrt_load", message)
            raise NrtError(NrtStatus.INVALID, message)
        needed = max(1, neff.requested_cores)
        visible = len(runtime.cores)
        if core is not None:
            if not isinstance(core, (int, np.integer)) or isinstance(core, bool):
                raise NrtError(NrtStatus.INVALID, f"NeuronCore index {core!r} is not an integer; accepted: 0 to "
                                                  f"{visible - 1} (or -1 or None for any)")
            core = int(core)
        if core is None or core == -1:
            counts = {c: 0 for c in range(visible)}
            for model in runtime.models.values():
                counts[runtime.cores.index(model.core)] += 1
            candidates = [c for c in range(visible - needed + 1)]
            start = min(candidates, key=lambda c: (counts[c], c)) if candidates else 0
        else:
            start = core
        if needed > visible or not 0 <= start <= visible - needed:
            if not 0 <= start < visible:
                raise NrtError(NrtStatus.INVALID, f"NeuronCore index {start} is not visible to this process; "
                                                  f"accepted: 0 to {visible - 1} (or -1 for any)")
            logger.error("TDRV", "db_vtpb_get_mla_and_tpb", f"Could not find VNC id {start + needed - 1}")
            logger.error("NMGR", "nmgr_load", f"Failed to load NN: {label}, err: {int(NrtStatus.LOAD_NOT_ENOUGH_NC)}")
            raise NrtError(NrtStatus.LOAD_NOT_ENOUGH_NC, f"model {label} needs {needed} NeuronCores from index {start} "
                                                         f"but this process sees {visible}")
        model = cls(runtime, neff, runtime.cores[start], path, label)
        try:
            model._compile()
            model._place()
        except NrtError as exc:
            model._release_memory()
            if exc.status == NrtStatus.RESOURCE:
                logger.error("NMGR", "nmgr_load", f"Failed to load NN: {label}, err: {int(NrtStatus.RESOURCE)}")
            if runtime.stats is not None:
                kind = _S_RESOURCE if exc.status == NrtStatus.RESOURCE else _S_INVALID
                runtime.stats.record_failure(model.core, None, _ERR_MODEL, kind)
            raise
        runtime.models[model.model_id] = model
        runtime.memory.model_names[model.model_id] = label
        if runtime.stats is not None:
            runtime.stats.count_model_load(model.core)
        _publish_models(runtime)
        logger.info("NRT", "nrt_load", f"Loaded {label} as model {model.model_id} on NeuronCore {model.core}")
        return model

    def _compile(self) -> None:
        """Check every op against its kernel's declared shape inference and plan the run, executing nothing.

        ``Kernel.infer`` validates inputs, dtypes and attrs exactly as the checked kernel does, and each op's
        declared output var must be what the kernel produces; so the unchecked fast paths used at execution
        are safe without the trial run on zeros that loading once did (it made a small NEFF of many large ops
        take seconds and allocate its whole declared working set just to load).
        """
        sg = self.neff.subgraphs[0]
        specs = {v.name: TensorSpec(tuple(v.shape), v.dtype) for v in sg.vars}
        for var in sg.vars:
            if var.kind == "state-buffer":
                raise NrtError(NrtStatus.INVALID, f"NEFF {self.name} uses state buffer {var.name!r}, which nrt_lab "
                                                  "does not emulate; accepted: input, output, file and virtual vars")
        steps: list[_Step] = []
        for node in sg.nodes:
            try:
                kernel = get_kernel(node.op)
            except KernelError:
                raise NrtError(NrtStatus.INVALID, f"Unsupported hardware operator code {node.op} found in neff.") \
                    from None
            if len(node.outputs) != 1:
                raise NrtError(NrtStatus.INVALID, f"op {node.name} ({node.op}) declares {len(node.outputs)} outputs; "
                                                  "accepted: 1")
            attrs = thaw(node.attrs)
            ins = [specs[i] for i in node.inputs]
            try:
                produced = kernel.infer(ins, attrs)
                flops = int(kernel.flops([spec.shape for spec in ins], attrs))
            except (KernelError, ValueError, TypeError) as exc:
                raise NrtError(NrtStatus.INVALID, f"op {node.name} ({node.op}) is invalid: {exc}") from None
            declared = specs[node.outputs[0]]
            if produced != declared:
                raise NrtError(NrtStatus.INVALID, f"op {node.name} ({node.op}) produces {produced.dtype} "
                                                  f"{list(produced.shape)} but the NEFF declares its output "
                                                  f"{node.outputs[0]!r} as {declared.dtype} {list(declared.shape)}")
            fast = fast_kernel(node.op, [spec.dtype for spec in ins])
            run = kernel.fn if fast is None or declared.dtype != ins[0].dtype else fast
            steps.append(_Step(kernel, tuple(node.inputs), node.outputs[0], attrs, flops, run))
        self._steps = tuple(steps)
        self._quiet = any(step.run is step.kernel.fn for step in steps)  # checked kernels may raise FP warnings
        self.flops_per_execution = sum(s.flops for s in steps)

    def _check_sizes(self, constants: int, scratchpad: int) -> None:
        """Refuse, before allocating anything, a NEFF whose declared sizes exceed the HBM or the host budget."""
        runtime = self._runtime
        io_bytes = sum(i.size for i in self.inputs.values()) + sum(o.size for o in self.outputs.values())
        device = constants + scratchpad + RUNTIME_MEMORY_PER_MODEL + io_bytes
        limit = runtime.memory.hbm_limit(self.core)
        if device > limit:
            raise NrtError(NrtStatus.RESOURCE, f"NEFF {self.name} declares {format_size(device)} of device memory "
                                               f"(constants {format_size(constants)}, scratchpad "
                                               f"{format_size(scratchpad)}, input/output tensors "
                                               f"{format_size(io_bytes)}) but the HBM behind NeuronCore {self.core} "
                                               f"holds {format_size(limit)}")
        intermediates = sum(v.size for v in self.neff.subgraphs[0].vars if v.kind == "virtual")
        host = io_bytes + intermediates
        budget = host_memory_budget()
        if host > budget:
            raise NrtError(NrtStatus.RESOURCE, f"NEFF {self.name} needs {format_size(host)} of host memory per "
                                               f"execution (inputs, intermediates and outputs) but at most "
                                               f"{format_size(budget)} ({HOST_MEMORY_FRACTION:.0%} of this "
                                               "machine's RAM) is allowed")

    def _place(self) -> None:
        runtime, backend = self._runtime, get_backend()
        sg = self.neff.subgraphs[0]
        constants_bytes = sum(int(a.nbytes) for a in sg.constants.values())
        scratchpad = max(s.scratchpad_size for s in self.neff.subgraphs)
        self._check_sizes(constants_bytes, scratchpad)
        for kind, nbytes in (("constants", constants_bytes), ("model_shared_scratchpad", scratchpad),
                             ("runtime_memory", RUNTIME_MEMORY_PER_MODEL)):
            if nbytes:
                runtime.memory.reserve(self.core, nbytes, kind, self.model_id)
                self._reserved.append((self.core, nbytes, kind))
        # Host memory the loaded model holds, as neuron-monitor's usage_breakdown.host shows it: the constants
        # (parsed from the NEFF, kept in host arrays) and the staging buffers of its inputs and outputs.
        io_bytes = sum(i.size for i in self.inputs.values()) + sum(o.size for o in self.outputs.values())
        if runtime.stats is not None:
            for kind, nbytes in (("constants", constants_bytes), ("dma_buffers", io_bytes)):
                if nbytes:
                    runtime.stats.add_host_memory(HOST_MEMORY_KINDS.index(kind), nbytes)
                    self._host_reserved.append((HOST_MEMORY_KINDS.index(kind), nbytes))
        with backend.use_device(self.core):
            for var_name, array in sg.constants.items():
                self._constants[var_name] = backend.to_device(array) if backend.is_gpu else array

    def _release_memory(self) -> None:
        for core, nbytes, kind in self._reserved:
            self._runtime.memory.release(core, nbytes, kind, self.model_id)
        self._reserved.clear()
        stats = self._runtime.stats
        for kind_index, nbytes in self._host_reserved:
            if stats is not None:
                stats.add_host_memory(kind_index, -nbytes)
        self._host_reserved.clear()

    # ------------------------------------------------------------------ state checks
    def _check(self) -> Runtime:
        runtime = self._runtime
        if runtime.closed or runtime.generation != self._generation:
            raise NrtError(NrtStatus.CLOSED, f"model {self.name} belongs to a runtime that was closed")
        if self._unloaded:
            raise NrtError(NrtStatus.INVALID_HANDLE, f"model {self.name} (id {self.model_id}) was unloaded")
        return runtime

    @property
    def loaded(self) -> bool:
        """True until unload or runtime close."""
        return not self._unloaded and not self._runtime.closed and self._runtime.generation == self._generation

    # ------------------------------------------------------------------ execution
    def _bad_input(self, runtime: Runtime, message: str, status: NrtStatus) -> NrtError:
        runtime.logger.error("NRT", "nrt_execute", message)
        if runtime.stats is not None:
            kind = _S_BAD_INPUT if status == NrtStatus.EXEC_BAD_INPUT else _S_INVALID
            runtime.stats.record_failure(self.core, _INCORRECT_INPUT, _ERR_GENERIC, kind)
        return NrtError(status, message)

    def _bind_inputs(self, runtime: Runtime, xp: Any, inputs: Mapping[str, Tensor | np.ndarray[Any, Any]],
                     backend: Any) -> dict[str, Any]:
        if inputs.keys() != self.inputs.keys():
            missing = sorted(set(self.inputs) - set(inputs))
            extra = sorted(set(inputs) - set(self.inputs))
            raise self._bad_input(runtime, f"input tensor names do not match model {self.name}: missing {missing}, "
                                           f"unknown {extra}; accepted: {sorted(self.inputs)}", NrtStatus.INVALID)
        values: dict[str, Any] = {}
        for name, info in self.inputs.items():
            given = inputs[name]
            if isinstance(given, Tensor):
                if given.size != info.size:
                    raise self._bad_input(runtime, f"input {name!r} is {given.size} bytes; model {self.name} expects "
                                                   f"{info.size} bytes ({info.dtype} {info.shape})",
                                          NrtStatus.EXEC_BAD_INPUT)
                if given.dtype is not None and given.dtype != info.np_dtype:
                    raise self._bad_input(runtime, f"input {name!r} holds {given.dtype.name}; model {self.name} "
                                                   f"expects {info.dtype}", NrtStatus.EXEC_BAD_INPUT)
                if backend.is_gpu and given.placement != TensorPlacement.DEVICE:
                    values[name] = typed_view(xp, xp.asarray(given.raw()), info.np_dtype, info.shape)
                else:
                    values[name] = given.typed(xp, info.np_dtype, info.shape)
            else:
                array = np.asarray(given)
                if array.dtype != info.np_dtype or array.size * array.itemsize != info.size:
                    raise self._bad_input(runtime, f"input {name!r} is {array.dtype.name} {array.shape}; model "
                                                   f"{self.name} expects {info.dtype} {info.shape}",
                                          NrtStatus.EXEC_BAD_INPUT)
                array = array.reshape(info.shape)
                values[name] = backend.to_device(array) if backend.is_gpu else array
        return values

    def _run_plan(self, backend: Any, values: dict[str, Any], deadline: float, checked: bool = False) -> dict[str, Any]:
        if self._quiet or checked:
            # Hardware does not warn on 0/0 or overflow; NaN/inf reach the outputs (and the NaN check) silently.
            with np.errstate(all="ignore"):
                return self._walk(backend, values, deadline, checked)
        return self._walk(backend, values, deadline, checked)

    def _walk(self, backend: Any, values: dict[str, Any], deadline: float, checked: bool) -> dict[str, Any]:
        xp = backend.xp
        values.update(self._constants)
        for step in self._steps:
            run = step.kernel.fn if checked else step.run
            values[step.output] = run(xp, [values[i] for i in step.inputs], step.attrs)
            if _deadline_clock() > deadline:
                raise TimeoutError
        return values

    def _resolve_outputs(self, runtime: Runtime, outputs: Mapping[str, Tensor] | None) -> dict[str, Tensor]:
        if outputs is None:
            return {name: Tensor.allocate(info.size, TensorPlacement.DEVICE, runtime.cores.index(self.core), name,
                                          dtype=info.np_dtype, shape=info.shape)
                    for name, info in self.outputs.items()}
        if outputs.keys() != self.outputs.keys():
            missing = sorted(set(self.outputs) - set(outputs))
            extra = sorted(set(outputs) - set(self.outputs))
            raise self._bad_input(runtime, f"output tensor names do not match model {self.name}: missing {missing}, "
                                           f"unknown {extra}; accepted: {sorted(self.outputs)}", NrtStatus.INVALID)
        for name, info in self.outputs.items():
            if outputs[name].size != info.size:
                raise self._bad_input(runtime, f"output {name!r} is {outputs[name].size} bytes; model {self.name} "
                                               f"writes {info.size} bytes ({info.dtype} {info.shape})",
                                      NrtStatus.EXEC_BAD_INPUT)
        return dict(outputs)

    def execute(self, inputs: Mapping[str, Tensor | np.ndarray[Any, Any]],
                outputs: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """``nrt_execute``: run once; outputs are written into ``outputs`` (allocated on this core if None)."""
        return self._execute(inputs, outputs, repeat=1)

    __call__ = execute

    def execute_repeat(self, inputs: Mapping[str, Tensor | np.ndarray[Any, Any]],
                       outputs: Mapping[str, Tensor] | None, repeat: int) -> dict[str, Tensor]:
        """``nrt_execute_repeat``: run ``repeat`` times, the outputs of run n-1 feeding run n (i-th to i-th)."""
        runtime = self._check()
        if not isinstance(repeat, int) or repeat < 1:
            raise NrtError(NrtStatus.INVALID, f"repeat count {repeat!r} is invalid; accepted: an integer ≥ 1")
        ins, outs = list(self.inputs.values()), list(self.outputs.values())
        if len(ins) != len(outs) or any((i.dtype, i.shape) != (o.dtype, o.shape) for i, o in zip(ins, outs, strict=True)):
            message = (f"Failed to execute model {self.name} with status {int(NrtStatus.INVALID)}: execute_repeat "
                       "needs a NEFF whose outputs match its inputs one to one (same dtype and shape)")
            runtime.logger.error("NRT", "nrt_execute_repeat", message)
            raise NrtError(NrtStatus.INVALID, message)
        try:
            return self._execute(inputs, outputs, repeat=repeat)
        except NrtError as exc:
            runtime.logger.error("NRT", "nrt_execute_repeat",
                                 f"Failed to execute model {self.name} with status {int(exc.status)}")
            raise

    def _execute(self, inputs: Mapping[str, Tensor | np.ndarray[Any, Any]], outputs: Mapping[str, Tensor] | None,
                 repeat: int) -> dict[str, Tensor]:
        runtime = self._check()
        started = time.perf_counter_ns()
        backend = get_backend()
        values, out_tensors, targets = self._bind(runtime, backend, inputs, outputs)
        core = self.core
        stats = runtime.stats
        locks = self._locks
        for lock in locks:
            lock.acquire()
        try:
            fault = runtime.faults.before_execute(self, core) if runtime.faults is not None else None
            device_start = time.perf_counter_ns()
            if stats is not None:
                stats.set_running(core, time.monotonic_ns())
            deadline = _deadline_clock() + self._timeout_s
            try:
                if backend.is_gpu:
                    with backend.use_device(core):
                        nan = self._compute(runtime, backend, values, out_tensors, targets, fault, deadline, repeat)
                else:
                    nan = self._compute(runtime, backend, values, out_tensors, targets, fault, deadline, repeat)
            except TimeoutError:
                self._finish(runtime, started, device_start, _TIMED_OUT, _ERR_GENERIC, _S_TIMEOUT, repeat)
                timeout_ms = int(runtime.exec_timeout_s * 1000)
                device = runtime.instance.device_of_core(core)
                message = (f"execution timeout ({timeout_ms} ms) on Neuron Device {device} NC {core}, model "
                           f"{self.name}, waiting for execution completion notification")
                runtime.logger.error("TDRV", "exec_consume_infer_status_notifications", message)
                raise NrtError(NrtStatus.TIMEOUT, message) from None
            except NrtError as exc:  # an injected hardware fault
                self._finish(runtime, started, device_start, _WITH_ERR, _ERR_HARDWARE, _S_HW, repeat)
                raise exc from None
            except Exception as exc:  # a kernel failing at execution: always an NrtError, counted like others
                self._finish(runtime, started, device_start, _WITH_ERR, _ERR_MODEL, _S_WITH_ERR, repeat)
                detail = str(exc) if isinstance(exc, KernelError) else f"{type(exc).__name__}: {exc}"
                message = f"model {self.name} failed on NeuronCore {core}: {detail}"
                runtime.logger.error("NRT", "nrt_execute", message)
                status = NrtStatus.RESOURCE if isinstance(exc, MemoryError) else NrtStatus.EXEC_COMPLETED_WITH_ERR
                raise NrtError(status, message) from None
            if nan:
                self._finish(runtime, started, device_start, _WITH_NUM_ERR, _ERR_NUMERICAL, _S_WITH_NUM_ERR, repeat)
                message = (f"Error notifications found on NC {core} for model {self.name}: "
                           "INFER_ERROR_SUBTYPE_NUMERICAL (an output holds NaN)")
                runtime.logger.error("NRT", "nrt_execute", message)
                raise NrtError(NrtStatus.EXEC_COMPLETED_WITH_NUM_ERR, message)
            # Success, inlined (the hot path): record_execution also marks the core idle again.
            now = time.perf_counter_ns()
            self.executions += repeat
            self.last_device_ns = busy = now - device_start
            if stats is not None:
                stats.record_execution(core, _COMPLETED, busy, self.flops_per_execution * repeat, now - started, busy,
                                       None, _S_SUCCESS)
            return out_tensors
        except BaseException:
            if stats is not None:
                stats.set_running(core, 0)
            raise
        finally:
            for lock in locks:
                lock.release()

    def _bind(self, runtime: Runtime, backend: Any, inputs: Mapping[str, Tensor | np.ndarray[Any, Any]],
              outputs: Mapping[str, Tensor] | None) -> tuple[dict[str, Any], dict[str, Tensor], list[Any]]:
        """Validated input values, output tensors and output views; reused while the caller passes the same
        tensor objects (the usual loop over preallocated tensors), so a repeat execution skips re-validation."""
        cached = self._binding
        if cached is not None and outputs is not None:
            given_in, given_out, versions, values, out_tensors, targets = cached
            if len(inputs) == len(given_in) and len(outputs) == len(given_out):
                for name, given in given_in:
                    if inputs.get(name) is not given:
                        break
                else:
                    for name, given in given_out:
                        if outputs.get(name) is not given:
                            break
                    else:
                        for tensor, version in versions:
                            if tensor.version != version:
                                break
                        else:
                            return dict(values), out_tensors, targets
        xp = backend.xp
        out_tensors = self._resolve_outputs(runtime, outputs)
        values = self._bind_inputs(runtime, xp, inputs, backend)
        targets = [
            out_tensors[name].typed(xp, info.np_dtype, info.shape) if xp is np or info.dtype != "bfloat16" else None
            for name, info in self.outputs.items()
        ]
        if outputs is not None:
            tensors = [t for t in (*inputs.values(), *outputs.values()) if isinstance(t, Tensor)]
            self._binding = (tuple(inputs.items()), tuple(outputs.items()), [(t, t.version) for t in tensors],
                             dict(values), out_tensors, targets)
        return values, out_tensors, targets

    def _compute(self, runtime: Runtime, backend: Any, values: dict[str, Any], out_tensors: Mapping[str, Tensor],
                 targets: list[Any], fault: Any, deadline: float, repeat: int) -> bool:
        """Run the plan ``repeat`` times and store the outputs; True when an output holds NaN (and that counts)."""
        xp = backend.xp
        if fault is not None:
            fault.apply(deadline)
        for run in range(repeat):
            if run:
                values = {i: values[o] for i, o in zip(self.inputs, self.outputs, strict=True)}
            values = self._run_plan(backend, values, deadline)
        results = [values[name] for name in self.outputs]
        if fault is not None:  # an injected ``nan`` fault poisons the floating-point outputs
            results = fault.corrupt_outputs(xp, results)
        for (name, info), result, target in zip(self.outputs.items(), results, targets, strict=True):
            if target is not None:
                target[...] = result
            else:
                store_typed(xp, out_tensors[name].raw(), info.np_dtype, result)
        return self._nan_errors and any(
            info.np_dtype.kind == "f" and bool(xp.isnan(r).any())
            for info, r in zip(self.outputs.values(), results, strict=True)
        )

    def _finish(self, runtime: Runtime, started: int, device_start: int, outcome: int, error_kind: int | None,
                status_kind: int, repeat: int) -> None:
        now = time.perf_counter_ns()
        self.executions += repeat
        self.last_device_ns = now - device_start
        if runtime.stats is not None:
            runtime.stats.record_execution(self.core, outcome, now - device_start, self.flops_per_execution * repeat,
                                           now - started, now - device_start, error_kind, status_kind)

    # ------------------------------------------------------------------ benchmark and unload
    def benchmark(self, inputs: Mapping[str, Tensor | np.ndarray[Any, Any]],
                  outputs: Mapping[str, Tensor] | None = None, warmup: int = 5, iterations: int = 5,
                  mode: str = "device") -> BenchmarkResult:
        """Time ``iterations`` executions after ``warmup`` ones; ``device`` times the NeuronCore, ``host`` the call."""
        if mode not in ("device", "host"):
            raise ValueError(f"mode {mode!r} is invalid; accepted: 'device' or 'host'")
        if not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"benchmark iterations must be an integer ≥ 1, got {iterations!r}")
        if not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"warmup iterations must be an integer ≥ 0, got {warmup!r}")
        outs = self._resolve_outputs(self._check(), outputs)
        for _ in range(warmup):
            self._execute(inputs, outs, 1)
        durations: list[float] = []
        for _ in range(iterations):
            start = time.perf_counter_ns()
            self._execute(inputs, outs, 1)
            host_ns = time.perf_counter_ns() - start
            durations.append((self.last_device_ns if mode == "device" else host_ns) / 1e6)
        return BenchmarkResult(
            mean_ms=statistics.fmean(durations), min_ms=min(durations), max_ms=max(durations),
            std_dev_ms=statistics.pstdev(durations), iterations=iterations, warmup_iterations=warmup,
            durations_ms=durations,
        )

    def unload(self) -> None:
        """``nrt_unload``: free the model's device memory; using it afterwards is NRT_INVALID_HANDLE."""
        runtime = self._check()
        self._unloaded = True
        self._binding = None
        self._release_memory()
        self._constants.clear()
        runtime.models.pop(self.model_id, None)
        _publish_models(runtime)

    def memory_by_kind(self) -> dict[str, int]:
        """Device bytes this model holds, per category (constants, scratchpad, runtime memory)."""
        usage: dict[str, int] = {}
        for _core, nbytes, kind in self._reserved:
            usage[kind] = usage.get(kind, 0) + nbytes
        return usage

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "unloaded"
        return f"Model({self.name!r}, id={self.model_id}, core={self.core}, {state})"



def _publish_models(runtime: Runtime) -> None:
    """Write the loaded-model list beside the stats page, for neuron-monitor's ``loaded_models``."""
    if runtime.stats is None:
        return
    instance = runtime.instance
    models = []
    for model in runtime.models.values():
        models.append({
            "name": model.name, "uuid": model.neff.uuid, "model_id": model.model_id, "core": model.core,
            "neuron_device_index": instance.device_of_core(model.core),
            "subgraphs": [sg.name for sg in model.neff.subgraphs],
            "memory": model.memory_by_kind(), "flops_per_execution": model.flops_per_execution,
        })
    atomic_write_json(runtime.stats.path.with_suffix(".models"), {"models": models})

