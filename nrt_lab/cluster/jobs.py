"""A fixed batch-inference job across the cluster: the demo job of tutorial 08 and of benchmarks/cluster_scaling.py.

``batch_inference("mlp", batches=16, workers=2)`` runs ``batches`` batches of a demo model (:mod:`nrt_lab.models`)
on ``workers`` Ray actors, each asking for ``cores_per_worker`` ``neuron_cores``. Ray places each actor on a node
with enough free cores and sets its ``NEURON_RT_VISIBLE_CORES``; the actor calls ``nrt_lab.init()`` (claiming
exactly those cores on its node's machine), loads the model **once**, and then runs every batch it is given.
Batch ``i``'s inputs are ``example_inputs(model, seed=SEED + i)``, made where the batch runs (nothing but an index
travels), so :meth:`BatchInferenceResult.max_error` can check every output against the NumPy reference.

Two engines do the same work: ``"actors"`` (a pool of Ray actors spread over the nodes, batches dealt round-robin) and ``"data"`` (Ray
Data ``map_batches`` with a callable class, ``concurrency=workers``: the way Neuron users write offline
inference). ``neuron=False`` runs the same job without nrt_lab: the same actors do the same math in plain NumPy on CPUs
(for ``mlp`` a float32 forward pass with weights prepared once), the baseline the benchmark compares with. The driver must be connected
(:func:`nrt_lab.cluster.connect`).
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nrt_lab.cluster.launcher import NODE_LABEL
from nrt_lab.cluster.nodes import ClusterError

__all__ = ["ENGINES", "BatchInferenceResult", "BatchPredictor", "batch_inference"]

ENGINES = ("actors", "data")
_MAX_BATCHES = 100_000

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class BatchInferenceResult:
    """What a batch-inference job produced and where it ran."""

    model: str
    engine: str
    neuron: bool  # False: the NumPy baseline (no nrt_lab)
    output_name: str  # the model output kept per batch (its first output)
    outputs: tuple[Array, ...]  # per batch, in batch order
    nodes: tuple[str, ...]  # per batch: the nrt-lab node name it ran on
    visible_cores: tuple[str, ...]  # per batch: NEURON_RT_VISIBLE_CORES of the worker that ran it ("" if none)
    workers: tuple[int, ...]  # per batch: pid of the worker process that ran it
    seed: int
    elapsed_s: float  # from starting the workers to the last result
    startup_s: float  # of which: until every worker had its model loaded (actors engine; NaN for Ray Data)
    per_node: dict[str, int] = field(default_factory=dict)  # batches per node name

    @property
    def batches_per_s(self) -> float:
        """Batches per second once the workers are ready (actors), else over the whole job (Ray Data)."""
        busy = self.elapsed_s - (0.0 if np.isnan(self.startup_s) else self.startup_s)
        return len(self.outputs) / busy if busy > 0 else 0.0

    def max_error(self) -> float:
        """The largest absolute difference between any output and the model's NumPy reference."""
        from nrt_lab.models import example_inputs, reference

        worst = 0.0
        for index, output in enumerate(self.outputs):
            expected = reference(self.model, example_inputs(self.model, seed=self.seed + index))[self.output_name]
            worst = max(worst, float(np.max(np.abs(np.asarray(output, dtype=np.float64) - expected))))
        return worst


class BatchPredictor:
    """One worker of the job: claims its cores (``nrt_lab.init()``), loads the model once, runs batches.

    A plain class (no Ray import) so that Ray Data can use it as a ``map_batches`` callable class and the actor
    engine can wrap it with ``ray.remote``. ``neuron=False``: no runtime, the NumPy reference does the work.
    """

    def __init__(self, model: str, seed: int, neuron: bool = True) -> None:
        """Build the demo model and, with ``neuron``, load it on this worker's NeuronCores."""
        import nrt_lab.models as models

        models.example_inputs(model)  # an unknown name fails here, with the accepted ones
        self.model_name, self.seed, self.neuron = model, seed, neuron
        self.node = _node_name()
        self.visible = os.environ.get("NEURON_RT_VISIBLE_CORES", "")
        demo = models.DEMO_MODELS[model]()
        self._reference = _plain_numpy(model) or demo.reference
        self._model: Any = None
        if neuron:
            from nrt_lab.runtime import Model, init

            init()
            self._model = Model.load(demo.neff, name=model)
        self.output_name = next(iter(demo.reference(models.example_inputs(model))))

    def close(self) -> None:
        """Release this worker's NeuronCores now (``nrt_close``), before Ray hands them to someone else."""
        if self._model is not None:
            from nrt_lab.runtime import close

            self._model = None
            close()

    def ready(self) -> str:
        """The node this worker runs on, once its model is loaded (the actor engine waits for every worker)."""
        return self.node

    def predict(self, index: int) -> dict[str, Any]:
        """Run batch ``index``: its output, and where it ran."""
        from nrt_lab.models import example_inputs

        inputs = example_inputs(self.model_name, seed=self.seed + index)
        if self._model is not None:
            output = self._model.execute(inputs)[self.output_name].numpy()
        else:
            output = self._reference(inputs)[self.output_name]
        return {"index": index, "output": output, "node": self.node, "visible": self.visible, "pid": os.getpid()}

    def __call__(self, batch: dict[str, Array]) -> dict[str, Array]:
        """Ray Data ``map_batches``: one output row per ``id`` of the input batch."""
        rows = [self.predict(int(index)) for index in batch["id"]]
        return {key: np.stack([row[key] for row in rows]) if key == "output" else np.array([row[key] for row in rows])
                for key in ("index", "output", "node", "visible", "pid")}


