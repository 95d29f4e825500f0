"""The Runtime 1.x client: what pre-1.16 frameworks (TensorFlow-Neuron, MXNet-Neuron) did to run a NEFF on a
``neuron-rtd`` daemon over gRPC (docs/legacy_daemon.md).

``Client`` opens a session (``session_monitor``) for its life, creates one NCG per ``NEURONCORE_GROUP_SIZES`` entry,
streams NEFFs in 1 MiB chunks, places models round-robin on the NCGs, and runs inferences with tensors as bytes or
through POSIX shared memory. ``NEURON_RTD_ADDRESS``, ``NEURON_FRAMEWORK_INFER_TIMEOUT_SEC`` (default 10),
``NEURON_MAX_NUM_INFERS`` and ``NEURON_RTD_SHM_MAP`` are read as the 1.x frameworks read them.
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import queue
import re
import secrets
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from nrt_lab.driver import resolve_root
from nrt_lab.legacy.paths import DEFAULT_ADDRESS, real_to_root
from nrt_lab.legacy.proto import nrt_lab_ext_pb2 as ext
from nrt_lab.legacy.proto import nrt_lab_ext_pb2_grpc as ext_grpc
from nrt_lab.legacy.proto import nrt_v1_pb2 as pb
from nrt_lab.legacy.proto import nrt_v1_pb2_grpc as pb_grpc
from nrt_lab.neff import numpy_dtype, parse_neff

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_INFER_TIMEOUT_S",
    "Client",
    "DaemonUnreachable",
    "LegacyError",
    "LegacyModel",
    "channel_target",
    "connect",
    "daemon_ncg_count",
    "parse_group_sizes",
]

CHUNK_BYTES = 1 << 20
"""NEFF bytes per ``neff_chunk`` message, as the 1.x frameworks streamed them."""
DEFAULT_INFER_TIMEOUT_S = 10
_FAILED_STATE = 8
SHM_PREFIX = "/aws_neuron_runtime_"
_ENTRY = re.compile(r"(?:(\d+)\s*x\s*)?(\d+)")


class LegacyError(Exception):
    """A daemon call failed: ``code`` is the nerr value, ``details`` the daemon's ``[MODULE:function] …`` text."""

    def __init__(self, code: int, details: str, call: str) -> None:
        name = pb.nerr.Name(code) if code in pb.nerr.values() else str(code)
        super().__init__(f"{call} failed with {name} ({code}): {details.strip()}")
        self.code = code
        self.details = details
        self.call = call


class DaemonUnreachable(ConnectionError):
    """Nothing answers at the address; the message names it and how to start a daemon."""


def channel_target(address: str, root: Path) -> str:
    """The grpc target for a real 1.x address (``unix:/run/neuron.sock`` → the socket in the state root)."""
    if address.startswith("unix:"):
        return f"unix:{real_to_root(root, address[len('unix:'):])}"
    return address


def connect(address: str, root: Path, timeout_s: float = 5.0) -> grpc.Channel:
    """An open channel to the daemon at ``address``; DaemonUnreachable when none answers within ``timeout_s``."""
    channel = grpc.insecure_channel(channel_target(address, root),
                                    options=[("grpc.max_receive_message_length", 64 << 20),
                                             ("grpc.max_send_message_length", 8 << 20)])
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        channel.close()
        raise DaemonUnreachable(
            f"no neuron-rtd answers at {address}; start one (sudo systemctl start neuron-rtd, or: nrt-lab systemctl "
            "start neuron-rtd) or point NEURON_RTD_ADDRESS at a running daemon") from None
    return channel


class _Guarded:
    """A stub whose calls raise DaemonUnreachable (naming the address) instead of a bare grpc.RpcError when the
    daemon stops answering mid-session."""

    def __init__(self, stub: Any, address: str) -> None:
        self._stub = stub
        self._address = address

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                details = exc.details() if hasattr(exc, "details") else str(exc)
                raise DaemonUnreachable(f"neuron-rtd at {self._address} failed during {name}: {details} "
                                        f"({code.name if code is not None else 'no status'})") from None
        return call


def daemon_ncg_count(address: str, root: Path, timeout_s: float = 2.0) -> int | None:
    """How many NCGs the daemon at ``address`` holds (None when nothing answers there): what a 2.x framework
    checks before refusing to run beside a daemon ("Detected occupied neuron-rtd (N) NeuronCore groups")."""
    try:
        channel = connect(address, root, timeout_s)
    except DaemonUnreachable:
        return None
    try:
        reply = pb_grpc.nmgr_v1Stub(channel).list_egs(pb.empty(), timeout=timeout_s)  # type: ignore[no-untyped-call]
        return len(reply.eg_info)
    except grpc.RpcError:
        return None
    finally:
        channel.close()


