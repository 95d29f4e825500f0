"""Compile ONNX models to nrt_lab NEFFs: the emulated ``neuronx-cc`` (docs/compiler.md).

``compile(model, output=None, batch=None, input_shapes=None, dtype="fp32", lnc=1)`` reads an ONNX model (a
path, its bytes or an ``onnx.ModelProto``), makes every shape static, folds constants, lowers each node to an
``onnx.<OpType>`` kernel of :mod:`nrt_lab.kernels` and returns the NEFF (bytes, or the path it was written to,
atomically, only on success). :func:`coverage` says which ops are supported before compiling; :func:`build`
returns the NEFF with what it declares (inputs, outputs, constants, scratchpad, FLOPs).

This layer sits beside the runtime (docs/architecture.md): it imports ``neff``, ``kernels`` and ``errors``
only; the compiled NEFF is loaded like any other, with ``Model.load`` / ``nrt.nrt_load`` / nrtpy.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nrt_lab.compiler.lowering import (
    DTYPE_CHOICES,
    MAX_TENSOR_BYTES,
    fold_batchnorm,
    fuse_gelu,
    lower,
    supported_op_types,
    unsupported_nodes,
)
from nrt_lab.compiler.onnx_io import DEFAULT_MAX_ONNX_BYTES, SUPPORTED_OPSET, load_onnx, read_bounded
from nrt_lab.errors import NrtError, NrtStatus
from nrt_lab.kernels import TensorSpec, get_kernel
from nrt_lab.neff import parse_neff, thaw, write_neff

__all__ = [
    "DEFAULT_MAX_ONNX_BYTES",
    "DTYPE_CHOICES",
    "MAX_TENSOR_BYTES",
    "SUPPORTED_OPSET",
    "CompiledModel",
    "Coverage",
    "build",
    "compile",
    "coverage",
    "load_onnx",
    "parse_input_shape",
    "read_bounded",
    "supported_op_types",
]


@dataclass(frozen=True)
class Coverage:
    """Which ops of a model the compiler supports: op type -> node count, for supported and unsupported ops."""

    supported: dict[str, int]
    unsupported: dict[str, list[str]]
    opsets: dict[str, int]

    @property
    def ok(self) -> bool:
        """True when every op is supported."""
        return not self.unsupported

    def render(self) -> str:
        """The report as text (what ``nrt-lab compile --report`` prints)."""
        lines = ["opsets: " + ", ".join(f"{d or 'ai.onnx'}={v}" for d, v in sorted(self.opsets.items()))]
        total = sum(self.supported.values()) + sum(len(v) for v in self.unsupported.values())
        lines.append(f"nodes: {total}, supported: {sum(self.supported.values())}, unsupported: "
                     f"{sum(len(v) for v in self.unsupported.values())}")
        lines.append("supported ops:")
        lines += [f"  {op:<28} {n}" for op, n in sorted(self.supported.items())] or ["  (none)"]
        lines.append("unsupported ops:")
        lines += [f"  {op:<28} {len(nodes)}  nodes: {', '.join(nodes[:10])}" + (" ..." if len(nodes) > 10 else "")
                  for op, nodes in sorted(self.unsupported.items())] or ["  (none)"]
        return "\n".join(lines)


@dataclass(frozen=True)
class CompiledModel:
    """A compiled NEFF and what it declares (shown by ``nrt-lab compile`` and the tutorial)."""

    neff: bytes
    name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    op_counts: dict[str, int]
    kernel_counts: dict[str, int]
    folded: int
    constants_bytes: int
    scratchpad_bytes: int
    flops: int
    lnc: int
    dtype: str
    bool_outputs: tuple[str, ...] = field(default=())
    bn_folded: int = 0
    gelu_fused: int = 0

    @property
    def device_bytes(self) -> int:
        """Device memory the NEFF declares: constants + scratchpad + input/output tensors."""
        io = sum(_nbytes(s) for s in self.inputs.values()) + sum(_nbytes(s) for s in self.outputs.values())
        return self.constants_bytes + self.scratchpad_bytes + io

    def summary(self) -> str:
        """A few lines: I/O, ops, memory and FLOPs."""
        def fmt(specs: dict[str, TensorSpec]) -> str:
            return ", ".join(f"{n} {s.dtype}{list(s.shape)}" for n, s in specs.items())

        return "\n".join([
            f"model {self.name}: {sum(self.op_counts.values())} ONNX nodes -> {sum(self.kernel_counts.values())} "
            f"NEFF ops ({self.folded} folded to constants, {self.bn_folded} BatchNormalization folded into Conv, "
            f"{self.gelu_fused} erf GELUs fused), "
            f"lnc={self.lnc}, dtype={self.dtype}",
            f"inputs: {fmt(self.inputs)}",
            f"outputs: {fmt(self.outputs)}",
            f"device memory: {self.device_bytes} bytes (constants {self.constants_bytes}, scratchpad "
            f"{self.scratchpad_bytes}), {self.flops} FLOPs per execution",
        ])


def _nbytes(spec: TensorSpec) -> int:
    from nrt_lab.neff import dtype_itemsize

    n = 1
    for d in spec.shape:
        n *= d
    return n * dtype_itemsize(spec.dtype)


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``NAME=1x3x224x224`` -> (name, shape); NrtError naming the text and the accepted form."""
    name, sep, dims = text.rpartition("=")
    try:
        shape = tuple(int(d) for d in dims.lower().split("x")) if dims else ()
    except ValueError:
        shape = (-1,)
    if not sep or not name or any(d < 0 for d in shape) or not dims:
        raise NrtError(NrtStatus.INVALID, f"input shape {text!r} is not accepted; accepted: NAME=D0xD1x... with "
                                          "non-negative integers, e.g. input=1x3x224x224")
    return name, shape


