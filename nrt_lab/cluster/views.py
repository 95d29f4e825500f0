"""Cluster-wide views of the emulated Neuron nodes, read through Ray itself (docs/cluster-views.md).

:class:`ClusterMonitor` asks every running node's own :class:`nrt_lab.monitor.Monitor` for a compact summary,
through one detached, named Ray actor per node (namespace ``nrt_lab``, name ``nrt_lab.monitor.<node>``, 0 CPUs,
pinned to its node with a hard ``NodeAffinitySchedulingStrategy``). The actor runs inside the node, so it sees
that node's state root (``NRT_LAB_ROOT`` of the node's raylet) exactly as the node's tasks and actors do.
All nodes are asked at once and waited for with one bounded timeout: a dead, stopped or slow node becomes a
:class:`NodeView` whose ``state`` says so and whose ``reason`` says why, never a hang or an exception.

Each owner process is labelled with what Ray knows of it (``ray.util.state``: the actor, or the task, its job),
cached per (node, pid, start time); tasks and actors Ray cannot place yet are listed as :class:`PendingDemand`
with their resource demands and why they wait (no node is big enough, or the nodes that are big enough are busy).

The pure half (:func:`summarize`, :func:`snapshot_from_dict`, :meth:`ClusterSnapshot.to_dict`) needs no Ray:
``neuron-ls --cluster -j`` prints ``to_dict()``, golden tests render fixture snapshots.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import os
import secrets
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nrt_lab.cluster.launcher import (
    AUTH_MODE_VARIABLE,
    CLUSTER_AUTH_MODE,
    INSTANCE_LABEL,
    NODE_LABEL,
    ClusterInfo,
    connect,
    read_cluster,
)
from nrt_lab.cluster.nodes import ClusterError
from nrt_lab.hardware import CatalogueError, InstanceSpec, get_instance
from nrt_lab.monitor import (
    SYSTEM_CLOCK,
    Clock,
    MachineSnapshot,
    Monitor,
    format_core_ranges,
    machine_view_cores,
)

__all__ = [
    "ACTOR_NAMESPACE",
    "ACTOR_PREFIX",
    "NODE_STATES",
    "SUMMARY_VERSION",
    "ClusterMonitor",
    "ClusterSnapshot",
    "connect_driver",
    "DeviceView",
    "NodeMonitorActor",
    "NodeView",
    "OwnerEntry",
    "PendingDemand",
    "RayOwner",
    "snapshot_from_dict",
    "summarize",
    "why_pending",
]

ACTOR_NAMESPACE = "nrt_lab"
ACTOR_PREFIX = "nrt_lab.monitor."
SUMMARY_VERSION = 1
# alive: answered; unreachable: Ray says the node is alive but its monitor did not answer (in time);
# dead: Ray says the node died; stopped: the cluster directory says the node is stopped (not started).
NODE_STATES = ("alive", "unreachable", "dead", "stopped")
_PENDING_TASK_STATES = ("PENDING_NODE_ASSIGNMENT",)
_PENDING_ACTOR_STATES = ("PENDING_CREATION",)
_CALLERS_PER_ACTOR = 8  # each ClusterMonitor gets its own rates in a node's actor; the oldest are forgotten
_LABEL_CACHE_LIMIT = 4096
_LABEL_TRIES = 5


# ---------------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class RayOwner:
    """What Ray says of one owner process: its job and the actor or task it runs."""

    kind: str  # "actor", "task", "driver" or "worker" (a Ray worker whose task has ended)
    job_id: str = ""
    name: str = ""  # actor class (and ``name`` when the actor is named) or the task's function name
    actor_id: str = ""
    actor_name: str = ""
    task_id: str = ""

    @property
    def text(self) -> str:
        """One short line: ``job 01000000 · actor Predictor`` (what tables and hovers show)."""
        what = {"actor": "actor", "task": "task", "driver": "driver", "worker": "worker"}.get(self.kind, self.kind)
        who = f"{what} {self.name}".rstrip() + (f" ({self.actor_name})" if self.actor_name else "")
        return f"job {self.job_id} · {who}" if self.job_id else who

    @property
    def key(self) -> str:
        """What owner colours are keyed by in the cluster views: the actor, else the job, else the kind."""
        if self.actor_id:
            return f"actor:{self.actor_id}"
        if self.job_id:
            return f"job:{self.job_id}"
        return self.kind


@dataclass(frozen=True)
class OwnerEntry:
    """One process holding NeuronCores on a node (cores in the node machine's logical view)."""

    pid: int
    start_time: float
    tag: str
    command: str
    runtime_version: str
    lnc: int
    cores: tuple[int, ...]
    ray: RayOwner | None = None

    @property
    def core_ranges(self) -> str:
        """``nc0-nc3,nc8`` (``none`` when empty)."""
        return format_core_ranges(self.cores, prefix="nc")

    @property
    def color_key(self) -> str:
        """Key of the owner colour: the Ray actor or job, else the process (not a Ray process)."""
        return self.ray.key if self.ray is not None else f"pid:{self.pid}:{self.start_time:.6f}"


@dataclass(frozen=True)
class DeviceView:
    """One Neuron device of a node: its logical cores and memory."""

    index: int
    first_core: int
    core_count: int
    memory_bytes: int


@dataclass(frozen=True)
class NodeView:
    """One emulated node as the cluster views show it."""

    name: str
    instance: str
    lnc: int
    state: str  # one of NODE_STATES
    reason: str = ""  # why a node is not "alive" (or what its monitor could not read)
    ray_node_id: str = ""
    devices: tuple[DeviceView, ...] = ()
    owners: tuple[OwnerEntry, ...] = ()
    utilization: tuple[float, ...] = ()  # percent per machine-view core, over the period since the last sample
    memory_used: tuple[int, ...] = ()  # device memory per machine-view core, bytes
    timestamp: float = 0.0  # the node's clock when its monitor read it (0: not read)
    errors: tuple[str, ...] = ()
    neuron_cores: int = 0  # Ray's neuron_cores resource of the node (0: unknown)

    @property
    def total_cores(self) -> int:
        """Logical NeuronCores of the node."""
        return sum(d.core_count for d in self.devices) or self.neuron_cores

    @property
    def used_cores(self) -> int:
        """Cores held by some owner."""
        return len({c for o in self.owners for c in o.cores})

    @property
    def alive(self) -> bool:
        """True when the node's monitor answered this sample."""
        return self.state == "alive"

    @property
    def memory_total(self) -> int:
        """Device memory of the node, bytes."""
        return sum(d.memory_bytes for d in self.devices)

    @property
    def mean_utilization(self) -> float:
        """Mean utilization over all cores of the node, percent (0 for a node not read)."""
        return sum(self.utilization) / len(self.utilization) if self.utilization else 0.0


@dataclass(frozen=True)
class PendingDemand:
    """A task or actor Ray has not placed yet, with what it asks for and why it waits."""

    kind: str  # "task" or "actor"
    name: str
    job_id: str
    state: str
    resources: Mapping[str, float] = field(default_factory=dict)
    reason: str = ""
    ident: str = ""  # task id or actor id

    @property
    def demand_text(self) -> str:
        """``neuron_cores: 64, CPU: 1``: what it asks for, the largest demands first."""
        parts = sorted(self.resources.items(), key=lambda kv: (kv[0] != "neuron_cores", kv[0]))
        return ", ".join(f"{k}: {_num(v)}" for k, v in parts) or "nothing"


@dataclass(frozen=True)
class ClusterSnapshot:
    """The whole cluster at ``timestamp``: every node, what waits to be placed, what could not be read."""

    timestamp: float
    address: str
    nodes: tuple[NodeView, ...]
    pending: tuple[PendingDemand, ...] = ()
    errors: tuple[str, ...] = ()

    def node(self, name: str) -> NodeView:
        """The node called ``name`` (KeyError naming the known nodes otherwise)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node {name!r}; nodes: {', '.join(n.name for n in self.nodes) or 'none'}")

    @property
    def total_cores(self) -> int:
        """NeuronCores of every node."""
        return sum(n.total_cores for n in self.nodes)

    @property
    def used_cores(self) -> int:
        """NeuronCores held on nodes that answered."""
        return sum(n.used_cores for n in self.nodes)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``neuron-ls --cluster -j``; docs/cluster-views.md describes every key)."""
        return {
            "version": SUMMARY_VERSION,
            "address": self.address,
            "timestamp": round(self.timestamp, 3),
            "neuron_cores": {"used": self.used_cores, "total": self.total_cores},
            "nodes": [_node_dict(n) for n in self.nodes],
            "pending": [
                {"kind": p.kind, "name": p.name, "job_id": p.job_id, "state": p.state, "id": p.ident,
                 "resources": dict(p.resources), "reason": p.reason}
                for p in self.pending
            ],
            "errors": list(self.errors),
        }


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _node_dict(node: NodeView) -> dict[str, Any]:
    return {
        "name": node.name, "instance": node.instance, "lnc": node.lnc, "state": node.state, "reason": node.reason,
        "ray_node_id": node.ray_node_id, "timestamp": round(node.timestamp, 3),
        "neuron_cores": {"used": node.used_cores, "total": node.total_cores},
        "devices": [{"index": d.index, "first_core": d.first_core, "core_count": d.core_count,
                     "memory_bytes": d.memory_bytes} for d in node.devices],
        "owners": [
            {"pid": o.pid, "start_time": o.start_time, "tag": o.tag, "command": o.command,
             "runtime_version": o.runtime_version, "lnc": o.lnc, "cores": list(o.cores), "core_ranges": o.core_ranges,
             "ray": None if o.ray is None else {
                 "kind": o.ray.kind, "job_id": o.ray.job_id, "name": o.ray.name, "actor_id": o.ray.actor_id,
                 "actor_name": o.ray.actor_name, "task_id": o.ray.task_id}}
            for o in node.owners
        ],
        "utilization": [round(u, 1) for u in node.utilization],
        "memory_used": list(node.memory_used),
        "errors": list(node.errors),
    }


def snapshot_from_dict(data: Mapping[str, Any]) -> ClusterSnapshot:
    """A :class:`ClusterSnapshot` from its JSON form (:meth:`ClusterSnapshot.to_dict`); ValueError naming the
    bad key otherwise."""
    try:
        nodes = tuple(
            NodeView(
                name=str(n["name"]), instance=str(n["instance"]), lnc=int(n["lnc"]), state=str(n["state"]),
                reason=str(n.get("reason", "")), ray_node_id=str(n.get("ray_node_id", "")),
                devices=tuple(DeviceView(int(d["index"]), int(d["first_core"]), int(d["core_count"]),
                                         int(d["memory_bytes"])) for d in n.get("devices", [])),
                owners=tuple(
                    OwnerEntry(int(o["pid"]), float(o.get("start_time", 0.0)), str(o.get("tag", "")),
                               str(o.get("command", "")), str(o.get("runtime_version", "")), int(o.get("lnc", 1)),
                               tuple(int(c) for c in o["cores"]),
                               None if not o.get("ray") else RayOwner(**{k: str(v) for k, v in o["ray"].items()}))
                    for o in n.get("owners", [])
                ),
                utilization=tuple(float(u) for u in n.get("utilization", [])),
                memory_used=tuple(int(m) for m in n.get("memory_used", [])),
                timestamp=float(n.get("timestamp", 0.0)), errors=tuple(str(e) for e in n.get("errors", [])),
                neuron_cores=int((n.get("neuron_cores") or {}).get("total", 0)),
            )
            for n in data["nodes"]
        )
        pending = tuple(
            PendingDemand(str(p["kind"]), str(p["name"]), str(p.get("job_id", "")), str(p.get("state", "")),
                          {str(k): float(v) for k, v in (p.get("resources") or {}).items()}, str(p.get("reason", "")),
                          str(p.get("id", "")))
            for p in data.get("pending", [])
        )
        return ClusterSnapshot(float(data.get("timestamp", 0.0)), str(data.get("address", "")), nodes, pending,
                               tuple(str(e) for e in data.get("errors", [])))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a cluster snapshot ({type(exc).__name__}: {exc}); accepted: the JSON of "
                         "neuron-ls --cluster -j") from None


