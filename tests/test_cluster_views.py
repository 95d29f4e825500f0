"""The cluster views (docs/cluster-views.md): ClusterMonitor, ``neuron-ls --cluster`` and the ClusterMap widgets.

Without Ray: fixture snapshots (:func:`fixture_snapshot`) rendered against golden files in
``tests/golden/neuron_ls/`` (regenerate with ``NRT_LAB_UPDATE_GOLDEN=1`` and review the diff), the node summary of
a real emulated machine, the pending-demand rule, and the widgets fed by a fake monitor and a fake clock.

Live (a real Ray cluster of two small nodes started by ``nrt_lab.cluster.up``, one per module): only in a
loopback-only network namespace with Ray installed (tests/cluster_helpers.py); skipped with the reason elsewhere.
Every Ray address is 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nrt_lab.cluster import ClusterError
from nrt_lab.cluster.views import (
    ClusterSnapshot,
    NodeMonitorActor,
    NodeView,
    snapshot_from_dict,
    why_pending,
)
from nrt_lab.tools.neuron_ls_render import render_cluster, render_cluster_json
from nrt_lab.widgets import ClusterDashboard, ClusterMap, record_messages

sys.path.insert(0, str(Path(__file__).parent))
from cluster_helpers import running_cluster, skip_reason  # noqa: E402 - the shared helpers beside this file

from conftest import FakeClock  # noqa: E402

GOLDEN = Path(__file__).parent / "golden" / "neuron_ls"
UPDATE = os.environ.get("NRT_LAB_UPDATE_GOLDEN") == "1"
REPO = Path(__file__).resolve().parents[1]

_T0 = 1_796_000_000.0


def fixture_dict(util: float = 37.0) -> dict[str, Any]:
    """A cluster of three nodes: trn1-0 alive (an actor, a task and a plain process hold cores), inf2-1 dead,
    trn1-2 alive and idle; one task waits because no node is big enough, one because the big node is busy."""
    def devices(count: int, per: int, memory: int) -> list[dict[str, int]]:
        return [{"index": i, "first_core": i * per, "core_count": per, "memory_bytes": memory} for i in range(count)]

    return {
        "version": 1, "address": "127.0.0.1:6379", "timestamp": _T0,
        "nodes": [
            {"name": "trn1-0", "instance": "trn1.32xlarge", "lnc": 1, "state": "alive", "reason": "",
             "ray_node_id": "a1" * 28, "timestamp": _T0 - 0.1, "neuron_cores": {"used": 7, "total": 32},
             "devices": devices(16, 2, 32 << 30),
             "owners": [
                 {"pid": 4101, "start_time": _T0 - 60, "tag": "4101", "command": "ray::Predictor.__init__",
                  "runtime_version": "2.34.10.0", "lnc": 1, "cores": [0, 1, 2, 3],
                  "ray": {"kind": "actor", "job_id": "01000000", "name": "Predictor", "actor_id": "c0ffee" * 5 + "01",
                          "actor_name": "predictor-0", "task_id": ""}},
                 {"pid": 4102, "start_time": _T0 - 30, "tag": "4102", "command": "ray::infer",
                  "runtime_version": "2.34.10.0", "lnc": 1, "cores": [4, 5],
                  "ray": {"kind": "task", "job_id": "01000000", "name": "infer", "actor_id": "", "actor_name": "",
                          "task_id": "f00d" * 12}},
                 {"pid": 777, "start_time": _T0 - 10, "tag": "bench", "command": "python bench.py",
                  "runtime_version": "2.34.10.0", "lnc": 1, "cores": [8], "ray": None},
             ],
             "utilization": [util] * 4 + [90.0, 90.0] + [0.0] * 2 + [5.0] + [0.0] * 23,
             "memory_used": [1 << 28] * 6 + [0] * 26, "errors": []},
            {"name": "inf2-1", "instance": "inf2.48xlarge", "lnc": 1, "state": "dead",
             "reason": "health check failed due to missing too many heartbeats", "ray_node_id": "b2" * 28,
             "neuron_cores": {"used": 0, "total": 24}, "devices": devices(12, 2, 32 << 30), "owners": [],
             "utilization": [], "memory_used": [], "errors": []},
            {"name": "trn1-2", "instance": "trn1.2xlarge", "lnc": 1, "state": "alive", "reason": "",
             "ray_node_id": "c3" * 28, "timestamp": _T0 - 0.2, "neuron_cores": {"used": 0, "total": 2},
             "devices": devices(1, 2, 32 << 30), "owners": [], "utilization": [0.0, 0.0], "memory_used": [0, 0],
             "errors": []},
        ],
        "pending": [
            {"kind": "task", "name": "huge", "job_id": "01000000", "state": "PENDING_NODE_ASSIGNMENT", "id": "t1",
             "resources": {"neuron_cores": 64.0, "CPU": 1.0},
             "reason": "larger than any node (neuron_cores: 64 asked, largest node has 32): it stays pending until "
                       "such a node joins"},
            {"kind": "actor", "name": "Trainer.__init__", "job_id": "02000000", "state": "PENDING_NODE_ASSIGNMENT",
             "id": "t2", "resources": {"neuron_cores": 32.0},
             "reason": "waiting for free resources on trn1-0 (held by running work)"},
        ],
        "errors": [],
    }


def fixture_snapshot(**kw: Any) -> ClusterSnapshot:
    """:func:`fixture_dict` as a snapshot."""
    return snapshot_from_dict(fixture_dict(**kw))


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with NRT_LAB_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------- no Ray needed


def test_snapshot_json_round_trip_and_bad_input() -> None:
    snap = fixture_snapshot()
    assert snapshot_from_dict(json.loads(json.dumps(snap.to_dict()))) == snap
    assert (snap.used_cores, snap.total_cores) == (7, 58)
    assert snap.node("trn1-0").owners[0].ray is not None and snap.node("trn1-0").owners[2].ray is None
    with pytest.raises(KeyError, match="trn1-0, inf2-1, trn1-2"):
        snap.node("nope")
    with pytest.raises(ValueError, match="not a cluster snapshot .*neuron-ls --cluster -j"):
        snapshot_from_dict({"nodes": [{"name": "x"}]})


def test_neuron_ls_cluster_golden() -> None:
    snap = fixture_snapshot()
    text = render_cluster(snap)
    _golden("cluster.txt", text)
    # One row per owner, the Ray label of each; dead nodes and pending demands say why.
    assert "| trn1-0 | trn1.32xlarge | alive | 7/32" in text
    assert "job 01000000 · actor Predictor (predictor-0)" in text and "job 01000000 · task infer" in text
    assert "not a Ray process" in text and "nc0-nc3" in text
    assert "inf2-1: dead: health check failed" in text
    assert "task huge (job 01000000) asks neuron_cores: 64, CPU: 1: larger than any node" in text
    data = render_cluster_json(snap)
    _golden("cluster.json", data)
    assert json.loads(data) == snap.to_dict()


def test_why_pending_says_never_fits_or_busy() -> None:
    class Node:
        def __init__(self, name: str, cores: float, alive: bool = True) -> None:
            self.name, self.alive, self.resources = name, alive, {"neuron_cores": cores, "CPU": 8.0}

    nodes = [Node("a", 2), Node("b", 32), Node("c", 64, alive=False)]
    assert why_pending({"neuron_cores": 64, "CPU": 1}, nodes) == (
        "larger than any node (neuron_cores: 64 asked, largest node has 32): it stays pending until such a node joins")
    assert why_pending({"neuron_cores": 16}, nodes) == "waiting for free resources on b (held by running work)"
    assert why_pending({"neuron_cores": 1}, []) == "no node is alive"


@pytest.mark.instance("trn1.2xlarge")
def test_node_summary_of_a_real_machine(machine_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nrt_lab

    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "1")
    nrt_lab.init()
    try:
        actor = NodeMonitorActor(str(machine_root))
        summary = actor.summary("a")
        assert summary["instance"] == "trn1.2xlarge" and summary["devices"] == [[0, 0, 2, 32 << 30]]
        (owner,) = summary["owners"]
        assert owner[0] == os.getpid() and owner[6] == [1]
        assert len(summary["util"]) == 2 and summary["errors"] == []
        json.dumps(summary)  # plain types only: what Ray pickles back to the driver
        assert actor.summary("b")["owners"] == summary["owners"]  # each caller its own monitor
    finally:
        nrt_lab.close()
    (machine_root / "plain-file").write_text("not a state root")
    broken = NodeMonitorActor(str(machine_root / "plain-file"))
    assert "error" in broken.summary("a")  # reported, never raised: the actor lives on


# ---------------------------------------------------------------------------------------------- widgets


class FakeMonitor:
    """Hands out the snapshots it is given, one per sample (the last one again when they run out)."""

    def __init__(self, *snapshots: ClusterSnapshot | Exception) -> None:
        self.snapshots = list(snapshots)
        self.calls = 0

    def sample(self) -> ClusterSnapshot:
        self.calls += 1
        item = self.snapshots.pop(0) if len(self.snapshots) > 1 else self.snapshots[0]
        if isinstance(item, Exception):
            raise item
        return item


@pytest.fixture
def made() -> Iterator[list[Any]]:
    widgets: list[Any] = []
    yield widgets
    for widget in widgets:
        widget.close()


def test_cluster_map_state_colours_and_static_forms(made: list[Any]) -> None:
    clock = FakeClock()
    widget = ClusterMap(FakeMonitor(fixture_snapshot()), autostart=False, clock=clock)
    made.append(widget)
    assert widget.node_names() == ["trn1-0", "inf2-1", "trn1-2"]
    assert widget.node_state("inf2-1")["state"] == "dead"
    assert widget.node_state("trn1-0")["used"] == 7
    owners = {o["pid"]: o for o in widget.owners()}
    # Coloured by Ray: the actor has its own colour, the task its job's; a plain process its own.
    assert len({owners[4101]["color"], owners[4102]["color"], owners[777]["color"]}) == 3
    assert owners[4101]["ray"] == "job 01000000 · actor Predictor (predictor-0)"
    state = widget.current_state()
    assert state["c0"][:6] == [owners[4101]["id"]] * 4 + [owners[4102]["id"]] * 2
    assert state["u0"][:5] == [37, 37, 37, 37, 90] and state["u1"] == []
    assert len(state["pending"]) == 2
    text = repr(widget)
    assert text == ("ClusterMap(3 nodes: trn1-0 trn1.32xlarge alive 7/32; inf2-1 inf2.48xlarge dead 0/24; "
                    "trn1-2 trn1.2xlarge alive 0/2; 2 pending)")
    page = widget._repr_html_()
    assert "health check failed" in page and "predictor-0" in page and "larger than any node" in page
    with pytest.raises(KeyError, match="shown: trn1-0"):
        widget.node_state("x")


def test_cluster_map_sends_only_changes_and_bounds_history(made: list[Any]) -> None:
    clock = FakeClock()
    monitor = FakeMonitor(fixture_snapshot(util=37.0), fixture_snapshot(util=50.0), fixture_snapshot(util=50.0))
    widget = ClusterMap(monitor, autostart=False, clock=clock, history_size=3, period=1.0)
    made.append(widget)
    log = record_messages(widget)
    widget.refresh()
    widget.refresh()
    updates = log.updates()
    assert len(updates) == 2
    first = updates[0][2]["delta"]
    assert set(first["set"]) == {"n0", "u0"}  # only node 0's utilization moved (the fake clock stood still)
    assert first["set"]["u0"][:4] == [50, 50, 50, 50]
    assert updates[1][2]["delta"]["set"] == {}  # nothing moved: a heartbeat only (the history grows)
    for _ in range(5):
        clock.advance(1.0)
        widget.refresh()
    history = widget.history()
    assert len(history) == 3 and history[-1][1:] == [12.0, None, 0.0]  # (4 × 50 + 2 × 90 + 5) / 32


def test_cluster_map_reports_a_failing_monitor_and_recovers(made: list[Any]) -> None:
    monitor = FakeMonitor(RuntimeError("GCS gone"))
    widget = ClusterMap(monitor, autostart=False, clock=FakeClock())
    made.append(widget)
    assert widget.current_state()["err"] == "RuntimeError: GCS gone"
    assert repr(widget) == "ClusterMap(error: RuntimeError: GCS gone)"
    monitor.snapshots = [fixture_snapshot()]
    widget.refresh()
    assert widget.node_names() == ["trn1-0", "inf2-1", "trn1-2"]


def test_cluster_dashboard_chart_and_thread(made: list[Any]) -> None:
    clock = FakeClock()
    dashboard = ClusterDashboard(FakeMonitor(fixture_snapshot()), autostart=False, clock=clock)
    made.append(dashboard)
    assert dashboard.dashboard is True and dashboard.plotly is not None
    clock.advance(2.0)
    dashboard.sampler.tick()
    figure = dashboard.figure_json()
    assert figure is not None
    names = [t["name"] for t in figure["data"]]
    assert names == ["trn1-0 (trn1.32xlarge)", "inf2-1 (inf2.48xlarge)", "trn1-2 (trn1.2xlarge)"]
    assert figure["layout"]["yaxis"]["title"]["text"] == "utilization (%)"
    data, _ = dashboard._repr_mimebundle_()
    assert "application/vnd.plotly.v1+json" in data and "device memory" in data["text/html"]
    dashboard.start()  # its own thread (time is fake here: the ticks above were driven by the test)
    assert dashboard.running and dashboard.sampler.alive
    dashboard.stop()
    assert not dashboard.sampler.alive


def test_cluster_map_without_ray_driver_says_what_to_do() -> None:
    pytest.importorskip("ray")
    with pytest.raises(ClusterError, match="connect"):
        ClusterMap(autostart=False)


def test_neuron_ls_cluster_errors_are_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = [sys.executable, "-m", "nrt_lab.tools.neuron_ls"]
    bad = subprocess.run([*run, "--cluster-dir", "x"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "--cluster-dir and --address go with --cluster" in bad.stderr
    pytest.importorskip("ray")
    down = subprocess.run([*run, "--cluster", "--address", "127.0.0.1:1"], capture_output=True, text=True, env=env,
                          timeout=60)
    lines = [line for line in down.stderr.splitlines() if "network_util" not in line]
    assert down.returncode == 1 and len(lines) == 1, down.stderr
    assert "does not answer" in lines[0] and "nrt-lab cluster up" in lines[0]
    none = subprocess.run([*run, "--cluster", "--cluster-dir", str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=60)
    lines = [line for line in none.stderr.splitlines() if "network_util" not in line]
    assert none.returncode == 1 and lines == [
        f"neuron-ls: error: no cluster in {tmp_path}; start one with `nrt-lab cluster up --node trn1.32xlarge`"]


# ---------------------------------------------------------------------------------------------- live (Ray)


@dataclass
class LiveCluster:
    """The module's running cluster: its directory and info, and node stop/start through the launcher."""

    directory: Path
    info: Any

    @property
    def address(self) -> str:
        return str(self.info.address)

    def kill_node(self, name: str) -> None:
        import nrt_lab.cluster

        nrt_lab.cluster.stop_node(name, self.directory, kill=True)

    def start_node(self, name: str) -> None:
        import nrt_lab.cluster

        nrt_lab.cluster.start_node(name, self.directory)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCluster]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    import nrt_lab.cluster

    directory = tmp_path_factory.mktemp("cluster")
    with running_cluster(directory, ["inf2-0=inf2.xlarge", "trn1-1=trn1.2xlarge"], cpus_per_node=2,
                         exporters=False) as info:
        nrt_lab.cluster.connect(directory, logging_level="ERROR", log_to_driver=False)
        yield LiveCluster(directory, info)


