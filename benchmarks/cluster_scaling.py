"""Issue 12 benchmark: the fixed batch-inference job (nrt_lab.cluster.jobs) on 1, 2 and 4 emulated nodes.

For each cluster size it measures, side by side on the same cluster:

* the time from ``nrt_lab.cluster.up`` to the first result of a task asking for ``neuron_cores`` (``up`` itself,
  then connect and a first task, whose worker has to start);
* the fixed job (``batch_inference("mlp", batches=B, workers=N)``: one actor per node, model loaded once per
  actor) with nrt_lab, and the same job as plain Ray actors doing the same NumPy work (the model's NumPy
  reference) without nrt_lab: batches per second once the workers are ready, end-to-end time, and their ratio
  (the overhead nrt_lab adds; goal ≤ 1.1×). The two are run alternately, ``--repeat`` times each, medians kept.

Every node offers ``--cpus`` CPUs to Ray but they all share this machine's CPUs: more nodes only add parallelism
up to ``os.cpu_count()``. Ray runs only in a loopback-only network namespace: the script re-executes itself through
scripts/loopback_only.py (root needed) when it is not in one. Usage: ``python benchmarks/cluster_scaling.py
[--nodes 1 2 4] [--batches 512] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
INSTANCE = "inf2.xlarge"  # the smallest node: 2 NeuronCores


def _loopback_only() -> bool:
    return [name for _index, name in socket.if_nameindex()] == ["lo"]


def _reexec_isolated() -> None:
    """Run this script again inside a loopback-only network namespace (or exit with why it cannot)."""
    if os.geteuid() != 0:
        sys.exit("cluster_scaling: Ray clusters run only in a loopback-only network namespace, which needs root: "
                 "run it as root (it re-executes itself through scripts/loopback_only.py), or inside "
                 "`unshare --net` with `ip link set lo up`")
    os.execv(sys.executable, [sys.executable, str(REPO / "scripts" / "loopback_only.py"), sys.executable,
                              *sys.argv])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def measure(nodes: int, batches: int, repeat: int, cpus: int) -> dict[str, Any]:
    """One cluster of ``nodes`` nodes: start-up, then the job with and without nrt_lab, alternately."""
    import ray

    import nrt_lab.cluster as cluster
    from nrt_lab.cluster.jobs import batch_inference

    where = Path(tempfile.mkdtemp(prefix="nrt-lab-bench-cluster-"))
    start = time.perf_counter()
    info = cluster.up([f"n{i}={INSTANCE}" for i in range(nodes)], where, cpus_per_node=cpus, exporters=False)
    up_s = time.perf_counter() - start
    try:
        cluster.connect(where)

        @ray.remote(resources={"neuron_cores": 1}, num_cpus=0)
        def first() -> str:
            return os.environ.get("NEURON_RT_VISIBLE_CORES", "")

        ray.get(first.remote())
        first_s = time.perf_counter() - start
        runs: dict[bool, list[Any]] = {True: [], False: []}
        for _ in range(repeat):
            for neuron in (True, False):
                result = batch_inference("mlp", batches, workers=nodes, neuron=neuron)
                if result.max_error() > 1e-4:
                    raise AssertionError(f"wrong outputs (max error {result.max_error()})")
                runs[neuron].append(result)
        spread = sorted(runs[True][-1].per_node.values())
    finally:
        ray.shutdown()
        down_start = time.perf_counter()
        cluster.down(where)
        down_s = time.perf_counter() - down_start
        shutil.rmtree(where, ignore_errors=True)

    def med(values: list[float]) -> float:
        return statistics.median(values)

    return {
        "nodes": nodes, "up_s": up_s, "first_s": first_s, "down_s": down_s, "spread": spread,
        "nrt_rate": med([r.batches_per_s for r in runs[True]]), "plain_rate": med([r.batches_per_s for r in runs[False]]),
        "nrt_e2e": med([r.elapsed_s for r in runs[True]]), "plain_e2e": med([r.elapsed_s for r in runs[False]]),
        "nrt_startup": med([r.startup_s for r in runs[True]]),
        "plain_startup": med([r.startup_s for r in runs[False]]),
        "cores": info.nodes[0].neuron_cores,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batches", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=1, help="CPUs each node offers Ray (default 1)")
    args = parser.parse_args()
    if not _loopback_only():
        _reexec_isolated()
    os.environ.pop("RAY_ADDRESS", None)
    load_before = os.getloadavg()
    print(f"cluster_scaling: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs ({_cpu_model()}), "
          f"Python {platform.python_version()}, load average {load_before[0]:.2f}/{load_before[1]:.2f}; "
          f"{INSTANCE} nodes, {args.cpus} CPU each, job: mlp x {args.batches} batches, one actor per node, "
          f"median of {args.repeat}", flush=True)
    rows = []
    for nodes in args.nodes:
        row = measure(nodes, args.batches, args.repeat, args.cpus)
        rows.append(row)
        print(f"  {nodes} node(s): up {row['up_s']:.1f} s, up to first task result {row['first_s']:.1f} s, "
              f"down {row['down_s']:.1f} s; batches per node {row['spread']}", flush=True)
        print(f"    nrt_lab: {row['nrt_rate']:.0f} batches/s, end-to-end {row['nrt_e2e']:.2f} s "
              f"(workers ready in {row['nrt_startup']:.2f} s)", flush=True)
        print(f"    plain Ray + NumPy: {row['plain_rate']:.0f} batches/s, end-to-end {row['plain_e2e']:.2f} s "
              f"(workers ready in {row['plain_startup']:.2f} s)", flush=True)
        print(f"    overhead ratio nrt_lab/plain: time per batch {row['plain_rate'] / row['nrt_rate']:.2f}x, "
              f"end-to-end {row['nrt_e2e'] / row['plain_e2e']:.2f}x  (goal <= 1.1x)", flush=True)
    base = rows[0]
    print("scaling vs the first size (nrt_lab batches/s): "
          + ", ".join(f"{r['nodes']} nodes {r['nrt_rate'] / base['nrt_rate']:.2f}x" for r in rows))
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.2f}/{load_after[1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