# ---------------------------------------------------------------------------------------------------- node side


def _devices(instance: InstanceSpec) -> list[list[int]]:
    return [[d.index, d.first_core, d.core_count, d.memory_bytes] for d in instance.devices]


def summarize(snapshot: MachineSnapshot) -> dict[str, Any]:
    """The compact, picklable summary a node's monitor actor returns: devices, owners (machine-view cores),
    per-core utilization % and device memory, errors and the node's timestamp (plain Python types only)."""
    instance = snapshot.instance
    total = instance.total_cores
    util = [0.0] * total
    memory = [0] * total
    for rt in snapshot.runtimes:
        for sample in rt.cores:
            # A runtime core of LNC rt.lnc covers rt.lnc physical cores; each maps to one machine-view core.
            for physical in range(sample.core * rt.lnc, sample.core * rt.lnc + rt.lnc):
                (core,) = machine_view_cores(instance, 1, (physical,))
                if 0 <= core < total:
                    util[core] += sample.utilization
                    memory[core] += sum(int(v) for v in sample.memory.values()) // rt.lnc
    return {
        "v": SUMMARY_VERSION,
        "t": snapshot.timestamp,
        "instance": instance.name,
        "lnc": instance.lnc,
        "devices": _devices(instance),
        "owners": [
            [o.pid, o.start_time, o.tag, o.command, o.runtime_version, o.lnc, list(o.machine_cores)]
            for o in snapshot.runtime_owners
        ],
        "util": [round(min(100.0, u / instance.lnc), 1) for u in util],
        "mem": memory,
        "errors": list(snapshot.errors),
        "root": str(snapshot.root),
    }