def parse_group_sizes(value: str | None) -> list[int]:
    """1.x ``NEURONCORE_GROUP_SIZES``: ``2,2``, ``[1,2,1]``, ``2x1`` (two groups of one); ill-formed → a warning
    and the default (no groups: each model gets a private NCG)."""
    if value is None or not value.strip():
        return []
    body = value.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    sizes: list[int] = []
    for part in body.split(","):
        match = _ENTRY.fullmatch(part.strip())
        if match is None or int(match.group(2)) == 0 or (match.group(1) is not None and int(match.group(1)) == 0):
            warnings.warn(f"NEURONCORE_GROUP_SIZES={value!r} is ill-formed (entry {part.strip()!r}); accepted: a comma "
                          "list of N or DxN, optionally in brackets, e.g. 2,2 or [1,2,1] or 4x1; using the default "
                          "(one NeuronCore group per model)", stacklevel=3)
            return []
        sizes.extend([int(match.group(2))] * int(match.group(1) or 1))
    return sizes


def _positive_env(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if not raw.strip().isdigit() or int(raw) < 1:
        warnings.warn(f"{name}={raw!r} is invalid; accepted: a positive integer; using "
                      f"{default if default is not None else 'the daemon default'}", stacklevel=3)
        return default
    return int(raw)


def _check(status: pb.status, call: str) -> None:
    if status.code != 0:
        raise LegacyError(status.code, status.details.decode("utf-8", "replace"), call)


@dataclass
class _Buffer:
    path: str
    map: mmap.mmap


@dataclass
class LegacyModel:
    """A NEFF loaded on the daemon (an NN): run it with ``infer`` or ``post`` + ``wait``."""

    client: Client
    nn_id: int
    eg_id: int
    name: str
    inputs: dict[str, tuple[np.dtype[Any], tuple[int, ...], int]]
    outputs: dict[str, tuple[np.dtype[Any], tuple[int, ...], int]]
    shm_in: dict[str, _Buffer] = field(default_factory=dict)
    shm_out: dict[str, _Buffer] = field(default_factory=dict)

    def _request(self, inputs: Mapping[str, Any]) -> pb.infer_request:
        request = pb.infer_request(h_nn=pb.h_nn(id=self.nn_id))
        for name, value in inputs.items():
            array = np.ascontiguousarray(value)
            if name in self.shm_in:
                buf = self.shm_in[name]
                data = array.tobytes()
                if len(data) > len(buf.map):
                    raise ValueError(f"input {name!r} is {len(data)} bytes; the model takes {len(buf.map)}")
                buf.map[: len(data)] = data
                request.ifmap.append(pb.infer_io(name=name, buf_shm=pb.shared_mem_buf(path=buf.path)))
            else:
                request.ifmap.append(pb.infer_io(name=name, buf=array.tobytes()))
        for name, buf in self.shm_out.items():
            request.shm_ofmap.append(pb.infer_io(name=name, buf_shm=pb.shared_mem_buf(path=buf.path)))
        return request

    def _outputs(self, response: pb.infer_response) -> dict[str, np.ndarray[Any, Any]]:
        if self.shm_out:
            return {name: np.frombuffer(buf.map, dtype=self.outputs[name][0], count=int(np.prod(self.outputs[name][1])))
                    .reshape(self.outputs[name][1]).copy() for name, buf in self.shm_out.items()}
        return {io.name: np.frombuffer(io.buf, dtype=self.outputs[io.name][0]).reshape(self.outputs[io.name][1])
                for io in response.ofmap if io.name in self.outputs}

    def _call(self, method: Any, request: pb.infer_request) -> Any:
        response = method(request, timeout=self.client.rpc_timeout_s)
        if response.status.code == _FAILED_STATE and self.eg_id:
            # another model of this NCG runs: swap this one in, as the 1.x frameworks did
            self.start()
            response = method(request, timeout=self.client.rpc_timeout_s)
        return response

    def infer(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray[Any, Any]]:
        """One synchronous inference (``infer``); a model waiting in STANDBY in its NCG is started first."""
        response = self._call(self.client.stub.infer, self._request(inputs))
        _check(response.status, "infer")
        return self._outputs(response)

    def post(self, inputs: Mapping[str, Any]) -> int:
        """Queue one inference (``infer_post``); the cookie for ``wait``. NERR_QUEUE_FULL beyond ninfer."""
        response = self._call(self.client.stub.infer_post, self._request(inputs))
        _check(response.status, "infer_post")
        return int(response.cookie)

    def wait(self, cookie: int) -> dict[str, np.ndarray[Any, Any]]:
        """Collect a posted inference (``infer_wait``)."""
        request = pb.infer_wait_request(cookie=cookie)
        response = self.client.stub.infer_wait(request, timeout=self.client.rpc_timeout_s)
        _check(response.status, "infer_wait")
        return self._outputs(response)

    def start(self) -> None:
        """Make this NN the running one of its NCG."""
        _check(self.client.stub.start(pb.start_request(h_nn=pb.h_nn(id=self.nn_id))).status, "start")

    def stop(self) -> None:
        """Put this NN in STANDBY."""
        _check(self.client.stub.stop(pb.stop_request(h_nn=pb.h_nn(id=self.nn_id))).status, "stop")

    def unload(self) -> None:
        """Unload it from the daemon and free its shared memory."""
        try:
            _check(self.client.stub.unload(pb.unload_request(h_nn=pb.h_nn(id=self.nn_id))).status, "unload")
        finally:
            for buf in [*self.shm_in.values(), *self.shm_out.values()]:
                self.client._release_buffer(buf)
            self.shm_in.clear()
            self.shm_out.clear()
            with contextlib.suppress(ValueError):
                self.client.models.remove(self)


class Client:
    """A session with one neuron-rtd (the daemon at ``NEURON_RTD_ADDRESS``, default ``unix:/run/neuron.sock``)."""

    def __init__(self, address: str | None = None, *, env: Mapping[str, str] | None = None,
                 root: Path | str | None = None, framework: str = "nrt_lab", connect_timeout_s: float = 5.0,
                 use_shm: bool | None = None) -> None:
        environment = dict(os.environ if env is None else env)
        self.address = address or environment.get("NEURON_RTD_ADDRESS") or DEFAULT_ADDRESS
        self.root = Path(root) if root is not None else resolve_root(environment)
        self.infer_timeout_s = _positive_env(environment, "NEURON_FRAMEWORK_INFER_TIMEOUT_SEC", DEFAULT_INFER_TIMEOUT_S)
        self.max_infers = _positive_env(environment, "NEURON_MAX_NUM_INFERS", None)
        self.group_sizes = parse_group_sizes(environment.get("NEURONCORE_GROUP_SIZES"))
        shm_allowed = environment.get("NEURON_RTD_SHM_MAP", "yes").strip().lower() not in {"no", "0", "false"}
        self.use_shm = shm_allowed if use_shm is None else (use_shm and shm_allowed)
        self.rpc_timeout_s = float(self.infer_timeout_s or DEFAULT_INFER_TIMEOUT_S) + 30.0
        self.channel = connect(self.address, self.root, connect_timeout_s)
        self.stub: Any = _Guarded(pb_grpc.nmgr_v1Stub(self.channel), self.address)  # type: ignore[no-untyped-call]
        self.ext: Any = _Guarded(ext_grpc.nrt_lab_daemonStub(self.channel), self.address)  # type: ignore[no-untyped-call]
        self.models: list[LegacyModel] = []
        self.groups: list[int] = []
        self._next_group = itertools.count()
        self._closing = threading.Event()
        self._requests: queue.Queue[pb.session_monitor_request | None] = queue.Queue()
        self._requests.put(pb.session_monitor_request(framework_name=framework,
                                                      framework_version=pb.version(full_version="1.0.0")))
        self._session_stream: Any = pb_grpc.nmgr_session_managerStub(self.channel).session_monitor(  # type: ignore[no-untyped-call]
            self._session_requests())
        try:
            first = next(self._session_stream)
        except grpc.RpcError as exc:
            self.channel.close()
            raise DaemonUnreachable(f"neuron-rtd at {self.address} refused the session: {exc.details()}") from None
        self.session_id = int(first.session_id)
        self.runtime_version = first.runtime_version.full_version

    def _session_requests(self) -> Iterator[pb.session_monitor_request]:
        while True:
            item = self._requests.get()
            if item is None:
                return
            yield item

    # ------------------------------------------------------------------ groups and models
    def _ensure_groups(self) -> None:
        if self.groups or not self.group_sizes:
            return
        for size in self.group_sizes:
            response = self.stub.create_eg(pb.create_eg_request(nc_count=size, session_id=self.session_id))
            _check(response.status, "create_eg")
            self.groups.append(response.h_eg.id)

    def _load_requests(self, data: bytes | None, path: str | None, eg: int) -> Iterator[pb.load_request]:
        yield pb.load_request(session_id=self.session_id)
        if eg:
            yield pb.load_request(h_eg=pb.h_eg(id=eg))
        params = pb.model_params(timeout=pb.u32(data=int(self.infer_timeout_s or DEFAULT_INFER_TIMEOUT_S)))
        if self.max_infers:
            params.ninfer.data = self.max_infers
        yield pb.load_request(model_params=params)
        if path is not None:
            yield pb.load_request(neff_file=path)
            return
        assert data is not None
        yield pb.load_request(neff_size=len(data))
        view = memoryview(data)
        for offset in range(0, len(data), CHUNK_BYTES):
            yield pb.load_request(neff_chunk=pb.file_chunk(chunk=bytes(view[offset:offset + CHUNK_BYTES])))

    def load(self, source: str | os.PathLike[str] | bytes, *, name: str | None = None,
             direct_file: bool = False) -> LegacyModel:
        """Load a NEFF (bytes or a path), on the next NCG round-robin (or a private one), started and ready."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
        else:
            data = Path(source).read_bytes()
        neff = parse_neff(data, validate_hash=False)
        self._ensure_groups()
        eg = self.groups[next(self._next_group) % len(self.groups)] if self.groups else 0
        response = self.stub.load(self._load_requests(None if direct_file else data,
                                                      os.fspath(source) if direct_file and not isinstance(
                                                          source, (bytes, bytearray, memoryview)) else None, eg),
                                  timeout=self.rpc_timeout_s)
        _check(response.status, "load")

        def io(infos: Any) -> dict[str, tuple[np.dtype[Any], tuple[int, ...], int]]:
            return {i.name: (np.dtype(numpy_dtype(i.dtype)), tuple(i.shape), int(i.size)) for i in infos}

        model = LegacyModel(self, int(response.h_nn.id), eg, name or neff.name or "model",
                            io(neff.input_infos()), io(neff.output_infos()))
        if eg:
            model.start()
        if self.use_shm:
            model.shm_in = {n: self._buffer(size) for n, (_, _, size) in model.inputs.items()}
            model.shm_out = {n: self._buffer(size) for n, (_, _, size) in model.outputs.items()}
        self.models.append(model)
        return model

    # ------------------------------------------------------------------ shared memory
    def _buffer(self, size: int) -> _Buffer:
        path = f"{SHM_PREFIX}{os.getpid()}_{secrets.token_hex(6)}"
        fd = os.open(f"/dev/shm{path}", os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.ftruncate(fd, max(1, size))
            buf = _Buffer(path, mmap.mmap(fd, max(1, size)))
        finally:
            os.close(fd)
        try:
            response = self.stub.shm_map(pb.shm_map_request(path=path, session_id=self.session_id))
            _check(response.status, "shm_map")
        except BaseException:
            self._unlink(buf)
            raise
        return buf

    def _unlink(self, buf: _Buffer) -> None:
        with contextlib.suppress(OSError, ValueError):
            buf.map.close()
        with contextlib.suppress(OSError):
            os.unlink(f"/dev/shm{buf.path}")

    def _release_buffer(self, buf: _Buffer) -> None:
        with contextlib.suppress(grpc.RpcError, DaemonUnreachable):
            self.stub.shm_unmap(pb.shm_unmap_request(path=buf.path))
        self._unlink(buf)

    # ------------------------------------------------------------------ queries
    def list_egs(self) -> pb.out_list_egs:
        """The daemon's NCGs (``list_egs``)."""
        response: pb.out_list_egs = self.stub.list_egs(pb.empty())
        _check(response.status, "list_egs")
        return response

    def list_models(self) -> ext.list_models_response:
        """Every model loaded on the daemon (the nrt_lab extension service)."""
        response: ext.list_models_response = self.ext.list_models(ext.list_models_request())
        return response

    # ------------------------------------------------------------------ life cycle
    def close(self) -> None:
        """Unload this client's models, destroy its NCGs, end the session (idempotent)."""
        if self._closing.is_set():
            return
        self._closing.set()
        try:
            for model in list(self.models):
                with contextlib.suppress(LegacyError, grpc.RpcError, DaemonUnreachable):
                    model.unload()
            for eg in self.groups:
                with contextlib.suppress(grpc.RpcError, DaemonUnreachable):
                    self.stub.destroy_eg(pb.destroy_eg_request(h_eg=pb.h_eg(id=eg)))
            self.groups.clear()
        finally:
            self._requests.put(None)
            with contextlib.suppress(grpc.RpcError, StopIteration):
                for _ in self._session_stream:
                    pass
            self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(address={self.address!r}, session={self.session_id}, models={len(self.models)})"
