"""Benchmark: cost of claiming NeuronCores (not a test; prints ratios measured side by side).

1. Median ``init()+close()`` cycle on trn2.48xlarge (LNC 1) claiming 2, 32 and 128 cores, and the ratio
   128-core / 2-core (goal ≤ 1.5: the per-core cost must not dominate).
2. History: the 2-core cycle on a fresh machine vs after 10,000 cores of history (runtimes that claimed every
   core, 10,112 core claims in all, whose counters the machine keeps): the ratio (goal ≤ 1.1) shows that a close
   updates its own cores' counters in place, whatever the machine's past.
3. 32 racing processes each claiming one core (NEURON_RT_NUM_CORES=1) vs 32 processes that only import
   nrt_lab (the baseline): the ratio is what allocation adds to a process start.
Usage: .venv/bin/python benchmarks/allocation.py [--cycles N] [--no-race]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nrt_lab

# Each child reports, then holds its core until the parent closes its stdin (so no core is reused).
CLAIM_ONE = "import nrt_lab, sys; rt = nrt_lab.init(); print(rt.cores[0], flush=True); sys.stdin.read()"
IMPORT_ONLY = "import nrt_lab, sys; print('x', flush=True); sys.stdin.read()"
HISTORY_CORES = 10_000


def cycle_median(root: Path, visible: str, cycles: int) -> float:
    """Median seconds of one init+close with NEURON_RT_VISIBLE_CORES=visible."""
    env = {"NRT_LAB_ROOT": str(root), "NEURON_RT_VISIBLE_CORES": visible}
    samples = []
    for _ in range(cycles):
        start = time.perf_counter()
        nrt_lab.init(env=env)
        nrt_lab.close()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def race(root: Path, code: str, count: int) -> tuple[float, list[str]]:
    """Start ``count`` processes at once; seconds until all have reported, and what each reported."""
    env = {**os.environ, "NRT_LAB_ROOT": str(root), "NEURON_RT_NUM_CORES": "1"}
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(count)]
    outputs = [p.stdout.readline() if p.stdout else "" for p in procs]
    elapsed = time.perf_counter() - start
    for p in procs:
        p.communicate("")
    return elapsed, outputs


def main() -> None:
    """Run both measurements and print the ratios."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--no-race", action="store_true", help="skip the 32-process race (slow on a busy machine)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "machine"
        nrt_lab.open_machine(root).create("trn2.48xlarge", lnc=1)
        cycle_median(root, "0-127", 20)  # warm-up
        medians = {n: cycle_median(root, f"0-{n - 1}", args.cycles) for n in (2, 32, 128)}
        for n, value in medians.items():
            print(f"init+close {n:>3} cores: median {value * 1e3:7.3f} ms")
        print(f"ratio 128-core / 2-core: {medians[128] / medians[2]:.2f} (goal <= 1.5)")

        fresh_root = Path(tmp) / "fresh"
        nrt_lab.open_machine(fresh_root).create("trn2.48xlarge", lnc=1)
        cycle_median(fresh_root, "0-1", 20)  # warm-up
        fresh = cycle_median(fresh_root, "0-1", args.cycles)
        cycle_median(fresh_root, "0-127", HISTORY_CORES // 128 + 1)  # every core's counters now hold history
        aged = cycle_median(fresh_root, "0-1", args.cycles)
        print(f"init+close   2 cores, fresh machine: median {fresh * 1e3:7.3f} ms; after {HISTORY_CORES:,} cores of "
              f"history: {aged * 1e3:7.3f} ms; ratio {aged / fresh:.2f} (goal <= 1.1)")

        if args.no_race:
            return
        base_time, _ = race(root, IMPORT_ONLY, 32)
        race_time, outputs = race(root, CLAIM_ONE, 32)
        claimed = sorted(int(o) for o in outputs if o.strip().isdigit())
        assert len(set(claimed)) == len(claimed) == 32, f"expected 32 distinct cores, got {claimed}"
        print(f"32 racing processes claiming one core each: {race_time:.3f} s; "
              f"import-only baseline {base_time:.3f} s; ratio {race_time / base_time:.2f}")


if __name__ == "__main__":
    main()