class NodeMonitorActor:
    """The body of each node's monitor actor: one :class:`~nrt_lab.monitor.Monitor` per caller (so each
    ClusterMonitor gets rates over its own period), reading the node's state root from the node's environment."""

    def __init__(self, root: str | None = None) -> None:
        self._root = Path(root) if root else None
        self._monitors: OrderedDict[str, Monitor] = OrderedDict()
        self._lock = threading.Lock()

    def summary(self, caller: str) -> dict[str, Any]:
        """This node's summary (:func:`summarize`); ``{"error": ...}`` when the node's machine cannot be read."""
        with self._lock:
            monitor = self._monitors.pop(caller, None) or Monitor(self._root)
            self._monitors[caller] = monitor
            while len(self._monitors) > _CALLERS_PER_ACTOR:
                self._monitors.popitem(last=False)
            try:
                return summarize(monitor.sample())
            except Exception as exc:  # noqa: BLE001 - reported in the node's view, the actor lives on
                return {"v": SUMMARY_VERSION, "error": f"{type(exc).__name__}: {exc}",
                        "root": os.environ.get("NRT_LAB_ROOT", "")}

    def pid(self) -> int:
        """The actor's process id (tests and diagnostics)."""
        return os.getpid()


# ---------------------------------------------------------------------------------------------------- driver side


