"""A real Ray cluster of two emulated nodes: scheduling of ``neuron_cores``, failures, recovery, ports, exporters.

One module-scoped cluster (``big`` = trn1.32xlarge, 32 NeuronCores; ``edge`` = inf2.xlarge, 2 NeuronCores; 2 CPUs
each, exporters on) serves every test; it only runs inside a loopback-only network namespace (./run-tests as root
uses scripts/loopback_only.py), elsewhere the module skips and says why. Every check of who holds which core is
made through the node's own monitor (nrt_lab.monitor.Monitor on the node's root), as neuron-ls would show it.
Tasks that call ``nrt_lab.init()`` close the runtime before they return: Ray hands a task's ``neuron_cores`` to the
next task the moment it returns, while a Neuron runtime holds them until it is closed or its process has exited
(which, for a worker started with ``max_calls=1``, happens a little *after* the return: the next task on those
cores then fails with "NeuronCore(s) not available"). The same holds on real Neuron hosts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from cluster_helpers import requires_cluster, running_cluster

import nrt_lab.cluster as cluster
from nrt_lab.monitor import Monitor

pytestmark = requires_cluster

SPECS = ["big=trn1.32xlarge", "edge=inf2.xlarge"]
WAIT_S = 60.0  # the longest any one thing may take on a loaded 2-CPU machine


def eventually(check: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
    """Poll ``check`` until it returns something truthy (Ray and the monitor are other processes)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def owners(root: Path) -> dict[int, tuple[int, ...]]:
    """pid -> machine cores of every runtime owning cores on the node with state root ``root``."""
    return {o.pid: tuple(o.machine_cores) for o in Monitor(root=root).sample(runtimes=False).runtime_owners}


def parse_cores(text: str) -> tuple[int, ...]:
    """NEURON_RT_VISIBLE_CORES as Ray writes it ("0,1,2")."""
    return tuple(int(c) for c in text.split(",")) if text else ()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cluster.ClusterInfo]:
    """The module's cluster, with this process connected as its Ray driver."""
    where = tmp_path_factory.mktemp("cluster")
    with running_cluster(where, SPECS, cpus_per_node=2, exporters=True) as info:
        cluster.connect(where)
        import ray

        # The task bodies below live in this test module, which workers cannot import: send them by value.
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        yield info  # type: ignore[misc]
        record = json.loads((where / "cluster.json").read_text())
        sessions = {p["pid"] for p in [record["head"]["process"]]
                    + [n[k] for n in record["nodes"] for k in ("process", "exporter")] if p}
        started = time.monotonic()
    # `down` (in running_cluster) is prompt and leaves no process of any of the cluster's sessions behind.
    assert time.monotonic() - started < 15.0
    left = [p.info for p in psutil.process_iter(["pid", "name", "cmdline"]) if _session_of(p.pid) in sessions
            or record["temp_dir"] in " ".join(p.info["cmdline"] or [])]
    assert left == [], left


def _session_of(pid: int) -> int:
    try:
        return os.getsid(pid)
    except OSError:
        return -1


@pytest.fixture
def ray_mod(live: cluster.ClusterInfo) -> Any:
    import ray

    return ray


# A task body shared by the scheduling tests: claim the cores Ray gave, check them through the node's monitor,
# run the demo MLP and report; then close the runtime, unless ``keep`` (an actor, or a worker about to die).
def _claim_and_run(neff: bytes | None = None, keep: bool = False) -> dict[str, Any]:
    import nrt_lab

    runtime = nrt_lab.init()
    try:
        return _run_on(runtime, neff)
    finally:
        if not keep:
            nrt_lab.close()  # before Ray gives these cores to the next task


def _run_on(runtime: Any, neff: bytes | None) -> dict[str, Any]:
    import os

    import numpy as np
    import ray

    import nrt_lab
    from nrt_lab import models
    from nrt_lab.monitor import Monitor

    mine = [o for o in Monitor().sample(runtimes=False).runtime_owners if o.pid == os.getpid()]
    demo = models.build_mlp()
    inputs = models.example_inputs("mlp")
    probs = nrt_lab.Model.load(demo.neff).execute(inputs)["probs"].numpy()
    result = {
        "visible": os.environ.get("NEURON_RT_VISIBLE_CORES", ""),
        "node": ray.get_runtime_context().get_node_labels().get(cluster.NODE_LABEL),
        "instance": nrt_lab.open_machine().state().instance.name,
        "cores": list(runtime.cores),
        "monitor_cores": [list(o.machine_cores) for o in mine],
        "mlp_error": float(np.max(np.abs(probs - demo.reference(inputs)["probs"]))),
    }
    if neff is not None:
        x = np.arange(12, dtype=np.float32).reshape(3, 4)
        result["onnx"] = nrt_lab.Model.load(neff).execute({"x": x})["y"].numpy().tolist()
    return result


