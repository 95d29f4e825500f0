"""The emulated neuron-rtd's services: ``nrt.nmgr_v1``, ``nrt.nmgr_session_manager``, ``nrt.nmgr_stream`` and the
``nrt_lab_ext.nrt_lab_daemon`` extension, executing NEFFs through ``nrt_lab.runtime`` (docs/legacy_daemon.md).

The daemon's NeuronCores are one libnrt runtime's cores; NCGs (EGs in the API) are contiguous runs of them, each
holding NNs of which one runs (READY) and the rest wait (STANDBY). Every reply carries ``status {code, details}``
with a nerr code and ``details`` in the daemon's ``[MODULE:function] message`` form.
"""

from __future__ import annotations

import concurrent.futures
import datetime as _dt
import itertools
import mmap
import os
import re
import socket
import stat
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from nrt_lab.driver import append_state_text
from nrt_lab.errors import NrtError, NrtStatus
from nrt_lab.legacy.packages import LEGACY_RUNTIME_VERSION
from nrt_lab.legacy.proto import nrt_lab_ext_pb2 as ext
from nrt_lab.legacy.proto import nrt_lab_ext_pb2_grpc as ext_grpc
from nrt_lab.legacy.proto import nrt_v1_pb2 as pb
from nrt_lab.legacy.proto import nrt_v1_pb2_grpc as pb_grpc
from nrt_lab.neff import HEADER_SIZE, RUNTIME_1X_NEFF_VERSION, parse_neff_header
from nrt_lab.runtime import Model, Runtime

__all__ = [
    "FIRST_NN_ID",
    "LEGACY_RUNTIME_VERSION",
    "MAX_NEFF_STREAM_BYTES",
    "NERR",
    "SUPPORTED_NEFF",
    "Daemon",
    "DaemonLog",
    "Settings",
    "add_services",
]

SUPPORTED_NEFF: tuple[int, int] = RUNTIME_1X_NEFF_VERSION
"""Newest NEFF version neuron-rtd loads (docs/legacy_daemon.md): models compiled for 1.x run on both runtimes."""

FIRST_NN_ID = 10001
MAX_LATENCY_SAMPLES = 4096
MAX_NEFF_STREAM_BYTES = 256 << 20
"""Most NEFF bytes one load stream may carry; a longer stream (or a larger neff_size) is refused with NERR_INVALID."""

NERR = pb.nerr  # the nerr enum: NERR.Value("NERR_QUEUE_FULL") == 7
OK, FAIL, INVALID, INVALID_HANDLE, RESOURCE, TIMEOUT = 0, 1, 2, 3, 4, 5
HW_ERROR, QUEUE_FULL, FAILED_STATE, RESOURCE_NC, UNSUPPORTED_VERSION = 6, 7, 8, 9, 10
INFER_PENDING, INFER_BAD_INPUT, INFER_COMPLETED_WITH_NUM_ERR, INFER_COMPLETED_WITH_ERR = 1000, 1002, 1003, 1004
_SHM_NAME = re.compile(r"/[A-Za-z0-9_.-]{1,200}")
_NRT_TO_NERR = {
    NrtStatus.TIMEOUT: TIMEOUT, NrtStatus.EXEC_BAD_INPUT: INFER_BAD_INPUT, NrtStatus.INVALID: INVALID,
    NrtStatus.RESOURCE: RESOURCE, NrtStatus.HW_ERROR: HW_ERROR, NrtStatus.LOAD_NOT_ENOUGH_NC: RESOURCE_NC,
    NrtStatus.EXEC_COMPLETED_WITH_NUM_ERR: INFER_COMPLETED_WITH_NUM_ERR,
    NrtStatus.EXEC_COMPLETED_WITH_ERR: INFER_COMPLETED_WITH_ERR,
    NrtStatus.UNSUPPORTED_NEFF_VERSION: UNSUPPORTED_VERSION,
}


class DaemonLog:
    """The daemon's log: ``nrtd[PID]: [MODULE:function] message`` lines to the emulated syslog, and to stderr with
    ``-x``; levels as ``-l`` sets them (6 debug, 7 trace; default 5 info)."""

    def __init__(self, syslog: Path | None, *, console: bool = False, level: int = 5) -> None:
        self.syslog = syslog
        self.console = console
        self.level = level
        self.pid = os.getpid()
        self._lock = threading.Lock()

    def log(self, module: str, function: str, message: str, *, level: int = 5) -> None:
        """Write one line (dropped when ``level`` is above the daemon's; never raises)."""
        if level > self.level:
            return
        body = f"nrtd[{self.pid}]: [{module}:{function}] {message}"
        stamp = _dt.datetime.now().strftime("%b %d %H:%M:%S")
        with self._lock:
            if self.syslog is not None:
                try:
                    append_state_text(self.syslog, f"{stamp} {socket.gethostname()} {body}\n")
                except OSError:
                    pass
            if self.console:
                try:
                    sys.stderr.write(body + "\n")
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass


@dataclass(frozen=True)
class Settings:
    """What the daemon's config sets for every model (model_params override per model)."""

    timeout_s: int = 2
    ninfer: int = 4
    address: str = "unix:/run/neuron.sock"
    instance: str = ""
    devices: tuple[int, ...] = ()
    runtime_version: str = LEGACY_RUNTIME_VERSION  # the installed aws-neuron-runtime when the daemon started