def _import_ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ClusterError("Ray is not installed: pip install 'nrt_lab[cluster]' (or pip install 'ray[default]')") \
            from None


def _spec(instance: str, lnc: int | None, neuron_cores: int = 0) -> InstanceSpec | None:
    """The instance at ``lnc``; without it, the LNC whose core count matches Ray's ``neuron_cores``."""
    try:
        if lnc is not None:
            return get_instance(instance, lnc)
        spec = get_instance(instance)
        if neuron_cores and spec.total_cores != neuron_cores:
            for other in (1, 2):
                try:
                    candidate = get_instance(instance, other)
                except CatalogueError:
                    continue
                if candidate.total_cores == neuron_cores:
                    return candidate
        return spec
    except CatalogueError:
        return None


def _layout(spec: InstanceSpec | None) -> tuple[DeviceView, ...]:
    if spec is None:
        return ()
    return tuple(DeviceView(d.index, d.first_core, d.core_count, d.memory_bytes) for d in spec.devices)


@dataclass
class _RayNode:
    node_id: str
    name: str
    instance: str
    alive: bool
    neuron_cores: int
    resources: dict[str, float]
    reason: str


class ClusterMonitor:
    """Samples every node of a running cluster through Ray (needs a connected driver: ``nrt_lab.cluster.connect()``).

    ``ClusterMonitor(info=None, timeout_s=5.0, clock=SYSTEM_CLOCK, cluster_info=None)``: ``info`` is the
    ``ClusterInfo`` of the cluster (node order, instances, stopped nodes) or None (nodes from Ray's labels, and
    the default cluster directory's record when this driver is connected to that cluster); ``cluster_info`` a
    callable returning a fresh one each sample (e.g. ``lambda: read_cluster(directory)``), so nodes stopped or
    started since are shown as they are. ``timeout_s`` bounds each :meth:`sample`.
    """

    def __init__(self, info: ClusterInfo | None = None, *, timeout_s: float = 5.0, clock: Clock | None = None,
                 cluster_info: Callable[[], ClusterInfo] | None = None) -> None:
        if not 0.1 <= float(timeout_s) <= 300:
            raise ValueError(f"timeout_s={timeout_s} is invalid; accepted: 0.1 to 300 seconds")
        self._ray = _import_ray()
        if not self._ray.is_initialized():
            raise ClusterError("no Ray driver is connected in this process: call nrt_lab.cluster.connect() first "
                                   "(or ray.init(address=...))")
        self.timeout_s = float(timeout_s)
        self.clock: Clock = clock or SYSTEM_CLOCK
        self._info = info
        self._info_reader = cluster_info
        self._caller = secrets.token_hex(6)
        self._actor_class: Any = None
        self._actors: dict[str, tuple[str, Any]] = {}  # node name -> (ray node id, actor handle)
        self._inflight: dict[str, tuple[str, Any]] = {}  # node name -> (ray node id, ObjectRef of summary())
        # (node id, pid, start time) -> (label or None, lookups so far): a process Ray does not know yet (task
        # events reach the state API about a second late) is looked up again a few times, then taken as not Ray's.
        self._labels: OrderedDict[tuple[str, int, float], tuple[RayOwner | None, int]] = OrderedDict()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="nrt_lab.cluster")
        self._gcs_call: concurrent.futures.Future[Any] | None = None
        self._lock = threading.Lock()
        try:
            gcs = str(self._ray.get_runtime_context().gcs_address or "")
        except Exception:  # noqa: BLE001 - an older Ray: resolved by the state API itself
            gcs = ""
        # The state API must be told which cluster: left to itself it looks for every Ray on the machine (and
        # fails when other people run clusters in other network namespaces).
        self._state_address = gcs or None
        self.address = str(getattr(info, "address", "") or gcs)
        if info is None and cluster_info is None:
            # Connected to the default directory's cluster: re-read it each sample (nodes stopped or started since).
            try:
                if read_cluster().address == gcs:
                    self._info_reader = read_cluster
            except (ClusterError, OSError, ValueError):
                pass

    # ------------------------------------------------------------------ public
    def sample(self, timeout_s: float | None = None) -> ClusterSnapshot:
        """Every node's view, the pending demands and what could not be read; returns within about
        ``timeout_s`` (default: the monitor's) whatever the nodes do, and never raises for a broken cluster."""
        budget = self.timeout_s if timeout_s is None else max(0.1, float(timeout_s))
        with self._lock:
            start = self.clock.monotonic()
            errors: list[str] = []
            info = self._current_info(errors)
            ray_nodes, gcs_error = self._ray_nodes(budget)
            if gcs_error:
                errors.append(gcs_error)
            order = self._node_order(info, ray_nodes)
            asked = self._ask(order, ray_nodes, info, errors)
            remaining = max(0.05, budget - (self.clock.monotonic() - start))
            answers = self._collect(asked, remaining)
            nodes = [self._node_view(name, info, ray_nodes, answers.get(name), gcs_error) for name in order]
            labelled = self._label(nodes, max(0.5, budget - (self.clock.monotonic() - start)), errors)
            pending = self._pending(ray_nodes, max(0.5, budget - (self.clock.monotonic() - start)), errors)
            return ClusterSnapshot(self.clock.time(), self.address, tuple(labelled), tuple(pending), tuple(errors))

    def close(self, *, kill_actors: bool = False) -> None:
        """Forget the actors (``kill_actors=True`` also ends them: the next monitor starts them again)."""
        with self._lock:
            if kill_actors:
                for _node_id, handle in self._actors.values():
                    try:
                        self._ray.kill(handle, no_restart=True)
                    except Exception:  # noqa: BLE001, S110 - already gone with its node
                        pass
            self._actors.clear()
            self._inflight.clear()
        self._pool.shutdown(wait=False)

    def __enter__(self) -> ClusterMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ nodes
    def _current_info(self, errors: list[str]) -> ClusterInfo | None:
        if self._info_reader is not None:
            try:
                self._info = self._info_reader()
                self.address = str(getattr(self._info, "address", "") or self.address)
            except Exception as exc:  # noqa: BLE001 - the cluster directory went away: keep the last one
                errors.append(f"cluster directory: {exc}")
        return self._info

    def _gcs(self, call: Callable[[], Any], timeout: float) -> Any:
        """``call()`` in the helper thread, waited for at most ``timeout`` s; a call still running from an
        earlier sample is not repeated (TimeoutError)."""
        previous = self._gcs_call
        if previous is not None and not previous.done():
            raise TimeoutError("an earlier request to the Ray head is still unanswered (is the cluster up?)")
        future = self._pool.submit(call)
        self._gcs_call = future
        return future.result(timeout=timeout)

    def _ray_nodes(self, budget: float) -> tuple[dict[str, _RayNode], str]:
        try:
            raw = self._gcs(self._ray.nodes, max(0.1, budget / 2))
        except concurrent.futures.TimeoutError as exc:
            return {}, str(exc) or f"the Ray head did not answer within {budget / 2:.1f} s (is the cluster up?)"
        except Exception as exc:  # noqa: BLE001 - a GCS gone away: reported, every node unreachable
            return {}, f"the Ray head could not be read: {type(exc).__name__}: {exc}"
        found: dict[str, _RayNode] = {}
        for entry in raw or []:
            labels = entry.get("Labels") or {}
            name = str(labels.get(NODE_LABEL, ""))
            if not name or name == "head":
                continue
            resources = {str(k): float(v) for k, v in (entry.get("Resources") or {}).items()}
            node = _RayNode(
                node_id=str(entry.get("NodeID", "")), name=name, instance=str(labels.get(INSTANCE_LABEL, "")),
                alive=bool(entry.get("Alive")), neuron_cores=int(resources.get("neuron_cores", 0)),
                resources=resources, reason=str(entry.get("DeathReasonMessage") or ""),
            )
            # A node restarted gets a new id; the old entry stays, dead: the alive one wins.
            current = found.get(name)
            if current is None or (node.alive and not current.alive):
                found[name] = node
            elif node.alive == current.alive and not node.alive:
                found[name] = node  # of two dead entries, the later one (ray.nodes() lists in order of joining)
        return found, ""

    @staticmethod
    def _node_order(info: ClusterInfo | None, ray_nodes: Mapping[str, _RayNode]) -> list[str]:
        names = [n.name for n in info.nodes] if info is not None else []
        return names + sorted(n for n in ray_nodes if n not in names)

    def _actor_for(self, node: _RayNode) -> Any:
        ray = self._ray
        cached = self._actors.get(node.name)
        if cached is not None and cached[0] == node.node_id:
            return cached[1]
        if cached is not None:  # the node came back under a new id: its old actor died with it
            try:
                ray.kill(cached[1], no_restart=True)
            except Exception:  # noqa: BLE001, S110 - gone with the old node
                pass
            self._actors.pop(node.name, None)
        if self._actor_class is None:
            self._actor_class = ray.remote(NodeMonitorActor)
        strategy = importlib.import_module("ray.util.scheduling_strategies").NodeAffinitySchedulingStrategy
        handle = self._actor_class.options(
            name=ACTOR_PREFIX + node.name, namespace=ACTOR_NAMESPACE, lifetime="detached", get_if_exists=True,
            num_cpus=0, max_restarts=0, max_concurrency=4,
            scheduling_strategy=strategy(node_id=node.node_id, soft=False),
        ).remote()
        self._actors[node.name] = (node.node_id, handle)
        return handle

    def _ask(self, order: Sequence[str], ray_nodes: Mapping[str, _RayNode], info: ClusterInfo | None,
             errors: list[str]) -> dict[str, Any]:
        """Send ``summary()`` to every alive node's actor (an unanswered earlier call is waited on again instead)."""
        asked: dict[str, Any] = {}
        for name in order:
            node = ray_nodes.get(name)
            if node is None or not node.alive:
                self._inflight.pop(name, None)
                continue
            inflight = self._inflight.get(name)
            if inflight is not None and inflight[0] == node.node_id:
                asked[name] = inflight[1]
                continue
            try:
                ref = self._actor_for(node).summary.remote(self._caller)
            except Exception as exc:  # noqa: BLE001 - e.g. a name still held by a dying actor: next sample
                self._actors.pop(name, None)
                errors.append(f"{name}: its monitor actor could not be started: {type(exc).__name__}: {exc}")
                continue
            self._inflight[name] = (node.node_id, ref)
            asked[name] = ref
        return asked

    def _collect(self, asked: Mapping[str, Any], timeout: float) -> dict[str, dict[str, Any] | str]:
        """Each answer (a summary dict), or the reason there is none (text); waits at most ``timeout`` s."""
        answers: dict[str, dict[str, Any] | str] = {}
        if not asked:
            return answers
        refs = list(asked.values())
        try:
            ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - the driver lost the cluster
            return {name: f"Ray could not be asked: {type(exc).__name__}: {exc}" for name in asked}
        ready_ids = {id(r) for r in ready}
        ready_set = set(ready)
        for name, ref in asked.items():
            if ref not in ready_set and id(ref) not in ready_ids:
                answers[name] = f"its monitor did not answer within {timeout:.1f} s (starting, or the node is slow)"
                continue
            self._inflight.pop(name, None)
            try:
                value = self._ray.get(ref, timeout=0.5)
            except Exception as exc:  # noqa: BLE001 - actor died with its node, or failed
                self._actors.pop(name, None)
                answers[name] = f"its monitor failed: {type(exc).__name__}: {_first_line(str(exc))}"
                continue
            answers[name] = value if isinstance(value, dict) else f"its monitor answered {type(value).__name__}"
        return answers

    def _node_view(self, name: str, info: ClusterInfo | None, ray_nodes: Mapping[str, _RayNode],
                   answer: dict[str, Any] | str | None, gcs_error: str) -> NodeView:
        declared = next((n for n in info.nodes if n.name == name), None) if info is not None else None
        ray_node = ray_nodes.get(name)
        instance = (declared.instance if declared is not None else "") or (ray_node.instance if ray_node else "")
        lnc = declared.lnc if declared is not None else None
        cores = ray_node.neuron_cores if ray_node is not None else 0
        spec = _spec(instance, lnc, cores)
        base: dict[str, Any] = {
            "name": name, "instance": instance, "lnc": spec.lnc if spec else int(lnc or 1),
            "ray_node_id": ray_node.node_id if ray_node is not None else "", "devices": _layout(spec),
            "neuron_cores": cores or (spec.total_cores if spec else 0),
        }
        if isinstance(answer, dict):
            if "error" in answer:
                return NodeView(state="alive", reason=f"its machine could not be read: {answer['error']}",
                                errors=(str(answer["error"]),), **base)
            return _from_summary(answer, base)
        if gcs_error:
            return NodeView(state="unreachable", reason=gcs_error, **base)
        stopped = declared is not None and not declared.running
        again = f" (stopped with nrt-lab cluster stop-node; `nrt-lab cluster start-node {name}` brings it back)"
        if ray_node is not None and not ray_node.alive:
            why = _first_line(ray_node.reason) or "Ray marked the node dead"
            return NodeView(state="dead", reason=why + (again if stopped else ""), **base)
        if stopped:
            return NodeView(state="stopped", reason="stopped" + again, **base)
        if ray_node is None:
            return NodeView(state="dead", reason="not in the Ray cluster (its node never joined or was removed)",
                            **base)
        return NodeView(state="unreachable", reason=str(answer or "its monitor was not asked"), **base)

    # ------------------------------------------------------------------ Ray labels
    def _label(self, nodes: list[NodeView], timeout: float, errors: list[str]) -> list[NodeView]:
        wanted = {(n.ray_node_id, o.pid, round(o.start_time, 6)) for n in nodes for o in n.owners}
        for stale in [k for k in self._labels if k not in wanted]:
            del self._labels[stale]
        # An actor's (or driver's) label is final: the process is dedicated to it. A task's is not (a worker runs
        # task after task in the same process), nor is "worker" (an actor still in its constructor is not listed
        # as an actor yet): those are looked up again each sample. Unknown pids a few times, then taken as not Ray's.
        missing = {k for k in wanted if self._needs_lookup(k)}
        if missing:
            try:
                self._lookup(missing, timeout)
            except Exception as exc:  # noqa: BLE001 - the state API is the dashboard's: owners shown unlabelled
                errors.append(f"Ray's state API could not be read: {type(exc).__name__}: {_first_line(str(exc))}")
        out = []
        for node in nodes:
            owners = tuple(
                OwnerEntry(o.pid, o.start_time, o.tag, o.command, o.runtime_version, o.lnc, o.cores,
                           self._labels.get((node.ray_node_id, o.pid, round(o.start_time, 6)), (None, 0))[0])
                for o in node.owners
            )
            out.append(_replace_owners(node, owners))
        return out

    def _needs_lookup(self, key: tuple[str, int, float]) -> bool:
        if key not in self._labels:
            return True
        label, tries = self._labels[key]
        if label is None:
            return tries < _LABEL_TRIES
        return label.kind in ("task", "worker")

    def _lookup(self, missing: set[tuple[str, int, float]], timeout: float) -> None:
        state = importlib.import_module("ray.util.state")
        wait = max(1, int(timeout))
        pids = {(node_id, pid) for node_id, pid, _start in missing}
        found: dict[tuple[str, int], RayOwner] = {}
        for actor in state.list_actors(filters=[("state", "!=", "DEAD")], detail=True, timeout=wait,
                                       address=self._state_address, raise_on_missing_output=False, limit=10000):
            key = (str(actor.node_id or ""), int(actor.pid or 0))
            if key in pids:
                found[key] = RayOwner("actor", str(actor.job_id or ""), _short_name(actor.class_name),
                                      str(actor.actor_id or ""), str(actor.name or ""))
        rest = pids - set(found)
        if rest:
            for task in state.list_tasks(filters=[("state", "=", "RUNNING")], detail=True, timeout=wait,
                                         address=self._state_address, raise_on_missing_output=False, limit=10000):
                key = (str(task.node_id or ""), int(task.worker_pid or 0))
                if key in rest and task.type == "NORMAL_TASK":
                    found[key] = RayOwner("task", str(task.job_id or ""),
                                          _short_name(task.func_or_class_name or task.name),
                                          task_id=str(task.task_id or ""))
        rest = pids - set(found)
        if rest:
            for worker in state.list_workers(filters=[("is_alive", "=", "True")], detail=True, timeout=wait,
                                             address=self._state_address, raise_on_missing_output=False, limit=10000):
                key = (str(worker.node_id or ""), int(worker.pid or 0))
                if key in rest:
                    found[key] = RayOwner("driver" if worker.worker_type == "DRIVER" else "worker")
        for wanted in missing:
            tries = self._labels[wanted][1] if wanted in self._labels else 0
            self._labels[wanted] = (found.get((wanted[0], wanted[1])), tries + 1)
        while len(self._labels) > _LABEL_CACHE_LIMIT:
            self._labels.popitem(last=False)

    def _pending(self, ray_nodes: Mapping[str, _RayNode], timeout: float, errors: list[str]) -> list[PendingDemand]:
        try:
            state = importlib.import_module("ray.util.state")
            tasks = state.list_tasks(filters=[("state", "=", _PENDING_TASK_STATES[0])], detail=True,
                                     timeout=max(1, int(timeout)), address=self._state_address,
                                     raise_on_missing_output=False, limit=1000)
        except Exception as exc:  # noqa: BLE001 - shown as an error line, the nodes are still shown
            errors.append(f"pending tasks could not be listed: {type(exc).__name__}: {_first_line(str(exc))}")
            return []
        alive = [n for n in ray_nodes.values() if n.alive]
        found = []
        for task in tasks:
            if task.type not in ("NORMAL_TASK", "ACTOR_CREATION_TASK"):
                continue  # an actor's method call waits for its actor, not for a node
            if str(task.func_or_class_name or "").startswith(NodeMonitorActor.__name__ + "."):
                continue  # this view's own monitor actors (task events reach the state API ~1 s late)
            resources = {str(k): float(v) for k, v in (task.required_resources or {}).items()}
            kind = "actor" if task.type == "ACTOR_CREATION_TASK" else "task"
            name = _short_name(task.func_or_class_name or task.name or "")
            found.append(PendingDemand(kind, name, str(task.job_id or ""), str(task.state),
                                       resources, why_pending(resources, alive), str(task.task_id or "")))
        return sorted(found, key=lambda p: (p.job_id, p.name, p.ident))