def coverage(model: Any, *, max_size: int = DEFAULT_MAX_ONNX_BYTES) -> Coverage:
    """Which of the model's ops the compiler supports, without compiling (``nrt-lab compile --report``)."""
    proto = load_onnx(model, max_size=max_size)
    unsupported = unsupported_nodes(proto.graph)
    counts = Counter(n.op_type for n in proto.graph.node if n.domain in ("", "ai.onnx"))
    supported = {op: n for op, n in counts.items() if op not in unsupported}
    return Coverage(supported, unsupported, {o.domain: int(o.version) for o in proto.opset_import})


def _check_options(batch: Any, dtype: Any, lnc: Any, input_shapes: Any) -> tuple[str, dict[str, tuple[int, ...]]]:
    if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= 1 << 20):
        raise NrtError(NrtStatus.INVALID, f"batch {batch!r} is not accepted; accepted: an integer from 1 to {1 << 20}")
    if dtype not in DTYPE_CHOICES:
        raise NrtError(NrtStatus.INVALID, f"dtype {dtype!r} is not accepted; accepted: {', '.join(DTYPE_CHOICES)}")
    if lnc not in (1, 2) or isinstance(lnc, bool):
        raise NrtError(NrtStatus.INVALID, f"lnc {lnc!r} is not accepted; accepted: 1 or 2")
    shapes: dict[str, tuple[int, ...]] = {}
    for key, value in (input_shapes or {}).items():
        try:
            shape = tuple(int(d) for d in value)
        except (TypeError, ValueError):
            shape = (-1,)
        if any(d < 0 for d in shape):
            raise NrtError(NrtStatus.INVALID, f"input shape for {key!r} is {value!r}; accepted: non-negative ints")
        shapes[str(key)] = shape
    return DTYPE_CHOICES[dtype], shapes


