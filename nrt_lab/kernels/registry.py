"""The kernel table: every op the runtime can execute, with its shape inference, FLOP count and dtypes.

A :class:`Kernel` is ``fn(xp, inputs, attrs) -> array`` (``xp`` is numpy or cupy, inputs are arrays of that
module) plus ``infer(input_specs, attrs) -> TensorSpec``, the output's shape and dtype computed from the
inputs' shapes and dtypes alone (the one rule the graph builder and the runtime's load-time check use), and
``flops(input_shapes, attrs) -> int``, the declared FLOP count that utilization in % and TFLOPS is computed
from. All three validate their arguments alike and raise :class:`~nrt_lab.kernels.errors.KernelError` naming
the kernel, the input or attribute, its value and what is accepted.

Adding a kernel: write ``fn``, ``flops`` and ``infer`` in the module of its family, sharing one ``_plan``-style
helper for the shape and attribute checks so the three cannot disagree, and add a :class:`Kernel` to
``_table`` below. ``GraphBuilder`` then infers its output, ``Model.load`` checks NEFFs that use it, and
tests/test_kernel_inference.py checks on random inputs that ``infer`` matches what ``fn`` computes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nrt_lab.kernels import conv, elementwise, linalg, normalization, onnx_ops, reduction, shape_ops
from nrt_lab.kernels._common import TensorSpec
from nrt_lab.kernels.backend import namespace_of
from nrt_lab.kernels.errors import KernelError

__all__ = [
    "FlopsFn",
    "InferFn",
    "Kernel",
    "KernelFn",
    "get_kernel",
    "infer_output",
    "kernel_flops",
    "kernel_names",
    "run_kernel",
]

KernelFn = Callable[[Any, Sequence[Any], Mapping[str, Any]], Any]
FlopsFn = Callable[[Sequence[tuple[int, ...]], Mapping[str, Any]], int]
InferFn = Callable[[Sequence[TensorSpec], Mapping[str, Any]], TensorSpec]


@dataclass(frozen=True)
class Kernel:
    """One op: its name, implementation, FLOP counter, shape inference, accepted dtypes and a description."""

    name: str
    fn: KernelFn
    flops: FlopsFn
    infer: InferFn
    accepted_dtypes: tuple[str, ...]
    doc: str

    def __call__(self, xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any] | None = None) -> Any:
        """Run the kernel (same as ``fn``; ``attrs`` may be omitted)."""
        return self.fn(xp, inputs, {} if attrs is None else attrs)


def _table() -> dict[str, Kernel]:
    kernels: list[Kernel] = []
    for name, fn in (("add", elementwise.add), ("sub", elementwise.sub), ("mul", elementwise.mul),
                     ("div", elementwise.div)):
        kernels.append(Kernel(
            name, fn, elementwise.binary_flops(name), elementwise.binary_infer(name), elementwise.BINARY_DTYPES[name],
            f"{name}(a, b): elementwise with NumPy broadcasting; no attrs. "
            f"FLOPs: {elementwise.OPS_PER_ELEMENT[name]} per output element.",
        ))
    for name, fn in (("relu", elementwise.relu), ("gelu", elementwise.gelu), ("tanh", elementwise.tanh),
                     ("sigmoid", elementwise.sigmoid), ("exp", elementwise.exp)):
        extra = " (tanh approximation)" if name == "gelu" else ""
        kernels.append(Kernel(
            name, fn, elementwise.unary_flops(name), elementwise.unary_infer(name), elementwise.UNARY_DTYPES[name],
            f"{name}(x){extra}: elementwise; no attrs. FLOPs: {elementwise.OPS_PER_ELEMENT[name]} per element.",
        ))
    kernels += [
        Kernel("matmul", linalg.matmul, linalg.matmul_flops, linalg.matmul_infer, linalg.MATMUL_DTYPES,
               "matmul(a, b[, bias]): NumPy matmul (batch broadcast), bias added; no attrs. int8 accumulates "
               "in int32 and returns int32. FLOPs: 2*M*N*K per batch entry (+ outputs with bias)."),
        Kernel("gemm", linalg.gemm, linalg.gemm_flops, linalg.gemm_infer, linalg.GEMM_DTYPES,
               "gemm(A, B[, C]): alpha * A' @ B' + beta * C (ONNX Gemm). attrs: alpha=1.0, beta=1.0, "
               "transA=False, transB=False. FLOPs: 2*M*N*K + M*N (+ 2*M*N with C)."),
        Kernel("conv2d", conv.conv2d, conv.conv2d_flops, conv.conv2d_infer, conv.CONV2D_DTYPES,
               "conv2d(x NCHW, w (Cout, Cin/groups, kh, kw)[, bias (Cout,)]). attrs: stride=1, padding=0 "
               "(int, (h, w) or (top, left, bottom, right)), dilation=1, groups=1. "
               "FLOPs: 2*N*Cout*Hout*Wout*(Cin/groups)*kh*kw (+ N*Cout*Hout*Wout with bias)."),
        Kernel("max_pool2d", conv.max_pool2d, conv.max_pool2d_flops, conv.max_pool2d_infer, conv.MAX_POOL2D_DTYPES,
               "max_pool2d(x NCHW). attrs: kernel (required, int or (h, w)), stride=kernel, padding=0 "
               "(< kernel). FLOPs: N*C*Hout*Wout*kh*kw."),
        Kernel("avg_pool2d", conv.avg_pool2d, conv.avg_pool2d_flops, conv.avg_pool2d_infer, conv.AVG_POOL2D_DTYPES,
               "avg_pool2d(x NCHW). attrs: kernel (required), stride=kernel, padding=0 (< kernel), "
               "count_include_pad=False. FLOPs: N*C*Hout*Wout*kh*kw."),
        Kernel("softmax", normalization.softmax, normalization.softmax_flops, normalization.softmax_infer,
               normalization.SOFTMAX_DTYPES,
               "softmax(x), numerically stable. attrs: axis=-1. FLOPs: 5 per element."),
        Kernel("layernorm", normalization.layernorm, normalization.layernorm_flops,
               normalization.layernorm_infer, normalization.LAYERNORM_DTYPES,
               "layernorm(x[, gamma[, beta]]) over dims axis..-1 (gamma/beta of shape x.shape[axis:]). "
               "attrs: axis=-1, eps=1e-5. FLOPs: 8 per element."),
        Kernel("reshape", shape_ops.reshape, shape_ops.reshape_flops, shape_ops.reshape_infer, shape_ops.SHAPE_DTYPES,
               "reshape(x). attrs: shape (required; one -1 inferred). FLOPs: 0."),
        Kernel("transpose", shape_ops.transpose, shape_ops.transpose_flops, shape_ops.transpose_infer,
               shape_ops.SHAPE_DTYPES,
               "transpose(x). attrs: perm (default: reversed axes). FLOPs: 0."),
        Kernel("concat", shape_ops.concat, shape_ops.concat_flops, shape_ops.concat_infer, shape_ops.SHAPE_DTYPES,
               "concat(x0, x1, ...). attrs: axis=0. FLOPs: 0."),
        Kernel("slice", shape_ops.slice_, shape_ops.slice_flops, shape_ops.slice_infer, shape_ops.SHAPE_DTYPES,
               "slice(x) (ONNX Slice). attrs: starts, ends (required), axes=0..n-1, steps=1. FLOPs: 0."),
        Kernel("reduce_sum", reduction.reduce_sum, reduction.reduce_sum_flops,
               reduction.reduce_infer("reduce_sum"), reduction.REDUCE_DTYPES,
               "reduce_sum(x). attrs: axes=None (all), keepdims=False. Ints return int32. "
               "FLOPs: input elements."),
        Kernel("reduce_mean", reduction.reduce_mean, reduction.reduce_mean_flops,
               reduction.reduce_infer("reduce_mean"), reduction.REDUCE_DTYPES,
               "reduce_mean(x). attrs: axes=None (all), keepdims=False. Ints return float32. "
               "FLOPs: input + output elements."),
        Kernel("reduce_max", reduction.reduce_max, reduction.reduce_max_flops,
               reduction.reduce_infer("reduce_max"), reduction.REDUCE_DTYPES,
               "reduce_max(x). attrs: axes=None (all), keepdims=False. FLOPs: input elements."),
        Kernel("reduce_min", reduction.reduce_min, reduction.reduce_min_flops,
               reduction.reduce_infer("reduce_min"), reduction.REDUCE_DTYPES,
               "reduce_min(x). attrs: axes=None (all), keepdims=False. FLOPs: input elements."),
        Kernel("attention", linalg.attention, linalg.attention_flops, linalg.attention_infer, linalg.ATTENTION_DTYPES,
               "attention(q (..., Lq, D), k (..., Lk, D), v (..., Lk, Dv)[, mask]): "
               "softmax(q @ k^T * scale + mask) @ v; mask bool (True = attend) or additive float, "
               "broadcast to (..., Lq, Lk). attrs: scale=1/sqrt(D), causal=False (top-left aligned). "
               "FLOPs: 2*Lq*Lk*D + 2*Lq*Lk*Dv + 5*Lq*Lk per batch entry."),
    ]
    for op in onnx_ops.ONNX_OPS.values():  # ONNX semantics, what nrt_lab.compiler lowers models to
        fn, flops, infer = onnx_ops.kernel_parts(op)
        kernels.append(Kernel(op.name, fn, flops, infer, op.dtypes, op.doc))
    return {k.name: k for k in kernels}


_KERNELS: dict[str, Kernel] = _table()


def kernel_names() -> list[str]:
    """Names of every registered kernel, sorted."""
    return sorted(_KERNELS)


def get_kernel(name: str) -> Kernel:
    """The kernel called ``name``; a KernelError listing the known names when there is none."""
    try:
        return _KERNELS[name]
    except (KeyError, TypeError):
        raise KernelError(f"unknown kernel {name!r}; known kernels: {', '.join(kernel_names())}") from None


def run_kernel(name: str, inputs: Sequence[Any], attrs: Mapping[str, Any] | None = None, xp: Any = None) -> Any:
    """Run kernel ``name`` on ``inputs``; ``xp`` defaults to the module owning the inputs (cupy or numpy)."""
    kernel = get_kernel(name)
    if xp is None:
        xp = namespace_of(inputs if isinstance(inputs, Sequence) else ())
    return kernel.fn(xp, inputs, {} if attrs is None else attrs)


def kernel_flops(name: str, input_shapes: Sequence[tuple[int, ...]], attrs: Mapping[str, Any] | None = None) -> int:
    """Declared FLOP count of kernel ``name`` for these input shapes and attrs."""
    return get_kernel(name).flops(input_shapes, {} if attrs is None else attrs)


def infer_output(name: str, input_specs: Sequence[TensorSpec], attrs: Mapping[str, Any] | None = None) -> TensorSpec:
    """Shape and dtype of kernel ``name``'s output for inputs of these (shape, dtype); KernelError if invalid."""
    return get_kernel(name).infer(input_specs, {} if attrs is None else attrs)