def why_pending(resources: Mapping[str, float], nodes: Iterable[Any]) -> str:
    """Why a demand waits: no alive node has that much of some resource (it never fits), or some do and are busy.

    ``nodes`` have ``name``, ``alive`` and ``resources`` (a node's total resources, as Ray reports them).
    """
    candidates = [n for n in nodes if n.alive]
    fitting = [n for n in candidates if all(n.resources.get(k, 0.0) >= v for k, v in resources.items() if v > 0)]
    if fitting:
        return ("waiting for free resources on " + ", ".join(sorted(n.name for n in fitting))
                + " (held by running work)")
    if not candidates:
        return "no node is alive"
    short = []
    for key, value in sorted(resources.items()):
        best = max((n.resources.get(key, 0.0) for n in candidates), default=0.0)
        if best < value:
            short.append(f"{key}: {_num(value)} asked, largest node has {_num(best)}")
    return "larger than any node (" + "; ".join(short) + "): it stays pending until such a node joins"


def _short_name(name: str) -> str:
    """A Ray class or function name without the enclosing function of a local definition (``f.<locals>.A``)."""
    return str(name or "").rsplit(".<locals>.", 1)[-1]


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _replace_owners(node: NodeView, owners: tuple[OwnerEntry, ...]) -> NodeView:
    return NodeView(node.name, node.instance, node.lnc, node.state, node.reason, node.ray_node_id, node.devices,
                    owners, node.utilization, node.memory_used, node.timestamp, node.errors, node.neuron_cores)