def test_live_sample_labels_owners_and_pending(cluster: Any) -> None:
    import ray

    from nrt_lab.cluster.views import ClusterMonitor

    @ray.remote(resources={"neuron_cores": 1}, num_cpus=0)
    class Holder:
        def __init__(self) -> None:
            import nrt_lab

            self.runtime = nrt_lab.init()

        def pid(self) -> int:
            return os.getpid()

    @ray.remote(resources={"neuron_cores": 64}, num_cpus=0)
    def huge() -> None:
        return None

    holder = Holder.options(name="holder-0").remote()
    pid = ray.get(holder.pid.remote(), timeout=30)
    waiting = huge.remote()
    monitor = ClusterMonitor(cluster.info, timeout_s=10)
    try:
        deadline = time.monotonic() + 20
        while True:
            snap = monitor.sample()
            owners = [o for n in snap.nodes for o in n.owners]
            if owners and owners[0].ray is not None and snap.pending or time.monotonic() > deadline:
                break
        assert [(n.name, n.instance, n.state) for n in snap.nodes] == [
            ("inf2-0", "inf2.xlarge", "alive"), ("trn1-1", "trn1.2xlarge", "alive")], snap.errors
        (owner,) = owners
        assert owner.pid == pid and owner.ray is not None
        assert (owner.ray.kind, owner.ray.name, owner.ray.actor_name) == ("actor", "Holder", "holder-0")
        (pending,) = snap.pending
        assert pending.name == "huge" and pending.resources["neuron_cores"] == 64
        assert "larger than any node" in pending.reason
        started = time.monotonic()
        monitor.sample()
        assert time.monotonic() - started < 2.0  # actors and labels are reused: a sample is quick
        widget = ClusterMap(monitor, autostart=False)  # the widget through the same monitor (real Ray)
        try:
            assert widget.node_names() == ["inf2-0", "trn1-1"]
            (shown,) = widget.owners()
            assert shown["ray"] == f"job {owner.ray.job_id} · actor Holder (holder-0)" and shown["pid"] == pid
        finally:
            widget.close()
        # --cluster-dir (nrt_lab.cluster.connect); --address takes the same path after connecting (~4 s each).
        cli = subprocess.run([sys.executable, "-m", "nrt_lab.tools.neuron_ls", "--cluster", "--cluster-dir",
                              str(cluster.directory)], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
        assert cli.returncode == 0, cli.stderr
        assert "actor Holder (holder-0)" in cli.stdout and "task huge" in cli.stdout
        assert "| alive | 1/2 " in cli.stdout and "| alive | 0/2 " in cli.stdout  # the actor on either node
    finally:
        ray.cancel(waiting, force=True)
        ray.kill(holder)
        monitor.close()


def test_live_dead_node_is_reported_promptly_and_comes_back(cluster: Any) -> None:
    import nrt_lab.cluster
    from nrt_lab.cluster.views import ClusterMonitor

    monitor = ClusterMonitor(timeout_s=3, cluster_info=lambda: nrt_lab.cluster.read_cluster(cluster.directory))
    try:
        assert {n.state for n in monitor.sample().nodes} == {"alive"}
        cluster.kill_node("trn1-1")
        states = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            started = time.monotonic()
            snap = monitor.sample()
            assert time.monotonic() - started < 3 + 1.5  # bounded, whatever the dead node does
            states.append(snap.node("trn1-1").state)
            if states[-1] == "dead":
                break
        assert states[-1] == "dead" and snap.node("inf2-0").state == "alive", states
        assert "`nrt-lab cluster start-node trn1-1` brings it back" in snap.node("trn1-1").reason
        cluster.start_node("trn1-1")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            snap = monitor.sample()
            if snap.node("trn1-1").state == "alive":
                break
        assert snap.node("trn1-1").state == "alive", snap.node("trn1-1")
    finally:
        monitor.close()


def test_node_view_numbers() -> None:
    # NodeView is what every face renders; its derived numbers do not need Ray.
    node = fixture_snapshot().node("trn1-0")
    assert isinstance(node, NodeView) and node.total_cores == 32 and node.used_cores == 7
    assert node.mean_utilization == pytest.approx((37 * 4 + 180 + 5) / 32)


# ---------------------------------------------------------------------------------------------- ClusterMonitor, fake Ray


class _Ref:
    def __init__(self, value: Any = None, error: Exception | None = None, ready: bool = True) -> None:
        self.value, self.error, self.ready = value, error, ready


class _FakeRay:
    """The parts of Ray ClusterMonitor uses: nodes(), a remote actor class with options(), wait/get/kill, and
    ray.util.state's list_* (records of what was asked)."""

    def __init__(self) -> None:
        self.node_list: list[dict[str, Any]] = []
        self.answers: dict[str, Callable[[], _Ref]] = {}  # node id -> the ref summary.remote() returns
        self.summary_calls: dict[str, int] = {}
        self.created: list[str] = []
        self.killed = 0
        self.state_calls: list[str] = []
        self.actors: list[Any] = []
        self.tasks: list[Any] = []
        self.workers: list[Any] = []
        self.gate: threading.Event | None = None  # nodes() blocks on it when set
        self.waited: list[float] = []

    # ray
    def is_initialized(self) -> bool:
        return True

    def get_runtime_context(self) -> Any:
        return SimpleNamespace(gcs_address="127.0.0.1:6379")

    def nodes(self) -> list[dict[str, Any]]:
        if self.gate is not None:
            self.gate.wait(10)
        return self.node_list

    def remote(self, cls: type) -> Any:
        fake = self

        class Handle:
            def __init__(self, node_id: str) -> None:
                self.node_id = node_id
                self.summary = SimpleNamespace(remote=self._summary)

            def _summary(self, caller: str) -> _Ref:
                fake.summary_calls[self.node_id] = fake.summary_calls.get(self.node_id, 0) + 1
                return fake.answers[self.node_id]()

        class ActorClass:
            def options(self, **kw: Any) -> Any:
                node_id = kw["scheduling_strategy"].node_id
                assert kw["name"].startswith("nrt_lab.monitor.") and kw["namespace"] == "nrt_lab"
                assert kw["lifetime"] == "detached" and kw["num_cpus"] == 0 and kw["scheduling_strategy"].soft is False
                return SimpleNamespace(remote=lambda: (fake.created.append(node_id), Handle(node_id))[1])

        return ActorClass()

    def wait(self, refs: list[_Ref], num_returns: int, timeout: float) -> tuple[list[_Ref], list[_Ref]]:
        ready = [r for r in refs if r.ready]
        if len(ready) < len(refs):
            self.waited.append(timeout)  # Ray would block this long: the fake does not
        return ready, [r for r in refs if not r.ready]

    def get(self, ref: _Ref, timeout: float) -> Any:
        if ref.error is not None:
            raise ref.error
        return ref.value

    def kill(self, handle: Any, no_restart: bool) -> None:
        self.killed += 1

    # ray.util.state
    def list_actors(self, **kw: Any) -> list[Any]:
        self.state_calls.append("actors")
        assert kw["address"] == "127.0.0.1:6379"
        return self.actors

    def list_tasks(self, **kw: Any) -> list[Any]:
        self.state_calls.append("tasks:" + kw["filters"][0][2])
        return [t for t in self.tasks if t.state == kw["filters"][0][2]]

    def list_workers(self, **kw: Any) -> list[Any]:
        self.state_calls.append("workers")
        return self.workers


def _summary(pid: int = 0) -> dict[str, Any]:
    owners = [[pid, _T0 - 5, str(pid), "ray::Holder", "2.34.10.0", 1, [1]]] if pid else []
    return {"v": 1, "t": _T0, "instance": "trn1.2xlarge", "lnc": 1, "devices": [[0, 0, 2, 32 << 30]],
            "owners": owners, "util": [0.0, 25.0], "mem": [0, 1 << 20], "errors": []}


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> _FakeRay:
    import importlib

    from nrt_lab.cluster import views

    fake = _FakeRay()
    modules = {
        "ray": fake, "ray.util.state": fake,
        "ray.util.scheduling_strategies": SimpleNamespace(
            NodeAffinitySchedulingStrategy=lambda node_id, soft: SimpleNamespace(node_id=node_id, soft=soft)),
    }
    monkeypatch.setattr(views.importlib, "import_module",
                        lambda name: modules[name] if name in modules else importlib.import_module(name))
    return fake


def _ray_node(node_id: str, name: str, instance: str, alive: bool = True, reason: str = "") -> dict[str, Any]:
    return {"NodeID": node_id, "Alive": alive, "Resources": {"neuron_cores": 2.0, "CPU": 2.0},
            "Labels": {"nrt-lab.io/node": name, "nrt-lab.io/instance": instance}, "DeathReasonMessage": reason}


def _info(*nodes: tuple[str, bool]) -> Any:
    return SimpleNamespace(address="127.0.0.1:6379", nodes=tuple(
        SimpleNamespace(name=name, instance="trn1.2xlarge", lnc=1, running=running) for name, running in nodes))


def test_monitor_states_labels_and_pending_with_a_fake_ray(fake_ray: _FakeRay) -> None:
    from nrt_lab.cluster.views import ClusterMonitor

    fake_ray.node_list = [
        {"NodeID": "h" * 56, "Alive": True, "Resources": {}, "Labels": {"nrt-lab.io/node": "head"}},
        _ray_node("a" * 56, "a", "trn1.2xlarge"), _ray_node("b" * 56, "b", "trn1.2xlarge"),
        _ray_node("c" * 56, "c", "trn1.2xlarge", alive=False, reason="health check failed\nmore"),
    ]
    fake_ray.answers = {"a" * 56: lambda: _Ref(_summary(pid=11)), "b" * 56: lambda: _Ref(ready=False)}
    fake_ray.actors = [SimpleNamespace(node_id="a" * 56, pid=11, job_id="01000000", class_name="f.<locals>.Holder",
                                       actor_id="ff" * 16, name="h0")]
    fake_ray.tasks = [SimpleNamespace(type="NORMAL_TASK", func_or_class_name="huge", name="huge", job_id="01000000",
                                      state="PENDING_NODE_ASSIGNMENT", required_resources={"neuron_cores": 64.0},
                                      task_id="t1"),
                      SimpleNamespace(type="ACTOR_CREATION_TASK", func_or_class_name="NodeMonitorActor.__init__",
                                      name="x", job_id="02000000", state="PENDING_NODE_ASSIGNMENT",
                                      required_resources={}, task_id="t2")]
    monitor = ClusterMonitor(_info(("a", True), ("b", True), ("c", True), ("d", False)), timeout_s=2)
    snap = monitor.sample()
    states = {n.name: (n.state, n.reason.split(" (")[0]) for n in snap.nodes}
    assert states == {"a": ("alive", ""), "b": ("unreachable", "its monitor did not answer within 2.0 s"),
                      "c": ("dead", "health check failed"), "d": ("stopped", "stopped")}
    assert [n.name for n in snap.nodes] == ["a", "b", "c", "d"]  # the cluster's order; the head is not a node
    assert snap.node("c").devices and snap.node("c").total_cores == 2  # its layout from the instance
    (owner,) = snap.node("a").owners
    assert owner.ray is not None and owner.ray.text == "job 01000000 · actor Holder (h0)"
    (pending,) = snap.pending  # the views' own monitor actors are not work waiting for a node
    assert pending.name == "huge" and pending.reason.startswith("larger than any node (neuron_cores: 64 asked")
    assert fake_ray.waited and fake_ray.waited[0] <= 2.0
    # The next sample: b's unanswered call is waited on again (not sent twice), a's owner label is cached.
    fake_ray.state_calls.clear()
    monitor.sample()
    assert fake_ray.summary_calls == {"a" * 56: 2, "b" * 56: 1}
    assert "actors" not in fake_ray.state_calls
    # Node a comes back under a new id: its actor is replaced (the old one killed), nothing else.
    fake_ray.node_list[1] = _ray_node("a" * 55 + "2", "a", "trn1.2xlarge")
    fake_ray.answers["a" * 55 + "2"] = lambda: _Ref(_summary())
    assert monitor.sample().node("a").state == "alive"
    assert fake_ray.created == ["a" * 56, "b" * 56, "a" * 55 + "2"] and fake_ray.killed == 1
    # A monitor that fails (its actor died with its node) is reported, and re-created on the next sample.
    fake_ray.answers["a" * 55 + "2"] = lambda: _Ref(error=RuntimeError("ActorDiedError: gone\ntrace"))
    assert monitor.sample().node("a").reason == "its monitor failed: RuntimeError: ActorDiedError: gone"
    monitor.close()


def test_owner_labels_of_tasks_and_unlisted_workers_are_looked_up_again(fake_ray: _FakeRay) -> None:
    """An actor still in its constructor (it claims cores there) is only a "worker" to the state API at first,
    and a worker process runs task after task: those labels are provisional; an actor's is kept."""
    from nrt_lab.cluster.views import ClusterMonitor

    fake_ray.node_list = [_ray_node("a" * 56, "a", "trn1.2xlarge")]
    fake_ray.answers = {"a" * 56: lambda: _Ref(_summary(pid=11))}
    fake_ray.workers = [SimpleNamespace(node_id="a" * 56, pid=11, worker_type="WORKER")]
    monitor = ClusterMonitor(_info(("a", True)), timeout_s=2)
    (owner,) = monitor.sample().node("a").owners
    assert owner.ray is not None and owner.ray.kind == "worker"
    fake_ray.actors = [SimpleNamespace(node_id="a" * 56, pid=11, job_id="01000000", class_name="Busy",
                                       actor_id="ee" * 16, name="")]
    (owner,) = monitor.sample().node("a").owners
    assert owner.ray is not None and owner.ray.text == "job 01000000 · actor Busy"
    fake_ray.state_calls.clear()
    monitor.sample()
    assert "actors" not in fake_ray.state_calls  # an actor's label is final
    monitor.close()


def test_monitor_never_hangs_on_a_silent_head(fake_ray: _FakeRay) -> None:
    from nrt_lab.cluster.views import ClusterMonitor

    fake_ray.gate = threading.Event()
    monitor = ClusterMonitor(_info(("a", True)), timeout_s=0.4)
    try:
        started = time.monotonic()
        snap = monitor.sample()
        assert time.monotonic() - started < 2.0
        assert snap.node("a").state == "unreachable" and "did not answer" in snap.node("a").reason
        assert snap.errors and "Ray head did not answer" in snap.errors[0]
        again = monitor.sample()  # the stuck call is not repeated: the head is still reported
        assert "still unanswered" in again.errors[0]
    finally:
        fake_ray.gate.set()
        monitor.close()
