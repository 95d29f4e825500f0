"""Start, stop and describe a local Ray cluster whose nodes are emulated Neuron machines (``nrt-lab cluster``).

Each node is a real Ray node (``ray start --block``: raylet, agents, workers) started in its own session with
``NRT_LAB_ROOT`` pointing at its own state root, so every task, actor and tool on it sees that machine. Its
``neuron_cores`` resource is what its ``neuron-ls --json-output`` reports, summed over devices as Ray's own
accelerator manager does (Ray reads only the fixed path ``/opt/aws/neuron/bin/neuron-ls``, which cannot differ
per node on one computer). Every Ray address is 127.0.0.1. What is started is recorded in ``cluster.json`` (each
process by pid *and* start time, so a recycled pid is never signalled); stopping a node signals exactly the
processes of its session. docs/cluster.md describes the layout, the ports Ray opens and the failure behaviour.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from nrt_lab.cluster.monitoring import write_monitoring_config
from nrt_lab.cluster.nodes import MAX_NODES, NAME_PATTERN, ClusterError, NodeSpec, parse_node_specs
from nrt_lab.driver import StateError, atomic_write_json, open_machine, read_state_json, resolve_root

__all__ = [
    "AUTH_MODE_VARIABLE",
    "CLUSTER_AUTH_MODE",
    "CLUSTER_DIR_VARIABLE",
    "NODE_LABEL",
    "INSTANCE_LABEL",
    "ClusterInfo",
    "NodeInfo",
    "ListeningSocket",
    "default_cluster_dir",
    "up",
    "down",
    "read_cluster",
    "stop_node",
    "start_node",
    "connect",
    "listening_sockets",
]

CLUSTER_DIR_VARIABLE = "NRT_LAB_CLUSTER_DIR"
NODE_LABEL = "nrt-lab.io/node"
INSTANCE_LABEL = "nrt-lab.io/instance"
AUTH_MODE_VARIABLE = "RAY_AUTH_MODE"
CLUSTER_AUTH_MODE = "disabled"  # why: _RAY_ENV below
_STATE_FILE = "cluster.json"
_NODE_NAME = NAME_PATTERN
_STATE_VERSION = 1
_STARTED = "Ray runtime started."
# Per node: Ray's object store (shared memory); small, since emulated models move kilobytes to megabytes.
_OBJECT_STORE_BYTES = 200 * 1024 * 1024
# Environment of every Ray process of the cluster. Workers start on demand only (Ray would otherwise start one
# per logical CPU of every node when a driver connects), no usage reporting, and a node that stops answering is
# declared dead within ~5 s instead of ~30 s, so the failure demos and tests don't wait.
_RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    # Token authentication off, explicitly: left unset, Ray turns it on for a head (and not for the nodes that
    # join it) as soon as ~/.ray/auth_token exists, which any earlier local `ray.init()` creates. Every address
    # of these clusters is loopback (docs/cluster.md).
    AUTH_MODE_VARIABLE: CLUSTER_AUTH_MODE,
    "RAY_enable_worker_prestart": "0",
    "RAY_prestart_worker_first_driver": "0",
    "RAY_health_check_initial_delay_ms": "0",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "5",
}
_STOP_GRACE_S = 10.0  # a node's raylet, agents and workers: they exit in 1-2 s
_HEAD_GRACE_S = 2.0


@dataclass(frozen=True)
class NodeInfo:
    """One emulated machine of the cluster as it is now."""

    name: str
    instance: str
    lnc: int
    root: Path  # the node's NRT_LAB_ROOT
    neuron_cores: int
    cpus: int  # logical CPUs the Ray node offers
    ray_node_id: str  # hex; "" while the node is stopped
    running: bool
    exporter_url: str | None  # its Prometheus /metrics, None without exporters or while stopped


@dataclass(frozen=True)
class ClusterInfo:
    """A cluster as recorded in its directory, with liveness checked now."""

    directory: Path
    address: str  # the GCS, for ray.init(address=...)
    dashboard_url: str
    head_running: bool
    nodes: tuple[NodeInfo, ...]
    prometheus_config: Path | None

    def node(self, name: str) -> NodeInfo:
        """The node called ``name`` (ClusterError naming the existing ones otherwise)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise ClusterError(f"no node {name!r} in the cluster at {self.directory} (nodes: "
                           f"{', '.join(n.name for n in self.nodes)})")


