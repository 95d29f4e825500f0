"""Validate the ONNX compiler on the ONNX backend test data and against onnxruntime.

The ``onnx`` wheel ships its backend test cases: ``node`` (built in memory by ``onnx.backend.test.loader``),
and on disk ``simple``, ``pytorch-converted``, ``pytorch-operator`` (model + ``test_data_set_*``) and ``light``
(models without inputs: random inputs are made, and onnxruntime gives the reference). Each case is compiled with
:func:`nrt_lab.compiler.build`, loaded with ``Model.load`` on this process's runtime and executed; its outputs
are compared with the case's expected outputs (the case's rtol/atol, ONNX's 1e-3/1e-7 by default) and with
onnxruntime's on the same inputs. ``tools/onnx_coverage.py`` writes the table of docs/onnx-coverage.md from it.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["KINDS", "Case", "CaseResult", "iter_cases", "run_case", "compare", "ort_outputs"]

KINDS = ("node", "simple", "pytorch-converted", "pytorch-operator", "light")


@dataclass
class Case:
    """One backend test case: a model, its data sets (inputs, expected outputs or None) and tolerances."""

    name: str
    kind: str
    model: Any
    data_sets: list[tuple[list[Any], list[Any] | None]]
    rtol: float = 1e-3
    atol: float = 1e-7


@dataclass
class CaseResult:
    """The outcome: pass, fail, unsupported (ops not claimed), not-compiled (refused with a reason), skipped."""

    name: str
    kind: str
    status: str
    detail: str = ""
    ops: list[str] = field(default_factory=list)
    ort: str = ""


def _data_dir() -> str:
    import onnx

    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")


def _read_tensors(pattern: str) -> list[Any]:
    import onnx
    from onnx import numpy_helper

    out = []
    for path in sorted(glob.glob(pattern), key=lambda p: int(p.rsplit("_", 1)[1].split(".")[0])):
        with open(path, "rb") as fh:
            proto = onnx.TensorProto()
            proto.ParseFromString(fh.read())
        out.append(numpy_helper.to_array(proto))
    return out


def iter_cases(kinds: Iterable[str] = KINDS, names: set[str] | None = None) -> Iterator[Case]:
    """Every case of these kinds (only ``names`` when given), in a stable order."""
    import onnx

    root = _data_dir()
    for kind in kinds:
        if kind == "node":
            from onnx.backend.test.loader import load_model_tests

            for tc in sorted(load_model_tests(kind="node"), key=lambda t: t.name):
                if names is None or tc.name in names:
                    sets: list[tuple[list[Any], list[Any] | None]] = [
                        (list(i), list(o)) for i, o in (tc.data_sets or [])]
                    yield Case(tc.name, kind, tc.model, sets, tc.rtol, tc.atol)
        elif kind == "light":
            for path in sorted(glob.glob(os.path.join(root, "light", "*.onnx"))):
                name = os.path.basename(path)[:-5]
                if names is None or name in names:
                    yield Case(name, kind, path, [])
        else:
            for case_dir in sorted(glob.glob(os.path.join(root, kind, "test_*"))):
                name = os.path.basename(case_dir)
                model_path = os.path.join(case_dir, "model.onnx")
                if (names is not None and name not in names) or not os.path.exists(model_path):
                    continue
                sets = []
                for ds in sorted(glob.glob(os.path.join(case_dir, "test_data_set_*"))):
                    sets.append((_read_tensors(os.path.join(ds, "input_*.pb")),
                                 _read_tensors(os.path.join(ds, "output_*.pb"))))
                yield Case(name, kind, model_path, sets)
    del onnx


def compare(actual: Any, expected: Any, rtol: float, atol: float) -> str:
    """'' when ``actual`` matches ``expected`` (bool as 0/1, NaN equal to NaN), else what differs."""
    exp = np.asarray(expected)
    act = np.asarray(actual)
    if exp.dtype == np.bool_:
        exp = exp.astype(np.uint8)
    if act.shape != exp.shape:
        return f"shape {act.shape}, expected {exp.shape}"
    if exp.dtype.kind in "iub":
        if not np.array_equal(act.astype(np.int64), exp.astype(np.int64)):
            return f"{int(np.sum(act.astype(np.int64) != exp.astype(np.int64)))} integer element(s) differ"
        return ""
    a64, e64 = act.astype(np.float64), exp.astype(np.float64)
    bad = ~np.isclose(a64, e64, rtol=rtol, atol=atol, equal_nan=True)
    if bad.any():
        err = np.abs(a64 - e64)[bad]
        return f"{int(bad.sum())}/{bad.size} element(s) off (max abs error {float(err.max()):.3g}, rtol {rtol}, atol {atol})"
    return ""


def ort_outputs(model: Any, feeds: dict[str, Any]) -> list[Any] | str:
    """onnxruntime's outputs for ``feeds`` (one thread), or why it could not run the model."""
    try:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        source = model if isinstance(model, str) else model.SerializeToString()
        session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        return list(session.run(None, feeds))
    except Exception as exc:  # onnxruntime's own errors: recorded, not fatal
        return f"onnxruntime: {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"