def build(model: Any, *, batch: int | None = None, input_shapes: Mapping[str, Sequence[int]] | None = None,
          dtype: str = "fp32", lnc: int = 1, name: str | None = None, max_size: int = DEFAULT_MAX_ONNX_BYTES,
          constant_inputs: Mapping[str, Any] | None = None) -> CompiledModel:
    """Compile to a :class:`CompiledModel` (the NEFF and what it declares); NrtError (NRT_INVALID) if impossible.

    ``constant_inputs`` freezes graph inputs to the given arrays (folded like weights, no longer inputs of the
    NEFF): what to do with an input that feeds a shape (Reshape's shape, reduction axes, Resize's scales).
    """
    fdt, shapes = _check_options(batch, dtype, lnc, input_shapes)
    proto = load_onnx(model, max_size=max_size)
    unsupported = unsupported_nodes(proto.graph)
    if unsupported:
        listing = "; ".join(f"{op} (nodes: {', '.join(nodes[:20])}{' ...' if len(nodes) > 20 else ''})"
                            for op, nodes in sorted(unsupported.items()))
        raise NrtError(NrtStatus.INVALID, f"the model uses {sum(len(v) for v in unsupported.values())} node(s) of "
                                          f"{len(unsupported)} unsupported op type(s): {listing}; see "
                                          "`nrt-lab compile --report` and docs/compiler.md")
    known = {vi.name for vi in proto.graph.input}
    unknown = sorted((set(shapes) | set(constant_inputs or {})) - known)
    if unknown:
        raise NrtError(NrtStatus.INVALID, f"input shape given for unknown input(s) {unknown}; the model's inputs: "
                                          f"{sorted(known)}")
    if name is None:
        name = proto.graph.name or "model"
        if isinstance(model, (str, os.PathLike)):
            name = Path(model).stem or name
    name = "".join(c if c.isprintable() else "_" for c in name)[:200] or "model"
    onnx_ops = Counter(node.op_type for node in proto.graph.node)
    bn_folded = fold_batchnorm(proto)
    gelu_fused = fuse_gelu(proto)
    lowered = lower(proto, input_shapes=shapes, batch=batch, dtype=fdt, name=name, constant_inputs=constant_inputs)
    # The same model and options give the same NEFF, byte for byte (uuid included): builds are reproducible.
    digest = hashlib.sha256(proto.SerializeToString(deterministic=True))
    digest.update(repr((batch, sorted(shapes.items()), dtype, lnc, name)).encode())
    for key in sorted(constant_inputs or {}):
        digest.update(key.encode() + bytes(np.ascontiguousarray(constant_inputs[key]).data))  # type: ignore[index]
    neff = lowered.builder.build(lnc=lnc, requested_cores=1, subgraphs=lnc, uuid=digest.digest()[:16])
    parsed = parse_neff(neff, max_size=max(len(neff), 1))
    sg = parsed.subgraphs[0]
    kernel_counts = Counter(node.op for node in sg.nodes)
    specs = {v.name: TensorSpec(tuple(v.shape), v.dtype) for v in sg.vars}
    flops = 0
    for node in sg.nodes:
        attrs = thaw(node.attrs)
        flops += int(get_kernel(node.op).flops([specs[i].shape for i in node.inputs], attrs))
    return CompiledModel(
        neff=neff, name=name, inputs=lowered.inputs, outputs=lowered.outputs,
        op_counts=dict(onnx_ops), kernel_counts=dict(kernel_counts), folded=lowered.folded, bn_folded=bn_folded,
        gelu_fused=gelu_fused,
        constants_bytes=sum(int(a.nbytes) for a in sg.constants.values()),
        scratchpad_bytes=max(s.scratchpad_size for s in parsed.subgraphs), flops=flops, lnc=lnc, dtype=dtype,
        bool_outputs=tuple(lowered.bool_outputs),
    )



def compile(model: Any, output: str | os.PathLike[str] | None = None, *, batch: int | None = None,  # noqa: A001
            input_shapes: Mapping[str, Sequence[int]] | None = None, dtype: str = "fp32", lnc: int = 1,
            name: str | None = None, max_size: int = DEFAULT_MAX_ONNX_BYTES,
            constant_inputs: Mapping[str, Any] | None = None) -> bytes | Path:
    """Compile an ONNX model to a NEFF: its bytes, or the ``output`` path (written atomically on success only)."""
    compiled = build(model, batch=batch, input_shapes=input_shapes, dtype=dtype, lnc=lnc, name=name,
                     max_size=max_size, constant_inputs=constant_inputs)
    if output is None:
        return compiled.neff
    write_neff(output, compiled.neff)
    return Path(output)
