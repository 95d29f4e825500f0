"""Lowering an ONNX graph to an nrt_lab NEFF: static shapes, constant folding, ``onnx.*`` kernels, weights.

Walk: the graph's nodes in topological order (a cycle or an undefined input is an error naming the nodes).
Each value is either a *constant* (an initializer, a ``Constant`` node or anything computed from constants
only: folded at compile time by the very kernel that would run it) or a *tensor* of the NEFF graph with a
static shape. Shape-like inputs (Reshape's shape, Slice's starts, Resize's scales, …) must fold to constants,
as Neuron requires static shapes; they become the kernel's attributes. Constants that feed tensors become the
NEFF's ``file`` constants (the weights).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nrt_lab.errors import NrtError, NrtStatus
from nrt_lab.kernels import KernelError, TensorSpec, get_kernel
from nrt_lab.kernels.onnx_ops import ONNX_OPS
from nrt_lab.neff import GraphBuilder, Var

__all__ = ["DTYPE_CHOICES", "MAX_TENSOR_BYTES", "Lowered", "SPECIAL_OPS", "lower", "supported_op_types",
           "unsupported_nodes"]

DTYPE_CHOICES: dict[str, str] = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
MAX_TENSOR_BYTES = 64 << 30
"""Largest tensor a compiled model may declare (bytes): more than any NeuronCore's HBM."""
_MAX_FOLD_ELEMENTS = 1 << 24

# ONNX element types -> NEFF dtypes (bool travels as uint8 0/1).
_ELEM: dict[int, str] = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "uint8", 10: "float16",
                         16: "bfloat16"}
_ELEM_NAMES = {1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
               9: "bool", 10: "float16", 11: "double", 12: "uint32", 13: "uint64", 16: "bfloat16"}

# Inputs that must be constant, moved into attrs under these names.
_CONST_INPUTS: dict[str, dict[int, str]] = {
    "Reshape": {1: "shape"}, "Expand": {1: "shape"}, "Tile": {1: "repeats"},
    "Slice": {1: "starts", 2: "ends", 3: "axes", 4: "steps"},
    "Pad": {1: "pads", 2: "constant_value", 3: "axes"},
    "Squeeze": {1: "axes"}, "Unsqueeze": {1: "axes"},
    "ReduceSum": {1: "axes"}, "ReduceMean": {1: "axes"}, "ReduceMax": {1: "axes"}, "ReduceMin": {1: "axes"},
    "ReduceProd": {1: "axes"}, "ReduceL2": {1: "axes"}, "ReduceL1": {1: "axes"}, "ReduceSumSquare": {1: "axes"},
    "ReduceLogSumExp": {1: "axes"},
    "Clip": {1: "min", 2: "max"}, "Resize": {1: "roi", 2: "scales", 3: "sizes"},
    "Trilu": {1: "k"}, "CumSum": {1: "axis"},
}
SPECIAL_OPS = ("Constant", "Identity", "Dropout", "Shape", "Size", "Split", "ConstantOfShape", "Range", "CastLike",
               "Cast")
"""ONNX ops the compiler handles itself (folding, aliasing, splitting) before or instead of a kernel."""


def supported_op_types() -> list[str]:
    """Every ONNX op type (default domain) the compiler accepts."""
    return sorted(set(ONNX_OPS) | set(SPECIAL_OPS))


def unsupported_nodes(graph: Any) -> dict[str, list[str]]:
    """op type (with its domain when not the default) -> names of the nodes using it, for unsupported ops."""
    known = set(supported_op_types())
    found: dict[str, list[str]] = {}
    for i, node in enumerate(graph.node):
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        if op not in known:
            found.setdefault(op, []).append(node.name or f"#{i}")
    return found


def _invalid(message: str) -> NrtError:
    return NrtError(NrtStatus.INVALID, message)


@dataclass
class Lowered:
    """What lowering produced: the builder, the I/O, op counts and what the NEFF declares."""

    builder: GraphBuilder
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    bool_outputs: list[str] = field(default_factory=list)
    op_counts: Counter[str] = field(default_factory=Counter)
    folded: int = 0
    constants_bytes: int = 0