class _Fail(Exception):
    """A request failed with a nerr code; ``details`` in the daemon's form."""

    def __init__(self, code: int, module: str, function: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.module = module
        self.function = function
        self.message = message

    @property
    def details(self) -> bytes:
        return f"[{self.module}:{self.function}] {self.message}\n".encode()


@dataclass
class _EG:
    id: int
    start: int  # index among the daemon's cores
    count: int
    session: int = 0
    implicit: bool = False
    nns: list[int] = field(default_factory=list)
    running: int = 0  # NN id that runs, 0 for none


@dataclass
class _NN:
    id: int
    eg: _EG
    model: Model
    name: str
    uuid: str
    timeout_s: float
    ninfer: int
    session: int
    inputs: list[tuple[str, np.dtype[Any], tuple[int, ...], int]]
    outputs: list[tuple[str, int]]
    inflight: int = 0
    infers: int = 0


@dataclass
class _Pending:
    nn: _NN
    future: concurrent.futures.Future[dict[str, bytes]]
    shm_ofmap: list[tuple[str, str]]


@dataclass
class _Shm:
    path: str
    map: mmap.mmap
    session: int


def _ok() -> pb.status:
    return pb.status(code=OK)


def _status(exc: _Fail) -> pb.status:
    return pb.status(code=exc.code, details=exc.details)


class Daemon:
    """State of one daemon: its runtime (the cores it owns), NCGs, NNs, pending inferences, sessions, shm maps."""

    def __init__(self, runtime: Runtime, settings: Settings, log: DaemonLog) -> None:
        self.runtime = runtime
        self.settings = settings
        self.log = log
        self.nc_count = len(runtime.cores)
        self._lock = threading.RLock()
        self._egs: dict[int, _EG] = {}
        self._nns: dict[int, _NN] = {}
        self._pending: dict[int, _Pending] = {}
        self._shm: dict[str, _Shm] = {}
        self._eg_ids = itertools.count(1)
        self._nn_ids = itertools.count(FIRST_NN_ID)
        self._cookies = itertools.count(1)
        self._sessions = itertools.count(1)
        self._live_sessions: set[int] = set()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(2, self.nc_count),
                                                           thread_name_prefix="nrtd-exec")
        self.time_in_use_ns = [0] * self.nc_count  # per daemon NC: time spent executing
        self.latencies_us: list[float] = []
        self._stream_bytes = 0  # NEFF bytes held by load streams in progress (bounded by MAX_NEFF_STREAM_BYTES)
        self.counters = {"infer": 0, "load": 0, "unload": 0, "start": 0, "stop": 0, "queue_drop": 0}

    # ------------------------------------------------------------------ helpers
    def fail(self, code: int, module: str, function: str, message: str) -> _Fail:
        """Log an error and return the exception carrying its nerr code."""
        self.log.log(module, function, message, level=3)
        return _Fail(code, module, function, message)

    def _free_runs(self) -> list[tuple[int, int]]:
        used = [False] * self.nc_count
        for eg in self._egs.values():
            for i in range(eg.start, eg.start + eg.count):
                used[i] = True
        runs: list[tuple[int, int]] = []
        i = 0
        while i < self.nc_count:
            if used[i]:
                i += 1
                continue
            j = i
            while j < self.nc_count and not used[j]:
                j += 1
            runs.append((i, j - i))
            i = j
        return runs

    def device_of(self, index: int) -> int:
        """neuron-ls device index of the daemon's ``index``-th NeuronCore."""
        return self.runtime.instance.device_of_core(self.runtime.cores[index])

    def reserve_stream(self, size: int) -> None:
        """Account ``size`` more bytes of load streams in flight; NERR_RESOURCE past the daemon's budget."""
        with self._lock:
            if self._stream_bytes + size > MAX_NEFF_STREAM_BYTES:
                raise self.fail(RESOURCE, "NMGR", "kmgr_load_nn",
                                f"Too many NEFF bytes in flight ({MAX_NEFF_STREAM_BYTES} at most over all loads); "
                                "retry when other loads finish")
            self._stream_bytes += size

    def release_stream(self, size: int) -> None:
        """Give back bytes of a finished load stream."""
        with self._lock:
            self._stream_bytes -= size

    # ------------------------------------------------------------------ NCGs
    def create_eg(self, nc_count: int, session: int = 0, implicit: bool = False) -> _EG:
        """First fit of ``nc_count`` free contiguous NCs (0: the largest free run)."""
        with self._lock:
            runs = self._free_runs()
            if nc_count == 0:
                if not runs:
                    raise self.fail(RESOURCE_NC, "NMGR", "kmgr_create_eg", "No free NCs to allocate a group")
                start, count = max(runs, key=lambda r: (r[1], -r[0]))
            else:
                fit = [r for r in runs if r[1] >= nc_count]
                if nc_count > self.nc_count or not fit:
                    raise self.fail(RESOURCE_NC, "NMGR", "kmgr_create_eg",
                                    f"Not enough free NCs to allocate {nc_count} members group")
                start, count = fit[0][0], nc_count
            eg = _EG(next(self._eg_ids), start, count, session, implicit)
            self._egs[eg.id] = eg
        self.log.log("NMGR", "kmgr_create_eg", f"Created EG({eg.id}) with {count} NCs, start: {start}")
        return eg

    def destroy_eg(self, eg_id: int) -> None:
        """Destroy an empty NCG."""
        with self._lock:
            eg = self._egs.get(eg_id)
            if eg is None:
                raise self.fail(INVALID_HANDLE, "NMGR", "kmgr_destroy_eg", f"Failed to find EG: {eg_id}")
            if eg.nns:
                raise self.fail(FAILED_STATE, "NMGR", "kmgr_destroy_eg",
                                f"EG({eg_id}) still holds {len(eg.nns)} NN(s); unload them first")
            del self._egs[eg_id]
        self.log.log("NMGR", "kmgr_destroy_eg", f"Destroyed EG({eg_id})")

    def list_egs(self) -> list[_EG]:
        """NCGs in id order."""
        with self._lock:
            return sorted(self._egs.values(), key=lambda e: e.id)

    # ------------------------------------------------------------------ models
    def load(self, data: bytes, *, eg_id: int, timeout_s: int, ninfer: int, session: int) -> _NN:
        """Check the NEFF version, place it in NCG ``eg_id`` (0: a private NCG, started at once)."""
        if len(data) < HEADER_SIZE:
            raise self.fail(INVALID, "NMGR", "kmgr_load_nn",
                            f"NEFF is {len(data)} bytes, shorter than its {HEADER_SIZE}-byte header")
        try:
            header = parse_neff_header(data[:HEADER_SIZE])
        except NrtError as exc:
            raise self.fail(INVALID, "NMGR", "kmgr_load_nn", f"Invalid NEFF: {exc.message}") from None
        if header.neff_version > SUPPORTED_NEFF:
            raise self.fail(UNSUPPORTED_VERSION, "NMGR", "kmgr_load_nn",
                            f"NEFF version mismatch supported: {SUPPORTED_NEFF[0]}.{SUPPORTED_NEFF[1]} "
                            f"received: {header.neff_version[0]}.{header.neff_version[1]}")
        needed = max(1, header.requested_tpb_count)
        with self._lock:
            if eg_id:
                eg = self._egs.get(eg_id)
                if eg is None:
                    raise self.fail(INVALID_HANDLE, "NMGR", "kmgr_load_nn", f"Failed to find EG: {eg_id}")
                if needed > eg.count:
                    raise self.fail(RESOURCE_NC, "NMGR", "kmgr_load_nn",
                                    f"Requested number of NCs: {needed} exceeds the total available number: "
                                    f"{eg.count}")
            else:
                try:
                    eg = self.create_eg(needed, session, implicit=True)
                except _Fail:
                    largest = max((r[1] for r in self._free_runs()), default=0)
                    raise self.fail(RESOURCE_NC, "NMGR", "kmgr_load_nn",
                                    f"Requested number of NCs: {needed} exceeds the total available number: "
                                    f"{largest}") from None
            try:
                model = Model.load(data, core=eg.start)
            except NrtError as exc:
                if eg.implicit:
                    del self._egs[eg.id]
                code = _NRT_TO_NERR.get(exc.status, FAIL)
                raise self.fail(code, "NMGR", "kmgr_load_nn", f"Failed to load NN: {exc.message}") from None
            nn = _NN(
                id=next(self._nn_ids), eg=eg, model=model, name=header.name or model.name,
                uuid=header.uuid.hex(), timeout_s=float(timeout_s or self.settings.timeout_s),
                ninfer=ninfer or self.settings.ninfer, session=session,
                inputs=[(i.name, i.np_dtype, i.shape, i.size) for i in model.inputs.values()],
                outputs=[(o.name, o.size) for o in model.outputs.values()],
            )
            self._nns[nn.id] = nn
            eg.nns.append(nn.id)
            self.counters["load"] += 1
        self.log.log("NMGR", "kmgr_load_nn", f"Loaded NN {nn.id} ({nn.name}) into EG({eg.id})")
        if eg.implicit:
            self.start(nn.id)
        return nn

    def _nn(self, nn_id: int, function: str) -> _NN:
        nn = self._nns.get(nn_id)
        if nn is None:
            raise self.fail(INVALID_HANDLE, "NMGR", function, f"Failed to find model: {nn_id}")
        return nn

    def start(self, nn_id: int) -> None:
        """Make ``nn_id`` the running NN of its NCG (the one running before goes to STANDBY)."""
        with self._lock:
            nn = self._nn(nn_id, "kmgr_start_nn")
            previous = nn.eg.running
            nn.eg.running = nn.id
            self.counters["start"] += 1
        if previous and previous != nn_id:
            self.log.log("NMGR", "kmgr_start_nn", f"Stopped NN {previous} in EG({nn.eg.id}) to start {nn_id}")
        self.log.log("NMGR", "kmgr_start_nn", f"Started NN {nn_id} in EG({nn.eg.id})")

    def stop(self, nn_id: int) -> None:
        """Put ``nn_id`` in STANDBY."""
        with self._lock:
            nn = self._nn(nn_id, "kmgr_stop_nn")
            if nn.eg.running == nn_id:
                nn.eg.running = 0
            self.counters["stop"] += 1
        self.log.log("NMGR", "kmgr_stop_nn", f"Stopped NN {nn_id}")

    def unload(self, nn_id: int) -> None:
        """Unload ``nn_id``; its pending inferences are dropped; a private NCG goes with it."""
        with self._lock:
            nn = self._nn(nn_id, "kmgr_unload_nn")
            del self._nns[nn_id]
            nn.eg.nns.remove(nn_id)
            if nn.eg.running == nn_id:
                nn.eg.running = 0
            for cookie in [c for c, p in self._pending.items() if p.nn is nn]:
                del self._pending[cookie]
            with_eg = nn.eg.implicit and not nn.eg.nns
            if with_eg:
                del self._egs[nn.eg.id]
            self.counters["unload"] += 1
        try:
            nn.model.unload()
        except NrtError:
            pass
        self.log.log("NMGR", "kmgr_unload_nn", f"Unloaded NN {nn_id}")
        if with_eg:
            self.log.log("NMGR", "kmgr_destroy_eg", f"Destroyed EG({nn.eg.id})")

    def unload_all(self) -> None:
        """Unload every NN and destroy every NCG (neuron-cli reset)."""
        for nn_id in list(self._nns):
            self.unload(nn_id)
        with self._lock:
            self._egs.clear()

    def models(self) -> list[tuple[_NN, str]]:
        """Every NN with its status (READY when it runs, else STANDBY)."""
        with self._lock:
            return [(nn, "READY" if nn.eg.running == nn.id else "STANDBY")
                    for nn in sorted(self._nns.values(), key=lambda n: n.id)]

    # ------------------------------------------------------------------ inference
    def _read_inputs(self, nn: _NN, ifmaps: Any, function: str) -> dict[str, np.ndarray[Any, Any]]:
        if len(ifmaps) != len(nn.inputs):
            raise self.fail(INFER_BAD_INPUT, "NMGR", function,
                            f"Wrong number of ifmaps, expected: {len(nn.inputs)}, received: {len(ifmaps)}")
        given = {io.name: io for io in ifmaps}
        arrays: dict[str, np.ndarray[Any, Any]] = {}
        for name, dtype, shape, size in nn.inputs:
            io = given.get(name)
            if io is None:
                raise self.fail(INFER_BAD_INPUT, "NMGR", function,
                                f"Missing ifmap {name!r}; the model's ifmaps are "
                                f"{', '.join(n for n, *_ in nn.inputs)}")
            if io.WhichOneof("data") == "buf_shm":
                shm = self._shm.get(io.buf_shm.path)
                if shm is None:
                    raise self.fail(INFER_BAD_INPUT, "NMGR", function,
                                    f"Shared memory {io.buf_shm.path!r} is not mapped (shm_map it first)")
                if len(shm.map) < size:
                    raise self.fail(INFER_BAD_INPUT, "NMGR", function,
                                    f"Shared memory {io.buf_shm.path!r} holds {len(shm.map)} bytes, ifmap "
                                    f"{name!r} needs {size}")
                raw: bytes = shm.map[:size]
            else:
                raw = io.buf
                if len(raw) != size:
                    raise self.fail(INFER_BAD_INPUT, "NMGR", function,
                                    f"Ifmap {name!r} is {len(raw)} bytes, expected {size}")
            arrays[name] = np.frombuffer(raw, dtype=dtype).reshape(shape)
        return arrays

    def _run(self, nn: _NN, arrays: dict[str, np.ndarray[Any, Any]]) -> dict[str, bytes]:
        started = time.perf_counter_ns()
        outputs = nn.model.execute(arrays)
        result: dict[str, bytes] = {}
        for name, tensor in outputs.items():
            result[name] = tensor.read()
            tensor.free()
        elapsed = time.perf_counter_ns() - started
        with self._lock:
            nn.infers += 1
            self.counters["infer"] += 1
            for vnc in range(nn.eg.start, nn.eg.start + nn.eg.count):
                self.time_in_use_ns[vnc] += elapsed
            self.latencies_us.append(elapsed / 1000.0)
            if len(self.latencies_us) > MAX_LATENCY_SAMPLES:
                del self.latencies_us[: len(self.latencies_us) - MAX_LATENCY_SAMPLES]
        return result

    def take_latencies(self) -> list[float]:
        """Inference latencies (µs) since the previous call (read_all_metrics summarises them)."""
        with self._lock:
            taken, self.latencies_us = self.latencies_us, []
        return taken

    def post(self, request: Any, function: str = "infer_post") -> int:
        """Queue one inference; NERR_QUEUE_FULL when ``ninfer`` are already in flight."""
        with self._lock:
            nn = self._nn(request.h_nn.id, function)
            if nn.eg.running != nn.id:
                raise self.fail(FAILED_STATE, "NMGR", function, f"NN {nn.id} is not running (start it first)")
            arrays = self._read_inputs(nn, request.ifmap, function)
            if nn.inflight >= nn.ninfer:
                self.counters["queue_drop"] += 1
                raise self.fail(QUEUE_FULL, "NMGR", function,
                                f"Inference queue of NN {nn.id} is full ({nn.ninfer} in flight)")
            nn.inflight += 1
            cookie = next(self._cookies)
            future = self._pool.submit(self._run, nn, arrays)
            self._pending[cookie] = _Pending(nn, future, [(io.name, io.buf_shm.path) for io in request.shm_ofmap])
        return cookie

    def wait(self, cookie: int, shm_ofmap: Any, *, poll: bool = False) -> list[pb.infer_io]:
        """Collect inference ``cookie``: its ofmaps (or written to shm), NERR_TIMEOUT / INFER_PENDING."""
        function = "infer_poll" if poll else "infer_wait"
        with self._lock:
            pending = self._pending.get(cookie)
            if pending is None:
                raise self.fail(INVALID_HANDLE, "NRTD", function, f"Unknown inference cookie: {cookie}")
            if poll and not pending.future.done():
                raise _Fail(INFER_PENDING, "NRTD", function, f"error: {INFER_PENDING}")
        try:
            outputs = pending.future.result(timeout=pending.nn.timeout_s)
        except concurrent.futures.TimeoutError:
            self._finish(cookie)
            raise self.fail(TIMEOUT, "NRTD", function,
                            f"Inference of NN {pending.nn.id} timed out after {pending.nn.timeout_s:g} s") from None
        except NrtError as exc:
            self._finish(cookie)
            code = _NRT_TO_NERR.get(exc.status, INFER_COMPLETED_WITH_ERR)
            raise self.fail(code, "NRTD", function, f"error: {code} ({exc.message})") from None
        self._finish(cookie)
        targets = dict(pending.shm_ofmap)
        targets.update({io.name: io.buf_shm.path for io in shm_ofmap})
        if targets:
            self._write_shm(outputs, targets, function)
            return []
        return [pb.infer_io(name=name, buf=data) for name, data in outputs.items()]

    def _finish(self, cookie: int) -> None:
        with self._lock:
            pending = self._pending.pop(cookie, None)
            if pending is not None:
                pending.nn.inflight -= 1

    def _write_shm(self, outputs: dict[str, bytes], targets: dict[str, str], function: str) -> None:
        with self._lock:
            for name, data in outputs.items():
                path = targets.get(name)
                shm = self._shm.get(path or "")
                if shm is None:
                    raise self.fail(INFER_BAD_INPUT, "NRTD", function,
                                    f"No mapped shared memory given for ofmap {name!r} (got {path!r})")
                if len(shm.map) < len(data):
                    raise self.fail(INFER_BAD_INPUT, "NRTD", function,
                                    f"Shared memory {path!r} holds {len(shm.map)} bytes, ofmap {name!r} needs "
                                    f"{len(data)}")
                shm.map[: len(data)] = data

    def completed(self, cookies: Any) -> list[int]:
        """Which of ``cookies`` have finished."""
        with self._lock:
            return [c for c in cookies if c in self._pending and self._pending[c].future.done()]

    # ------------------------------------------------------------------ shared memory and sessions
    def shm_map(self, path: str, session: int) -> None:
        """Map POSIX shared memory ``path`` (``/aws_neuron_runtime_…``) for inference buffers."""
        if not _SHM_NAME.fullmatch(path):
            raise self.fail(INVALID, "NRTD", "shm_map",
                            f"Shared memory name {path!r} is invalid; accepted: /name (letters, digits, _ . -)")
        with self._lock:
            if path in self._shm:
                return
            try:
                fd = os.open(f"/dev/shm{path}", os.O_RDWR | os.O_NOFOLLOW)
            except OSError as exc:
                raise self.fail(INVALID, "NRTD", "shm_map",
                                f"Cannot open shared memory {path}: {exc.strerror}") from None
            try:
                size = os.fstat(fd).st_size
                if size == 0:
                    raise self.fail(INVALID, "NRTD", "shm_map", f"Shared memory {path} is empty")
                self._shm[path] = _Shm(path, mmap.mmap(fd, size), session)
            finally:
                os.close(fd)
        self.log.log("NRTD", "shm_map", f"Mapped {path} ({size} bytes)", level=6)

    def shm_unmap(self, path: str) -> None:
        """Forget a mapping."""
        with self._lock:
            shm = self._shm.pop(path, None)
        if shm is None:
            raise self.fail(INVALID, "NRTD", "shm_unmap", f"Shared memory {path!r} is not mapped")
        shm.map.close()

    def open_session(self) -> int:
        """A new session id."""
        with self._lock:
            session = next(self._sessions)
            self._live_sessions.add(session)
        self.log.log("NRTD", "session_monitor", f"Session {session} started")
        return session

    def close_session(self, session: int) -> None:
        """The client went away: unload its NNs, destroy its NCGs, unmap its shared memory."""
        with self._lock:
            self._live_sessions.discard(session)
            nns = [nn.id for nn in self._nns.values() if nn.session == session]
        for nn_id in nns:
            try:
                self.unload(nn_id)
            except _Fail:
                pass
        with self._lock:
            for eg in [e for e in self._egs.values() if e.session == session and not e.nns]:
                del self._egs[eg.id]
            maps = [s for s in self._shm.values() if s.session == session]
            for shm in maps:
                del self._shm[shm.path]
                shm.map.close()
        self.log.log("NRTD", "session_monitor",
                     f"Session {session} ended: unloaded {len(nns)} NN(s), unmapped {len(maps)} buffer(s)")

    def shutdown(self) -> None:
        """Unload everything and stop the executor (SIGTERM)."""
        self.unload_all()
        with self._lock:
            for shm in self._shm.values():
                shm.map.close()
            self._shm.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _version(full: str) -> pb.version:
    major, minor = (int(p) for p in full.split(".")[:2])
    return pb.version(full_version=full, major_num=major, minor_num=minor)


