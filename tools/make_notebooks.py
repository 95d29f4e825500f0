"""Write the tutorial notebooks from the cell lists below (run after editing; outputs are left empty)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NB01_MODEL = [
    ("md", '''## A first model

Models come as NEFF files (what `neuronx-cc` produces). nrt_lab ships small demo NEFFs that really compute on
NumPy (or CuPy on a GPU). `Model.load` is `nrt_load`; calling the model is `nrt_execute`. This is the addition
kernel of AWS's nrtpy tutorial: two float16 4×3 inputs named `a_input` and `b_input`.'''),
    ("code", '''import numpy as np
from nrt_lab.models import build_add

neff, reference = build_add()
model = nrt_lab.Model.load(neff)            # on the first owned NeuronCore
print("inputs: ", {n: (i.dtype, i.shape) for n, i in model.inputs.items()})
print("outputs:", {n: (i.dtype, i.shape) for n, i in model.outputs.items()})

a = np.full((4, 3), 1.5, dtype=np.float16)
b = np.arange(12, dtype=np.float16).reshape(4, 3)
outputs = model({"a_input": a, "b_input": b})
result = outputs["output_0"].numpy()
print(result)
print("matches NumPy:", np.array_equal(result, reference({"a_input": a, "b_input": b})["output_0"]))'''),
    ("md", '''Tensors can also be allocated on a NeuronCore once and reused, as a C application would with
`nrt_tensor_allocate` and `nrt_tensor_write`:'''),
    ("code", '''ta = nrt_lab.Tensor.from_numpy(a, name="a_input")
tb = nrt_lab.Tensor.from_numpy(b, name="b_input")
out = nrt_lab.Tensor.allocate(model.outputs["output_0"].size, name="output_0", dtype=np.float16, shape=(4, 3))
model.execute({"a_input": ta, "b_input": tb}, {"output_0": out})
print(out.numpy()[0], "placement:", out.placement.name, "core:", out.core)'''),
]

NB01_CLOSE = '''rt.close()
rt.close()  # idempotent
print("runtime after close:", nrt_lab.get_runtime())
print("owners now:", [o.pid for o in machine.owners()])
try:
    model({"a_input": a, "b_input": b})
except nrt_lab.NrtError as error:
    print(error.status.name, "-", error)'''

NB05 = [
    ("md", '''# 05 — Kernels on NumPy or CuPy

Emulated NeuronCores really compute. Each op of a NEFF runs as a kernel from `nrt_lab.kernels`, written once
against the array API shared by NumPy and CuPy. The backend is chosen once per process: CuPy when a small
test computation succeeds on a GPU, NumPy otherwise; `NRT_LAB_BACKEND=numpy|cupy` forces it.'''),
    ("code", '''# NBVAL_IGNORE_OUTPUT
from nrt_lab.kernels import get_backend, kernel_names

backend = get_backend()
print("backend:", backend.name, "-", backend.reason)'''),
    ("code", '''print(", ".join(kernel_names()))'''),
    ("md", '''## FLOPs

Every kernel declares its FLOP count; the runtime adds them up per execution, which is how `neuron-top` and
`neuron-monitor` can show TFLOPS as well as utilization.'''),
    ("code", '''from nrt_lab.kernels import kernel_flops

print("matmul 128x256 @ 256x64:", kernel_flops("matmul", [(128, 256), (256, 64)]))
print("conv2d 1x3x32x32, 16 filters 3x3, padding 1:",
      kernel_flops("conv2d", [(1, 3, 32, 32), (16, 3, 3, 3)], {"padding": 1}))
print("softmax over 8x1000:", kernel_flops("softmax", [(8, 1000)]))'''),
    ("md", '''## A kernel against a NumPy reference

float16 and bfloat16 are computed in float32 and rounded back, as the hardware accumulates in higher
precision.'''),
    ("code", '''import ml_dtypes
import numpy as np
from nrt_lab.kernels import run_kernel

rng = np.random.default_rng(0)
q, k, v = (rng.standard_normal((2, 8, 16)).astype(np.float32) for _ in range(3))
out = run_kernel("attention", [q, k, v])
scores = q @ k.transpose(0, 2, 1) / np.sqrt(16)
weights = np.exp(scores - scores.max(-1, keepdims=True))
weights /= weights.sum(-1, keepdims=True)
print("attention matches the formula:", np.allclose(out, weights @ v, atol=1e-5))

x = rng.standard_normal((4, 4)).astype(ml_dtypes.bfloat16)
print("bfloat16 gelu keeps its dtype:", run_kernel("gelu", [x]).dtype)'''),
    ("md", '''## The demo models

`nrt-lab models build DIR` writes four NEFFs; each comes with a NumPy reference.'''),
    ("code", '''import os
import tempfile

import nrt_lab
from nrt_lab.models import DEMO_MODELS, example_inputs, tolerance

os.environ["NRT_LAB_ROOT"] = tempfile.mkdtemp(prefix="nrt-lab-05-")  # a scratch machine for this lesson
os.environ["NEURON_RT_NUM_CORES"] = "1"
runtime = nrt_lab.init()
models = {}
for name, build in DEMO_MODELS.items():
    neff, reference = build()
    model = nrt_lab.Model.load(neff)
    inputs = example_inputs(name)
    outputs = model(inputs)
    expected = reference(inputs)
    ok = all(np.allclose(outputs[o].numpy().astype(np.float32), expected[o], **tolerance(model.outputs[o].dtype))
             for o in model.outputs)
    models[name] = (model, inputs)
    print(f"{name:<12} {model.flops_per_execution:>12,} FLOPs per execution   matches reference: {ok}")'''),
    ("md", '''## Benchmarks

`Model.benchmark` follows nrtpy: `mode="device"` times the NeuronCore's work, `mode="host"` the whole call.
The timings depend on your machine, so this cell's output is not compared by the tests.'''),
    ("code", '''# NBVAL_IGNORE_OUTPUT
results = {}
for name, (model, inputs) in models.items():
    r = model.benchmark(inputs, warmup=3, iterations=20)
    results[name] = r
    gflops = model.flops_per_execution / (r.mean_ms / 1e3) / 1e9
    print(f"{name:<12} mean {r.mean_ms:8.3f} ms  min {r.min_ms:8.3f} ms  std {r.std_dev_ms:7.3f} ms  "
          f"{gflops:8.2f} GFLOP/s")'''),
    ("md", '''The same numbers as a plotly chart (hover a bar for its values; the camera icon saves a PNG):'''),
    ("code", '''# NBVAL_IGNORE_OUTPUT
import plotly.graph_objects as go
import plotly.io as pio

pio.renderers.default = "plotly_mimetype"  # the figure as data (JupyterLab, Voila, nbviewer draw it), no 5 MB script
go.Figure(
    go.Bar(y=list(results), x=[r.mean_ms for r in results.values()], orientation="h",
           error_x={"type": "data", "array": [r.std_dev_ms for r in results.values()]},
           hovertemplate="%{y}: %{x:.3f} ms per execution<extra></extra>"),
    layout={"title": {"text": f"demo models on the {backend.name} backend"}, "height": 300,
            "xaxis": {"title": {"text": "mean latency per execution (ms)"}}, "margin": {"l": 110, "t": 40}})'''),
    ("code", '''runtime.close()
del os.environ["NEURON_RT_NUM_CORES"]
print("closed")'''),
]


NB02 = [
    ("md", '''# 02 — How NeuronCores are allocated between processes

Runtime 2.x has no daemon: each application process claims NeuronCores when it calls `nrt_init` and keeps
them until it closes or exits. This lesson starts real processes from the notebook to show the rules:

* no variable set: the process takes **every** core, all or nothing;
* `NEURON_RT_NUM_CORES=N`: the lowest-numbered contiguous run of N free cores;
* `NEURON_RT_VISIBLE_CORES=…`: exactly those cores (contiguous); it wins over `NUM_CORES`;
* a busy core fails `nrt_init` with `NeuronCore(s) not available`.

So as not to disturb your main machine, the lesson uses a scratch one: an `inf1.6xlarge` (4 devices × 4 cores).'''),
    ("code", '''import os
import subprocess
import sys
import tempfile

import nrt_lab

os.environ["NRT_LAB_ROOT"] = tempfile.mkdtemp(prefix="nrt-lab-02-")  # a scratch machine for this lesson
machine = nrt_lab.open_machine()
state = machine.create("inf1.6xlarge")
print(state.instance.name, "with", state.instance.total_cores, "NeuronCores")'''),
    ("md", '''A helper that starts an application process with some variables. The child calls `nrt_lab.init()`,
reports the cores it got (or the runtime's error), then holds them until we close its stdin.'''),
    ("code", '''CHILD = """