def _random_inputs(model: Any, rng: np.random.Generator) -> list[Any] | None:
    from onnx import helper

    inits = {i.name for i in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if dtype.kind != "f":
            return None
        out.append(rng.standard_normal(dims).astype(dtype))
    return out


def run_case(case: Case, max_sets: int = 2) -> CaseResult:
    """Compile, load, execute and compare one case (module doc); never raises for a case's own problems."""
    import onnx

    from nrt_lab.compiler import build, coverage
    from nrt_lab.errors import NrtError
    from nrt_lab.runtime import Model

    try:
        cov = coverage(case.model)
    except NrtError as exc:
        return CaseResult(case.name, case.kind, "not-compiled", exc.message)
    ops = sorted(cov.supported) + sorted(cov.unsupported)
    if not cov.ok:
        return CaseResult(case.name, case.kind, "unsupported", "ops: " + ", ".join(sorted(cov.unsupported)), ops)
    model = onnx.load(case.model) if isinstance(case.model, str) else case.model
    inits = {i.name for i in model.graph.initializer}
    names = [vi.name for vi in model.graph.input if vi.name not in inits]
    sets = case.data_sets[:max_sets]
    if not sets:
        generated = _random_inputs(model, np.random.default_rng(0))
        if generated is None:
            return CaseResult(case.name, case.kind, "skipped", "no inputs and no float inputs to generate", ops)
        sets = [(generated, None)]
    try:
        sets = [([_as_array(x) for x in inputs], None if expected is None else [_as_array(x) for x in expected])
                for inputs, expected in sets]
    except (ValueError, TypeError) as exc:
        return CaseResult(case.name, case.kind, "skipped", f"test data not readable as NumPy arrays: {exc}", ops)
    for inputs, _ in sets:
        if len(inputs) != len(names) or not all(isinstance(x, np.ndarray) for x in inputs):
            return CaseResult(case.name, case.kind, "skipped", "inputs are not NumPy tensors (sequences, optionals or packed dtypes)",
                              ops)
    shapes = {n: tuple(int(d) for d in x.shape) for n, x in zip(names, sets[0][0], strict=True)}
    frozen: dict[str, Any] = {}
    try:
        compiled = build(model, input_shapes=shapes)
    except NrtError as exc:
        if "must be a constant" not in exc.message or len(sets) != 1:
            return CaseResult(case.name, case.kind, "not-compiled", exc.message, ops)
        # Shape-like inputs (axes, scales, pads) given as graph inputs: freeze the integer ones to the case's
        # values, as one compiles a model for fixed shapes.
        slots = _shape_inputs(model)
        frozen = {n: x for n, x in zip(names, sets[0][0], strict=True)
                  if x.dtype.kind in "iu" or (x.dtype == np.float32 and x.size <= 8 and n in slots)}
        shapes = {n: s for n, s in shapes.items() if n not in frozen}
        try:
            compiled = build(model, input_shapes=shapes, constant_inputs=frozen)
        except NrtError as exc2:
            return CaseResult(case.name, case.kind, "not-compiled", exc2.message, ops)
    ort_note = ""
    try:
        loaded = Model.load(compiled.neff)
    except NrtError as exc:
        return CaseResult(case.name, case.kind, "fail", f"load: {exc.message}", ops)
    try:
        for index, (inputs, expected) in enumerate(sets):
            feeds = {n: (x.astype(np.uint8) if x.dtype == np.bool_ else x) for n, x in zip(names, inputs, strict=True)
                     if n not in frozen}
            try:
                result = loaded.execute(feeds)
            except NrtError as exc:
                return CaseResult(case.name, case.kind, "fail", f"execute: {exc.message}", ops)
            actual = [result[o.name].numpy() for o in model.graph.output]
            ref = ort_outputs(case.model, {n: x for n, x in zip(names, inputs, strict=True)})
            if isinstance(ref, str):
                ort_note = ref
            else:
                for i, (a, r) in enumerate(zip(actual, ref, strict=True)):
                    problem = compare(a, r, case.rtol, case.atol)
                    if problem:
                        ort_note = f"differs from onnxruntime on output {i}: {problem}"
                        if expected is None:
                            return CaseResult(case.name, case.kind, "fail", ort_note, ops, ort_note)
                if not ort_note:
                    ort_note = "matches onnxruntime"
            for i, (a, e) in enumerate(zip(actual, expected or [], strict=False)):
                problem = compare(a, e, case.rtol, case.atol)
                if problem:
                    return CaseResult(case.name, case.kind, "fail", f"data set {index} output {i}: {problem}", ops,
                                      ort_note)
    finally:
        loaded.unload()
    return CaseResult(case.name, case.kind, "pass", "", ops, ort_note)


def _as_array(x: Any) -> Any:
    """A NumPy array for a data-set entry: arrays, NumPy scalars and TensorProtos (others stay as they are)."""
    import onnx
    from onnx import numpy_helper

    if isinstance(x, np.generic):
        return np.asarray(x)
    if isinstance(x, onnx.TensorProto):
        return numpy_helper.to_array(x)
    return x


def _shape_inputs(model: Any) -> set[str]:
    """Graph inputs that feed a shape-like input slot (Resize's scales/sizes/roi, Pad's pads, …)."""
    slots = {"Resize": (1, 2, 3), "Pad": (1, 2, 3), "Clip": (1, 2)}
    found: set[str] = set()
    for node in model.graph.node:
        for i in slots.get(node.op_type, ()):
            if i < len(node.input):
                found.add(node.input[i])
    return found


def summarize(results: Sequence[CaseResult]) -> dict[str, int]:
    """Count of results per status."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts
