"""Benchmark: what one live TopView update costs, incremental (what the widget sends) vs re-sending everything.

Machine: trn2.48xlarge at LNC 1 (128 NeuronCores) with a few owner processes, each executing a model on some of
its cores. For every update it measures

* Python time: reading the machine (``Monitor.sample`` and the owner records) and building + diffing + sending
  the update (``TopView.apply``);
* bytes sent: the compact JSON of the comm message the update produced (recorded with ``record_messages``);
* the baseline: the same update sent as the whole state (what a widget that re-assigns its traits each time
  sends), with and without the history ring, and the time to serialise it.

Host CPU and memory are read at most every 0.5 s (``Monitor.system_interval``): at 10 Hz one update in five pays
for them, which the mean CPU time includes and the median does not. ``--profile N`` prints where N more updates
spend their CPU time (cProfile).

Prints the ratio incremental / full (goal: ≤ 10 %), and what opening a whole Dashboard costs the page: the bytes
of every widget model's state a front end receives (plotly.js included, once: one library model per kernel,
however many charts) against the 6 MB budget. Not a test.
Usage: .venv/bin/python benchmarks/widget_updates.py [--updates 40] [--period 0.1] [--owners 4] [--profile N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nrt_lab.driver import open_machine
from nrt_lab.widgets import Dashboard, TopView, record_messages

_OWNER = r"""
import json, os, signal, sys, threading, time
signal.alarm(600)
import nrt_lab
from nrt_lab.models import build_mlp, example_inputs
rt = nrt_lab.init()
neff, _ = build_mlp()
inputs = example_inputs("mlp")
def loop(model, pause):
    while True:
        model.execute(inputs)
        time.sleep(pause)
for i in range(int(os.environ["BUSY_CORES"])):
    threading.Thread(target=loop, args=(nrt_lab.Model.load(neff, core=i), 0.004 + 0.002 * i), daemon=True).start()