import sys, nrt_lab
try:
    rt = nrt_lab.init()
    print("cores", list(rt.cores), flush=True)
except nrt_lab.NrtError as error:
    print("error", error.message, flush=True)
    sys.exit(1)
sys.stdin.read()   # hold the cores until the notebook closes our stdin
"""
processes = []


def start(**variables):
    env = {**os.environ, **variables}
    proc = subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    processes.append(proc)
    reply = proc.stdout.readline().strip()
    label = " ".join(f"{k}={v}" for k, v in variables.items()) or "(no variables)"
    print(f"{label:<32} -> {reply}")
    return proc'''),
    ("md", '''## `NEURON_RT_NUM_CORES`: first fit

Five processes asking for 3 cores each fit on 16 cores; the sixth finds only one free core left.'''),
    ("code", '''owners = [start(NEURON_RT_NUM_CORES="3") for _ in range(6)]'''),
    ("md", '''`Available` is the largest contiguous run of free cores. The failed process has exited; the other
five hold cores 0–14. `CoreMap` shows who owns what, one colour per process (PIDs differ on every run; hover
a core for its owner; the legend lists each process's command and cores):'''),
    ("code", '''# NBVAL_IGNORE_OUTPUT
from nrt_lab.widgets import CoreMap

core_map = CoreMap()
core_map'''),
    ("md", '''## `NEURON_RT_VISIBLE_CORES`: exactly these cores

The syntax takes lists and ranges in any order (Ray writes `6,5,4`); the set must be contiguous, and free.
It wins over `NEURON_RT_NUM_CORES`. Below: core 15 is free, so it is granted; `6,5,4` is well formed but cores
4–6 belong to the processes started above, so it gets the busy error; `3,5` is not contiguous; `0-3,x` is not
a list of core ids.'''),
    ("code", '''start(NEURON_RT_VISIBLE_CORES="15")
start(NEURON_RT_VISIBLE_CORES="6,5,4")
start(NEURON_RT_VISIBLE_CORES="3,5")
_ = start(NEURON_RT_VISIBLE_CORES="0-3,x")'''),
    ("md", '''## A killed process frees its cores at once

Ownership is held by the kernel on behalf of the process (a file lock), so even `SIGKILL` releases it: nothing
is left behind to clean up.'''),
    ("code", '''victim = owners[1]          # owns cores 3-5
victim.kill()
victim.wait()
print("exit status:", victim.returncode)
_ = start(NEURON_RT_VISIBLE_CORES="3-5")'''),
    ("md", '''## The default claims everything

With no variable, a process asks for every core. While others hold some, it fails: this is the classic
"my second notebook cannot start" problem.'''),
    ("code", '''_ = start()'''),
    ("md", '''## `NEURONCORE_GROUP_SIZES` is deprecated

Frameworks used to read it to form core groups. Runtime 2.x ignores it and warns (seen at `WARNING` level):'''),
    ("code", '''import re

env = {**os.environ, "NEURONCORE_GROUP_SIZES": "1", "NEURON_RT_NUM_CORES": "1", "NEURON_RT_LOG_LEVEL": "WARNING"}
result = subprocess.run([sys.executable, "-c", "import nrt_lab; nrt_lab.init()"], env=env,
                        capture_output=True, text=True)
for line in result.stderr.splitlines():
    if "NRT:" in line:
        print(re.sub(r"^.*?(WARN|ERROR) +", r"\\1 ", line))   # drop the timestamp and pid:tid'''),
    ("md", '''NCG together with `NEURON_RT_NUM_CORES` is a conflict, so that init failed after the warning. Finally,
stop every process we started: their cores are free again.'''),
    ("code", '''core_map.close()
for proc in processes:
    if proc.poll() is None:
        proc.stdin.close()
        proc.wait()
print("owners left:", machine.owners())'''),
]


NB03 = [
    ("md", '''# 03 — Watching NeuronCores work

`neuron-top`, `neuron-monitor` and this notebook's `TopView` all read the same thing: every runtime keeps
counters in a small shared-memory page (busy time, FLOPs, executions, latencies, memory), and the tools turn
them into rates. Here we start two background applications with known workloads and watch them.'''),
    ("code", '''import json
import os
import subprocess
import sys
import tempfile
import time

import nrt_lab

os.environ["NRT_LAB_ROOT"] = tempfile.mkdtemp(prefix="nrt-lab-03-")  # a scratch machine for this lesson
_ = nrt_lab.open_machine().create("trn1.2xlarge")   # 2 NeuronCores: one per application'''),
    ("md", '''Each application claims one core and runs a 128×128 matmul model in a loop. `train` asks for its core 70 %
of each 100 ms, `serve` for 15 % (the rest of the time it sleeps). On a busy machine (Binder, a laptop) both
measure higher than asked, since every execution also waits for the CPU, but `train` stays the busier one.'''),
    ("code", '''WORKLOAD = """
import sys, time
import numpy as np
import nrt_lab
from nrt_lab.neff import GraphBuilder

duty = float(sys.argv[1])
g = GraphBuilder(name="mm128")
x = g.input("x", "float32", (128, 128))
g.output("y", g.op("matmul", [x, g.constant("w", np.eye(128, dtype=np.float32))]))
runtime = nrt_lab.init()
model = nrt_lab.Model.load(g.build())
tx = nrt_lab.Tensor.from_numpy(np.ones((128, 128), dtype=np.float32))
ty = nrt_lab.Tensor.allocate(128 * 128 * 4)
print("ready", flush=True)
while True:
    start = time.monotonic()
    while time.monotonic() - start < 0.1 * duty:
        model.execute({"x": tx}, {"y": ty})
    time.sleep(max(0.0, 0.1 - (time.monotonic() - start)))
