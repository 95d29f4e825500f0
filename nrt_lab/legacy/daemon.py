"""``neuron-rtd``: the Runtime 1.x daemon (docs/legacy_daemon.md). A foreground process that claims whole devices
through the same ownership as libnrt, serves the ``nrt`` gRPC services on a Unix socket (or loopback TCP), writes
its pid file once serving, and on SIGTERM unloads everything, releases its devices and removes pid file and socket.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import stat
import sys
import threading
from collections.abc import Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc

from nrt_lab.driver import DAEMON_KIND, StateError, command_line_of, open_machine, resolve_root
from nrt_lab.errors import NrtError
from nrt_lab.hardware import InstanceSpec
from nrt_lab.legacy.packages import RUNTIME_PACKAGE, installed_packages
from nrt_lab.legacy.paths import DEFAULT_ADDRESS, DEFAULT_CONFIG, NEURON_PREFIX, pid_file, real_to_root
from nrt_lab.legacy.server import LEGACY_RUNTIME_VERSION, Daemon, DaemonLog, Settings, add_services
from nrt_lab.runtime import OwnerIdentity, init

__all__ = ["CONFIG_MAX_BYTES", "MAX_CONCURRENT_RPCS", "DaemonConfig", "DaemonError", "bind_target", "instance_config", "load_config", "main"]

CONFIG_MAX_BYTES = 64 * 1024
MAX_CONCURRENT_RPCS = 256
_CONFIG_KEYS = {"name", "server_port", "devices", "init_config", "model_cache_count", "timeout", "ninfer",
                "log_level"}
_SUN_PATH_MAX = 107
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]", ""}


class DaemonError(Exception):
    """The daemon cannot start; the message says what was wrong and what is accepted."""


@dataclass(frozen=True)
class DaemonConfig:
    """What neuron-rtd.config or nrtd<inst>.json sets."""

    name: str = ""
    server_port: str = ""
    devices: tuple[int, ...] | None = None
    timeout_s: int = 2
    ninfer: int = 4
    log_level: int = 5


def instance_config(instance: str) -> str:
    """The real path of an instance's config (``-i 0`` → ``/opt/aws/neuron/config/nrtd0.json``)."""
    return str(NEURON_PREFIX / "config" / f"nrtd{instance}.json")