class _Lowerer:
    def __init__(self, model: Any, input_shapes: Mapping[str, Sequence[int]], batch: int | None,
                 dtype: str, name: str, constant_inputs: Mapping[str, Any]) -> None:
        self.model = model
        self.constant_inputs = dict(constant_inputs)
        self.graph = model.graph
        self.input_shapes = dict(input_shapes)
        self.batch = batch
        self.fdt = dtype
        self.g = GraphBuilder(name=name)
        self.values: dict[str, Any] = {}  # name -> np.ndarray (constant) or Var
        self.const_vars: dict[int, Var] = {}
        self.result = Lowered(self.g, {}, {})
        self.counter = 0

    # -- values ------------------------------------------------------------------------------------------

    def node_name(self, node: Any, index: int) -> str:
        base = node.name or f"{node.op_type}_{index}"
        self.counter += 1
        return f"{base[:200]}#{self.counter}" if len(base) > 200 else f"{base}#{self.counter}"

    def const_var(self, array: np.ndarray[Any, Any], hint: str) -> Var:
        key = id(array)
        if key not in self.const_vars:
            if array.dtype == np.float32 and self.fdt != "float32":
                from nrt_lab.neff import numpy_dtype

                stored = array.astype(numpy_dtype(self.fdt))
            else:
                stored = array
            self.counter += 1
            var = self.g.constant(f"const{self.counter}_{hint[:80]}", stored)
            self.const_vars[key] = var
            self.result.constants_bytes += int(stored.nbytes)
        return self.const_vars[key]

    def as_var(self, value: Any, hint: str) -> Var:
        return value if isinstance(value, Var) else self.const_var(value, hint)

    def spec(self, value: Any) -> TensorSpec:
        if isinstance(value, Var):
            return TensorSpec(value.shape, value.dtype)
        from nrt_lab.kernels._common import dtype_name

        return TensorSpec(tuple(int(d) for d in value.shape), dtype_name(value.dtype))

    # -- inputs ------------------------------------------------------------------------------------------

    def declare_inputs(self) -> None:
        import onnx.numpy_helper as nph

        for init in self.graph.initializer:
            self.values[init.name] = self._const_array(nph.to_array(init), f"initializer {init.name!r}")
        for i, vi in enumerate(self.graph.input):
            if vi.name in self.values:
                continue  # an initializer listed as input (IR < 4): a constant here
            if vi.name in self.constant_inputs:
                self.values[vi.name] = self._const_array(np.asarray(self.constant_inputs[vi.name]),
                                                         f"constant input {vi.name!r}")
                continue
            self._check_name(vi.name, "input")
            tt = vi.type.tensor_type
            if not vi.type.HasField("tensor_type"):
                raise _invalid(f"input {vi.name!r} is not a tensor; accepted: tensor inputs")
            dtype = self._dtype(tt.elem_type, f"input {vi.name!r}")
            shape = self._static_shape(vi, i)
            if dtype == "float32" and self.fdt != "float32":
                var = self.g.input(vi.name, "float32", shape)
                self.values[vi.name] = self.g.op("onnx.Cast", [var], {"to": self.fdt}, name=f"{vi.name}:cast")
            else:
                self.values[vi.name] = self.g.input(vi.name, dtype, shape)
            self.result.inputs[vi.name] = TensorSpec(shape, dtype)

    def _check_name(self, name: str, what: str) -> None:
        if not name or len(name.encode("utf-8")) > 200 or any(ord(c) < 32 for c in name):
            raise _invalid(f"{what} name {name!r} is not accepted: 1 to 200 UTF-8 bytes, no control characters")

    def _dtype(self, elem: int, what: str) -> str:
        if elem not in _ELEM:
            raise _invalid(f"{what} has element type {_ELEM_NAMES.get(elem, elem)}, which nrt_lab does not compile; "
                           "accepted: float, float16, bfloat16, int8, int32, int64, uint8, bool")
        return _ELEM[elem]

    def _static_shape(self, vi: Any, index: int) -> tuple[int, ...]:
        tt = vi.type.tensor_type
        if vi.name in self.input_shapes:
            given = tuple(int(d) for d in self.input_shapes[vi.name])
            if tt.HasField("shape"):
                declared = tt.shape.dim
                if len(declared) != len(given):
                    raise _invalid(f"input {vi.name!r} has rank {len(declared)} but the given shape {list(given)} has "
                                   f"rank {len(given)}")
                for i, (d, g) in enumerate(zip(declared, given, strict=True)):
                    if d.HasField("dim_value") and d.dim_value != g:
                        raise _invalid(f"input {vi.name!r} dimension {i} is fixed at {d.dim_value} by the model but "
                                       f"{g} was given")
            shape = given
        else:
            if not tt.HasField("shape"):
                raise _invalid(f"input {vi.name!r} has no declared shape; give one with --input-shape "
                               f"{vi.name}=1x3x224x224 (Python: input_shapes={{{vi.name!r}: (...)}})")
            dims = []
            for i, d in enumerate(tt.shape.dim):
                if d.HasField("dim_value") and d.dim_value > 0:
                    dims.append(int(d.dim_value))
                elif i == 0 and self.batch is not None:
                    dims.append(self.batch)
                else:
                    label = f" ({d.dim_param!r})" if d.dim_param else ""
                    hint = "--batch N (the first dimension) or " if i == 0 else ""
                    example = "x".join(str(x.dim_value) if x.HasField("dim_value") else "N" for x in tt.shape.dim)
                    raise _invalid(f"input {vi.name!r} has a dynamic dimension {i}{label}: Neuron compiles static "
                                   f"shapes; give it with {hint}--input-shape {vi.name}={example or 'N'} "
                                   "(Python: batch= or input_shapes=)")
            shape = tuple(dims)
        if any(d < 0 for d in shape):
            raise _invalid(f"input {vi.name!r} shape {list(shape)} has a negative dimension")
        self._check_size(shape, 8, f"input {vi.name!r}")
        return shape

    def _check_size(self, shape: Sequence[int], itemsize: int, what: str) -> None:
        if math.prod(shape) * itemsize > MAX_TENSOR_BYTES:
            raise _invalid(f"{what} of shape {list(shape)} would need {math.prod(shape) * itemsize} bytes, more than "
                           f"the {MAX_TENSOR_BYTES >> 30} GiB any NeuronCore's HBM can hold")

    def _const_array(self, array: np.ndarray[Any, Any], what: str) -> np.ndarray[Any, Any]:
        if array.dtype == np.bool_:
            return array.astype(np.uint8)
        if array.dtype == np.float64:
            raise _invalid(f"{what} is float64 (double), which nrt_lab does not compile; accepted: float32, float16, "
                           "bfloat16, int8, int32, int64, uint8, bool")
        name = np.dtype(array.dtype).name
        if name not in ("float32", "float16", "bfloat16", "int8", "int32", "int64", "uint8"):
            raise _invalid(f"{what} has dtype {name}, which nrt_lab does not compile")
        return np.array(array, order="C", copy=True)

    # -- nodes -------------------------------------------------------------------------------------------

    def order(self) -> list[Any]:
        produced: dict[str, int] = {}
        for i, node in enumerate(self.graph.node):
            for out in node.output:
                if out:
                    produced[out] = i
        deps: list[set[int]] = []
        for node in self.graph.node:
            needed = set()
            for name in node.input:
                if name and name not in self.values and name in produced:
                    needed.add(produced[name])
                elif name and name not in self.values and name not in produced:
                    raise _invalid(f"node {node.name!r} ({node.op_type}) reads {name!r}, which no input, initializer "
                                   "or node defines")
            deps.append(needed)
        done: list[int] = []
        state = [0] * len(deps)
        for start in range(len(deps)):
            if state[start]:
                continue
            stack = [(start, iter(sorted(deps[start])))]
            state[start] = 1
            while stack:
                node_index, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    stack.pop()
                    state[node_index] = 2
                    done.append(node_index)
                elif state[nxt] == 1:
                    cycle = [self.graph.node[s].name or f"#{s}" for s, _ in stack]
                    raise _invalid(f"the graph has a cycle through nodes {', '.join(cycle)}; accepted: an acyclic "
                                   "graph")
                elif state[nxt] == 0:
                    state[nxt] = 1
                    stack.append((nxt, iter(sorted(deps[nxt]))))
        return [self.graph.node[i] for i in done]

    def run(self) -> Lowered:
        self.declare_inputs()
        for index, node in enumerate(self.order()):
            self.lower_node(node, index)
        for vo in self.graph.output:
            if vo.name not in self.values:
                raise _invalid(f"graph output {vo.name!r} is produced by no node")
            self._check_name(vo.name, "output")
            value = self.values[vo.name]
            is_bool = vo.type.tensor_type.elem_type == 9
            var = self.as_var(value, vo.name)
            if var.kind != "virtual" or var.name in self.result.outputs:
                var = self.g.op("onnx.Identity", [var], name=f"{vo.name}:identity")
            if var.dtype == self.fdt and self.fdt != "float32" and vo.type.tensor_type.elem_type == 1:
                var = self.g.op("onnx.Cast", [var], {"to": "float32"}, name=f"{vo.name}:cast")
            if 0 in var.shape:
                raise _invalid(f"graph output {vo.name!r} has shape {list(var.shape)}, with no elements; accepted: "
                               "outputs of at least one element (the runtime cannot allocate 0-byte tensors)")
            self.g.output(vo.name, var)
            self.result.outputs[vo.name] = TensorSpec(var.shape, var.dtype)
            if is_bool:
                self.result.bool_outputs.append(vo.name)
        return self.result

    def attrs_of(self, node: Any) -> dict[str, Any]:
        import onnx.helper as oh
        import onnx.numpy_helper as nph

        out: dict[str, Any] = {}
        for attr in node.attribute:
            value = oh.get_attribute_value(attr)
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            elif attr.type == attr.TENSOR:
                value = self._const_array(nph.to_array(value), f"attribute {attr.name!r} of node {node.name!r}")
            elif isinstance(value, list):
                value = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
            out[attr.name] = value
        return out

    def lower_node(self, node: Any, index: int) -> None:
        op = node.op_type
        what = f"node {node.name or '#' + str(index)!r} ({op})"
        attrs = self.attrs_of(node)
        ins = [self.values[n] if n else None for n in node.input]
        self.result.op_counts[op] += 1
        try:
            outs = self.dispatch(op, node, ins, attrs, what, index)
        except KernelError as exc:
            raise _invalid(f"{what}: {exc}") from None
        except NrtError as exc:
            if what in exc.message:
                raise
            raise _invalid(f"{what}: {exc.message}") from None
        for i, out_name in enumerate(node.output):
            if out_name and i < len(outs) and outs[i] is not None:
                self.values[out_name] = outs[i]
            elif out_name and any(out_name in n.input for n in self.graph.node) | any(
                    o.name == out_name for o in self.graph.output):
                raise _invalid(f"{what}: its output {i} ({out_name!r}) is used, which nrt_lab does not support "
                               "(only the first output of this op is computed)")

    def need_const(self, value: Any, what: str, role: str) -> np.ndarray[Any, Any]:
        if value is None or isinstance(value, Var):
            raise _invalid(f"{what}: its {role} input must be a constant (Neuron compiles static shapes) but it is "
                           "computed at run time; fix the shapes of the inputs (--batch / --input-shape)")
        return np.asarray(value)

    def dispatch(self, op: str, node: Any, ins: list[Any], attrs: dict[str, Any], what: str, index: int) -> list[Any]:
        if op == "Constant":
            for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
                if key in attrs:
                    v = attrs[key]
                    arr = v if isinstance(v, np.ndarray) else np.asarray(
                        v, dtype=np.float32 if key.startswith("value_float") else np.int64)
                    return [self._const_array(arr, what)]
            raise _invalid(f"{what}: only tensor, float(s) and int(s) constants are supported")
        if op in ("Identity",):
            return [ins[0]]
        if op == "Dropout":
            if len(ins) > 2 and ins[2] is not None and bool(np.asarray(self.need_const(ins[2], what, "training_mode"))):
                raise _invalid(f"{what}: training_mode=True is not supported; accepted: inference")
            return [ins[0]]
        if op == "Shape":
            spec = self.spec(ins[0])
            return [get_kernel("onnx.Shape").fn(np, [np.zeros(spec.shape, dtype=np.uint8)], attrs)]
        if op == "Size":
            return [np.asarray(math.prod(self.spec(ins[0]).shape), dtype=np.int64)]
        if op == "Split":
            return self.split(ins, attrs, node, what)
        if op == "CastLike":
            target = self.spec(ins[1]).dtype
            return self.kernel("Cast", [ins[0]], {"to": target}, what, index, node)
        if op == "Cast":
            to = int(attrs.get("to", 0))
            if to not in _ELEM:
                raise _invalid(f"{what}: cast to {_ELEM_NAMES.get(to, to)} is not supported; accepted: float, "
                               "float16, bfloat16, int8, int32, int64, uint8, bool")
            name = "bool" if to == 9 else _ELEM[to]
            if name == "float32" and isinstance(ins[0], Var):
                name = self.fdt
            return self.kernel("Cast", [ins[0]], {"to": name}, what, index, node)
        if op == "ConstantOfShape":
            shape = self.need_const(ins[0], what, "shape")
            value = attrs.get("value")
            kattrs: dict[str, Any] = {"shape": [int(d) for d in shape.reshape(-1)]}
            if isinstance(value, np.ndarray):
                kattrs["value"] = float(value.reshape(-1)[0])
                kattrs["dtype"] = np.dtype(value.dtype).name
            return self.kernel("ConstantOfShape", [shape.astype(np.int64).reshape(-1)], kattrs, what, index, node)
        if op == "Range":
            start, limit, delta = (self.need_const(v, what, "start/limit/delta") for v in ins[:3])
            count = max(int(math.ceil((float(limit) - float(start)) / float(delta))), 0) if float(delta) else 0
            return self.kernel("Range", [start, limit, delta], {"count": count}, what, index, node)
        if op not in ONNX_OPS:
            raise _invalid(f"{what}: op type {op} is not supported")
        kattrs = dict(attrs)
        data: list[Any] = []
        moved = _CONST_INPUTS.get(op, {})
        for i, value in enumerate(ins):
            if i in moved:
                if value is None:
                    continue
                const = self.need_const(value, what, moved[i])
                key = moved[i]
                if key in ("min", "max", "constant_value"):
                    kattrs[key] = float(const.reshape(-1)[0]) if const.size else None
                    if kattrs[key] is None:
                        del kattrs[key]
                elif key == "scales":
                    if const.size:
                        kattrs[key] = [float(s) for s in const.reshape(-1)]
                elif key == "roi":
                    continue
                elif key in ("k", "axis"):
                    kattrs[key] = int(const.reshape(-1)[0])
                elif key == "sizes":
                    if const.size:
                        kattrs[key] = [int(s) for s in const.reshape(-1)]
                else:
                    kattrs[key] = [int(s) for s in const.reshape(-1)]
            else:
                data.append(value)
        if op == "Resize" and kattrs.get("coordinate_transformation_mode") == "tf_crop_and_resize":
            raise _invalid(f"{what}: coordinate_transformation_mode tf_crop_and_resize is not supported")
        if op in ("Softmax", "LogSoftmax") and "axis" not in kattrs:
            kattrs["axis"] = -1
        for k in list(kattrs):
            if isinstance(kattrs[k], np.ndarray):
                raise _invalid(f"{what}: tensor attribute {k!r} is not supported")
        return self.kernel(op, data, kattrs, what, index, node)

    def split(self, ins: list[Any], attrs: dict[str, Any], node: Any, what: str) -> list[Any]:
        spec = self.spec(ins[0])
        rank = len(spec.shape)
        axis = int(attrs.get("axis", 0))
        if not -rank <= axis < rank:
            raise _invalid(f"{what}: axis {axis} is out of range for rank {rank}")
        axis %= rank
        dim = spec.shape[axis]
        n = len(node.output)
        if len(ins) > 1 and ins[1] is not None:
            sizes = [int(s) for s in self.need_const(ins[1], what, "split").reshape(-1)]
        elif "split" in attrs:
            sizes = [int(s) for s in attrs["split"]]
        else:
            parts = int(attrs.get("num_outputs", n))
            chunk = -(-dim // parts) if parts else 0
            sizes = [min(chunk, max(dim - chunk * i, 0)) for i in range(parts)]
        if sum(sizes) != dim or len(sizes) != n or any(s < 0 for s in sizes):
            raise _invalid(f"{what}: split sizes {sizes} do not cover axis {axis} of size {dim} in {n} outputs")
        outs = []
        start = 0
        for i, size in enumerate(sizes):
            outs.append(self.kernel("Slice", [ins[0]], {"starts": [start], "ends": [start + size], "axes": [axis]},
                                    what, i, node, suffix=f":{i}")[0])
            start += size
        return outs

    def kernel(self, op: str, data: list[Any], attrs: dict[str, Any], what: str, index: int, node: Any,
               suffix: str = "") -> list[Any]:
        name = f"onnx.{op}"
        kernel = get_kernel(name)
        if any(v is None for v in data):
            data = [v for v in data if v is not None]
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in attrs.items()}
        if any(isinstance(v, Var) for v in data):
            data = [self.as_var(v, f"{node.name or op}_{i}") for i, v in enumerate(data)]
        specs = [self.spec(v) for v in data]
        out = kernel.infer(specs, attrs)
        self._check_size(out.shape, 4, f"{what} output")
        if all(not isinstance(v, Var) for v in data):
            if math.prod(out.shape) <= _MAX_FOLD_ELEMENTS:
                with np.errstate(all="ignore"):
                    self.result.folded += 1
                    return [np.array(kernel.fn(np, data, attrs), order="C")]
            data = [self.as_var(v, f"{node.name or op}_{i}") for i, v in enumerate(data)]
        vars_ = list(data)
        node_name = self.node_name(node, index) + suffix
        return [self.g.op(name, vars_, attrs, name=node_name)]