"""
apps = {}
for tag, duty in (("train", 0.7), ("serve", 0.15)):   # one after the other: train gets core 0, serve core 1
    env = {**os.environ, "NEURON_RT_NUM_CORES": "1", "NEURON_PROCESS_TAG": tag}
    apps[tag] = subprocess.Popen([sys.executable, "-c", WORKLOAD, str(duty)], env=env,
                                 stdout=subprocess.PIPE, text=True)
    print(tag, apps[tag].stdout.readline().strip())'''),
    ("md", '''## The live view

`TopView` samples in a background thread (here twice a second) and redraws only what changed: each core is
framed in its owner's colour and filled by its utilization, and two plotly charts grow by one column per update
(utilization per process, stacked, and per core, a heatmap): hover them for values, drag to zoom, use the
camera icon for a PNG or *CSV* for the numbers. Its tabs show one process; *Show TFLOPS* switches units. In a
static rendering of this notebook you see the state at the time it was saved.'''),
    ("code", '''# NBVAL_IGNORE_OUTPUT
from nrt_lab.widgets import TopView

top = TopView(period=0.5)
top'''),
    ("md", '''The widget's values are plain Python data too. After a couple of seconds `train`'s core is the busier one
(the exact percentages depend on how loaded the machine is):'''),
    ("code", '''time.sleep(3)
measured = top.utilization()
print("train (core 0) busier than serve (core 1):", measured[0] > measured[1])'''),
    ("code", '''# NBVAL_IGNORE_OUTPUT
print({core: f"{value:.0f} %" for core, value in sorted(measured.items())})'''),
    ("md", '''## `neuron-monitor`: the same numbers as JSON

`neuron-monitor` prints one JSON report per period, the format dashboards and the Prometheus exporter read.
A config file chooses the metric groups and periods; `--count` (an nrt_lab addition) stops it after N reports.'''),
    ("code", '''config = {"period": "1s",
          "neuron_runtimes": [{"tag_filter": ".*", "metrics": [{"type": "neuroncore_counters"},
                                                             {"type": "execution_stats"}]}],
          "system_metrics": [{"type": "memory_info"}]}
with open("monitor.json", "w") as fh:
    json.dump(config, fh)
neuron_monitor = os.path.join(os.path.dirname(sys.executable), "neuron-monitor")  # installed beside Python
lines = subprocess.run([neuron_monitor, "-c", "monitor.json", "--count", "2"], capture_output=True,
                       text=True, check=True).stdout.splitlines()
report = json.loads(lines[-1])
print("top-level keys:", sorted(report))
for runtime in report["neuron_runtime_data"]:
    cores = runtime["report"]["neuroncore_counters"]["neuroncores_in_use"]
    summary = runtime["report"]["execution_stats"]["execution_summary"]
    print(runtime["neuron_runtime_tag"], "cores:", sorted(cores), "completed in the last period > 0:",
          summary["completed"] > 0)'''),
    ("code", '''# NBVAL_IGNORE_OUTPUT
print(json.dumps(report["neuron_runtime_data"][0]["report"]["neuroncore_counters"], indent=2))'''),
    ("md", '''## Charts after the fact: `nrt_lab.plot`

Saved as JSON lines (`neuron-monitor -c monitor.json > run.jsonl` in a terminal), a recording draws the same
charts offline: utilization per process and per core, memory per core against its share of HBM, executions
per second with latency percentiles and errors.'''),
    ("code", '''from nrt_lab import plot

recording = plot.parse_reports(lines)   # plot.read_recording("run.jsonl") for a file
print("reports:", recording.steps, "| cores:", recording.cores, "| processes:", sorted(recording.owners.values()))
print("charts:", sorted(plot.figures(recording)))'''),
    ("code", '''# NBVAL_IGNORE_OUTPUT
import plotly.io as pio

pio.renderers.default = "plotly_mimetype"  # the figure as data (JupyterLab, Voila, nbviewer draw it), no 5 MB script
plot.core_heatmap(recording)'''),
    ("md", '''In a terminal, `neuron-top` shows the same view as a text UI (`neuron-top --once` prints one snapshot),
and `neuron-monitor | neuron-monitor-prometheus --port 8000` serves these numbers to Prometheus and Grafana.

Finally, stop the widget's sampling thread and the two applications.'''),
    ("code", '''top.close()
for app in apps.values():
    app.terminate()
    app.wait()
os.remove("monitor.json")
print("sampling:", top.running, "| owners left:", nrt_lab.open_machine().owners())'''),
]


NB04 = [
    ("md", '''# 04 — Troubleshooting, one failure at a time

Each section breaks the emulated machine in one of the ways the Neuron troubleshooting guide describes, shows
what the runtime says (the same messages and status codes as libnrt), and applies the documented remedy.
The lesson uses a scratch `trn1.2xlarge` (1 device, 2 NeuronCores) so your main machine is untouched.'''),
    ("code", '''import os
import subprocess
import sys
import tempfile

import numpy as np

import nrt_lab
from nrt_lab.driver import parse_driver_version
from nrt_lab.tools.cli import main as nrt_lab_cli

os.environ["NRT_LAB_ROOT"] = tempfile.mkdtemp(prefix="nrt-lab-04-")  # a scratch machine for this lesson
machine = nrt_lab.open_machine()
machine.create("trn1.2xlarge")


def attempt(action):
    """Run ``action`` and report the NrtError it raises, as an application's log would."""
    sys.stdout.flush()  # the runtime logs to stderr: flush both so the lines appear in the order they happened
    try:
        result = action()
        sys.stderr.flush()
        print("OK:", result, flush=True)
        return result
    except nrt_lab.NrtError as error:
        sys.stderr.flush()
        print(f"{error.status.c_name} ({int(error.status)}): {error.message}", flush=True)'''),
    ("md", '''## 1. The driver is missing

The runtime checks the `aws-neuronx-dkms` driver first. Without it, `nrt_init` fails before touching a core.'''),
    ("code", '''machine.uninstall_driver()
attempt(nrt_lab.init)
_ = nrt_lab_cli(["driver", "status"])'''),
    ("md", '''Remedy: install the driver package.'''),
    ("code", '''_ = nrt_lab_cli(["driver", "install"])'''),
    ("md", '''## 2. The driver is too old

Runtime 2.x needs driver 2.x. An old package gives a different message.'''),
    ("code", '''machine.install_driver(parse_driver_version("1.9.2"))
attempt(nrt_lab.init)
machine.install_driver()   # remedy: upgrade to the current driver
print("driver now:", machine.driver().loaded)'''),
    ("md", '''## 3. Another process (or notebook kernel) holds the cores