def tiny_onnx() -> bytes:
    """y = relu(x) + 1 for x of shape 3x4, an ONNX graph made here (nothing downloaded)."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "one"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])], initializer=[one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return bytes(model.SerializeToString())


# ---------------------------------------------------------------------------------------------- scheduling


def test_cluster_is_up_as_recorded(live: cluster.ClusterInfo, ray_mod: Any) -> None:
    assert [(n.name, n.instance, n.neuron_cores, n.cpus, n.running) for n in live.nodes] == [
        ("big", "trn1.32xlarge", 32, 2, True), ("edge", "inf2.xlarge", 2, 2, True)]
    alive = {n["NodeID"]: n for n in ray_mod.nodes() if n["Alive"]}
    for node in live.nodes:
        assert alive[node.ray_node_id]["Resources"]["neuron_cores"] == node.neuron_cores
        assert alive[node.ray_node_id]["Labels"][cluster.INSTANCE_LABEL] == node.instance
    assert ray_mod.cluster_resources()["neuron_cores"] == 34


def test_tasks_and_actors_land_where_their_cores_fit_and_claim_exactly_those(live: cluster.ClusterInfo,
                                                                             ray_mod: Any) -> None:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    neff = pytest.importorskip("nrt_lab.compiler").compile(tiny_onnx())
    # num_cpus=0: all of them run at once (a worker each), whatever the nodes' 2 CPUs are doing.
    run = ray_mod.remote(num_cpus=0)(_claim_and_run)
    big4 = run.options(resources={"neuron_cores": 4}).remote(neff)  # only big has 4 cores
    any1 = run.options(resources={"neuron_cores": 1}).remote()
    by_label = run.options(resources={"neuron_cores": 1},
                           label_selector={cluster.INSTANCE_LABEL: "inf2.xlarge"}).remote()
    by_id = run.options(resources={"neuron_cores": 1}, scheduling_strategy=NodeAffinitySchedulingStrategy(
        live.node("edge").ray_node_id, soft=False)).remote()

    @ray_mod.remote(resources={"neuron_cores": 2}, num_cpus=0, label_selector={cluster.NODE_LABEL: "big"})
    class Holder:
        def claim(self) -> dict[str, Any]:
            return _claim_and_run(keep=True) | {"pid": os.getpid()}

    actor = Holder.remote()
    held = actor.claim.remote()
    for result in ray_mod.get([big4, any1, by_label, by_id, held], timeout=WAIT_S):
        visible = parse_cores(result["visible"])
        assert result["cores"] == list(visible)
        assert result["monitor_cores"] == [list(visible)]  # the node's monitor shows exactly those, owned by it
        assert result["mlp_error"] < 1e-4
    result = ray_mod.get(big4)
    assert result["node"] == "big" and result["instance"] == "trn1.32xlarge" and len(result["cores"]) == 4
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_allclose(result["onnx"], np.maximum(x, 0) + 1)  # the compiled ONNX model ran there
    for pinned in ray_mod.get([by_label, by_id]):  # placement by label and by node id
        assert (pinned["node"], pinned["instance"]) == ("edge", "inf2.xlarge")
    # The actor keeps its cores between calls (its runtime lives as long as it does) and frees them when killed.
    result = ray_mod.get(held)
    big = live.node("big").root
    assert result["node"] == "big" and owners(big)[result["pid"]] == parse_cores(result["visible"])
    ray_mod.kill(actor)
    eventually(lambda: result["pid"] not in owners(big), "the killed actor's cores to be free")


def test_ray_data_map_batches_across_nodes(live: cluster.ClusterInfo, ray_mod: Any) -> None:
    from ray.util.state import list_actors

    from nrt_lab.cluster.jobs import batch_inference

    # Ray Data spreads its pool's workers over the nodes with room (DataContext.scheduling_strategy "SPREAD").
    result = batch_inference("mlp", batches=8, workers=2, engine="data")
    assert len(result.outputs) == 8 and result.max_error() < 1e-4
    assert set(result.per_node) <= {"big", "edge"} and sum(result.per_node.values()) == 8
    assert all(len(parse_cores(v)) == 1 for v in result.visible_cores)
    assert len(set(result.workers)) <= 2  # the model is loaded once per worker, not per batch
    workers = [a for a in list_actors(address=live.dashboard_url, detail=True, limit=1000,
                                      raise_on_missing_output=False) if "BatchPredictor" in a.class_name]
    assert len(workers) == 2
    # A worker the pool asked for may not have been placed yet when 8 small batches are already done (the state
    # API then shows no node): the placed ones are on distinct nodes of this cluster.
    placed = [a.node_id for a in workers if a.node_id]
    assert placed and len(set(placed)) == len(placed), workers
    assert set(placed) <= {live.node("big").ray_node_id, live.node("edge").ray_node_id}


def test_ray_serve_replica_on_neuron_cores(live: cluster.ClusterInfo, ray_mod: Any) -> None:
    from ray import serve

    @serve.deployment(ray_actor_options={"resources": {"neuron_cores": 1}, "num_cpus": 0})
    class Adder:
        def __init__(self) -> None:
            import nrt_lab
            from nrt_lab import models

            self.runtime = nrt_lab.init()
            self.model = nrt_lab.Model.load(models.build_add().neff)

        def __call__(self, a: list[float], b: list[float]) -> dict[str, Any]:
            inputs = {"a_input": np.array(a, dtype=np.float16).reshape(4, 3),
                      "b_input": np.array(b, dtype=np.float16).reshape(4, 3)}
            out = self.model.execute(inputs)["output_0"].numpy()
            return {"sum": out.ravel().tolist(), "visible": os.environ.get("NEURON_RT_VISIBLE_CORES", ""),
                    "cores": list(self.runtime.cores), "pid": os.getpid(),
                    "node": os.path.basename(os.environ.get("NRT_LAB_ROOT", ""))}

    try:
        handle = serve.run(Adder.bind(), name="adder", route_prefix=None)
        a, b = [float(i) for i in range(12)], [0.5] * 12
        answer = handle.remote(a, b).result(timeout_s=WAIT_S)
        assert answer["sum"] == [x + 0.5 for x in a]
        assert answer["cores"] == list(parse_cores(answer["visible"])) and len(answer["cores"]) == 1
        assert owners(live.node(answer["node"]).root)[answer["pid"]] == tuple(answer["cores"])
    finally:
        serve.shutdown()


# ---------------------------------------------------------------------------------------------- failures


def test_request_larger_than_any_node_stays_pending(live: cluster.ClusterInfo, ray_mod: Any) -> None:
    from ray.exceptions import GetTimeoutError
    from ray.util.state import list_tasks

    @ray_mod.remote(resources={"neuron_cores": 64})
    def too_big() -> int:
        return 1

    ref = too_big.remote()
    task_id = ref.task_id().hex()

    def state() -> str:
        tasks = list_tasks(address=live.dashboard_url, filters=[("task_id", "=", task_id)], raise_on_missing_output=False)
        return tasks[0].state if tasks else ""

    try:
        assert eventually(lambda: state() == "PENDING_NODE_ASSIGNMENT", "the task to be pending")
        with pytest.raises(GetTimeoutError):
            ray_mod.get(ref, timeout=1.0)
        # What the user sees: Ray 2.60 sends the driver no message for an infeasible request in a fixed-size
        # cluster (its "No available node types can fulfill resource request" comes from an autoscaler, which
        # this cluster has not); `ray status` lists it under "Pending Demands".
        status = subprocess.run([str(Path(sys.executable).parent / "ray"), "status", f"--address={live.address}"],
                                capture_output=True, text=True, timeout=WAIT_S, check=False)
        pending = status.stdout.split("Pending Demands:", 1)[-1]
        assert "Pending Demands:" in status.stdout and "'neuron_cores': 64.0" in pending, status.stdout
        assert state() == "PENDING_NODE_ASSIGNMENT"
    finally:
        ray_mod.cancel(ref, force=True)


def test_sigkill_of_a_worker_frees_its_cores_and_ray_restarts_it(live: cluster.ClusterInfo, ray_mod: Any,
                                                                 tmp_path: Path) -> None:
    @ray_mod.remote(resources={"neuron_cores": 2}, num_cpus=0, max_restarts=1, max_task_retries=0)
    class Holder:
        def claim(self) -> dict[str, Any]:
            return _claim_and_run(keep=True) | {"pid": os.getpid()}

    actor = Holder.remote()
    first = ray_mod.get(actor.claim.remote(), timeout=WAIT_S)
    root = live.node(first["node"]).root
    assert first["pid"] in owners(root)
    os.kill(first["pid"], signal.SIGKILL)
    eventually(lambda: first["pid"] not in owners(root), "the killed worker's cores to be free", 10.0)
    second = eventually(lambda: _call_quietly(ray_mod, actor), "the restarted actor to answer")
    assert second["pid"] != first["pid"] and second["mlp_error"] < 1e-4
    assert owners(live.node(second["node"]).root)[second["pid"]] == tuple(parse_cores(second["visible"]))
    ray_mod.kill(actor)

    marker = tmp_path / "attempts"

    @ray_mod.remote(resources={"neuron_cores": 1}, num_cpus=0, max_retries=1)
    def dies_once(marker: str) -> dict[str, Any]:
        import os
        import signal

        import nrt_lab

        result = _claim_and_run(keep=True)
        with open(marker, "a") as out:
            out.write(f"{os.getpid()}\n")
        if len(open(marker).read().split()) == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # the first attempt dies holding its core
        nrt_lab.close()
        return result

    result = ray_mod.get(dies_once.remote(str(marker)), timeout=WAIT_S)
    assert len(marker.read_text().split()) == 2 and result["mlp_error"] < 1e-4
    assert result["monitor_cores"] == [list(parse_cores(result["visible"]))]


def _call_quietly(ray_mod: Any, actor: Any) -> dict[str, Any] | None:
    from ray.exceptions import RayActorError

    try:
        return ray_mod.get(actor.claim.remote(), timeout=WAIT_S)  # type: ignore[no-any-return]
    except RayActorError:  # still restarting
        return None


def test_node_stopped_mid_job_then_started_again(live: cluster.ClusterInfo, ray_mod: Any, tmp_path: Path) -> None:
    from ray.exceptions import NodeDiedError, RayTaskError, WorkerCrashedError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    edge = live.node("edge")

    def on_edge(soft: bool) -> Any:
        return NodeAffinitySchedulingStrategy(edge.ray_node_id, soft=soft)

    # num_cpus=0: whatever else runs on edge, both tasks fit there at once.
    @ray_mod.remote(resources={"neuron_cores": 1}, num_cpus=0)
    def hold(marker: str) -> dict[str, Any]:
        import os
        import time

        import nrt_lab

        result = _claim_and_run(keep=True)
        with open(marker, "a") as out:
            out.write(f"{result['node']} {os.getpid()}\n")
        if result["node"] == "edge":
            time.sleep(120)  # held until the node dies
        nrt_lab.close()
        return result

    # What ran before has let go of edge's cores (Ray Data's and Serve's workers included).
    eventually(lambda: owners(edge.root) == {}, "edge's cores to be free")
    lost, moved = tmp_path / "lost", tmp_path / "moved"
    doomed = hold.options(scheduling_strategy=on_edge(False), max_retries=0).remote(str(lost))
    retried = hold.options(scheduling_strategy=on_edge(True), max_retries=2).remote(str(moved))
    eventually(lambda: lost.exists() and moved.exists(), "both tasks to run on edge")
    pids = {int(path.read_text().split()[1]) for path in (lost, moved)}
    assert eventually(lambda: set(owners(edge.root)) == pids, "both tasks to hold cores on edge")
    stopped = cluster.stop_node("edge", live.directory, kill=True)
    assert not stopped.running and stopped.ray_node_id == ""
    with pytest.raises((NodeDiedError, WorkerCrashedError, RayTaskError)) as caught:
        ray_mod.get(doomed, timeout=WAIT_S)
    assert "node" in str(caught.value).lower() or "worker" in str(caught.value).lower()
    again = ray_mod.get(retried, timeout=WAIT_S)  # retried, and the soft affinity let it run on big
    assert again["node"] == "big" and [line.split()[0] for line in moved.read_text().splitlines()] == ["edge", "big"]
    status = cluster.read_cluster(live.directory).node("edge")
    assert not status.running and status.exporter_url is None
    alive = {n["NodeID"] for n in ray_mod.nodes() if n["Alive"]}
    assert edge.ray_node_id not in alive

    started = cluster.start_node("edge", live.directory)
    assert started.running and started.ray_node_id not in ("", edge.ray_node_id)
    assert owners(edge.root) == {}  # every core of the machine is free again (the killed workers left nothing)
    run = ray_mod.remote(resources={"neuron_cores": 2})(_claim_and_run)
    result = ray_mod.get(run.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        started.ray_node_id, soft=False)).remote(), timeout=WAIT_S)
    assert result["node"] == "edge" and result["cores"] == [0, 1]


# ---------------------------------------------------------------------------------------------- network, exporters


def test_every_listening_socket_is_loopback(live: cluster.ClusterInfo) -> None:
    sockets = cluster.listening_sockets(live.directory)
    assert {s.node for s in sockets} >= {"head", "big", "edge"}
    exposed = [s for s in sockets if not s.loopback]
    assert exposed == [], exposed
    assert any(s.port == int(live.address.rsplit(":", 1)[1]) for s in sockets)  # the GCS is among them


def test_exporters_serve_their_own_node(live: cluster.ClusterInfo) -> None:
    info = cluster.read_cluster(live.directory)
    for node in info.nodes:
        assert node.exporter_url is not None

        def scrape(url: str = node.exporter_url) -> str:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - a loopback URL
                    text: str = response.read().decode()
            except OSError:
                return ""
            return text if "instance_info{" in text else ""

        text = eventually(scrape, f"{node.name}'s exporter to serve a report")
        assert f'instance_type="{node.instance}"' in text
        others = {other.instance for other in info.nodes} - {node.instance}
        assert not any(f'instance_type="{other}"' in text for other in others)