def fold_batchnorm(model: Any) -> int:
    """Fold each inference BatchNormalization that follows a Conv (constant weights, sole consumer) into the
    Conv's weights and bias, as neuronx-cc does: one op and one pass over the activations less. Returns the
    number folded; the model is changed in place."""
    import onnx.numpy_helper as nph

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    outputs = {o.name for o in graph.output}
    producer = {out: node for node in graph.node for out in node.output}
    removed = []
    for bn in graph.node:
        if bn.op_type != "BatchNormalization" or bn.domain not in ("", "ai.onnx") or len(bn.input) != 5:
            continue
        if any(a.name == "training_mode" and a.i for a in bn.attribute) or any(o for o in bn.output[1:]):
            continue
        conv = producer.get(bn.input[0])
        if conv is None or conv.op_type != "Conv" or consumers.get(bn.input[0]) != 1 or bn.input[0] in outputs:
            continue
        params = conv.input[1:] + bn.input[1:]
        if any(name not in inits for name in params if name):
            continue
        w = nph.to_array(inits[conv.input[1]])
        if w.dtype != np.float32:
            continue
        scale, bias, mean, var = (nph.to_array(inits[n]).astype(np.float64) for n in bn.input[1:])
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        factor = scale / np.sqrt(var + eps)
        b = nph.to_array(inits[conv.input[2]]).astype(np.float64) if len(conv.input) > 2 and conv.input[2] \
            else np.zeros(w.shape[0])
        new_w = (w.astype(np.float64) * factor.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
        new_b = ((b - mean) * factor + bias).astype(np.float32)
        base = f"{bn.output[0]}:folded"
        graph.initializer.extend([nph.from_array(new_w, f"{base}:W"), nph.from_array(new_b, f"{base}:B")])
        del conv.input[1:]
        conv.input.extend([f"{base}:W", f"{base}:B"])
        conv.output[0] = bn.output[0]
        removed.append(bn)
    for bn in removed:
        graph.node.remove(bn)
    return len(removed)


def _scalars(graph: Any) -> dict[str, float]:
    """Name -> value of every one-element float constant (initializers and Constant nodes)."""
    import onnx.helper as oh
    import onnx.numpy_helper as nph

    found: dict[str, float] = {}
    tensors = [(t.name, t) for t in graph.initializer]
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensors.append((node.output[0], oh.get_attribute_value(node.attribute[0])))
    for name, tensor in tensors:
        if math.prod(tensor.dims) == 1 and tensor.data_type in (1, 10, 16):
            found[name] = float(nph.to_array(tensor).reshape(-1)[0])
    return found


def fuse_gelu(model: Any) -> int:
    """Replace the erf form of GELU as exporters write it, ``Mul(Mul(x, Add(Erf(Div(x, sqrt2)), 1)), 0.5)``,
    by one Gelu node (one pass over the activations instead of five). Returns the number fused."""
    graph = model.graph
    scalars = _scalars(graph)
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    producer = {out: node for node in graph.node for out in node.output}

    def only(name: str, op: str) -> Any:
        users = consumers.get(name, [])
        if len(users) != 1 or name in outputs or users[0].op_type != op:
            return None
        return users[0]

    def other(node: Any, name: str) -> str | None:
        rest = [i for i in node.input if i != name]
        return rest[0] if len(rest) == 1 and len(node.input) == 2 else None

    def near(name: str | None, value: float) -> bool:
        return name is not None and name in scalars and abs(scalars[name] - value) <= 1e-4 * abs(value)

    fused: list[tuple[list[Any], Any]] = []
    for erf in graph.node:
        if erf.op_type != "Erf" or erf.input[0] not in producer:
            continue
        scale = producer[erf.input[0]]
        if scale.op_type == "Div" and near(scale.input[1], math.sqrt(2)):
            x = scale.input[0]
        elif scale.op_type == "Mul" and (near(scale.input[1], 1 / math.sqrt(2)) or near(scale.input[0],
                                                                                       1 / math.sqrt(2))):
            x = scale.input[0] if near(scale.input[1], 1 / math.sqrt(2)) else scale.input[1]
        else:
            continue
        if len(consumers.get(erf.input[0], [])) != 1:
            continue
        add = only(erf.output[0], "Add")
        if add is None or not near(other(add, erf.output[0]), 1.0):
            continue
        mul = only(add.output[0], "Mul")
        if mul is None or other(mul, add.output[0]) != x:
            continue
        half = only(mul.output[0], "Mul")
        if half is None or not near(other(half, mul.output[0]), 0.5):
            continue
        import onnx.helper as oh

        gelu = oh.make_node("Gelu", [x], [half.output[0]], name=(erf.name or "gelu") + ":fused")
        fused.append(([scale, erf, add, mul, half], gelu))
    for nodes, gelu in fused:
        index = list(graph.node).index(nodes[-1])
        graph.node.insert(index, gelu)
        for node in nodes:
            graph.node.remove(node)
    return len(fused)


def lower(model: Any, *, input_shapes: Mapping[str, Sequence[int]], batch: int | None, dtype: str,
          name: str, constant_inputs: Mapping[str, Any] | None = None) -> Lowered:
    """Lower a checked ``onnx.ModelProto`` to a :class:`Lowered` graph (module doc); NrtError on any problem."""
    return _Lowerer(model, input_shapes, batch, dtype, name, constant_inputs or {}).run()