A NeuronCore belongs to one process at a time. Here another process claims both cores, so our `init()` fails;
stopping that process is the remedy (in Jupyter: shut down the other notebook's kernel).'''),
    ("code", '''holder = subprocess.Popen(
    [sys.executable, "-c", "import sys, nrt_lab; nrt_lab.init(); print('holding', flush=True); sys.stdin.read()"],
    env={**os.environ, "NEURON_PROCESS_TAG": "other-notebook"}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    text=True)
print(holder.stdout.readline().strip(), flush=True)
attempt(nrt_lab.init)
print("owners:", [(o.tag, o.cores) for o in machine.owners()])'''),
    ("md", '''`DriverStatus` puts the checks in one place: the driver and the runtime's verdict, this kernel's `NEURON_*`
variables, and every troubleshooting finding that applies, each with its remedy. Here it says that this
kernel's `init()` would fail because `other-notebook` holds the cores: a warning, in amber, since nothing is
broken in this kernel itself. A static rendering shows the state when the notebook was saved.'''),
    ("code", '''# NBVAL_IGNORE_OUTPUT
from nrt_lab.widgets import DriverStatus

status = DriverStatus()
status'''),
    ("code", '''print("verdict:", status.current_state()["verdict"]["text"])
print("findings:", sorted({f["id"].split(":")[0] + ":" + f["id"].split(":")[1] for f in status.findings()}))
status.close()'''),
    ("code", '''holder.stdin.close()
holder.wait()
runtime = attempt(nrt_lab.init)'''),
    ("md", '''## 4. A NEFF from a newer compiler

A NEFF records its format version. A runtime refuses versions it does not know (status 10); the remedy is a
compiler and runtime from the same Neuron SDK release.'''),
    ("code", '''from nrt_lab.neff import GraphBuilder


def tiny_graph(name="tiny"):
    g = GraphBuilder(name=name)
    x = g.input("x", "float32", (4, 4))
    g.output("y", g.op("div", [x, x]))   # y = x / x: NaN where x is 0
    return g


attempt(lambda: nrt_lab.Model.load(tiny_graph().build(neff_version=(3, 0))))'''),
    ("md", '''## 5. Out of device memory

Device tensors and models draw on the HBM behind their NeuronCore (16 GiB per core on trn1). Asking for more
fails with `NRT_RESOURCE`; libnrt logs the allocation that failed and a table of who uses that HBM, and saves
the table in the temp directory.'''),
    ("code", '''attempt(lambda: nrt_lab.Tensor.allocate(17 * 2**30, name="too_big"))
table = os.path.join(tempfile.gettempdir(), "neuron_mem_table_device_0_hbm_0.log")
print(open(table).read())'''),
    ("md", '''Remedy: free tensors, unload models you no longer need, or move to a larger instance.

## 6. NaN in the outputs

Since libnrt 2.27, NaN outputs are not an error by default: the execution succeeds. Setting
`NEURON_FAIL_ON_NAN=1` (read at `init`) turns them into status 1003, `NRT_EXEC_COMPLETED_WITH_NUM_ERR`.'''),
    ("code", '''model = nrt_lab.Model.load(tiny_graph().build())
zeros = {"x": np.zeros((4, 4), dtype=np.float32)}
outputs = model(zeros)
print("default: execution succeeded, output[0] =", outputs["y"].numpy()[0])

nrt_lab.close()
os.environ["NEURON_FAIL_ON_NAN"] = "1"
runtime = nrt_lab.init()
model = nrt_lab.Model.load(tiny_graph().build())
attempt(lambda: model(zeros))
del os.environ["NEURON_FAIL_ON_NAN"]'''),
    ("md", '''## 7. Execution timeout

`NEURON_RT_EXEC_TIMEOUT` (seconds, read at `init`) bounds one execution: 30 s on inf1, 600 s elsewhere. A hung
execution then fails with `NRT_TIMEOUT` (5). We make one hang on purpose with the emulator's fault injection.'''),
    ("code", '''nrt_lab.close()
os.environ["NEURON_RT_EXEC_TIMEOUT"] = "1"
runtime = nrt_lab.init()
model = nrt_lab.Model.load(tiny_graph().build())
ones = {"x": np.ones((4, 4), dtype=np.float32)}
nrt_lab_cli(["fault", "inject", "--core", "0", "--kind", "hang"])  # the next execution on core 0 hangs
attempt(lambda: model(ones))
del os.environ["NEURON_RT_EXEC_TIMEOUT"]'''),
    ("md", '''## 8. Hardware errors

Real devices report uncorrectable memory errors and DMA aborts. `nrt-lab fault inject` arms one on a core; the
next execution there fails with the status libnrt uses (1201 for an HBM uncorrectable error), logs the
runtime information block that AWS support asks for, and the device's error counters grow (what
`neuron-monitor` reports as `neuron_hw_counters`). The remedy for an uncorrectable HBM error is to replace the
instance.'''),
    ("code", '''from nrt_lab.driver.faults import hardware_counters

nrt_lab_cli(["fault", "inject", "--core", "0", "--kind", "hbm_ue"])
attempt(lambda: model(ones))
print("device 0 counters:", hardware_counters(machine.root)[0])
attempt(lambda: sorted(model(ones)))    # the fault fired once; the core works again'''),
    ("code", '''nrt_lab.close()
_ = nrt_lab_cli(["fault", "list"])'''),
]


