"""nrt_lab.nrtpy: AWS's nrtpy tutorials and reference examples run as written (only the import changed),
plus the documented errors, configure/reset rules and the singleton's life cycle.

Each test runs on its own emulated trn1.32xlarge (``machine_root``) in its own working directory, and
``nrtpy.reset()`` runs at teardown whatever happened.
"""

from __future__ import annotations

import gc
import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nrt_lab
from nrt_lab import nrtpy
from nrt_lab.errors import NrtStatus
from nrt_lab.neff import GraphBuilder, write_neff
from nrt_lab.nrtpy import BenchmarkResult, NrtError, NrtpyError, NrtpyModel, NrtpyTensor


@pytest.fixture(autouse=True)
def workdir(machine_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh machine and an empty working directory; nrtpy is reset before and after."""
    nrtpy.reset()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield work
    nrtpy.reset()
    nrt_lab.close()


def add_neff(path: Path) -> Path:
    """The tutorials' addition kernel: output0 = a_input + b_input, fp16 4x3."""
    g = GraphBuilder(name="add")
    a = g.input("a_input", dtype="float16", shape=(4, 3))
    b = g.input("b_input", dtype="float16", shape=(4, 3))
    g.output("output0", g.op("add", [a, b]))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_neff(path, g.build())
    return path


def relu_neff(path: Path, input_name: str, output_name: str, shape: tuple[int, ...]) -> Path:
    """output = relu(input), fp32: stands for the model page's model and the debug tutorial's fixed kernel."""
    g = GraphBuilder(name=path.stem)
    x = g.input(input_name, dtype="float32", shape=shape)
    g.output(output_name, g.op("relu", [x]))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_neff(path, g.build())
    return path


def run_doc(code: str, namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run a documentation snippet with only its nrtpy imports changed."""
    lines = []
    for line in textwrap.dedent(code).splitlines():
        if line.startswith("from nrtpy import "):
            line = "from nrt_lab.nrtpy import " + line[len("from nrtpy import "):]
        elif line == "import nrtpy":
            line = "from nrt_lab import nrtpy"
        assert not line.lstrip().startswith(("import nrtpy", "from nrtpy")), line
        lines.append(line)
    source = "\n".join(lines) + "\n"
    ns: dict[str, Any] = dict(namespace or {})
    exec(compile(source, "<nrtpy docs>", "exec"), ns)
    return ns


# ---------------------------------------------------------------------------------------------- tutorials

VALIDATE_BENCHMARK_TUTORIAL = '''
import numpy as np
from nrtpy import NrtpyModel, NrtpyTensor

model = NrtpyModel.load_from_neff("./add_neff/kernel.neff")

# Discover expected interface
print("Inputs:", list(model.input_tensors_info.keys()))
print("Outputs:", list(model.output_tensors_info.keys()))

# Prepare diverse test inputs (addition kernel: a + b)
test_cases = [
    ("ones+ones", np.ones((4, 3), dtype=np.float16), np.ones((4, 3), dtype=np.float16)),
    ("zeros+zeros", np.zeros((4, 3), dtype=np.float16), np.zeros((4, 3), dtype=np.float16)),
    ("neg+pos", np.full((4, 3), -3.0, dtype=np.float16), np.full((4, 3), 5.0, dtype=np.float16)),
    ("random", np.random.randn(4, 3).astype(np.float16), np.random.randn(4, 3).astype(np.float16)),
    ("large", np.full((4, 3), 1000.0, dtype=np.float16), np.full((4, 3), 2000.0, dtype=np.float16)),
]

def numpy_reference(a, b):
    """Reference implementation: element-wise addition."""
    return a + b

passed = 0
failed = 0

for name, a_data, b_data in test_cases:
    a_tensor = NrtpyTensor.from_numpy(a_data, name="a_input")
    b_tensor = NrtpyTensor.from_numpy(b_data, name="b_input")
    outputs = model(inputs={"a_input": a_tensor, "b_input": b_tensor})

    # Reinterpret void dtype to float16
    result = list(outputs.values())[0].numpy().view(np.float16)
    expected = numpy_reference(a_data, b_data)

    try:
        np.testing.assert_allclose(
            result.astype(np.float32), expected.astype(np.float32),
            rtol=1e-3, atol=1e-3
        )
        print(f"  PASS: {name}")
        passed += 1
    except AssertionError as e:
        print(f"  FAIL: {name}")
        print(f"    {e}")
        failed += 1

print(f"\\nResults: {passed} passed, {failed} failed")

a_tensor = NrtpyTensor.from_numpy(np.ones((4, 3), dtype=np.float16), name="a_input")
b_tensor = NrtpyTensor.from_numpy(np.ones((4, 3), dtype=np.float16), name="b_input")

# Device-side timing: measures only NeuronCore execution
device_stats = model.benchmark(
    inputs={"a_input": a_tensor, "b_input": b_tensor},
    warmup_iter=10,
    benchmark_iter=100,
    mode="device",
)

print("Device-side benchmark (NeuronCore execution only):")
print(f"  Mean:    {device_stats.mean_ms:.4f} ms")
print(f"  Min:     {device_stats.min_ms:.4f} ms")
print(f"  Max:     {device_stats.max_ms:.4f} ms")
print(f"  Std dev: {device_stats.std_dev_ms:.4f} ms")
print(f"  Iterations: {device_stats.iterations}")

# Host-side timing: includes host-device round-trip overhead
host_stats = model.benchmark(
    inputs={"a_input": a_tensor, "b_input": b_tensor},
    warmup_iter=10,
    benchmark_iter=100,
    mode="host",
)

print(f"\\nHost-side benchmark (total round-trip):")
print(f"  Mean:    {host_stats.mean_ms:.4f} ms")
print(f"  Min:     {host_stats.min_ms:.4f} ms")
print(f"  Overhead vs device: {host_stats.mean_ms - device_stats.mean_ms:.4f} ms")

import json

# Save baseline
baseline = {
    "mean_ms": device_stats.mean_ms,
    "min_ms": device_stats.min_ms,
    "max_ms": device_stats.max_ms,
    "std_dev_ms": device_stats.std_dev_ms,
}
with open("baseline_perf.json", "w") as f:
    json.dump(baseline, f, indent=2)
print(f"Baseline saved: mean={baseline['mean_ms']:.4f} ms")

# Later, after a kernel change: compare against baseline
with open("baseline_perf.json") as f:
    baseline = json.load(f)

new_stats = model.benchmark(
    inputs={"a_input": a_tensor, "b_input": b_tensor},
    warmup_iter=10,
    benchmark_iter=100,
    mode="device",
)

regression_threshold = 1.10  # 10% slower = regression
ratio = new_stats.mean_ms / baseline["mean_ms"]
if ratio > regression_threshold:
    print(f"REGRESSION: {ratio:.2f}x slower ({new_stats.mean_ms:.4f} ms "
          f"vs baseline {baseline['mean_ms']:.4f} ms)")
else:
    print(f"OK: {ratio:.2f}x of baseline ({new_stats.mean_ms:.4f} ms)")

# Execute with trace capture
model(
    inputs={"a_input": a_tensor, "b_input": b_tensor},
    save_trace=True,
    ntff_name="./kernel_trace.ntff",
)
print("Trace saved to ./kernel_trace.ntff")
'''


def test_tutorial_validate_benchmark_and_trace(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_neff(workdir / "add_neff" / "kernel.neff")
    ns = run_doc(VALIDATE_BENCHMARK_TUTORIAL)
    out = capsys.readouterr().out
    assert "Inputs: ['a_input', 'b_input']\nOutputs: ['output0']\n" in out
    for case in ("ones+ones", "zeros+zeros", "neg+pos", "random", "large"):
        assert f"  PASS: {case}\n" in out
    assert "Results: 5 passed, 0 failed" in out
    assert "  Iterations: 100\n" in out
    assert "Baseline saved: mean=" in out and ("OK: " in out or "REGRESSION: " in out)
    assert out.endswith("Trace saved to ./kernel_trace.ntff\n")
    stats = ns["device_stats"]
    assert isinstance(stats, BenchmarkResult) and stats.iterations == 100 and stats.warmup_iterations == 10
    assert len(stats.durations_ms) == 100 and 0 < stats.min_ms <= stats.mean_ms <= stats.max_ms
    assert ns["host_stats"].mean_ms >= ns["host_stats"].min_ms > 0
    trace = json.loads((workdir / "kernel_trace.ntff").read_text())
    assert trace["model"] == "kernel" and trace["events"][0]["device_ns"] > 0
    assert json.loads((workdir / "baseline_perf.json").read_text())["mean_ms"] == stats.mean_ms


DEBUG_TUTORIAL_STEP3 = '''
import numpy as np
from nrtpy import NrtpyModel, NrtpyTensor, NrtError

# Load the buggy NEFF
model = NrtpyModel.load_from_neff("./oob_neff/kernel.neff")

# Inspect the model interface
print("Model inputs:")
for name, info in model.input_tensors_info.items():
    print(f"  {name}: shape={info.shape}, size={info.size}")
print("Model outputs:")
for name, info in model.output_tensors_info.items():
    print(f"  {name}: shape={info.shape}, size={info.size}")
print()

# Prepare input
src_data = np.ones((128, 512), dtype=np.float32)
src_tensor = NrtpyTensor.from_numpy(src_data, name="src_tensor")

# Execute and catch the runtime error
try:
    outputs = model(inputs={"src_tensor": src_tensor})
    print("Execution succeeded (unexpected)")
except NrtError as e:
    print(f"Caught NrtError:")
    print(f"  {e}")
    print()
    print("This confirms the kernel has an out-of-bounds DMA access.")
    print("The indices (99999) exceed the source tensor's row count (128).")
'''

DEBUG_TUTORIAL_CONFIRM = '''
# confirm_with_nrtpy.py
import numpy as np
from nrtpy import NrtpyModel, NrtpyTensor, NrtError

model = NrtpyModel.load_from_neff("./fixed_neff/kernel.neff")
src_tensor = NrtpyTensor.from_numpy(
    np.ones((128, 512), dtype=np.float32), name="src_tensor"
)

try:
    outputs = model(inputs={"src_tensor": src_tensor})
    result = list(outputs.values())[0].numpy()
    print(f"Execution succeeded. Output shape: {result.shape}")
    print(f"Output sample (first row): {result[0, :5]}")
except NrtError as e:
    print(f"Still failing: {e}")
'''


class _OutOfBoundsFault:
    """Stands for the tutorial's faulty kernel: the execution ends with NRT_EXEC_OOB as on hardware."""

    def before_execute(self, model: Any, core: int) -> _OutOfBoundsFault:
        return self

    def apply(self, deadline: float) -> None:
        raise NrtError(NrtStatus.EXEC_OOB, "Failed to execute model")


def test_tutorial_debug_kernel(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    relu_neff(workdir / "oob_neff" / "kernel.neff", "src_tensor", "output_0", (128, 512))
    relu_neff(workdir / "fixed_neff" / "kernel.neff", "src_tensor", "output_0", (128, 512))
    nrtpy.get_nrtpy_singleton().runtime.faults = _OutOfBoundsFault()
    run_doc(DEBUG_TUTORIAL_STEP3)
    assert capsys.readouterr().out == (
        "Model inputs:\n"
        "  src_tensor: shape=[128, 512], size=262144\n"
        "Model outputs:\n"
        "  output_0: shape=[128, 512], size=262144\n"
        "\n"
        "Caught NrtError:\n"
        "  NRT Error NRT_EXEC_OOB(1006): Failed to execute model\n"
        "\n"
        "This confirms the kernel has an out-of-bounds DMA access.\n"
        "The indices (99999) exceed the source tensor's row count (128).\n"
    )
    nrtpy.get_nrtpy_singleton().runtime.faults = None  # the kernel is fixed
    run_doc(DEBUG_TUTORIAL_CONFIRM)
    assert capsys.readouterr().out == (
        "Execution succeeded. Output shape: (128, 512)\n"
        "Output sample (first row): [1. 1. 1. 1. 1.]\n"
    )


# ---------------------------------------------------------------------------------------------- reference examples

MODEL_PAGE_EXAMPLES = '''
import numpy as np
from nrtpy import NrtpyModel, NrtpyTensor

# Load a compiled NEFF model
model = NrtpyModel.load_from_neff("path/to/model.neff")

# Build an input tensor from a NumPy array
input_data = np.random.randn(1, 10).astype(np.float32)
input_tensor = NrtpyTensor.from_numpy(input_data, name="input")

# Execute — output tensors are allocated automatically and returned
outputs = model(inputs={"input": input_tensor})
result = outputs["output"].numpy()

# Device-side timing (most accurate for kernel latency)
stats = model.benchmark(
    inputs={"input": input_tensor},
    warmup_iter=5,
    benchmark_iter=100,
)
print(f"Mean: {stats.mean_ms:.2f} ms")
print(f"Min: {stats.min_ms:.2f} ms, Max: {stats.max_ms:.2f} ms")
print(f"Std dev: {stats.std_dev_ms:.4f} ms")

# Host-side timing (includes host-device overhead)
host_stats = model.benchmark(
    inputs={"input": input_tensor},
    warmup_iter=5,
    benchmark_iter=100,
    mode="host",
)

for name, info in model.input_tensors_info.items():
    print(f"{name}: shape={info.shape}, size={info.size}")
'''


def test_model_page_examples(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    relu_neff(workdir / "path" / "to" / "model.neff", "input", "output", (1, 10))
    ns = run_doc(MODEL_PAGE_EXAMPLES)
    np.testing.assert_array_equal(ns["result"], np.maximum(ns["input_data"], 0))
    assert ns["result"].dtype == np.float32 and ns["result"].shape == (1, 10)
    assert ns["stats"].iterations == 100 and ns["host_stats"].iterations == 100
    out = capsys.readouterr().out
    assert out.startswith("Mean: ") and "input: shape=[1, 10], size=40\n" in out
    assert ns["model"].name == "model"  # the NEFF file stem


TENSOR_PAGE_CREATE = '''
import numpy as np
from nrtpy import NrtpyTensor

# Allocate a device tensor from a NumPy array
data = np.random.randn(1, 10).astype(np.float32)
tensor = NrtpyTensor.from_numpy(data, name="input")

# Overwrite in place (no reallocation)
new_data = np.zeros((1, 10), dtype=np.float32)
tensor.write_from_numpy(new_data)

# Read back to host
host_array = tensor.numpy()
'''

TENSOR_PAGE_MULTICORE = '''
import nrtpy
from nrtpy import NrtpyTensor

nrtpy.configure(visible_cores=[0, 1])

# Allocate tensors on different cores
t0 = NrtpyTensor.from_numpy(data, name="core0_input", core_id=0)
t1 = NrtpyTensor.from_numpy(data, name="core1_input", core_id=1)
'''


def test_tensor_page_examples() -> None:
    ns = run_doc(TENSOR_PAGE_CREATE)
    np.testing.assert_array_equal(ns["host_array"], np.zeros((1, 10), np.float32))
    tensor = ns["tensor"]
    assert (tensor.shape, tensor.dtype, tensor.name) == ((1, 10), np.dtype(np.float32), "input")
    data = ns["data"]
    nrtpy.reset()
    ns = run_doc(TENSOR_PAGE_MULTICORE, {"data": data})
    runtime = nrtpy.get_nrtpy_singleton().runtime
    assert runtime.cores == (0, 1) and os.environ["NEURON_RT_VISIBLE_CORES"] == "0,1"
    assert ns["t0"].tensor_ref.core == 0 and ns["t1"].tensor_ref.core == 1
    np.testing.assert_array_equal(ns["t1"].numpy(), data)


CONFIGURATION_PAGE_EXAMPLE = '''
import nrtpy
from nrtpy import NrtpyModel, NrtpyTensor

# Configure visible NeuronCores before first use
nrtpy.configure(visible_cores=[0, 1])

# The singleton is created lazily on first operation
model = NrtpyModel.load_from_neff("model.neff")
tensor = NrtpyTensor.from_numpy(data, name="input")

# Switch to different cores: reset, then reconfigure
del model, tensor
nrtpy.reset()
nrtpy.configure(visible_cores=[2, 3])

# New runtime uses cores 2 and 3
model2 = NrtpyModel.load_from_neff("model.neff", core_id=0)
'''


def test_configuration_page_example(workdir: Path) -> None:
    relu_neff(workdir / "model.neff", "input", "output", (1, 10))
    assert nrt_lab.get_runtime() is None  # nothing starts before the first operation
    ns = run_doc(CONFIGURATION_PAGE_EXAMPLE, {"data": np.ones((1, 10), np.float32)})
    runtime = nrt_lab.get_runtime()
    assert runtime is not None and runtime.cores == (2, 3)
    assert ns["model2"]._model.core == 2  # core_id 0 = the first visible core
    nrtpy.reset()
    assert nrt_lab.get_runtime() is None and "NEURON_RT_VISIBLE_CORES" not in os.environ  # configuration cleared


ERRORS_PAGE_EXAMPLE = '''
from nrtpy import NrtpyModel, NrtpyError, NrtError

# Catch libnrt errors (e.g., file not found)
try:
    model = NrtpyModel.load_from_neff("nonexistent.neff")
except NrtError as e:
    print(f"NRT error: {e}")
    # "NRT Error NRT_FAILURE(1): Failed to load model"

# Catch nrtpy-level errors (e.g., invalid state)
try:
    # ... use a tensor after nrtpy.reset() ...
    pass
except NrtpyError as e:
    print(f"nrtpy error: {e}")

# Catch all nrtpy errors
try:
    model(inputs={"x": some_tensor})
except RuntimeError as e:
    print(f"Error: {e}")
'''


def test_errors_page_example(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add = NrtpyModel.load_from_neff(add_neff(workdir / "add.neff"))
    some_tensor = NrtpyTensor.from_numpy(np.ones((4, 3), np.float16))
    run_doc(ERRORS_PAGE_EXAMPLE, {"model": add, "some_tensor": some_tensor})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("NRT error: NRT Error NRT_FAILURE(1): Failed to load model")
    assert lines[1].startswith("Error: NRT Error NRT_INVALID(2): input tensor names do not match")
    assert len(lines) == 2


# ---------------------------------------------------------------------------------------------- behaviour


def test_errors_are_the_documented_classes(workdir: Path) -> None:
    assert NrtError is nrt_lab.NrtError and issubclass(NrtError, RuntimeError)
    assert issubclass(NrtpyError, RuntimeError) and not issubclass(NrtpyError, NrtError)
    assert BenchmarkResult is nrt_lab.BenchmarkResult
    with pytest.raises(NrtError) as info:
        NrtpyModel.load_from_neff(workdir / "missing.neff")
    assert info.value.status == NrtStatus.FAILURE
    (workdir / "junk.neff").write_bytes(b"junk" * 64)
    with pytest.raises(NrtError) as info:
        NrtpyModel.load_from_neff("junk.neff")
    assert info.value.status == NrtStatus.INVALID
    with pytest.raises(NrtpyError, match="not emulated"):
        NrtpyModel.load_from_neff(add_neff(workdir / "add.neff"), cc_enabled=True, rank_id=1, world_size=2)


def test_execution_errors_and_given_outputs(workdir: Path) -> None:
    model = NrtpyModel.load_from_neff(add_neff(workdir / "add.neff"), name="adder")
    assert model.name == "adder" and list(model.output_tensors_info) == ["output0"]
    meta = model.input_tensors_info["a_input"]
    assert (meta.shape, meta.size, meta.dtype) == ([4, 3], 24, np.dtype(np.float16))
    a = NrtpyTensor.from_numpy(np.full((4, 3), 1.5, np.float16), name="a")
    b = NrtpyTensor.from_numpy(np.full((4, 3), 2.0, np.float16), name="b")
    out = NrtpyTensor.allocate((4, 3), np.float16, name="out")
    assert model(inputs={"a_input": a, "b_input": b}, outputs={"output0": out}) is None
    np.testing.assert_array_equal(out.numpy(), np.full((4, 3), 3.5, np.float16))
    produced = model(inputs={"a_input": a, "b_input": b})
    assert produced is not None and produced["output0"].dtype == np.float16  # typed, not |V2
    with pytest.raises(NrtError) as info:
        model(inputs={"a_input": a, "wrong": b})
    assert info.value.status == NrtStatus.INVALID
    small = NrtpyTensor.from_numpy(np.ones(3, np.float16))
    with pytest.raises(NrtError) as info:
        model(inputs={"a_input": a, "b_input": small})
    assert info.value.status == NrtStatus.EXEC_BAD_INPUT
    with pytest.raises(TypeError):
        model(inputs={"a_input": a, "b_input": np.ones((4, 3), np.float16)})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="mode"):
        model.benchmark(inputs={"a_input": a, "b_input": b}, mode="gpu")
    with pytest.raises(ValueError, match="benchmark_iter"):
        model.benchmark(inputs={"a_input": a, "b_input": b}, benchmark_iter=0)
    result = model.benchmark({"a_input": a, "b_input": b}, {"output0": out}, warmup_iter=0, benchmark_iter=2)
    assert result.iterations == 2 and result.warmup_iterations == 0 and len(result.durations_ms) == 2
    model(inputs={"a_input": a, "b_input": b}, save_trace=True)  # default trace path: beside the NEFF
    assert json.loads((workdir / "add.ntff").read_text())["model"] == "adder"


def test_tensor_api_and_free(workdir: Path) -> None:
    t = NrtpyTensor.from_numpy(np.arange(6, dtype=np.int32).reshape(2, 3)[:, ::-1], name="x")  # made contiguous
    np.testing.assert_array_equal(t.numpy(), [[2, 1, 0], [5, 4, 3]])
    with pytest.raises(ValueError, match="bytes"):
        t.write_from_numpy(np.zeros(7, np.int32))
    t.write_from_numpy(np.ones((3, 2), np.int32))  # same byte size: accepted
    np.testing.assert_array_equal(t.numpy(), np.ones((2, 3), np.int32))
    wrapped = NrtpyTensor(t.tensor_ref, 6, np.int32, name="flat")
    assert wrapped.shape == (6,) and wrapped.size == 24
    with pytest.raises(ValueError):
        NrtpyTensor(t.tensor_ref, (4,), np.int32)
    with pytest.raises(NrtError):
        NrtpyTensor.from_numpy(np.ones(2), core_id=32)  # trn1.32xlarge: cores 0-31
    nrtpy.get_nrtpy_singleton().free_tensor(t)
    with pytest.raises(NrtpyError, match="freed"):
        t.numpy()
    with pytest.raises(NrtpyError):
        t.write_from_numpy(np.ones((2, 3), np.int32))
    t.free()  # idempotent


def test_garbage_collection_frees_device_memory(workdir: Path) -> None:
    runtime = nrtpy.get_nrtpy_singleton().runtime
    base = runtime.memory.core_total(0)
    t = NrtpyTensor.from_numpy(np.zeros(2**20, np.uint8))
    assert runtime.memory.core_total(0) == base + 2**20
    del t
    gc.collect()
    assert runtime.memory.core_total(0) == base
    model = NrtpyModel.load_from_neff(add_neff(workdir / "add.neff"))
    assert runtime.memory.core_total(0) > base and len(runtime.models) == 1
    del model
    gc.collect()
    assert runtime.memory.core_total(0) == base and not runtime.models
    explicit = NrtpyModel.load_from_neff(workdir / "add.neff")
    explicit.unload()
    with pytest.raises(NrtpyError, match="unloaded"):
        explicit(inputs={})


def test_configure_rules(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TypeError):
        nrtpy.configure(visible_cores=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        nrtpy.configure(visible_cores=[0, "1"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        nrtpy.configure(visible_cores=[-1])
    assert "NEURON_RT_VISIBLE_CORES" not in os.environ
    nrtpy.configure(visible_cores=range(4, 6))
    assert os.environ["NEURON_RT_VISIBLE_CORES"] == "4,5"
    nrtpy.configure(visible_cores=None)  # leaves it as it is
    assert os.environ["NEURON_RT_VISIBLE_CORES"] == "4,5"
    NrtpyTensor.from_numpy(np.ones(4, np.float32))
    assert nrtpy.get_nrtpy_singleton().visible_cores == (4, 5)
    with pytest.raises(NrtpyError, match="reset") as info:
        nrtpy.configure(visible_cores=[0])
    assert isinstance(info.value, RuntimeError)
    nrtpy.reset()
    assert "NEURON_RT_VISIBLE_CORES" not in os.environ  # restored to what it was before configure
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "7")
    nrtpy.configure(visible_cores=[0, 2])  # not contiguous: the runtime refuses at first use
    with pytest.raises(NrtError) as failure:
        NrtpyTensor.from_numpy(np.ones(4, np.float32))
    assert failure.value.status == NrtStatus.FAILURE and "not contiguous" in str(failure.value)
    nrtpy.configure(visible_cores=[1, 2])  # still allowed: the runtime never started
    assert nrtpy.get_nrtpy_singleton().visible_cores == (1, 2)
    nrtpy.reset()
    assert os.environ["NEURON_RT_VISIBLE_CORES"] == "7"
    nrtpy.reset()  # nothing running: a no-op


def test_objects_are_invalid_after_reset(workdir: Path) -> None:
    model = NrtpyModel.load_from_neff(add_neff(workdir / "add.neff"))
    a = NrtpyTensor.from_numpy(np.ones((4, 3), np.float16))
    first = nrtpy.get_nrtpy_singleton()
    nrtpy.reset()
    assert nrt_lab.get_runtime() is None and not first.active
    with pytest.raises(NrtpyError, match="reset"):
        a.numpy()
    with pytest.raises(NrtpyError, match="reset"):
        model(inputs={"a_input": a, "b_input": a})
    with pytest.raises(NrtpyError):
        model.benchmark(inputs={"a_input": a, "b_input": a})
    fresh = NrtpyTensor.from_numpy(np.ones((4, 3), np.float16))  # a new runtime starts lazily
    assert nrtpy.get_nrtpy_singleton() is not first
    with pytest.raises(NrtpyError):
        model(inputs={"a_input": fresh, "b_input": fresh})
    # closing the runtime behind nrtpy's back also retires its objects; the next use starts another one
    nrt_lab.close()
    with pytest.raises(NrtpyError):
        fresh.numpy()
    again = NrtpyTensor.from_numpy(np.full(2, 5, np.int32))
    np.testing.assert_array_equal(again.numpy(), [5, 5])


def test_shares_a_runtime_started_through_nrt_lab(workdir: Path) -> None:
    runtime = nrt_lab.init()
    t = NrtpyTensor.from_numpy(np.ones(3, np.float32))
    assert nrtpy.get_nrtpy_singleton().runtime is runtime
    with pytest.raises(NrtpyError):
        nrtpy.configure(visible_cores=[0])
    nrtpy.reset()
    assert runtime.closed
    with pytest.raises(NrtpyError):
        t.numpy()


def test_forked_child_does_not_inherit_the_singleton(workdir: Path) -> None:
    t = NrtpyTensor.from_numpy(np.ones(3, np.float32))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the parent's objects are invalid here; report and leave at once
        try:
            t.numpy()
            verdict = b"usable"
        except NrtpyError:
            verdict = b"invalid"
        except BaseException:
            verdict = b"other"
        os.write(write, verdict)
        os._exit(0)
    os.close(write)
    assert os.read(read, 16) == b"invalid"
    os.close(read)
    os.waitpid(pid, 0)
    np.testing.assert_array_equal(t.numpy(), np.ones(3, np.float32))  # still fine in the parent