def _plain_numpy(model: str) -> Any:
    """The baseline's forward pass: for ``mlp``, the same float32 NumPy math with the weights prepared once (what
    a hand-written NumPy service would do); None for the other models, whose NumPy reference is used as is (it
    computes in float64 and rebuilds weights per call, so it is slower than a fair baseline)."""
    if model != "mlp":
        return None
    import nrt_lab.models as models

    layers = [(w.astype(np.float32), b.astype(np.float32)) for w, b in models._mlp_params()]

    def forward(inputs: dict[str, Array]) -> dict[str, Array]:
        h = np.asarray(inputs["x"], dtype=np.float32)
        for w, b in layers[:-1]:
            h = np.maximum(h @ w + b, 0.0)
        z = h @ layers[-1][0] + layers[-1][1]
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return {"probs": e / e.sum(axis=-1, keepdims=True)}

    return forward


def _node_name() -> str:
    """The nrt-lab node this worker runs on (its Ray node label), else its machine's root folder name."""
    ray = sys.modules.get("ray")
    # Only inside Ray: outside, ray.get_runtime_context() would start a local Ray instance.
    if ray is not None and ray.is_initialized():
        label = ray.get_runtime_context().get_node_labels().get(NODE_LABEL)
        if label:
            return str(label)
    return os.path.basename(os.environ.get("NRT_LAB_ROOT", "")) or "?"


def batch_inference(
    model: str = "mlp",
    batches: int = 16,
    *,
    workers: int = 2,
    cores_per_worker: int = 1,
    engine: str = "actors",
    neuron: bool = True,
    seed: int | None = None,
) -> BatchInferenceResult:
    """Run the fixed batch-inference job on the connected cluster; outputs in batch order and where each ran.

    Each of ``workers`` workers asks Ray for 1 CPU and (with ``neuron``) ``cores_per_worker`` ``neuron_cores``;
    a job that no node can hold stays pending, as any Ray job does. ClusterError for bad arguments or when no
    driver is connected.
    """
    from nrt_lab.models import DEMO_MODELS, SEED

    if model not in DEMO_MODELS:
        raise ClusterError(f"model {model!r} is not a demo model (accepted: {', '.join(DEMO_MODELS)})")
    if engine not in ENGINES:
        raise ClusterError(f"engine {engine!r} is not accepted (accepted: {', '.join(ENGINES)})")
    for what, value, high in (("batches", batches, _MAX_BATCHES), ("workers", workers, 64),
                              ("cores_per_worker", cores_per_worker, 128)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise ClusterError(f"{what} {value!r} is not accepted (accepted: an integer from 1 to {high})")
    seed = SEED if seed is None else seed
    import ray

    if not ray.is_initialized():
        raise ClusterError("no Ray driver: call nrt_lab.cluster.connect() first")
    resources = {"neuron_cores": cores_per_worker} if neuron else {}
    start = time.perf_counter()
    if engine == "actors":
        rows, ready = _run_actors(ray, model, batches, workers, resources, seed, neuron)
        startup = ready - start
    else:
        rows, startup = _run_data(ray, model, batches, workers, resources, seed, neuron), float("nan")
    elapsed = time.perf_counter() - start
    rows.sort(key=lambda row: int(row["index"]))
    if [int(row["index"]) for row in rows] != list(range(batches)):
        raise ClusterError(f"the job returned batches {[int(r['index']) for r in rows][:20]}, not 0..{batches - 1}")
    output_name = next(iter(DEMO_MODELS[model]().reference(_example(model))))
    nodes = tuple(str(row["node"]) for row in rows)
    return BatchInferenceResult(
        model=model, engine=engine, neuron=neuron, output_name=output_name,
        outputs=tuple(np.asarray(row["output"]) for row in rows), nodes=nodes,
        visible_cores=tuple(str(row["visible"]) for row in rows), workers=tuple(int(row["pid"]) for row in rows),
        seed=seed, elapsed_s=elapsed, startup_s=startup, per_node=dict(sorted(Counter(nodes).items())),
    )


def _example(model: str) -> dict[str, Array]:
    from nrt_lab.models import example_inputs

    return example_inputs(model)


def _run_actors(ray: Any, model: str, batches: int, workers: int, resources: dict[str, int], seed: int,
                neuron: bool) -> tuple[list[dict[str, Any]], float]:
    """A pool of ``workers`` actors, batches dealt round-robin once all are ready; the rows and when they were
    ready (perf_counter). The actors close their runtimes and are killed afterwards: Ray frees an actor's
    ``neuron_cores`` as soon as it is gone, so its runtime must have let go of them by then."""
    actor_class = ray.remote(BatchPredictor).options(num_cpus=1, resources=resources, scheduling_strategy="SPREAD")
    actors = [actor_class.remote(model, seed, neuron) for _ in range(workers)]
    try:
        ray.get([actor.ready.remote() for actor in actors])
        ready = time.perf_counter()
        refs = [actors[i % workers].predict.remote(i) for i in range(batches)]
        rows = list(ray.get(refs))
        ray.get([actor.close.remote() for actor in actors])
        return rows, ready
    finally:
        for actor in actors:
            ray.kill(actor)


def _run_data(ray: Any, model: str, batches: int, workers: int, resources: dict[str, int], seed: int,
              neuron: bool) -> list[dict[str, Any]]:
    """Ray Data: ``range(batches).map_batches(BatchPredictor, compute=ActorPoolStrategy(size=workers))``, one
    batch per call."""
    import ray.data

    dataset = ray.data.range(batches, override_num_blocks=min(batches, 4 * workers)).map_batches(
        BatchPredictor, fn_constructor_kwargs={"model": model, "seed": seed, "neuron": neuron}, batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1, resources=resources or None,
    )  # Ray Data spreads its workers over the nodes (DataContext.scheduling_strategy, "SPREAD" by default)
    return [dict(row) for row in dataset.take_all()]