NB06 = [
    ("md", """# 06 — Migrating from Runtime 1.x

Before Neuron 1.16.0 the runtime was a daemon, `neuron-rtd`: a package to install, a systemd service to start,
a gRPC socket the frameworks talked to, and `neuron-cli` to manage it. Runtime 2.x is a library: an application
claims NeuronCores when it starts and frees them when it exits. This lesson runs the old world on a scratch
`inf1.6xlarge`, shows what goes wrong when the two meet, finds the 1.x patterns in a CI script and a Dockerfile,
removes the daemon and runs the same model on 2.x, faster. Reference: `docs/legacy.md`."""),
    ("code", """import os
import tempfile
import time

import numpy as np

import nrt_lab
from nrt_lab.legacy.client import Client
from nrt_lab.legacy.coexist import DaemonOccupiedError, check_no_daemon_ncgs
from nrt_lab.legacy.neuron_cli import main as neuron_cli
from nrt_lab.neff import GraphBuilder
from nrt_lab.tools.cli import main as nrt_lab_cli

os.environ["NRT_LAB_ROOT"] = tempfile.mkdtemp(prefix="nrt-lab-06-")  # a scratch machine for this lesson
os.environ["GRPC_VERBOSITY"] = "NONE"
machine = nrt_lab.open_machine()
machine.create("inf1.6xlarge")


def add_neff():
    \"\"\"out = a + b on 4x3 float32 tensors, compiled "for Runtime 1.x" (NEFF 1.1 runs on both runtimes).\"\"\"
    g = GraphBuilder(name="add")
    a, b = g.input("a", "float32", (4, 3)), g.input("b", "float32", (4, 3))
    g.output("out", g.op("add", [a, b]))
    return g.build(neff_version=(1, 1), uuid=bytes(range(16)))


neff = add_neff()
inputs = {"a": np.full((4, 3), 1.5, dtype=np.float32), "b": np.arange(12, dtype=np.float32).reshape(4, 3)}"""),
    ("md", """## 1. Install and start the daemon

`aws-neuron-runtime` brings `neuron-rtd` and its systemd units; `aws-neuron-tools` brings `neuron-cli`."""),
    ("code", """_ = nrt_lab_cli(["pkg", "install", "aws-neuron-runtime"])
_ = nrt_lab_cli(["pkg", "install", "aws-neuron-tools"])
_ = nrt_lab_cli(["pkg", "list"])"""),
    ("code", """# NBVAL_IGNORE_OUTPUT
_ = nrt_lab_cli(["systemctl", "start", "neuron-rtd"])
_ = nrt_lab_cli(["systemctl", "status", "neuron-rtd"])"""),
    ("md", """## 2. A 1.x application

A pre-1.16 framework opened a session with the daemon at `NEURON_RTD_ADDRESS` (default `unix:/run/neuron.sock`),
streamed the NEFF to it in 1 MiB chunks and sent every inference over gRPC."""),
    ("code", """client = Client()
model_1x = client.load(neff)
print(model_1x.infer(inputs)["out"])"""),
    ("md", """`neuron-cli` managed the daemon. It still works against it, and says on every run what replaces it."""),
    ("code", """_ = neuron_cli(["list-model"])
_ = neuron_cli(["list-ncg"])"""),
    ("md", """The 2.x tools see the daemon too: it owns its devices like any runtime (neuron-top shows a tab per daemon)."""),
    ("code", """# NBVAL_IGNORE_OUTPUT
from nrt_lab.tools.neuron_top import main as neuron_top

_ = neuron_top(["--once"])"""),
    ("md", """## 3. A 2.x application beside the daemon

Running both runtimes at once is undefined. The 2.x runtime warns, and the daemon's NeuronCores are busy; a 2.x
framework also checks the daemon's socket and refuses to start while it holds NeuronCore groups."""),
    ("code", """os.environ["NEURON_RT_LOG_LEVEL"] = "WARNING"  # show WARNING lines on the console too (default: syslog)
try:
    nrt_lab.init()
except nrt_lab.NrtError as error:
    print(f"{error.status.c_name} ({int(error.status)}): {error.message}")
del os.environ["NEURON_RT_LOG_LEVEL"]
try:
    check_no_daemon_ncgs()
except DaemonOccupiedError as error:
    print(error)"""),
    ("md", """`nrt-lab doctor` names the problem and the fix, and the driver cannot be upgraded under the daemon either."""),
    ("code", """_ = nrt_lab_cli(["doctor"])
_ = nrt_lab_cli(["driver", "install"])"""),
    ("md", """Before leaving the 1.x world, measure the 1.x latency of this small model (the comparison comes at the end)."""),
    ("code", """def median_latency_us(call, number=300):
    samples = []
    for _ in range(number):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples)) * 1e6


latency_1x = median_latency_us(lambda: model_1x.infer(inputs))"""),
    ("md", """## 4. Find the 1.x patterns in your scripts

`nrt-lab migrate-check` reads shell scripts, CI files, Dockerfiles, units, manifests and Python, and names the
migration step for each 1.x pattern (`--format sarif` lets CI annotate the lines)."""),
    ("code", """work = tempfile.mkdtemp(prefix="nrt-lab-06-src")
with open(os.path.join(work, "ci.sh"), "w") as f:
    f.write("#!/bin/bash\\nsudo apt-get install -y aws-neuron-runtime\\nsudo systemctl restart neuron-rtd\\n"
            "neuron-cli list-model\\nNEURONCORE_GROUP_SIZES=2,2 pytest tests/\\n")
with open(os.path.join(work, "Dockerfile"), "w") as f:
    f.write('FROM ubuntu:20.04\\nRUN apt-get install -y aws-neuron-tools\\n'
            'ENV NEURON_RTD_ADDRESS=unix:/sock/neuron.sock\\nCMD ["neuron-rtd", "-g", "unix:/sock/neuron.sock"]\\n')
status = nrt_lab_cli(["migrate-check", work])
print("exit status:", status)"""),
    ("md", """## 5. Stop and remove the daemon

The migration guide's order: stop the service, remove the package. Then the driver can be updated again."""),
    ("code", """client.close()
_ = nrt_lab_cli(["systemctl", "stop", "neuron-rtd"])
_ = nrt_lab_cli(["pkg", "remove", "aws-neuron-runtime"])
_ = nrt_lab_cli(["driver", "install"])
print("owners now:", machine.owners())"""),
    ("md", """## 6. The same model on Runtime 2.x

No daemon, no socket: the NEFF compiled for 1.x loads in process and runs on a NeuronCore this process owns."""),
    ("code", """runtime = nrt_lab.init()
model_2x = nrt_lab.Model.load(neff)
print(model_2x(inputs)["out"].numpy())
latency_2x = median_latency_us(lambda: model_2x(inputs))"""),
    ("code", """# NBVAL_IGNORE_OUTPUT
import matplotlib.pyplot as plt

print(f"1.x over gRPC: {latency_1x:.0f} µs, 2.x in process: {latency_2x:.0f} µs "
      f"(2.x takes {latency_2x / latency_1x:.1%} of the 1.x time)")
fig, ax = plt.subplots(figsize=(6, 2.2))
ax.barh(["2.x (libnrt, in process)", "1.x (neuron-rtd, gRPC)"], [latency_2x, latency_1x], color=["#2a7", "#c55"])
ax.set_xscale("log")
ax.set_xlabel("median latency per inference, µs (log scale)")
plt.show()"""),
    ("code", """runtime.close()"""),
]


NB07 = [
    ("md", """# 07 — Your own model: ONNX → NEFF → emulated NeuronCores

On real Neuron, a trained model is compiled by `neuronx-cc` into a NEFF, and the NEFF is what the runtime loads.
nrt_lab does the same for any model exported to ONNX (`torch.onnx.export`, `tf2onnx`, …): `nrt-lab compile` /
`nrt_lab.compile` make its shapes static, fold constants, lower every node to a kernel and store the weights as
NEFF constants. This lesson builds a small MobileNet-style CNN with `onnx.helper` (standing in for an exported
model), compiles it, looks inside the NEFF, runs it on one and on two NeuronCores, checks it against
onnxruntime and watches it in the dashboard."""),
    ("code", """import os
import tempfile

import numpy as np
import onnx

from nrt_lab.compiler.examples import mobilenet

workdir = tempfile.mkdtemp(prefix="nrt-lab-07-")
model = mobilenet(width=8, image=32, classes=10)   # depthwise-separable blocks, HardSwish, ReLU6 (Clip)
path = os.path.join(workdir, "mobilenet.onnx")
onnx.save(model, path)
print("ONNX nodes:", len(model.graph.node), "| opset:", model.opset_import[0].version)
print("input:", model.graph.input[0].name, [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim])"""),
    ("md", """## Coverage first

`nrt-lab compile model.onnx --report` lists the ops the compiler supports (with counts) and those it does not
(with their node names), without compiling."""),
    ("code", """from nrt_lab.compiler import build, coverage

print(coverage(path).render())"""),
    ("md", """## Compile

The batch dimension is dynamic (`batch`); Neuron compiles static shapes, so it needs a value — `--batch 1` on
the command line, `batch=1` here. Without it the compiler says which input and which flag."""),
    ("code", """from nrt_lab.errors import NrtError

try:
    build(path)
except NrtError as exc:
    print(exc.message)"""),
    ("code", """compiled = build(path, batch=1)
print(compiled.summary())
neff_path = os.path.join(workdir, "mobilenet.neff")
with open(neff_path, "wb") as fh:
    fh.write(compiled.neff)"""),
    ("md", """## Inside the NEFF

The same listing as `nrt-lab neff inspect mobilenet.neff`: the header, then every op with its executor and
tensors. Each ONNX node became an `onnx.<OpType>` kernel; the shape arithmetic was folded away."""),
    ("code", """from nrt_lab.neff import describe_neff, format_neff_nodes, read_neff

neff = read_neff(neff_path)
print(describe_neff(neff))
print("\\n".join(format_neff_nodes(neff).splitlines()[:8]))
print("...")
print("NEFF ops by kernel:", dict(sorted(compiled.kernel_counts.items())))"""),
    ("md", """## Run it on a NeuronCore and compare with onnxruntime

A scratch `trn1.2xlarge` (two NeuronCores) keeps your main machine untouched. `Model.load` is `nrt_load`:
the NEFF's constants and scratchpad are reserved in the HBM behind the core."""),
    ("code", """import nrt_lab
import onnxruntime as ort

os.environ["NRT_LAB_ROOT"] = os.path.join(workdir, "state")  # a scratch machine for this lesson
nrt_lab.open_machine().create("trn1.2xlarge")
runtime = nrt_lab.init()
print("owned cores:", runtime.cores)

loaded = nrt_lab.Model.load(neff_path)
image = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
ours = loaded({"input": image})["logits"].numpy()
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
theirs = session.run(None, {"input": image})[0]
print("matches onnxruntime:", np.allclose(ours, theirs, rtol=1e-3, atol=1e-5))
print("FLOPs per execution:", f"{loaded.flops_per_execution:,}")"""),
    ("md", """## Data parallel on N cores

Neuron scales inference by loading the same NEFF on every core the process owns and giving each core a shard of
the batch; cores run in parallel. Here each of the two cores classifies half of a batch of 8 images."""),
    ("code", """from concurrent.futures import ThreadPoolExecutor

copies = [nrt_lab.Model.load(neff_path, index) for index in range(len(runtime.cores))]
batch = np.random.default_rng(1).standard_normal((8, 3, 32, 32)).astype(np.float32)
shards = np.array_split(batch, len(copies))

def run_shard(index):
    model = copies[index]
    return np.concatenate([model({"input": image[None]})["logits"].numpy() for image in shards[index]])

with ThreadPoolExecutor(len(copies)) as pool:
    parallel = np.concatenate(list(pool.map(run_shard, range(len(copies)))))
print("cores used:", [m.core for m in copies])
print("matches onnxruntime on the whole batch:", np.allclose(parallel, session.run(None, {"input": batch})[0],
                                                             rtol=1e-3, atol=1e-5))"""),
    ("md", """## bf16

`--dtype bf16` stores the weights in bfloat16 and computes in it (inputs and outputs stay float32), as
`neuronx-cc --auto-cast` does: half the constants, results close to float32."""),
    ("code", """half = build(path, batch=1, dtype="bf16")
print("constants:", compiled.constants_bytes, "bytes in fp32 ->", half.constants_bytes, "bytes in bf16")
out16 = nrt_lab.Model.load(half.neff)({"input": image})["logits"].numpy()
print("bf16 within 5% of fp32:", np.allclose(out16, ours, rtol=0.05, atol=0.05 * np.abs(ours).max()))"""),
    ("md", """## Watch it in the dashboard

`TopView` (and `neuron-top`, `neuron-monitor`) read the stats every runtime publishes: executions, FLOPs,
latency and device memory per core. Run a burst of inferences on both cores and look at the live view (in a
static rendering you see the state at save time)."""),
    ("code", """# NBVAL_IGNORE_OUTPUT
from nrt_lab.widgets import TopView

top = TopView(period=0.5)
for _ in range(20):
    for model in copies:
        model({"input": image})
top"""),
    ("code", """from nrt_lab.monitor import Monitor

snapshot = Monitor().sample()
me = next(r for r in snapshot.runtimes if r.pid == os.getpid())
print("models loaded:", len(me.models), "| executions completed:", me.execution_summary["completed"])
print("device memory in use on my cores > 0:", me.device_memory_total > 0)
top.stop()
runtime.close()
print("closed")"""),
]