class _NmgrV1(pb_grpc.nmgr_v1Servicer):
    """``nrt.nmgr_v1``."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    def load(self, request_iterator: Iterator[pb.load_request], context: grpc.ServicerContext) -> pb.load_response:
        d = self.d
        eg_id = session = timeout = 0
        ninfer = 0
        declared: int | None = None
        chunks: list[bytes] = []
        received = 0
        reserved = 0
        path = ""
        try:
            for request in request_iterator:
                kind = request.WhichOneof("content")
                if kind == "h_eg":
                    eg_id = request.h_eg.id
                elif kind == "model_params":
                    timeout = request.model_params.timeout.data
                    ninfer = request.model_params.ninfer.data
                elif kind == "session_id":
                    session = request.session_id
                elif kind == "neff_file":
                    path = request.neff_file
                elif kind == "neff_size":
                    declared = request.neff_size
                    if declared > MAX_NEFF_STREAM_BYTES:
                        raise d.fail(INVALID, "NMGR", "kmgr_load_nn",
                                     f"NEFF size {declared} exceeds the daemon's limit of {MAX_NEFF_STREAM_BYTES} bytes")
                elif kind == "neff_chunk":
                    received += len(request.neff_chunk.chunk)
                    limit = MAX_NEFF_STREAM_BYTES if declared is None else declared
                    if received > limit:
                        raise d.fail(INVALID, "NMGR", "kmgr_load_nn",
                                     f"NEFF stream carries more than {limit} bytes"
                                     + (" (its neff_size)" if declared is not None else " (the daemon's limit)"))
                    d.reserve_stream(len(request.neff_chunk.chunk))
                    reserved += len(request.neff_chunk.chunk)
                    chunks.append(request.neff_chunk.chunk)
            if path:
                data = _read_neff_file(d, path)
            else:
                if not chunks:
                    raise d.fail(INVALID, "NMGR", "kmgr_load_nn", "Load request carried no NEFF (neff_chunk or neff_file)")
                if declared is not None and received != declared:
                    raise d.fail(INVALID, "NMGR", "kmgr_load_nn",
                                 f"NEFF stream ended after {received} of {declared} bytes")
                data = b"".join(chunks)
            if ninfer > 1024:
                raise d.fail(INVALID, "NMGR", "kmgr_load_nn", f"ninfer {ninfer} is invalid; accepted: 1 to 1024")
            nn = d.load(data, eg_id=eg_id, timeout_s=timeout, ninfer=ninfer, session=session)
        except _Fail as exc:
            return pb.load_response(status=_status(exc))
        finally:
            chunks.clear()
            d.release_stream(reserved)
        return pb.load_response(status=_ok(), h_nn=pb.h_nn(id=nn.id))

    def _simple(self, action: Any, nn_id: int) -> pb.status:
        try:
            action(nn_id)
        except _Fail as exc:
            return _status(exc)
        return _ok()

    def unload(self, request: pb.unload_request, context: grpc.ServicerContext) -> pb.unload_response:
        return pb.unload_response(status=self._simple(self.d.unload, request.h_nn.id))

    def start(self, request: pb.start_request, context: grpc.ServicerContext) -> pb.start_response:
        return pb.start_response(status=self._simple(self.d.start, request.h_nn.id))

    def stop(self, request: pb.stop_request, context: grpc.ServicerContext) -> pb.stop_response:
        return pb.stop_response(status=self._simple(self.d.stop, request.h_nn.id))

    def infer(self, request: pb.infer_request, context: grpc.ServicerContext) -> pb.infer_response:
        try:
            cookie = self.d.post(request, "infer")
            ofmap = self.d.wait(cookie, [])
        except _Fail as exc:
            return pb.infer_response(status=_status(exc))
        return pb.infer_response(status=_ok(), ofmap=ofmap)

    def infer_post(self, request: pb.infer_request, context: grpc.ServicerContext) -> pb.infer_post_response:
        try:
            cookie = self.d.post(request)
        except _Fail as exc:
            return pb.infer_post_response(status=_status(exc))
        return pb.infer_post_response(status=_ok(), cookie=cookie)

    def infer_wait(self, request: pb.infer_wait_request, context: grpc.ServicerContext) -> pb.infer_response:
        try:
            ofmap = self.d.wait(request.cookie, request.shm_ofmap)
        except _Fail as exc:
            return pb.infer_response(status=_status(exc))
        return pb.infer_response(status=_ok(), ofmap=ofmap)

    def infer_poll(self, request: pb.infer_wait_request, context: grpc.ServicerContext) -> pb.infer_response:
        try:
            ofmap = self.d.wait(request.cookie, request.shm_ofmap, poll=True)
        except _Fail as exc:
            return pb.infer_response(status=_status(exc))
        return pb.infer_response(status=_ok(), ofmap=ofmap)

    def infer_check_completion(self, request: pb.infer_check_completion_request,
                               context: grpc.ServicerContext) -> pb.infer_check_completion_response:
        return pb.infer_check_completion_response(status=_ok(), cookie=self.d.completed(request.cookie))

    def create_eg(self, request: pb.create_eg_request, context: grpc.ServicerContext) -> pb.create_eg_response:
        try:
            eg = self.d.create_eg(request.nc_count, request.session_id)
        except _Fail as exc:
            return pb.create_eg_response(status=_status(exc))
        return pb.create_eg_response(status=_ok(), h_eg=pb.h_eg(id=eg.id), nc_count=eg.count)

    def destroy_eg(self, request: pb.destroy_eg_request, context: grpc.ServicerContext) -> pb.destroy_eg_response:
        try:
            self.d.destroy_eg(request.h_eg.id)
        except _Fail as exc:
            return pb.destroy_eg_response(status=_status(exc))
        return pb.destroy_eg_response(status=_ok())

    def list_egs(self, request: pb.empty, context: grpc.ServicerContext) -> pb.out_list_egs:
        d = self.d
        infos = [pb.eg_info(eg=pb.h_eg(id=eg.id), vnc_start_index=eg.start, nc_count=eg.count,
                            mla_start_index=d.device_of(eg.start), nc_start_index=d.runtime.cores[eg.start])
                 for eg in d.list_egs()]
        devices = len({d.device_of(i) for i in range(d.nc_count)})
        return pb.out_list_egs(eg_info=infos, mla_count=devices, nc_count=d.nc_count, status=_ok())

    def _nc_counters(self, vnc: int) -> pb.nc_counters:
        return pb.nc_counters(virtual_nc_id=vnc)

    def read_nc_counters(self, request: pb.read_nc_counters_request,
                         context: grpc.ServicerContext) -> pb.read_nc_counters_response:
        if request.vnc_id >= self.d.nc_count:
            exc = self.d.fail(INVALID, "NRTD", "read_nc_counters",
                              f"NC {request.vnc_id} is invalid; accepted: 0 to {self.d.nc_count - 1}")
            return pb.read_nc_counters_response(status=_status(exc))
        return pb.read_nc_counters_response(nc_counters=self._nc_counters(request.vnc_id), status=_ok())

    def read_nc_time_in_use(self, request: pb.read_nc_time_in_use_request,
                            context: grpc.ServicerContext) -> pb.read_nc_time_in_use_response:
        if request.vnc_id >= self.d.nc_count:
            exc = self.d.fail(INVALID, "NRTD", "read_nc_time_in_use",
                              f"NC {request.vnc_id} is invalid; accepted: 0 to {self.d.nc_count - 1}")
            return pb.read_nc_time_in_use_response(status=_status(exc))
        used = self.d.time_in_use_ns[request.vnc_id] // 1000  # microseconds
        return pb.read_nc_time_in_use_response(
            nc_time_in_use=pb.nc_time_in_use(virtual_nc_id=request.vnc_id, time_in_use=used), status=_ok())

    def _nmgr_counters(self) -> pb.nmgr_counters:
        c = self.d.counters
        return pb.nmgr_counters(infer_count=c["infer"], model_load_count=c["load"], model_unload_count=c["unload"],
                                model_start_count=c["start"], model_stop_count=c["stop"],
                                infer_queue_drop_count=c["queue_drop"],
                                neff_version_max_major=SUPPORTED_NEFF[0], neff_version_max_minor=SUPPORTED_NEFF[1])

    def read_inference_counters(self, request: pb.empty,
                                context: grpc.ServicerContext) -> pb.read_inference_counters_response:
        return pb.read_inference_counters_response(nmgr_counters=self._nmgr_counters())

    def read_all_counters(self, request: pb.read_all_counters_request,
                          context: grpc.ServicerContext) -> pb.read_all_counters_response:
        return pb.read_all_counters_response(
            nc_counters=[self._nc_counters(i) for i in range(self.d.nc_count)],
            nmgr_counters=self._nmgr_counters(), system_counters=pb.system_counters(), status=_ok())

    def read_all_metrics(self, request: pb.read_all_metrics_request,
                         context: grpc.ServicerContext) -> pb.read_all_metrics_response:
        values = self.d.take_latencies()
        data = pb.metric_data(ts_nanos_since_epoch=time.time_ns())
        if values:
            data.value_agg.CopyFrom(pb.aggregate(min=min(values), max=max(values), count=len(values),
                                                 sum=sum(values)))
        metric = pb.metric(metric_type=pb.NMGR_METRIC_INFER_LATENCY, data=[data] if values else [])
        return pb.read_all_metrics_response(nmgr_metrics=[metric], status=_ok())

    def shm_map(self, request: pb.shm_map_request, context: grpc.ServicerContext) -> pb.shm_map_response:
        path = request.path if request.WhichOneof("data") == "path" else request.path_hugetlb.path
        try:
            self.d.shm_map(path, request.session_id)
        except _Fail as exc:
            return pb.shm_map_response(status=_status(exc))
        return pb.shm_map_response(status=_ok())

    def shm_unmap(self, request: pb.shm_unmap_request, context: grpc.ServicerContext) -> pb.shm_unmap_response:
        try:
            self.d.shm_unmap(request.path)
        except _Fail as exc:
            return pb.shm_unmap_response(status=_status(exc))
        return pb.shm_unmap_response(status=_ok())

    def _hw(self, device: int) -> pb.hw_counters:
        spec = self.d.runtime.instance.devices[device]
        return pb.hw_counters(bdf=spec.bdf, device_index=device)

    def get_hw_counters(self, request: pb.get_hw_counters_request,
                        context: grpc.ServicerContext) -> pb.get_hw_counters_response:
        devices = sorted({self.d.device_of(i) for i in range(self.d.nc_count)})
        kind = request.WhichOneof("device")
        for index in devices:
            spec = self.d.runtime.instance.devices[index]
            if (kind == "bdf" and spec.bdf.endswith(request.bdf) and request.bdf) or \
               (kind != "bdf" and index == request.device_id):
                return pb.get_hw_counters_response(counters=self._hw(index), status=_ok())
        exc = self.d.fail(INVALID, "NRTD", "get_hw_counters", f"Device not managed by this daemon; managed: {devices}")
        return pb.get_hw_counters_response(status=_status(exc))

    def get_all_hw_counters(self, request: pb.empty,
                            context: grpc.ServicerContext) -> pb.get_all_hw_counters_response:
        devices = sorted({self.d.device_of(i) for i in range(self.d.nc_count)})
        return pb.get_all_hw_counters_response(counters=[self._hw(i) for i in devices], status=_ok())

    def unload_all(self, request: pb.empty, context: grpc.ServicerContext) -> pb.status:
        self.d.unload_all()
        return _ok()

    def random_seed(self, request: pb.random_seed_request,
                    context: grpc.ServicerContext) -> pb.random_seed_response:
        return pb.random_seed_response(status=_ok())

    def get_version(self, request: pb.get_version_request,
                    context: grpc.ServicerContext) -> pb.get_version_response:
        return pb.get_version_response(runtime_version=_version(self.d.settings.runtime_version))

    def set_static_transfer_adjustment(self, request: pb.set_static_transfer_adjustment_request,
                                       context: grpc.ServicerContext) -> pb.set_static_transfer_adjustment_response:
        return pb.set_static_transfer_adjustment_response(status=_ok())


def _read_neff_file(d: Daemon, path: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise d.fail(INVALID, "NMGR", "kmgr_load_nn", f"Cannot open NEFF file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise d.fail(INVALID, "NMGR", "kmgr_load_nn", f"NEFF file {path} is not a regular file")
        if st.st_size > MAX_NEFF_STREAM_BYTES:
            raise d.fail(INVALID, "NMGR", "kmgr_load_nn",
                         f"NEFF file {path} is {st.st_size} bytes, over the daemon's limit of {MAX_NEFF_STREAM_BYTES}")
        return f.read(MAX_NEFF_STREAM_BYTES + 1)


class _Sessions(pb_grpc.nmgr_session_managerServicer):
    """``nrt.nmgr_session_manager``: a session lives as long as its stream."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    def session_monitor(self, request_iterator: Iterator[pb.session_monitor_request],
                        context: grpc.ServicerContext) -> Iterator[pb.session_monitor_response]:
        session = 0
        try:
            first = next(request_iterator, None)
            if first is None:
                return
            session = self.d.open_session()
            yield pb.session_monitor_response(session_id=session,
                                              runtime_version=_version(self.d.settings.runtime_version))
            for _ in request_iterator:  # the client keeps the stream open for its life
                pass
        except grpc.RpcError:
            pass
        finally:
            if session:
                self.d.close_session(session)


