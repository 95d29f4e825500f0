"""The ONNX compiler (docs/compiler.md): API and CLI, static shapes, coverage, bad input, and compiled models
running under libnrt's semantics (Model.load / nrt_load / nrtpy, HBM accounting, stats, timeouts), compared
with onnxruntime."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.helper as oh
import pytest
from onnx import TensorProto, numpy_helper

import nrt_lab
from nrt_lab import nrt
from nrt_lab.compiler import build, coverage, parse_input_shape
from nrt_lab.compiler.examples import EXAMPLES
from nrt_lab.errors import NrtError, NrtStatus
from nrt_lab.tools.cli import main as cli_main

ort = pytest.importorskip("onnxruntime")
RNG = np.random.default_rng(7)


def _ort(model: Any, feeds: dict[str, Any]) -> list[Any]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return list(ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
                .run(None, feeds))


def _small_cnn(batch: Any = "N") -> Any:
    w = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = oh.make_graph(
        [oh.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         oh.make_node("Relu", ["c"], ["r"], name="relu"),
         oh.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
         oh.make_node("Flatten", ["p"], ["y"], name="flat")],
        "small_cnn", [oh.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])], [numpy_helper.from_array(w, "w")])
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])


def _feeds(name: str, batch: int) -> dict[str, Any]:
    rng = np.random.default_rng(11)
    if name in ("bert", "gpt"):
        feeds = {"input_ids": rng.integers(0, 1000, (batch, 32)).astype(np.int64)}
        if name == "bert":
            mask = np.ones((batch, 32), np.int64)
            mask[-1, 20:] = 0
            feeds["attention_mask"] = mask
        return feeds
    return {"input": rng.standard_normal((batch, 3, 64, 64)).astype(np.float32)}


def _thaw(value: Any) -> Any:
    if hasattr(value, "items"):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@pytest.fixture
def runtime(machine_root: Path) -> Any:
    rt = nrt_lab.init()
    yield rt
    nrt_lab.close()


# ------------------------------------------------------------------------------------------- the API and CLI


def test_compile_returns_bytes_or_writes_a_path(tmp_path: Path) -> None:
    model = _small_cnn()
    neff = nrt_lab.compile(model, batch=2)
    assert isinstance(neff, bytes) and len(neff) > 1024
    out = nrt_lab.compile(model, tmp_path / "m.neff", batch=2)
    assert out == tmp_path / "m.neff" and out.read_bytes()[:1024] != b""
    compiled = build(model, batch=2)
    assert compiled.inputs["x"].shape == (2, 3, 8, 8) and compiled.outputs["y"].shape == (2, 4)
    assert compiled.constants_bytes == 4 * 3 * 3 * 3 * 4  # the weights, as NEFF constants
    assert compiled.flops == 2 * 2 * 4 * 8 * 8 * 27 + 2 * 4 * 8 * 8 + 2 * 4 * 8 * 8  # conv + relu + pooling
    assert compiled.device_bytes == compiled.constants_bytes + compiled.scratchpad_bytes + 2 * 3 * 64 * 4 + 2 * 4 * 4


def test_dynamic_dimension_needs_a_value() -> None:
    with pytest.raises(NrtError) as info:
        build(_small_cnn())
    msg = info.value.message
    assert info.value.status == NrtStatus.INVALID
    assert "input 'x'" in msg and "'N'" in msg and "--batch" in msg and "--input-shape x=Nx3x8x8" in msg
    assert build(_small_cnn(), input_shapes={"x": (5, 3, 8, 8)}).inputs["x"].shape == (5, 3, 8, 8)
    with pytest.raises(NrtError, match="dimension 1 is fixed at 3"):
        build(_small_cnn(), input_shapes={"x": (5, 4, 8, 8)})
    with pytest.raises(NrtError, match="unknown input"):
        build(_small_cnn(), batch=1, input_shapes={"nope": (1,)})
    assert parse_input_shape("x=1x3x224x224") == ("x", (1, 3, 224, 224))
    for bad in ("x", "x=1xa", "=1x2", "x=-1x2"):
        with pytest.raises(NrtError, match="NAME=D0xD1"):
            parse_input_shape(bad)


def test_options_are_checked() -> None:
    for kwargs, word in (({"batch": 0}, "batch"), ({"dtype": "fp64"}, "dtype"), ({"lnc": 3}, "lnc")):
        with pytest.raises(NrtError, match=word):
            build(_small_cnn(), **kwargs)


def _unsupported_model() -> Any:
    graph = oh.make_graph(
        [oh.make_node("TopK", ["x", "k"], ["v", "i"], name="topk_a"),
         oh.make_node("Relu", ["v"], ["r"], name="relu"),
         oh.make_node("TopK", ["r", "k"], ["v2", "i2"], name="topk_b"),
         oh.make_node("Hardmax", ["v2"], ["y"], name="hardmax_1")],
        "unsupported", [oh.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, [4, 2])],
        [numpy_helper.from_array(np.array([2], np.int64), "k")])
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])


def test_unsupported_ops_are_listed_together_with_their_nodes() -> None:
    with pytest.raises(NrtError) as info:
        build(_unsupported_model())
    msg = info.value.message
    assert "3 node(s) of 2 unsupported op type(s)" in msg
    assert "Hardmax (nodes: hardmax_1)" in msg and "TopK (nodes: topk_a, topk_b)" in msg
    report = coverage(_unsupported_model())
    assert report.supported == {"Relu": 1} and report.unsupported == {"Hardmax": ["hardmax_1"],
                                                                     "TopK": ["topk_a", "topk_b"]}
    assert not report.ok and "topk_a, topk_b" in report.render()


def test_cli_compile_report_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "cnn.onnx"
    onnx.save(_small_cnn(), src)
    assert cli_main(["compile", str(src), "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "inputs: x float32[2, 3, 8, 8]" in out and (tmp_path / "cnn.neff").is_file()
    assert cli_main(["compile", str(src), "-o", str(tmp_path / "b.neff"), "--input-shape", "x=3x3x8x8",
                     "--dtype", "bf16"]) == 0
    assert "dtype=bf16" in capsys.readouterr().out
    assert cli_main(["compile", str(src), "--report"]) == 0
    assert "Conv" in capsys.readouterr().out
    bad = tmp_path / "u.onnx"
    onnx.save(_unsupported_model(), bad)
    assert cli_main(["compile", str(bad), "--report"]) == 1
    assert "topk_a, topk_b" in capsys.readouterr().out
    assert cli_main(["compile", str(bad), "-o", str(tmp_path / "u.neff")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nrt-lab compile: error:") and "Traceback" not in err
    assert not (tmp_path / "u.neff").exists()
    assert cli_main(["compile", str(src), "-o", str(tmp_path / "d.neff")]) == 1  # dynamic batch, no value
    assert "--batch" in capsys.readouterr().err and not (tmp_path / "d.neff").exists()
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["compile", str(src), "--batch", "0"])
    assert exit_info.value.code == 2
    assert list(tmp_path.glob("*.tmp*")) == []


# ------------------------------------------------------------------------------------------- bad input


def _cli_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], path: Path) -> str:
    out = tmp_path / "out.neff"
    assert cli_main(["compile", str(path), "-o", str(out), "--batch", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists() and list(tmp_path.glob("out.neff*")) == []
    return err


def test_malformed_files_give_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _small_cnn().SerializeToString()
    cases = {
        "empty.onnx": b"",
        "garbage.onnx": b"\x0a\xff\xff\xff\xff\x0f" + b"x" * 50,
        "truncated.onnx": good[: len(good) // 2],
        "text.onnx": b"this is not a model\n" * 10,
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        err = _cli_error(tmp_path, capsys, tmp_path / name)
        assert "not a valid ONNX" in err or "is empty" in err or "no graph" in err, (name, err)
    (tmp_path / "dir.onnx").mkdir()
    assert "not a regular file" in _cli_error(tmp_path, capsys, tmp_path / "dir.onnx")
    (tmp_path / "link.onnx").symlink_to(tmp_path / "garbage.onnx")
    assert "symbolic link" in _cli_error(tmp_path, capsys, tmp_path / "link.onnx")
    assert "does not exist" in _cli_error(tmp_path, capsys, tmp_path / "missing.onnx")
    with pytest.raises(NrtError, match="more than the limit"):
        build(tmp_path / "garbage.onnx", max_size=10)
    with pytest.raises(NrtError, match="accepted: a path"):
        build(12345)


def _with_external_data(tmp_path: Path) -> Path:
    model = _small_cnn()
    path = tmp_path / "ext" / "model.onnx"
    path.parent.mkdir()
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
              size_threshold=0)
    return path


def test_external_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _with_external_data(tmp_path)
    assert build(path, batch=1).constants_bytes == 4 * 27 * 4  # read from weights.bin beside the model
    with pytest.raises(NrtError, match="from its file path"):
        build(path.read_bytes(), batch=1)
    (path.parent / "weights.bin").rename(path.parent / "moved.bin")
    err = _cli_error(tmp_path, capsys, path)
    assert "external data file 'weights.bin' is missing" in err
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (path.parent / "moved.bin").rename(outside / "weights.bin")
    (path.parent / "sub").symlink_to(outside)
    model = onnx.load(path, load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "sub/weights.bin"
    onnx.save(model, path)
    assert "leads outside" in _cli_error(tmp_path, capsys, path)
    model = onnx.load(path, load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../../etc/passwd"
    onnx.save(model, path)
    assert "not accepted" in _cli_error(tmp_path, capsys, path)


def test_cycles_domains_and_huge_shapes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cyclic = oh.make_model(oh.make_graph(
        [oh.make_node("Add", ["x", "b"], ["a"], name="n1"), oh.make_node("Relu", ["a"], ["b"], name="n2")],
        "cyclic", [oh.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [oh.make_tensor_value_info("b", TensorProto.FLOAT, [2])]), opset_imports=[oh.make_opsetid("", 17)])
    onnx.save(cyclic, tmp_path / "cyclic.onnx")
    err = _cli_error(tmp_path, capsys, tmp_path / "cyclic.onnx")
    assert "topologically sorted" in err or "cycle" in err
    foreign = oh.make_model(oh.make_graph(
        [oh.make_node("Fancy", ["x"], ["y"], name="fancy", domain="com.example")], "foreign",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, [2])]),
        opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("com.example", 1)])
    onnx.save(foreign, tmp_path / "foreign.onnx")
    assert "unknown opset domain 'com.example'" in _cli_error(tmp_path, capsys, tmp_path / "foreign.onnx")
    huge = oh.make_model(oh.make_graph(
        [oh.make_node("Relu", ["x"], ["y"], name="relu")], "huge",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1 << 20, 1 << 20, 1 << 10])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, [1 << 20, 1 << 20, 1 << 10])]),
        opset_imports=[oh.make_opsetid("", 17)])
    onnx.save(huge, tmp_path / "huge.onnx")
    assert "more than the 64 GiB" in _cli_error(tmp_path, capsys, tmp_path / "huge.onnx")
    expand = oh.make_model(oh.make_graph(
        [oh.make_node("Expand", ["x", "s"], ["y"], name="expand")], "expand",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, [1 << 40, 1 << 20])],
        [numpy_helper.from_array(np.array([1 << 40, 1 << 20], np.int64), "s")]),
        opset_imports=[oh.make_opsetid("", 17)])
    with pytest.raises(NrtError, match="too large|more than"):
        build(expand)


# ------------------------------------------------------------------------------------------- real architectures


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_architectures_match_onnxruntime(runtime: Any, name: str) -> None:
    model = EXAMPLES[name]()
    compiled = build(model, batch=2)
    loaded = nrt_lab.Model.load(compiled.neff)
    feeds = _feeds(name, 2)
    result = loaded.execute(feeds)
    ours = result[model.graph.output[0].name].numpy()
    ref = _ort(model, feeds)[0]
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-4)
    assert loaded.flops_per_execution == compiled.flops > 0
    if name == "bert":  # torch.onnx's erf GELU (Div, Erf, Add, Mul, Mul) became one Gelu per layer
        assert compiled.gelu_fused == 2 and compiled.kernel_counts["onnx.Gelu"] == 2
        assert "onnx.Erf" not in compiled.kernel_counts
    if name in ("resnet", "mobilenet"):  # every Conv+BatchNormalization pair folded into the Conv
        assert compiled.bn_folded == compiled.op_counts["BatchNormalization"] > 0
        assert "onnx.BatchNormalization" not in compiled.kernel_counts


def test_bf16_and_fp16_compile_and_stay_close(runtime: Any) -> None:
    model = EXAMPLES["resnet"]()
    feeds = _feeds("resnet", 1)
    ref = _ort(model, feeds)[0]
    for dtype, tol in (("bf16", 0.1), ("fp16", 0.02)):
        compiled = build(model, batch=1, dtype=dtype)
        assert compiled.inputs["input"].dtype == "float32"  # the interface stays fp32; compute is cast
        assert compiled.constants_bytes < build(model, batch=1).constants_bytes * 0.6
        loaded = nrt_lab.Model.load(compiled.neff)
        out = loaded.execute(feeds)["logits"].numpy()
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, ref, rtol=tol, atol=tol * float(np.abs(ref).max()))


# ------------------------------------------------------------------------------------------- libnrt semantics


def test_loads_through_nrt_and_nrtpy_and_data_parallel(runtime: Any, tmp_path: Path) -> None:
    model = EXAMPLES["mobilenet"]()
    path = nrt_lab.compile(model, tmp_path / "mobilenet.neff", batch=1)
    assert isinstance(path, Path)
    feeds = _feeds("mobilenet", 1)
    ref = _ort(model, feeds)[0]
    ref_model = nrt.ModelRef()
    data = path.read_bytes()
    assert nrt.nrt_load(data, len(data), 1, -1, ref_model) == nrt.NRT_SUCCESS
    assert ref_model.value is not None and ref_model.value.core == runtime.cores[1]
    # data parallel: one copy per owned core, each running its shard of a batch
    batch = np.random.default_rng(3).standard_normal((len(runtime.cores), 3, 64, 64)).astype(np.float32)
    copies = [nrt_lab.Model.load(path, index) for index in range(len(runtime.cores))]
    outs = [m.execute({"input": batch[i:i + 1]})["logits"].numpy() for i, m in enumerate(copies)]
    np.testing.assert_allclose(np.concatenate(outs), _ort(EXAMPLES["mobilenet"](), {"input": batch})[0],
                               rtol=1e-3, atol=1e-4)
    assert {m.core for m in copies} == set(runtime.cores)
    np.testing.assert_allclose(copies[0].execute(feeds)["logits"].numpy(), ref, rtol=1e-3, atol=1e-4)
    from nrt_lab import nrtpy

    loaded = nrtpy.NrtpyModel.load_from_neff(str(path))
    assert list(loaded.input_tensors_info) == ["input"]


def test_too_large_for_one_hbm_is_the_oom_report(runtime: Any, capsys: pytest.CaptureFixture[str]) -> None:
    big = oh.make_model(oh.make_graph(
        [oh.make_node("Expand", ["x", "s"], ["e"], name="expand"), oh.make_node("Relu", ["e"], ["y"], name="relu")],
        "big", [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, [1 << 16, 1 << 16])],
        [numpy_helper.from_array(np.array([1 << 16, 1 << 16], np.int64), "s")]), opset_imports=[oh.make_opsetid("", 17)])
    compiled = build(big)
    assert compiled.device_bytes > 16 << 30  # more than one trn1 NeuronCore's HBM (16 GiB)
    with pytest.raises(NrtError) as info:
        nrt_lab.Model.load(compiled.neff)
    assert info.value.status == NrtStatus.RESOURCE and "HBM" in info.value.message


def test_stats_and_timeouts(machine_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nrt_lab.runtime import model as model_module

    monkeypatch.setenv("NEURON_RT_EXEC_TIMEOUT", "0.001")
    rt = nrt_lab.init()
    try:
        compiled = build(EXAMPLES["bert"](), batch=1)
        loaded = nrt_lab.Model.load(compiled.neff)
        feeds = _feeds("bert", 1)
        monkeypatch.setattr(model_module, "_deadline_clock", lambda: 0.0)
        loaded.execute(feeds)
        stats = rt.stats
        assert stats is not None
        from nrt_lab.driver.stats import read_stats

        snapshot = read_stats(stats.path)
        assert snapshot is not None
        core = next(c for c in snapshot.cores if c.core == loaded.core)
        assert core.flops == compiled.flops and core.inferences == 1
        from nrt_lab.monitor import Monitor

        me = next(r for r in Monitor().sample().runtimes if r.pid == os.getpid())  # what neuron-top/monitor show
        assert [m.name for m in me.models] == ["bert"] and me.execution_summary["completed"] == 1
        sample = next(c for c in me.cores if c.core == loaded.core)
        assert sample.flops == compiled.flops and sample.memory["constants"] == compiled.constants_bytes
        ticks = iter(range(100000))
        monkeypatch.setattr(model_module, "_deadline_clock", lambda: next(ticks) * 0.01)
        with pytest.raises(NrtError) as info:
            loaded.execute(feeds)
        assert info.value.status == NrtStatus.TIMEOUT
    finally:
        nrt_lab.close()


@pytest.mark.instance("trn2.48xlarge", lnc=2)
def test_lnc2_neff_loads_on_a_trn2_logical_core(machine_root: Path) -> None:
    with pytest.raises(NrtError, match="lnc"):
        build(_small_cnn(), batch=1, lnc=3)
    model = _small_cnn()
    compiled = build(model, batch=1, lnc=2)
    rt = nrt_lab.init()
    try:
        loaded = nrt_lab.Model.load(compiled.neff)
        assert loaded.neff.lnc == 2 and len(loaded.neff.subgraphs) == 2
        x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
        np.testing.assert_allclose(loaded.execute({"x": x})["y"].numpy(), _ort(model, {"x": x})[0],
                                   rtol=1e-4, atol=1e-5)
        del rt
    finally:
        nrt_lab.close()


# ------------------------------------------------------------------------------------------- GPU


def test_cupy_matches_numpy_for_compiled_models(runtime: Any) -> None:
    from nrt_lab.kernels import get_kernel, select_backend

    try:
        backend = select_backend("cupy")
    except Exception as exc:  # noqa: BLE001 - any reason CuPy cannot run is the skip reason
        pytest.skip(f"no usable GPU for CuPy: {exc}")
    from nrt_lab.neff import parse_neff

    for name in ("resnet", "bert"):
        model = EXAMPLES[name]()
        compiled = build(model, batch=2)
        sg = parse_neff(compiled.neff).subgraphs[0]
        feeds = _feeds(name, 2)
        results = {}
        for xp, to in ((np, lambda a: a), (backend.xp, backend.to_device)):
            values = {k: to(v) for k, v in feeds.items()}
            values.update({k: to(v) for k, v in sg.constants.items()})
            for node in sg.nodes:
                attrs = _thaw(node.attrs)
                values[node.outputs[0]] = get_kernel(node.op).fn(xp, [values[i] for i in node.inputs], attrs)
            out = model.graph.output[0].name
            results[xp.__name__] = backend.to_host(values[out]) if xp is not np else values[out]
        np.testing.assert_allclose(results["cupy"], results["numpy"], rtol=1e-4, atol=1e-4)