NB08 = [
    ("md", """# 08 — A Neuron cluster on Ray

Past one instance, Neuron users schedule NeuronCores with Ray: a task, an actor, a Ray Data worker or a Ray
Serve replica asks for `neuron_cores`; Ray picks a node with enough free cores and sets
`NEURON_RT_VISIBLE_CORES` for the worker; the Neuron runtime in that worker claims exactly those cores.

`nrt_lab.cluster` builds such a cluster on this computer: a real Ray head and one real Ray node per emulated
machine, each with its own state root, so each node has its own NeuronCores, owners and tools. Scheduling,
retries, failures and their messages are Ray's own. Every Ray port is bound to 127.0.0.1
([docs/cluster.md](../docs/cluster.md) lists them). Starting three nodes takes a minute or so."""),
    ("code", """import os
import tempfile

os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"  # a Ray call before connect() fails instead of starting a private Ray
import nrt_lab.cluster as cluster

workdir = tempfile.mkdtemp(prefix="nrt-lab-08-")
cluster_dir = os.path.join(workdir, "cluster")
info = cluster.up(["trn1.32xlarge", "inf2.48xlarge", "trn2.48xlarge:lnc1"], cluster_dir, cpus_per_node=2,
                  stop_at_exit=True)  # down when this kernel exits (even killed), if not before
for node in info.nodes:
    print(f"{node.name:7} {node.instance:14} LNC {node.lnc}  {node.neuron_cores:3} NeuronCores  running: {node.running}")"""),
    ("md", """The trn2 node runs at LNC 1 (`:lnc1`): the demo models are compiled for one physical core per logical
NeuronCore, and a runtime at LNC 2 refuses them (`recompile with -lnc=2`), as libnrt does. From a terminal the same
cluster is `nrt-lab cluster up --node trn1.32xlarge --node inf2.48xlarge --node trn2.48xlarge:lnc1`, and
`nrt-lab cluster status` shows the nodes (ports and Ray node ids change at every start):"""),
    ("code", """# NBVAL_IGNORE_OUTPUT
!nrt-lab cluster status --dir {cluster_dir}"""),
    ("md", """## Connect and look at the resources

`cluster.connect()` makes this kernel a Ray *driver* of the cluster (`ray.init` on its address). Each node
offers the NeuronCores its own `neuron-ls --json-output` reports, which is how Ray detects real ones. Worker
output is not forwarded to this notebook (`log_to_driver=False`) to keep it readable."""),
    ("code", """# NBVAL_IGNORE_OUTPUT
import ray

cluster.connect(cluster_dir, log_to_driver=False)"""),
    ("code", """print("neuron_cores in the cluster:", int(ray.cluster_resources()["neuron_cores"]))
for node in sorted(ray.nodes(), key=lambda n: n["Labels"].get("nrt-lab.io/node", "")):
    print(f"{node['Labels'].get('nrt-lab.io/node'):7} neuron_cores={int(node['Resources'].get('neuron_cores', 0)):3}"
          f"  accelerator: {node['Labels'].get('ray.io/accelerator-type', '-')}")"""),
    ("md", """## A task that asks for NeuronCores

The task asks for four `neuron_cores` on an inf2 node (a *label selector*; without it Ray picks any node that
fits). Inside, `nrt_lab.init()` reads `NEURON_RT_VISIBLE_CORES` — set by Ray — and claims exactly those cores
of *that node's* machine, then runs the demo MLP."""),
    ("code", """import numpy as np

@ray.remote(resources={"neuron_cores": 4}, label_selector={"nrt-lab.io/instance": "inf2.48xlarge"})
def where_am_i():
    import nrt_lab
    from nrt_lab.models import build_mlp, example_inputs, reference

    with nrt_lab.init() as runtime:
        neff, _ = build_mlp()
        inputs = example_inputs("mlp")
        output = nrt_lab.Model.load(neff)(inputs)["probs"].numpy()
        return {
            "node": ray.get_runtime_context().get_node_labels()["nrt-lab.io/node"],
            "NEURON_RT_VISIBLE_CORES": os.environ["NEURON_RT_VISIBLE_CORES"],
            "claimed": list(runtime.cores),
            "machine": nrt_lab.open_machine().state().instance.name,
            "matches NumPy": bool(np.allclose(output, reference("mlp", inputs)["probs"], atol=1e-3)),
        }

answer = ray.get(where_am_i.remote())
print("ran on:", answer["node"], "-", answer["machine"])
visible = [int(c) for c in answer["NEURON_RT_VISIBLE_CORES"].split(",")]
print("Ray gave", len(visible), "cores; the runtime claimed exactly them:", sorted(visible) == answer["claimed"])
print("MLP output matches NumPy:", answer["matches NumPy"])"""),
    ("md", """## A batch-inference job across the nodes

`nrt_lab.cluster.jobs.batch_inference` is a small offline-inference job written the way Neuron users write
them with Ray Data: `map_batches` with a callable class that loads the model once per worker on its own
NeuronCores. Ray Data spreads its workers over the nodes that have room; the table it returns says how many
batches ran on each node (which nodes, and how many, depends on which workers were ready first)."""),
    ("code", """# NBVAL_IGNORE_OUTPUT
import logging

import ray.data

from nrt_lab.cluster import jobs

ray.data.DataContext.get_current().enable_progress_bars = False  # Ray Data's progress report
ray.data.DataContext.get_current().print_on_execution_start = False
logging.getLogger("ray.data").setLevel(logging.WARNING)
result = jobs.batch_inference("mlp", batches=48, workers=4, cores_per_worker=2, engine="data")
result.per_node"""),
    ("code", """print("batches:", len(result.outputs), "| largest error vs NumPy:", f"{result.max_error():.1e}")
print("every worker had 2 NeuronCores:", all(len(v.split(",")) == 2 for v in result.visible_cores))"""),
    ("md", """## Watch the cluster

`ClusterDashboard` shows every node's devices and NeuronCores, framed in the colour of the Ray actor or task
that owns them and filled by their utilization, a live chart of each node's utilization, and the work Ray
cannot place yet. It reads each node's own monitor *through Ray* (one small actor per node). Start four
inference workers that keep their cores busy for half a minute and watch them (a stored notebook shows the
state when it was saved)."""),
    ("code", """# NBVAL_IGNORE_OUTPUT
import time

from nrt_lab.cluster import ClusterMonitor
from nrt_lab.widgets import ClusterDashboard

@ray.remote(resources={"neuron_cores": 2})
class Busy:
    def __init__(self):
        import nrt_lab
        from nrt_lab.models import build_mlp, example_inputs

        self.runtime = nrt_lab.init()
        self.model = nrt_lab.Model.load(build_mlp()[0])
        self.inputs = example_inputs("mlp")

    def run(self, seconds):
        end, count = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            self.model(self.inputs)
            count += 1
        return count

monitor = ClusterMonitor(cluster_info=lambda: cluster.read_cluster(cluster_dir))
board = ClusterDashboard(monitor, period=1.0)
busy = [Busy.remote() for _ in range(4)]
running = [worker.run.remote(30) for worker in busy]
board"""),
    ("md", """The same view as text is `neuron-ls --cluster` (each owner with its Ray job and actor):"""),
    ("code", """# NBVAL_IGNORE_OUTPUT
time.sleep(5)
!neuron-ls --cluster --cluster-dir {cluster_dir}"""),
    ("code", """def busy_owners(snapshot):
    return [owner for node in snapshot.nodes for owner in node.owners
            if owner.ray is not None and owner.ray.kind == "actor" and owner.ray.name == "Busy"]

checker = ClusterMonitor(cluster_info=lambda: cluster.read_cluster(cluster_dir))
for _ in range(20):  # Ray's state API may take a moment to name a new actor
    snapshot = checker.sample()
    if len(busy_owners(snapshot)) == 4:
        break
    time.sleep(0.5)
print("alive nodes:", sorted(node.name for node in snapshot.nodes if node.state == "alive"))
print("Busy actors holding cores:", len(busy_owners(snapshot)))
print("each holds 2 cores:", all(len(owner.cores) == 2 for owner in busy_owners(snapshot)))
print("executions per worker > 0:", all(count > 0 for count in ray.get(running)))
for worker in busy:
    ray.kill(worker)"""),
    ("md", """## A worker dies

Kill one worker holding NeuronCores with SIGKILL, as the OOM killer would. Its cores are free at once (the
runtime's locks die with the process, as with libnrt), and Ray restarts the actor (`max_restarts`), which claims
cores again."""),
    ("code", """# NBVAL_IGNORE_OUTPUT
import signal

@ray.remote(resources={"neuron_cores": 2}, max_restarts=1, max_task_retries=1,
            label_selector={"nrt-lab.io/instance": "trn1.32xlarge"})
class Holder:
    def __init__(self):
        import nrt_lab
        self.runtime = nrt_lab.init()

    def cores(self):
        return os.getpid(), list(self.runtime.cores)

def nodes_owned_by(pid):
    return [node.name for node in checker.sample().nodes for owner in node.owners if owner.pid == pid]

holder = Holder.remote()
pid, cores = ray.get(holder.cores.remote())
owned_before = nodes_owned_by(pid)
os.kill(pid, signal.SIGKILL)                              # Ray's own report of the death follows below
time.sleep(1)
owned_after_kill = nodes_owned_by(pid)
new_pid, new_cores = ray.get(holder.cores.remote())       # Ray restarts the actor; it claims cores again
owned_by_new = nodes_owned_by(new_pid)"""),
    ("code", """print("the actor owned", len(cores), "cores on:", owned_before)
print("its cores are free after SIGKILL:", owned_after_kill == [])
print("restarted in a new process:", new_pid != pid, "| owns", len(new_cores), "cores on:", owned_by_new)"""),
    ("md", """## A node dies and comes back

Now take the inf2 node away mid-job, as if it lost power (`nrt-lab cluster stop-node inf2-1 --kill`). Ray
notices within seconds and fails the tasks that were running there with its own error; tasks allowed to retry
(`max_retries`) run again on a node that fits. `start_node` brings the same machine back as a new Ray node with
every core free."""),
    ("code", """# NBVAL_IGNORE_OUTPUT
@ray.remote(resources={"neuron_cores": 2}, max_retries=0,
            label_selector={"nrt-lab.io/instance": "inf2.48xlarge"})
def long_inference():
    import nrt_lab
    with nrt_lab.init():
        time.sleep(60)

doomed = long_inference.remote()
time.sleep(5)  # let it start on inf2-1
before = cluster.read_cluster(cluster_dir).node("inf2-1").ray_node_id
cluster.stop_node("inf2-1", cluster_dir, kill=True)      # Ray's report of the lost node follows below
try:
    ray.get(doomed, timeout=60)
    error_name = "no error"
except ray.exceptions.RayError as error:
    error_name = type(error).__name__
running_after_kill = cluster.read_cluster(cluster_dir).node("inf2-1").running
node = cluster.start_node("inf2-1", cluster_dir)
again = ray.get(where_am_i.remote())"""),
    ("code", """print("Ray says:", error_name)
print("inf2-1 running after the kill:", running_after_kill)
print("back as a new Ray node:", node.ray_node_id != before, "| running:", node.running)
print("tasks run there again:", again["node"] == "inf2-1", "| claimed", len(again["claimed"]), "cores")"""),
    ("md", """## Asking for more than any node has

A request no node can satisfy is not an error: it stays pending, as on a real cluster, until a node that fits
joins (an autoscaler would add one). Ray's state API shows it waiting for a node, Ray's autoscaler logs
`No available node types can fulfill resource request {'CPU': 1.0, 'neuron_cores': 256.0}` (in the driver's log
when worker output is forwarded), and the cluster views say why it waits."""),
    ("code", """from ray.util.state import list_tasks

@ray.remote(resources={"neuron_cores": 256})   # the largest node has 128
def too_big():
    return "never"

waiting = too_big.remote()
try:
    ray.get(waiting, timeout=3)
except ray.exceptions.GetTimeoutError:
    print("still waiting after 3 s")
time.sleep(1)
states = {t.state for t in list_tasks(filters=[("name", "=", "too_big")])}
print("its state:", states)
for demand in checker.sample().pending:   # what the cluster views say about it
    print(f"pending: {demand.kind} {demand.name}: {demand.reason}")
ray.cancel(waiting)"""),
    ("md", """## Tear down

`down` stops every process of the cluster (nodes, exporters, head) and removes its files. From a terminal:
`nrt-lab cluster down`."""),
    ("code", """board.close()
monitor.close()
checker.close()
stopped = cluster.down(cluster_dir)
print("stopped", len(stopped.nodes), "nodes; Ray connected:", ray.is_initialized())"""),
]