@dataclass(frozen=True)
class ListeningSocket:
    """A TCP port a process of the cluster listens on."""

    node: str  # "head" or the node name
    pid: int
    process: str
    address: str
    port: int

    @property
    def loopback(self) -> bool:
        """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback: not reachable from another machine."""
        host = self.address.removeprefix("::ffff:")
        return host.startswith("127.") or host == "::1"


# ------------------------------------------------------------------------------------------------- directory


def default_cluster_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$NRT_LAB_CLUSTER_DIR``, else ``<state root>-cluster`` beside the default state root."""
    env = os.environ if env is None else env
    explicit = env.get(CLUSTER_DIR_VARIABLE, "")
    if explicit:
        if "\0" in explicit or len(explicit) > 1024:
            raise ClusterError(f"{CLUSTER_DIR_VARIABLE} is not a usable path (NUL or over 1024 characters)")
        return Path(explicit).expanduser().absolute()
    root = resolve_root(env)
    return root.with_name(root.name + "-cluster")


def _directory(directory: Path | str | None) -> Path:
    return default_cluster_dir() if directory is None else Path(directory).expanduser().absolute()


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One cluster command at a time per directory (up, down, stop-node, start-node change cluster.json)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read_state(directory: Path) -> dict[str, Any] | None:
    try:
        state = read_state_json(directory / _STATE_FILE, "cluster record",
                                f"; remove {directory} after stopping the processes its logs/ name")
    except StateError as exc:
        raise ClusterError(str(exc)) from None
    if state is None:
        return None
    problem = _state_problem(state, directory)
    if problem:
        raise ClusterError(f"{directory / _STATE_FILE} is not a cluster record of this nrt_lab version ({problem}); "
                           f"stop the processes its logs/ name, then remove {directory}")
    return state


def _state_problem(state: Any, directory: Path) -> str:
    """What is wrong with a cluster record read from disk ("" when nothing): every field the launcher uses is
    checked here, so a damaged or hand-edited file is one ClusterError, never a KeyError or TypeError later."""

    def port(value: Any) -> bool:
        return type(value) is int and 1 <= value <= 65535

    def process(value: Any) -> bool:
        return value is None or (isinstance(value, dict) and type(value.get("pid")) is int
                                 and type(value.get("started")) in (int, float))

    def count(value: Any) -> bool:
        return type(value) is int and 0 <= value <= 1 << 20

    if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
        return f"version is not {_STATE_VERSION}"
    if state.get("directory") != str(directory):
        return f"it describes {str(state.get('directory'))[:200]!r}, not this directory"
    if not all(port(state.get(key)) for key in ("gcs_port", "dashboard_port", "client_port")):
        return "gcs_port, dashboard_port and client_port must be ports"
    if not isinstance(state.get("temp_dir"), str) or not isinstance(state.get("exporters"), bool):
        return "temp_dir must be a string and exporters a boolean"
    if state.get("prometheus_config") is not None and not isinstance(state.get("prometheus_config"), str):
        return "prometheus_config must be a path or null"
    head = state.get("head")
    if not isinstance(head, dict) or not process(head.get("process")) or not isinstance(head.get("ports"), dict) \
            or not all(port(head["ports"].get(k)) for k in ("agent", "metrics")):
        return "head must hold its process and its agent and metrics ports"
    nodes = state.get("nodes")
    if not isinstance(nodes, list) or not 1 <= len(nodes) <= MAX_NODES:
        return f"nodes must be a list of 1 to {MAX_NODES} nodes"
    for node in nodes:
        if not isinstance(node, dict) or not isinstance(node.get("name"), str) or not _NODE_NAME.fullmatch(node["name"]):
            return "every node needs a valid name"
        name = node["name"]
        if node.get("root") != str(_node_root(directory, name)):
            return f"node {name}'s root is not {_node_root(directory, name)}"
        if not isinstance(node.get("instance"), str) or not all(count(node.get(k)) for k in ("lnc", "cpus",
                                                                                             "neuron_cores")):
            return f"node {name} needs instance, lnc, cpus and neuron_cores"
        if not process(node.get("process")) or not process(node.get("exporter")) \
                or not isinstance(node.get("ray_node_id", ""), str):
            return f"node {name}'s process records are not pid and start time"
        ports = node.get("ports")
        if not isinstance(ports, dict) or not all(port(ports.get(k)) for k in ("agent", "metrics", "exporter")):
            return f"node {name} needs its agent, metrics and exporter ports"
    if len({node["name"] for node in nodes}) != len(nodes):
        return "node names repeat"
    return ""


def _write_state(directory: Path, state: dict[str, Any]) -> None:
    atomic_write_json(directory / _STATE_FILE, state, pretty=True)


def _node_root(directory: Path, name: str) -> Path:
    return directory / "nodes" / name


# ------------------------------------------------------------------------------------------------- processes

# Popen objects of the processes this Python process started, so that they are reaped (not left as zombies that
# would look alive) when they exit.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _alive(record: Mapping[str, Any] | None) -> bool:
    """Whether the recorded process (pid and start time) still runs; a recycled pid or a zombie is not it."""
    if not record or not isinstance(record.get("pid"), int) or record["pid"] <= 0:
        return False
    pid = record["pid"]
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]
        return False
    try:
        process = psutil.Process(pid)
        same: bool = abs(process.create_time() - float(record.get("started", -1))) < 0.05
        return same and bool(process.status() != psutil.STATUS_ZOMBIE)
    except (psutil.Error, ValueError, TypeError):
        return False


def _launch(command: list[str], env: Mapping[str, str], log: Path, stdin: int | None = None) -> dict[str, Any]:
    """Start ``command`` as the leader of a new session (its children stay in it); its pid and start time."""
    with open(log, "ab") as out:
        offset = out.seek(0, os.SEEK_END)
        child = subprocess.Popen(command, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL if stdin is None else stdin, start_new_session=True,
                                 close_fds=True)
    _CHILDREN[child.pid] = child
    try:
        started = psutil.Process(child.pid).create_time()
    except psutil.Error:
        started = -1.0
    return {"pid": child.pid, "started": started, "log_offset": offset}


def _session_members(record: Mapping[str, Any]) -> list[psutil.Process]:
    """Every process of the recorded leader's session (the leader first), if the leader is still itself."""
    if not _alive(record):
        return []
    with contextlib.suppress(OSError):
        if os.getsid(record["pid"]) == record["pid"]:  # what _launch starts leads its own session
            return _members_of_session(record["pid"])
    return []


def _members_of_session(sid: int) -> list[psutil.Process]:
    """Every process whose session id is ``sid`` (the leader, if alive, first)."""
    members: list[psutil.Process] = []
    for process in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getsid(process.pid) == sid:
                members.append(process)
    return sorted(members, key=lambda p: p.pid != sid)


def _stop_sessions(records: Sequence[Mapping[str, Any] | None], kill: bool, grace_s: float = _STOP_GRACE_S) -> None:
    """Stop every process of these sessions: SIGKILL at once (``kill``), or SIGTERM to every member but the
    session leaders, SIGKILL to what is left after ``grace_s`` and then to the leaders.

    The leaders are ``ray start --block`` supervisors (or the exporter's shell): on SIGTERM Ray's supervisor stops
    its children one by one, waiting for each, which made ``down`` take ~15 s; signalled directly, the raylet
    stops its workers and the agents exit within about a second, and the supervisor has nothing left to do.
    Every process of a session is found by its session id, so nothing started under it is left behind.
    """
    groups = [_session_members(record or {}) for record in records]
    sids = [members[0].pid for members in groups if members]
    leaders = [members[0] for members in groups if members]
    others = [p for members in groups for p in members[1:]]
    if kill:
        others, leaders = others + leaders, []
        for process in others:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(others, timeout=2.0)
    else:
        for process in others:
            with contextlib.suppress(psutil.Error):
                process.terminate()
        _gone, lingering = psutil.wait_procs(others, timeout=grace_s)
        for process in lingering + leaders:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(lingering + leaders, timeout=5.0)
    # Anything the session started meanwhile (a worker being spawned) goes too.
    # (Checked by session id: the leaders are gone, and a new process only gets that session id by calling
    # setsid() with a recycled pid, which does not happen within these few seconds.)
    stragglers = [p for sid in sids for p in _members_of_session(sid)]
    for process in stragglers:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(stragglers, timeout=5.0)
    for record in records:
        if record and isinstance(record.get("pid"), int):
            child = _CHILDREN.pop(record["pid"], None)
            if child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=5.0)


def _tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_bytes()[-4000:].decode("utf-8", "replace")
    except OSError:
        return "(no output)"
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(kept) or "(no output)"