print(json.dumps({"pid": os.getpid(), "cores": list(rt.cores)}), flush=True)
sys.stdin.read()
"""

# (NEURON_RT_NUM_CORES, busy cores) per owner process
_OWNERS = [(32, 3), (16, 2), (8, 2), (4, 1), (2, 1), (1, 1)]


def _ms(values: list[float]) -> str:
    values = sorted(values)
    return f"median {statistics.median(values) * 1e3:6.2f} ms, p90 {values[int(0.9 * (len(values) - 1))] * 1e3:6.2f} ms"


def _profile(view: TopView, updates: int, period: float) -> None:
    """cProfile ``updates`` more updates (read + build + send) and print where their time goes."""
    import cProfile
    import pstats

    profiler = cProfile.Profile(time.thread_time)  # CPU time: the machine is shared
    for _ in range(updates):
        time.sleep(period)
        profiler.enable()
        view.apply(view.sampler.observe(True))
        profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=40, help="updates to measure (default 40)")
    parser.add_argument("--period", type=float, default=0.1, help="seconds between updates (default 0.1)")
    parser.add_argument("--owners", type=int, default=4, help=f"owner processes, 1-{len(_OWNERS)} (default 4)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="after measuring, profile N more updates with cProfile and print the top functions")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="nrt_lab_bench_")) / "state"
    open_machine(root).create("trn2.48xlarge", 1)
    procs: list[subprocess.Popen[str]] = []
    try:
        for index, (cores, busy) in enumerate(_OWNERS[: args.owners]):
            env = {k: v for k, v in os.environ.items() if not k.startswith(("NEURON", "NRT_LAB"))}
            env.update(NRT_LAB_ROOT=str(root), NEURON_RT_NUM_CORES=str(cores), NEURON_PROCESS_TAG=f"job{index}",
                       BUSY_CORES=str(busy))
            procs.append(subprocess.Popen([sys.executable, "-c", _OWNER], env=env, text=True, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE))
        for proc in procs:
            assert proc.stdout is not None
            json.loads(proc.stdout.readline())
        busy_total = sum(b for _, b in _OWNERS[: args.owners])
        owned_total = sum(c for c, _ in _OWNERS[: args.owners])
        print(f"machine: trn2.48xlarge, LNC 1, 128 NeuronCores; {len(procs)} owner processes holding {owned_total} "
              f"cores, {busy_total} of them executing an MLP; period {args.period} s; {args.updates} updates")

        board = Dashboard(root=root, autostart=False)
        board.refresh()
        opened: dict[str, int] = {}
        for name, model in (("DriverStatus", board.driver_status), ("CoreMap", board.core_map),
                            ("TopView", board.top_view), ("plotly.js library", board.top_view.plotly),
                            ("boxes and layouts", None)):
            if model is None:
                others = [board, board._body] + [w.layout for w in (board, board._body, *board.parts)]
                opened[name] = sum(len(json.dumps(w.get_state(), separators=(",", ":"), default=str)) for w in others)
            else:
                opened[name] = len(json.dumps(model.get_state(), separators=(",", ":"), default=str))
        second = TopView(root=root, autostart=False)
        copies = len({id(board.top_view.plotly), id(second.plotly)})
        second.close()
        board.close()
        total = sum(opened.values())
        print("opening a Dashboard: " + ", ".join(f"{k} {v / 1e6:.3f} MB" for k, v in opened.items())
              + f"; total {total / 1e6:.2f} MB (budget 6 MB); plotly.js copies for 2 chart widgets: {copies}")

        view = TopView(root=root, autostart=False, history_size=60)
        for _ in range(60):  # fill the history ring to its steady size
            time.sleep(0.02)
            view.refresh()
        log = record_messages(view)
        read_s: list[float] = []
        apply_s: list[float] = []
        cpu_s: list[float] = []  # CPU time of this thread per update: what a 10 Hz widget costs a core
        full_bytes: list[int] = []
        full_hist_bytes: list[int] = []
        full_dump_s: list[float] = []
        delta_dump_s: list[float] = []
        for _ in range(args.updates):
            time.sleep(args.period)
            t0, c0 = time.perf_counter(), time.thread_time()
            observation = view.sampler.observe(True)
            t1 = time.perf_counter()
            view.apply(observation)
            t2, c2 = time.perf_counter(), time.thread_time()
            read_s.append(t1 - t0)
            apply_s.append(t2 - t1)
            cpu_s.append(c2 - c0)
            state = view.current_state()
            no_hist = {k: v for k, v in state.items() if k != "hist"}
            # The message a non-incremental widget would send: the whole state trait, every update.
            t3 = time.perf_counter()
            full_text = json.dumps({"method": "update", "state": {"state": state}, "buffer_paths": []},
                                   separators=(",", ":"))
            t4 = time.perf_counter()
            json.dumps({"method": "update", "state": {"delta": view.delta}, "buffer_paths": []},
                       separators=(",", ":"))
            t5 = time.perf_counter()
            full_dump_s.append(t4 - t3)
            delta_dump_s.append(t5 - t4)
            full_hist_bytes.append(len(full_text.encode()))
            full_bytes.append(len(json.dumps({"method": "update", "state": {"state": no_hist}, "buffer_paths": []},
                                             separators=(",", ":")).encode()))
        if args.profile:
            _profile(view, args.profile, args.period)
        sent = [n for _, n, s in log.updates() if "delta" in s]
        changed = [len(s["delta"]["set"]) for _, _, s in log.updates() if "delta" in s]
        view.close()

        inc = statistics.mean(sent)
        full = statistics.mean(full_bytes)
        full_hist = statistics.mean(full_hist_bytes)
        print(f"python time per update (wall): read machine {_ms(read_s)}; build+diff+send {_ms(apply_s)}")
        print(f"python CPU per update (this thread, read + build + send): {_ms(cpu_s)}, mean "
              f"{statistics.mean(cpu_s) * 1e3:.2f} ms (budget: 2 ms, i.e. a 10 Hz widget costs <= 2 % of a core; "
              "wall time also counts the waits for CPUs the owners keep busy)")
        print(f"serialising: delta {_ms(delta_dump_s)}; full state with history {_ms(full_dump_s)}")
        print(f"keys changed per update: median {statistics.median(changed):.0f} "
              f"(of {len(view.current_state()) - 2} state keys)")
        print(f"bytes per update: incremental {inc:8.0f} (median {statistics.median(sent):.0f}, max {max(sent)})")
        print(f"                  full state  {full:8.0f} without history, {full_hist:.0f} with the 60-row history")
        print(f"ratio incremental/full: {inc / full:6.1%} vs the state without history, "
              f"{inc / full_hist:6.1%} vs the whole state  (goal <= 10%)")
        return 0
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(timeout=15)


if __name__ == "__main__":
    raise SystemExit(main())