class _Stream(pb_grpc.nmgr_streamServicer):
    """``nrt.nmgr_stream``: one infer_response per infer_request, in order."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    def infer_stream(self, request_iterator: Iterator[pb.infer_request],
                     context: grpc.ServicerContext) -> Iterator[pb.infer_response]:
        for request in request_iterator:
            try:
                cookie = self.d.post(request, "infer_stream")
                yield pb.infer_response(status=_ok(), ofmap=self.d.wait(cookie, []))
            except _Fail as exc:
                yield pb.infer_response(status=_status(exc))


class _Extension(ext_grpc.nrt_lab_daemonServicer):
    """``nrt_lab_ext.nrt_lab_daemon``: what the public interface cannot tell (the loaded models)."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    def list_models(self, request: ext.list_models_request,
                    context: grpc.ServicerContext) -> ext.list_models_response:
        d = self.d
        models = [ext.model_info(nn_id=nn.id, eg_id=nn.eg.id, status=status, name=nn.name, uuid=nn.uuid,
                                 nc_start_index=d.runtime.cores[nn.eg.start], nc_count=nn.eg.count,
                                 device_start_index=d.device_of(nn.eg.start), session_id=nn.session,
                                 infer_count=nn.infers)
                  for nn, status in d.models()]
        devices = sorted({d.device_of(i) for i in range(d.nc_count)})
        return ext.list_models_response(models=models, runtime_version=d.settings.runtime_version, pid=os.getpid(),
                                        devices=devices, nc_count=d.nc_count, address=d.settings.address)


def add_services(server: grpc.Server, daemon: Daemon) -> None:
    """Register every service of the daemon on ``server``."""
    pb_grpc.add_nmgr_v1Servicer_to_server(_NmgrV1(daemon), server)  # type: ignore[no-untyped-call]
    pb_grpc.add_nmgr_session_managerServicer_to_server(_Sessions(daemon), server)  # type: ignore[no-untyped-call]
    pb_grpc.add_nmgr_streamServicer_to_server(_Stream(daemon), server)  # type: ignore[no-untyped-call]
    ext_grpc.add_nrt_lab_daemonServicer_to_server(_Extension(daemon), server)  # type: ignore[no-untyped-call]