def _wait_started(record: Mapping[str, Any], log: Path, what: str, deadline: float) -> None:
    """Wait until ``ray start`` says the runtime started; ClusterError with its last lines if it died or hung.

    Only what this start wrote counts (the log is appended to: a node started again has the old message)."""
    offset = int(record.get("log_offset", 0))
    while time.monotonic() < deadline:
        if not _alive(record):
            raise ClusterError(f"{what} exited while starting; last lines of {log}:\n{_tail(log)}")
        with contextlib.suppress(OSError):
            with open(log, "rb") as out:
                out.seek(offset)
                if _STARTED.encode() in out.read():
                    return
        time.sleep(0.2)
    raise ClusterError(f"{what} did not start in time; last lines of {log}:\n{_tail(log)}")


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (held together while picked, so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _bin_dir() -> Path:
    return Path(sys.executable).parent


def _executable(name: str) -> str:
    """A console script beside this Python (the venv's), else on PATH."""
    candidate = _bin_dir() / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ClusterError(f"{name!r} is not installed beside {sys.executable} nor on PATH")
    return found


def _require_ray() -> str:
    if importlib.util.find_spec("ray") is None:
        raise ClusterError("Ray is not installed: pip install 'nrt_lab[cluster]' (ray[default,data,serve])")
    return _executable("ray")


def _base_env() -> dict[str, str]:
    """The environment of the cluster's processes: ours, minus the NEURON_RT_* and NRT_LAB_ROOT of this shell
    (a node must see all of its own machine), with this venv's scripts first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEURON_RT_") and k != "NRT_LAB_ROOT"}
    env.update(_RAY_ENV)
    env["PATH"] = os.pathsep.join([str(_bin_dir()), env.get("PATH", "")])
    return env


def _count_neuron_cores(root: Path, env: Mapping[str, str]) -> int:
    """The node's NeuronCores as Ray's detector counts them: ``neuron-ls --json-output``, nc_count summed."""
    result = subprocess.run([_executable("neuron-ls"), "--json-output"], env={**env, "NRT_LAB_ROOT": str(root)},
                            capture_output=True, timeout=60, check=False)
    try:
        devices = json.loads(result.stdout) if result.returncode == 0 else None
        total = sum(int(device.get("nc_count", 0)) for device in devices) if isinstance(devices, list) else -1
    except (ValueError, TypeError, AttributeError):
        total = -1
    if total <= 0:
        raise ClusterError(f"neuron-ls --json-output found no NeuronCores on {root}: "
                           f"{result.stderr.decode('utf-8', 'replace').strip() or result.stdout[:200]!r}")
    return total


# ------------------------------------------------------------------------------------------------- Ray nodes


def _head_command(ray: str, state: Mapping[str, Any]) -> list[str]:
    ports = state["head"]["ports"]
    return [ray, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={state['gcs_port']}",
            "--num-cpus=0", "--num-gpus=0", '--resources={"neuron_cores": 0}', f"--temp-dir={state['temp_dir']}",
            "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={state['dashboard_port']}",
            f"--ray-client-server-port={state['client_port']}", f"--dashboard-agent-listen-port={ports['agent']}",
            f"--metrics-export-port={ports['metrics']}", "--min-worker-port=0", "--max-worker-port=0",
            f"--object-store-memory={_OBJECT_STORE_BYTES}", "--disable-usage-stats", f"--labels={NODE_LABEL}=head"]


def _node_command(ray: str, state: Mapping[str, Any], node: Mapping[str, Any]) -> list[str]:
    ports = node["ports"]
    return [ray, "start", "--block", f"--address=127.0.0.1:{state['gcs_port']}", "--node-ip-address=127.0.0.1",
            f"--num-cpus={node['cpus']}", "--num-gpus=0",
            "--resources=" + json.dumps({"neuron_cores": node["neuron_cores"]}),
            f"--labels={NODE_LABEL}={node['name']},{INSTANCE_LABEL}={node['instance']}",
            f"--dashboard-agent-listen-port={ports['agent']}", f"--metrics-export-port={ports['metrics']}",
            "--min-worker-port=0", "--max-worker-port=0", f"--object-store-memory={_OBJECT_STORE_BYTES}",
            "--disable-usage-stats"]


def _registered_nodes(state: Mapping[str, Any], timeout_s: float = 10.0) -> dict[str, str]:
    """Alive Ray nodes by their nrt-lab node label (asked through the dashboard's state API: no driver needed)."""
    from ray.util.state import list_nodes

    url = f"http://127.0.0.1:{state['dashboard_port']}"
    nodes = list_nodes(address=url, filters=[("state", "=", "ALIVE")], limit=1000,
                       timeout=max(1, int(timeout_s)), raise_on_missing_output=False)
    return {str(n.labels.get(NODE_LABEL)): n.node_id for n in nodes if n.labels and NODE_LABEL in n.labels}


def _wait_registered(state: dict[str, Any], names: Sequence[str], deadline: float) -> None:
    """Wait until every named node is alive in Ray; record its Ray node id."""
    last_error = ""
    registered: dict[str, str] = {}
    while time.monotonic() < deadline:
        try:
            registered = _registered_nodes(state)
        except Exception as exc:  # noqa: BLE001 - the dashboard may still be starting: retried until the deadline
            registered, last_error = {}, f"{type(exc).__name__}: {exc}"
        if all(name in registered for name in names):
            for node in state["nodes"]:
                if node["name"] in names:
                    node["ray_node_id"] = registered[node["name"]]
            return
        for node in state["nodes"]:
            if node["name"] in names and not _alive(node.get("process")):
                log = state_log(state, node["name"])
                raise ClusterError(f"node {node['name']} exited while joining; last lines of {log}:\n{_tail(log)}")
        time.sleep(0.3)
    missing = [n for n in names if n not in registered]  # as of the last answer
    raise ClusterError(f"nodes {', '.join(missing)} did not register with the Ray head in time"
                       + (f" (last error: {last_error})" if last_error else ""))


def state_log(state: Mapping[str, Any], name: str) -> Path:
    """Where ``ray start`` of ``name`` ("head" or a node) writes its output."""
    return Path(state["directory"]) / "logs" / f"{name}.log"


def _start_exporter(state: Mapping[str, Any], node: dict[str, Any], env: Mapping[str, str]) -> None:
    """``neuron-monitor | neuron-monitor-prometheus`` for one node, on its own loopback port, in one session."""
    node["ports"]["exporter"] = _free_ports(1)[0]
    pipeline = (f"exec {_shell_quote(_executable('neuron-monitor'))} | "
                f"{_shell_quote(_executable('neuron-monitor-prometheus'))} --host 127.0.0.1 -p {node['ports']['exporter']}")
    node["exporter"] = _launch(["/bin/sh", "-c", pipeline], {**env, "NRT_LAB_ROOT": node["root"]},
                               state_log(state, f"{node['name']}-exporter"))


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _start_node(ray: str, state: dict[str, Any], node: dict[str, Any], env: Mapping[str, str]) -> None:
    # Ports are picked right before each start (and again for a retry or a restart): picked once at `up`, a port
    # can be taken by another process while earlier nodes start, and Ray's agent then dies with the raylet.
    node["ports"]["agent"], node["ports"]["metrics"] = _free_ports(2)
    node["process"] = _launch(_node_command(ray, state, node), {**env, "NRT_LAB_ROOT": node["root"]},
                              state_log(state, node["name"]))
    node["ray_node_id"] = ""


def _start_node_patiently(ray: str, state: dict[str, Any], node: dict[str, Any], env: Mapping[str, str],
                          deadline: float) -> None:
    """Start a node and wait for ``ray start`` to report it started; once more if it gave up (Ray waits a fixed
    30 s for its raylet to register, which a machine busy with other nodes' start-up can exceed)."""
    for attempt in (1, 2):
        _start_node(ray, state, node, env)
        try:
            _wait_started(node["process"], state_log(state, node["name"]), f"node {node['name']}", deadline)
            return
        except ClusterError:
            _stop_sessions([node["process"]], kill=True)
            if attempt == 2 or time.monotonic() >= deadline:
                raise


# ------------------------------------------------------------------------------------------------- public API


def up(
    specs: Sequence[str | NodeSpec],
    directory: Path | str | None = None,
    *,
    cpus_per_node: int = 8,
    exporters: bool = True,
    timeout_s: float = 180.0,
    stop_at_exit: bool = False,
) -> ClusterInfo:
    """Start a Ray head and one Ray node per emulated machine; returns the cluster once every node is alive.

    ``specs`` are ``[NAME=]INSTANCE[:lncN]`` texts or NodeSpecs. Refused while a cluster runs in ``directory``;
    on failure everything started so far is stopped again. ``stop_at_exit``: this Python process brings the
    cluster down when it exits (a notebook kernel that is shut down, or a script that fails half-way), unless it
    was brought down already.
    """
    nodes = [s for s in specs if isinstance(s, NodeSpec)]
    if len(nodes) != len(specs):
        nodes = parse_node_specs([s.text if isinstance(s, NodeSpec) else s for s in specs])
    if isinstance(cpus_per_node, bool) or not isinstance(cpus_per_node, int) or not 1 <= cpus_per_node <= 1024:
        raise ClusterError(f"cpus per node {cpus_per_node!r} is not accepted (accepted: 1 to 1024)")
    ray = _require_ray()
    where = _directory(directory)
    with _locked(where):
        previous = _read_state(where)
        if previous is not None:
            if _alive(previous.get("head")):
                raise ClusterError(f"a cluster is already up in {where} (head pid {previous['head']['pid']}); "
                                   "run `nrt-lab cluster down` first")
            _stop_everything(previous, kill=True)  # leftovers of a cluster whose head died
            _remove_cluster_files(where, previous)
        state = _new_state(where, nodes, cpus_per_node, exporters)
        _remove_ray_temp(state)  # what a failed start left for reading
        shutil.rmtree(where / "logs", ignore_errors=True)
        env = _base_env()
        deadline = time.monotonic() + timeout_s
        try:
            for node in state["nodes"]:
                open_machine(node["root"]).create(node["instance"], node["lnc"])
                node["neuron_cores"] = _count_neuron_cores(Path(node["root"]), env)
            Path(state["temp_dir"]).mkdir(mode=0o700, parents=True, exist_ok=True)
            (where / "logs").mkdir(mode=0o700, exist_ok=True)
            head_env = {**env, "AUTOSCALER_METRIC_PORT": str(state["head"]["ports"]["autoscaler_metrics"]),
                        "DASHBOARD_METRIC_PORT": str(state["head"]["ports"]["dashboard_metrics"])}
            state["head"]["process"] = _launch(_head_command(ray, state), head_env, state_log(state, "head"))
            _write_state(where, state)  # from here on `down` can always clean up
            _wait_started(state["head"]["process"], state_log(state, "head"), "the Ray head", deadline)
            for node in state["nodes"]:  # one at a time: Ray gives a raylet 30 s to register, a busy CPU may not
                _start_node_patiently(ray, state, node, env, deadline)
                _write_state(where, state)
            _wait_registered(state, [n["name"] for n in state["nodes"]], deadline)
            if exporters:
                for node in state["nodes"]:
                    _start_exporter(state, node, env)
            state["prometheus_config"] = str(write_monitoring_config(where, state)) if exporters else None
            _write_state(where, state)
        except BaseException:
            _stop_everything(state, kill=True)
            _remove_cluster_files(where, state, keep_logs=True)  # logs/ and Ray's temp dir say what went wrong
            raise
        if stop_at_exit:
            _watch_creator(where, state["head"]["process"])
        return _info(state)


def _watch_creator(where: Path, head: Mapping[str, Any]) -> None:
    """Start a small watcher that brings the cluster down once this process has exited in any way (a kernel
    killed by its notebook server included, where no atexit handler would run)."""
    me = psutil.Process()
    command = [sys.executable, "-m", "nrt_lab.cluster.launcher", "--down-when-gone", str(me.pid),
               repr(me.create_time()), str(where), str(head["pid"])]
    with open(Path(where) / "logs" / "watcher.log", "ab") as log:
        subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                         start_new_session=True, close_fds=True)


def _down_when_gone(creator_pid: int, creator_started: float, where: Path, head_pid: int) -> int:
    """Wait for the creator to exit, then ``down`` the cluster if its head is still the one it started."""
    creator = {"pid": creator_pid, "started": creator_started}
    while _alive(creator):
        time.sleep(1.0)
    with contextlib.suppress(ClusterError):
        state = _read_state(where)
        recorded = state.get("head", {}).get("process") if state else None
        if recorded and recorded.get("pid") == head_pid and _alive(recorded):
            down(where)
    return 0


def _new_state(where: Path, nodes: Sequence[NodeSpec], cpus: int, exporters: bool) -> dict[str, Any]:
    ports = _free_ports(7 + 3 * len(nodes))
    digest = hashlib.sha1(str(where).encode()).hexdigest()[:8]
    # Ray's Unix sockets live under its temp dir: a short path keeps them under the 107-byte limit.
    temp_dir = Path(tempfile.gettempdir()) / f"nrt-lab-ray-{os.getuid()}-{digest}"
    return {
        "version": _STATE_VERSION,
        "directory": str(where),
        "gcs_port": ports[0],
        "dashboard_port": ports[1],
        "client_port": ports[2],
        "temp_dir": str(temp_dir),
        "exporters": exporters,
        # Ray's autoscaler and dashboard serve their own metrics on fixed ports (44217, 44227) unless told
        # otherwise: two clusters on one machine would collide there.
        "head": {"ports": {"agent": ports[3], "metrics": ports[4], "autoscaler_metrics": ports[5],
                           "dashboard_metrics": ports[6]}, "process": None},
        "nodes": [
            {
                "name": spec.name,
                "instance": spec.instance,
                "lnc": spec.lnc,
                "root": str(_node_root(where, spec.name)),
                "cpus": cpus,
                "neuron_cores": 0,
                "ports": {"agent": ports[7 + 3 * i], "metrics": ports[8 + 3 * i], "exporter": ports[9 + 3 * i]},
                "process": None,
                "exporter": None,
                "ray_node_id": "",
            }
            for i, spec in enumerate(nodes)
        ],
        "prometheus_config": None,
    }


def _stop_everything(state: Mapping[str, Any], kill: bool) -> None:
    """Nodes and exporters first (so no task is rescheduled onto a node about to stop), then the head."""
    nodes = [n for n in state.get("nodes", []) if isinstance(n, dict)]
    _stop_sessions([n.get("exporter") for n in nodes] + [n.get("process") for n in nodes], kill)
    head = state.get("head")
    # With the nodes gone the head keeps nothing worth a long goodbye (the GCS has no persistent storage here):
    # its GCS server can ignore SIGTERM for over 10 s, so its grace is short.
    _stop_sessions([head.get("process") if isinstance(head, dict) else None], kill, grace_s=_HEAD_GRACE_S)


def _remove_cluster_files(where: Path, state: Mapping[str, Any], keep_logs: bool = False) -> None:
    """Remove what a cluster wrote: Ray's temp dir (only one of ours) and the cluster directory's contents."""
    if not keep_logs:
        _remove_ray_temp(state)
    for name in (_STATE_FILE, "nodes", "prometheus", "grafana") + (() if keep_logs else ("logs",)):
        path = where / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _remove_ray_temp(state: Mapping[str, Any]) -> None:
    temp = Path(str(state.get("temp_dir", "")))
    if temp.name.startswith("nrt-lab-ray-") and temp.parent == Path(tempfile.gettempdir()):
        shutil.rmtree(temp, ignore_errors=True)


def _info(state: Mapping[str, Any]) -> ClusterInfo:
    nodes = []
    for node in state["nodes"]:
        running = _alive(node.get("process"))
        exporter_up = bool(state.get("exporters")) and running and _alive(node.get("exporter"))
        nodes.append(NodeInfo(
            name=node["name"], instance=node["instance"], lnc=node["lnc"], root=Path(node["root"]),
            neuron_cores=node["neuron_cores"], cpus=node["cpus"],
            ray_node_id=node.get("ray_node_id", "") if running else "", running=running,
            exporter_url=f"http://127.0.0.1:{node['ports']['exporter']}/metrics" if exporter_up else None,
        ))
    config = state.get("prometheus_config")
    return ClusterInfo(
        directory=Path(state["directory"]),
        address=f"127.0.0.1:{state['gcs_port']}",
        dashboard_url=f"http://127.0.0.1:{state['dashboard_port']}",
        head_running=_alive(state["head"].get("process")),
        nodes=tuple(nodes),
        prometheus_config=Path(config) if config else None,
    )


def read_cluster(directory: Path | str | None = None) -> ClusterInfo:
    """The cluster recorded in ``directory`` (default: default_cluster_dir()), liveness checked now."""
    where = _directory(directory)
    state = _read_state(where)
    if state is None:
        raise ClusterError(f"no cluster in {where}; start one with `nrt-lab cluster up --node trn1.32xlarge`")
    return _info(state)


def down(directory: Path | str | None = None) -> ClusterInfo:
    """Stop every process of the cluster (nodes, exporters, head) and remove its files; what was stopped."""
    where = _directory(directory)
    if not (where / _STATE_FILE).exists():  # before locking, which would create the directory
        raise ClusterError(f"no cluster in {where}; nothing to stop")
    with _locked(where):
        state = _read_state(where)
        if state is None:
            raise ClusterError(f"no cluster in {where}; nothing to stop")
        info = _info(state)
        _disconnect_if_connected(info.address)
        _stop_everything(state, kill=False)
        _remove_cluster_files(where, state)
        return info


def stop_node(name: str, directory: Path | str | None = None, *, kill: bool = False) -> NodeInfo:
    """Stop one node (its raylet, agents, workers and exporter): SIGTERM then SIGKILL, or SIGKILL at once
    (``kill``: the node vanishes as on a hardware failure). Its Ray tasks fail as Ray reports a dead node."""
    where = _directory(directory)
    _require_state(where)  # before locking, which would create the directory
    with _locked(where):
        state = _require_state(where)
        node = _node_record(state, name)
        if not _alive(node.get("process")):
            raise ClusterError(f"node {name} is not running; `nrt-lab cluster start-node {name}` starts it")
        _stop_sessions([node.get("exporter"), node.get("process")], kill)
        node["process"], node["exporter"], node["ray_node_id"] = None, None, ""
        _write_state(where, state)
        return _info(state).node(name)


def start_node(name: str, directory: Path | str | None = None, *, timeout_s: float = 120.0) -> NodeInfo:
    """Start a stopped node again on the same machine state (a new Ray node id; its cores free again)."""
    ray = _require_ray()
    where = _directory(directory)
    _require_state(where)  # before locking, which would create the directory
    with _locked(where):
        state = _require_state(where)
        node = _node_record(state, name)
        if _alive(node.get("process")):
            raise ClusterError(f"node {name} is already running")
        if not _alive(state["head"].get("process")):
            raise ClusterError(f"the Ray head of {where} is not running; `nrt-lab cluster down` then `up`")
        env = _base_env()
        deadline = time.monotonic() + timeout_s
        try:
            _start_node_patiently(ray, state, node, env, deadline)
            _write_state(where, state)
            _wait_registered(state, [name], deadline)
        except BaseException:
            _stop_sessions([node.get("process")], kill=True)
            node["process"] = None
            _write_state(where, state)
            raise
        if state.get("exporters"):
            _start_exporter(state, node, env)
        _write_state(where, state)
        return _info(state).node(name)


def _require_state(where: Path) -> dict[str, Any]:
    state = _read_state(where)
    if state is None:
        raise ClusterError(f"no cluster in {where}; start one with `nrt-lab cluster up --node trn1.32xlarge`")
    return state


def _node_record(state: Mapping[str, Any], name: str) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = state["nodes"]
    for node in nodes:
        if node["name"] == name:
            return node
    raise ClusterError(f"no node {name!r} in the cluster (nodes: {', '.join(n['name'] for n in state['nodes'])})")


def _disconnect_if_connected(address: str) -> None:
    """A driver of this process connected to a cluster that is going away disconnects first (else Ray's
    background threads log reconnection errors until the kernel restarts)."""
    if os.environ.get("RAY_ADDRESS") == address:
        del os.environ["RAY_ADDRESS"]
    if "ray" not in sys.modules:
        return
    import ray

    if ray.is_initialized():
        with contextlib.suppress(Exception):
            if ray.get_runtime_context().gcs_address == address:
                ray.shutdown()


def connect(directory: Path | str | None = None, **init_options: Any) -> ClusterInfo:
    """Make this process a Ray driver of the cluster (``ray.init`` on its loopback address); the cluster.

    Already connected to it: nothing happens. Connected elsewhere: disconnects first. ``init_options`` go to
    ``ray.init`` (e.g. ``runtime_env``, ``namespace``).
    """
    info = read_cluster(directory)
    if not info.head_running:
        raise ClusterError(f"the Ray head of {info.directory} is not running; `nrt-lab cluster down` then `up`")
    _require_ray()
    import ray

    if ray.is_initialized():
        if ray.get_runtime_context().gcs_address == info.address:
            return info
        ray.shutdown()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ[AUTH_MODE_VARIABLE] = CLUSTER_AUTH_MODE  # as the cluster's processes have it
    options: dict[str, Any] = {"logging_level": "WARNING", "configure_logging": True}
    options.update(init_options)
    ray.init(address=info.address, _node_ip_address="127.0.0.1", **options)
    # Ray's state API and CLI called without an address look for every Ray on the computer and refuse when
    # there are several; with RAY_ADDRESS they use this driver's cluster.
    os.environ["RAY_ADDRESS"] = info.address
    return info


def listening_sockets(directory: Path | str | None = None) -> list[ListeningSocket]:
    """Every TCP port the cluster's processes listen on (what Ray opens), by node."""
    state = _require_state(_directory(directory))
    owners: list[tuple[str, Mapping[str, Any] | None]] = [("head", state["head"].get("process"))]
    owners += [(n["name"], n.get("process")) for n in state["nodes"]]
    owners += [(n["name"], n.get("exporter")) for n in state["nodes"]]
    found: list[ListeningSocket] = []
    for node, record in owners:
        for process in _session_members(record or {}):
            with contextlib.suppress(psutil.Error):
                name = process.name()
                for conn in process.net_connections(kind="inet"):
                    if conn.status == psutil.CONN_LISTEN and conn.laddr:
                        found.append(ListeningSocket(node, process.pid, name, conn.laddr.ip, conn.laddr.port))
    return sorted(found, key=lambda s: (s.node != "head", s.node, s.port))


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "--down-when-gone":
    sys.exit(_down_when_gone(int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5])))