def _from_summary(summary: Mapping[str, Any], base: Mapping[str, Any]) -> NodeView:
    devices = tuple(DeviceView(int(i), int(f), int(c), int(m)) for i, f, c, m in summary.get("devices", []))
    owners = tuple(
        OwnerEntry(int(pid), float(start), str(tag), str(cmd), str(rt), int(lnc), tuple(int(c) for c in cores))
        for pid, start, tag, cmd, rt, lnc, cores in summary.get("owners", [])
    )
    fields = dict(base)
    fields.update(instance=str(summary.get("instance") or base["instance"]), lnc=int(summary.get("lnc", base["lnc"])),
                  devices=devices or base["devices"])
    return NodeView(state="alive", owners=owners, utilization=tuple(float(u) for u in summary.get("util", [])),
                    memory_used=tuple(int(m) for m in summary.get("mem", [])), timestamp=float(summary.get("t", 0.0)),
                    errors=tuple(str(e) for e in summary.get("errors", [])), **fields)


def _reachable(address: str, timeout_s: float = 2.0) -> None:
    """ClusterError unless something accepts TCP connections at ``host:port`` (a dead head is refused at
    once, where ``ray.init`` would wait for its own long timeout)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ClusterError(f"address {address!r} is invalid; accepted: HOST:PORT of the Ray head (GCS)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ClusterError(f"the Ray head at {address} does not answer ({exc.strerror or exc}): is the cluster "
                               "up? (nrt-lab cluster status; nrt-lab cluster up --node ...)") from None


def connect_driver(directory: str | Path | None = None, address: str | None = None
                   ) -> tuple[ClusterInfo | None, Callable[[], None]]:
    """Connect this process to the cluster as a Ray driver (``nrt_lab.cluster.connect`` on the cluster directory,
    or the GCS at ``address``); returns its ClusterInfo (None for a bare address) and the call that disconnects
    again (a no-op when this process was already connected). ClusterError says what to do when it cannot."""
    ray = _import_ray()
    if ray.is_initialized():
        return (read_cluster(directory) if address is None else None), lambda: None
    if address is None:
        info = read_cluster(directory)  # ClusterError: no cluster there, and how to start one
        if not info.head_running:
            raise ClusterError(f"the cluster in {info.directory} is down (its Ray head is not running): "
                               "nrt-lab cluster down, then nrt-lab cluster up --node ...")
        address = info.address
    else:
        info = None
    _reachable(address)
    try:
        if info is not None:
            connect(info.directory, logging_level="ERROR", log_to_driver=False)
        else:
            os.environ.setdefault(AUTH_MODE_VARIABLE, CLUSTER_AUTH_MODE)  # as nrt-lab's clusters run
            ray.init(address=address, _node_ip_address="127.0.0.1", logging_level="ERROR", log_to_driver=False)
    except ClusterError:
        raise
    except Exception as exc:  # noqa: BLE001 - ConnectionError and friends: one line
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: {_first_line(str(exc))}") from None
    return info, ray.shutdown