NOTEBOOKS: dict[str, list[tuple[str, str]]] = {
    "01-getting-started": [
        ("md", """# 01 — Getting started with Neuron Runtime 2.x (emulated)

Neuron Runtime 2.x is a library, `libnrt.so`, linked into your application. When the application starts, the
runtime **claims NeuronCores**; when it stops, it releases them. A core belongs to one process at a time.

nrt_lab emulates the whole stack: an instance with Neuron devices, the `aws-neuronx-dkms` driver, the runtime
and its tools. Nothing here needs AWS hardware. The machine is provisioned on first use as a `trn1.32xlarge`."""),
        ("code", """import nrt_lab

machine = nrt_lab.open_machine()
state = machine.state()
spec = state.instance
print(f"{spec.name}: {len(spec.devices)} devices x {spec.devices[0].core_count} NeuronCores = {spec.total_cores} cores")"""),
        ("md", """## The driver

The runtime refuses to start without a new-enough driver. `nrt-lab driver status` (or the API below) shows the
emulated package and the runtime's verdict: `None` means the runtime can start."""),
        ("code", """from nrt_lab.runtime import driver_gate

driver = machine.driver()
print("installed:", driver.installed, "loaded:", driver.loaded)
print("runtime verdict:", driver_gate(driver))"""),
        ("md", """## Claiming NeuronCores

`nrt_lab.init()` is `nrt_init()`. With no variables it takes **every** core. `NEURON_RT_NUM_CORES` asks for a
number of contiguous cores (first fit), `NEURON_RT_VISIBLE_CORES` for specific ones. The environment is read
at `init()`, so set variables before it. `NEURON_PROCESS_TAG` names the process for the monitoring tools."""),
        ("code", """import os

os.environ["NEURON_RT_NUM_CORES"] = "4"
os.environ["NEURON_PROCESS_TAG"] = "tutorial-01"
rt = nrt_lab.init()
print("owned cores:", rt.cores, "tag:", rt.tag)"""),
        ("md", """## Who owns what: `neuron-ls`

`neuron-ls` lists the devices and the processes using them; `-w` shows full command lines, `-t` the topology,
`-j` JSON (what Ray reads to detect NeuronCores). From a terminal run `neuron-ls`; here we call the same code
(the narrow table: `-w`'s full command lines are wider than a notebook)."""),
        ("code", """# NBVAL_IGNORE_OUTPUT
from nrt_lab.tools.neuron_ls import neuron_ls_output

print(neuron_ls_output())"""),
        ("md", """## The dashboard

`nrt_lab.show()` draws the same facts live: a one-line verdict about this kernel (open *Details* for the
driver and `NEURON_*` checks), every NeuronCore framed in its owner's colour and filled by its utilization,
utilization charts, and the owners with *Release* and *Terminate…*. `nrt_lab.show(size="presentation")` is
for a projector, `nrt_lab.show(sidecar=True)` opens it in a side panel. A static rendering of this notebook
shows the state when it was saved."""),
        ("code", """# NBVAL_IGNORE_OUTPUT
board = nrt_lab.show()"""),
        ("code", """import json

devices = json.loads(neuron_ls_output(as_json=True))
print("NeuronCores Ray would detect:", sum(d["nc_count"] for d in devices))
print("devices used by this kernel:", [d["neuron_device"] for d in devices if d["neuron_processes"]])"""),
        *NB01_MODEL,
        ("md", """## Releasing the cores

`close()` is `nrt_close()`: the cores are free for other processes at once, and the models and tensors of
this runtime become invalid. Calling it twice is harmless, and `init()` after `close()` reads the environment
again."""),
        ("code", "board.close()  # stop the dashboard's sampling thread\n" + NB01_CLOSE),
    ],
    "02-core-allocation": NB02,
    "03-live-utilization": NB03,
    "04-troubleshooting": NB04,
    "05-kernels-numpy-cupy": NB05,
    "06-migrating-from-runtime-1x": NB06,
    "07-your-own-model": NB07,
    "08-neuron-cluster-on-ray": NB08,
}


def _execute(nb: nbformat.NotebookNode, workdir: Path) -> None:
    """Run ``nb`` in a fresh kernel over a fresh emulated machine, storing its outputs (strict nbval compares
    them), without widget state (megabytes that would only go stale)."""
    from nbclient import NotebookClient

    saved = os.environ.get("NRT_LAB_ROOT")
    os.environ["NRT_LAB_ROOT"] = tempfile.mkdtemp(prefix="nrt_lab_nb_")
    for name in [k for k in os.environ if k.startswith("NEURON")]:
        del os.environ[name]
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    try:
        NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(workdir)}},
                       store_widget_state=False).execute()
    finally:
        if saved is None:
            os.environ.pop("NRT_LAB_ROOT", None)
        else:
            os.environ["NRT_LAB_ROOT"] = saved
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)


def main() -> None:
    """Write every notebook in NOTEBOOKS into notebooks/ (``--execute``: with outputs, for strict nbval)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--execute", action="store_true", help="run each notebook and store its outputs")
    parser.add_argument("names", nargs="*", help="notebooks to write (default: all)")
    args = parser.parse_args()
    out = Path(__file__).resolve().parent.parent / "notebooks"
    for name, cells in NOTEBOOKS.items():
        if args.names and name not in args.names:
            continue
        nb = new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells]
        for index, cell in enumerate(nb.cells):
            cell["id"] = f"{name[:2]}-{index:02d}"
        if args.execute:
            _execute(nb, out)
        nbformat.write(nb, out / f"{name}.ipynb")
        print(f"wrote notebooks/{name}.ipynb" + (" with outputs" if args.execute else ""))


if __name__ == "__main__":
    main()