def _positive(path: str, key: str, value: object, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
        raise DaemonError(f"{path}: {key} is {value!r}; accepted: an integer from 1 to {high}")
    return value


def load_config(root: Path, real_path: str, *, required: bool) -> DaemonConfig:
    """Read and check a daemon config (JSON object, bounded size); a missing optional file gives the defaults."""
    path = real_to_root(root, real_path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        if required:
            raise DaemonError(f"config file {real_path} does not exist") from None
        return DaemonConfig()
    except OSError as exc:
        raise DaemonError(f"cannot read config file {real_path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise DaemonError(f"config file {real_path} is not a regular file")
        raw = f.read(CONFIG_MAX_BYTES + 1)
    if len(raw) > CONFIG_MAX_BYTES:
        raise DaemonError(f"config file {real_path} is larger than {CONFIG_MAX_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DaemonError(f"config file {real_path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DaemonError(f"config file {real_path} must hold a JSON object, e.g. "
                          '{"name":"nrtd0","server_port":"unix:/run/neuron.sock0","devices":[0]}')
    unknown = sorted(set(data) - _CONFIG_KEYS)
    if unknown:
        raise DaemonError(f"{real_path}: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(_CONFIG_KEYS))}")
    name = data.get("name", "")
    port = data.get("server_port", "")
    if not isinstance(name, str) or not isinstance(port, str):
        raise DaemonError(f"{real_path}: name and server_port must be strings")
    devices = data.get("devices")
    if devices is not None:
        if not isinstance(devices, list) or not devices or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices):
            raise DaemonError(f"{real_path}: devices is {devices!r}; accepted: a non-empty list of neuron-ls device "
                              "indexes, e.g. [0, 1]")
    init_config = data.get("init_config", {})
    if not isinstance(init_config, dict):
        raise DaemonError(f"{real_path}: init_config must be a JSON object")
    for key in ("model_cache_count",):
        if key in data:
            _positive(real_path, key, data[key], 1 << 16)
    timeout = _positive(real_path, "timeout", data.get("timeout", 2), 3600)
    ninfer = _positive(real_path, "ninfer", data.get("ninfer", 4), 1024)
    level = data.get("log_level", 5)
    if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 7:
        raise DaemonError(f"{real_path}: log_level is {level!r}; accepted: an integer from 0 to 7")
    return DaemonConfig(name, port, tuple(devices) if devices is not None else None, timeout, ninfer, level)


def bind_target(root: Path, address: str) -> tuple[str, Path | None]:
    """The grpc bind string for a real address (``unix:/run/neuron.sock`` → its socket in the state root) and the
    socket path (None for TCP). TCP binds loopback only."""
    if address.startswith("unix:"):
        real = address[len("unix:"):]
        if not real.startswith("/"):
            raise DaemonError(f"address {address!r} is invalid; accepted: unix:/absolute/path or 127.0.0.1:PORT")
        path = real_to_root(root, real)
        if len(os.fsencode(path)) > _SUN_PATH_MAX:
            raise DaemonError(f"socket path {path} is longer than the {_SUN_PATH_MAX} bytes a Unix socket allows; "
                              "use a shorter state root or address")
        return f"unix:{path}", path
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise DaemonError(f"address {address!r} is invalid; accepted: unix:/absolute/path or 127.0.0.1:PORT")
    if host not in _LOOPBACK:
        raise DaemonError(f"address {address!r}: the emulated daemon binds loopback only; accepted hosts: "
                          "127.0.0.1, localhost, [::1]")
    return f"{host or '127.0.0.1'}:{port}", None


def _devices_from_bdfs(instance: InstanceSpec, bdfs: Sequence[str]) -> tuple[int, ...]:
    chosen = []
    for bdf in bdfs:
        match = [d.index for d in instance.devices if d.bdf == bdf or d.bdf.endswith(bdf) and len(bdf) >= 7]
        if not match:
            known = ", ".join(d.bdf for d in instance.devices)
            raise DaemonError(f"-t {bdf}: no Neuron device at that PCI BDF; this machine has {known}")
        chosen.append(match[0])
    return tuple(sorted(set(chosen)))


def _cores_of(instance: InstanceSpec, devices: Sequence[int]) -> tuple[int, int]:
    count = len(instance.devices)
    bad = [d for d in devices if not 0 <= d < count]
    if bad:
        raise DaemonError(f"device(s) {bad} do not exist; accepted: 0 to {count - 1} (neuron-ls indexes)")
    ordered = sorted(set(devices))
    if ordered != list(range(ordered[0], ordered[-1] + 1)):
        raise DaemonError(f"devices {ordered} are not neighbours; a daemon manages a contiguous run of devices")
    first = instance.devices[ordered[0]]
    last = instance.devices[ordered[-1]]
    return first.first_core, last.first_core + last.core_count - 1


def _socket_alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(os.fspath(path))
        except OSError:
            return False
        return True


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="neuron-rtd", description="Neuron Runtime 1.x daemon (emulated by nrt_lab; "
                                "in maintenance since Neuron 1.16.0 — Runtime 2.x needs no daemon)")
    p.add_argument("-g", dest="address", metavar="ADDRESS", help="gRPC endpoint: unix:/path or 127.0.0.1:PORT "
                   f"(default: the config's server_port, else {DEFAULT_ADDRESS})")
    p.add_argument("-c", dest="config", metavar="CONFIG", help=f"config file (default {DEFAULT_CONFIG})")
    p.add_argument("-i", dest="instance", metavar="NAME", default="", help="instance name (selects nrtd<NAME>.json)")
    p.add_argument("-t", dest="bdfs", metavar="BDF", action="append", default=[], help="manage this PCI device")
    p.add_argument("-l", dest="level", metavar="LEVEL", type=int, default=None, choices=range(0, 8),
                   help="log level 0-7 (3 errors, 5 info, 6 debug, 7 trace; default: the config's log_level, else 5)")
    p.add_argument("-x", "--log-console", action="store_true", help="also log to the console")
    p.add_argument("-v", "--version", action="version", version=f"neuron-rtd {LEGACY_RUNTIME_VERSION}")
    return p


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT; 1 (with one error line) when it cannot start, 2 on bad usage."""
    args = _parser().parse_args(argv)
    environment = dict(os.environ if env is None else env)
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # grpc's own log lines; the daemon reports its errors itself
    argv_list = list(sys.argv[1:] if argv is None else argv)
    try:
        root = resolve_root(environment)
    except (StateError, ValueError) as exc:
        print(f"neuron-rtd: {exc}", file=sys.stderr)
        return 1
    log = DaemonLog(root / "log" / "syslog", console=args.log_console, level=5 if args.level is None else args.level)
    try:
        return _serve(args, argv_list, root, environment, log)
    except DaemonError as exc:
        log.log("NRTD", "main", f"error: {exc}", level=3)
        print(f"neuron-rtd: error: {exc}", file=sys.stderr)
        return 1


def _serve(args: argparse.Namespace, argv: list[str], root: Path, env: Mapping[str, str], log: DaemonLog) -> int:
    if args.config:
        config = load_config(root, args.config, required=True)
    elif args.instance:
        try:
            config = load_config(root, instance_config(args.instance), required=True)
        except DaemonError as exc:
            raise DaemonError(f"unknown instance {args.instance!r}: {exc} (write it or pass -c CONFIG)") from None
    else:
        config = load_config(root, str(DEFAULT_CONFIG), required=False)
    if args.level is None:
        log.level = config.log_level
    address = args.address or config.server_port or DEFAULT_ADDRESS
    target, sock = bind_target(root, address)
    try:
        machine = open_machine(root, env)
        state = machine.state()
        if machine.driver(state) is None:
            raise DaemonError("no Neuron driver: /dev/neuron* does not exist (install aws-neuron-dkms: "
                              "nrt-lab driver install)")
        instance = machine.instance()
    except StateError as exc:
        raise DaemonError(str(exc)) from None
    if args.bdfs:
        devices = _devices_from_bdfs(instance, args.bdfs)
    elif config.devices is not None:
        devices = config.devices
    else:
        devices = tuple(range(len(instance.devices)))
    first, last = _cores_of(instance, devices)
    if sock is not None and sock.exists():
        if _socket_alive(sock):
            raise DaemonError(f"address {address} is in use by another daemon")
        with contextlib.suppress(OSError):
            sock.unlink()
    # The version of the installed aws-neuron-runtime (a daemon keeps it until restarted, docs/legacy.md).
    try:
        version = installed_packages(root).get(RUNTIME_PACKAGE, LEGACY_RUNTIME_VERSION)
    except StateError as exc:
        raise DaemonError(str(exc)) from None
    owner = OwnerIdentity(
        command=command_line_of(["neuron-rtd", *argv]), runtime_version=version,
        extra={"kind": DAEMON_KIND, "address": address, "instance": args.instance},
    )
    runtime_env = {"NRT_LAB_ROOT": str(root), "NEURON_RT_VISIBLE_CORES": f"{first}-{last}",
                   "NEURON_RT_LOG_LEVEL": "ERROR", "NEURON_RT_LOG_LOCATION": "syslog",
                   "NEURON_RT_EXEC_TIMEOUT": str(max(config.timeout_s * 2, 5))}
    for key in ("NRT_LAB_BACKEND",):
        if key in env:
            runtime_env[key] = env[key]
    try:
        runtime = init(env=runtime_env, root=root, owner=owner)
    except NrtError as exc:
        holders = sorted({o.pid for o in machine.owners() if set(o.cores) & set(range(first, last + 1))})
        for pid in holders:
            log.log("TDRV", "ncdev_device_init", f"neuron:ncdev_device_init: device inuse by pid:{pid}", level=3)
        raise DaemonError(f"cannot claim devices {list(devices)}: {exc.message}") from None
    settings = Settings(timeout_s=config.timeout_s, ninfer=config.ninfer, address=address, instance=args.instance,
                        devices=tuple(devices), runtime_version=version)
    daemon = Daemon(runtime, settings, log)
    # A session holds one server thread for the client's life (session_monitor is a stream): many threads, and
    # calls beyond MAX_CONCURRENT_RPCS fail at once with RESOURCE_EXHAUSTED instead of queueing forever.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=MAX_CONCURRENT_RPCS + 8, thread_name_prefix="nrtd-rpc"),
                         maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
                         options=[("grpc.max_receive_message_length", 8 << 20),
                                  ("grpc.max_send_message_length", 64 << 20), ("grpc.so_reuseport", 0)])
    add_services(server, daemon)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    pidfile = pid_file(root, args.instance)
    started = False
    try:
        if sock is not None:
            sock.parent.mkdir(parents=True, exist_ok=True)
        try:
            port = server.add_insecure_port(target)
        except RuntimeError as exc:
            raise DaemonError(f"cannot listen on {address}: {exc}") from None
        if port == 0:
            raise DaemonError(f"cannot listen on {address} (in use or not permitted)")
        server.start()
        started = True
        log.log("NRTD", "RunServer", f"Server listening on {address}")
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        tmp = pidfile.with_name(pidfile.name + ".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, pidfile)
        stopping.wait()
        log.log("NRTD", "main", "Received termination signal, shutting down")
    finally:
        server.stop(grace=1.0).wait(5)
        daemon.shutdown()
        runtime.close()
        with contextlib.suppress(OSError):
            if pidfile.read_text().strip() == str(os.getpid()):
                pidfile.unlink()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.unlink()
        if started:
            log.log("NRTD", "main", "Server stopped, devices released")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
