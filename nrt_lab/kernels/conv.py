"""conv2d and 2-D max/avg pooling on NCHW tensors, vectorized with im2col.

The input is padded once, then one strided view per kernel tap (kh*kw of them, never one per pixel) is stacked
into a column tensor; convolution is then a single batched matmul over groups, and pooling a reduction over
the tap axis. Output size per spatial dim: ``floor((H + pad_begin + pad_end - dilation*(k-1) - 1) / stride) + 1``
(no ceil mode).

Attributes: ``stride``, ``dilation`` and pooling's ``kernel`` take an int or a pair (h, w); ``padding`` takes
an int, a pair (h, w) or ONNX's 4-tuple (top, left, bottom, right). conv2d: floats only, weights
``(Cout, Cin/groups, kh, kw)``, optional bias ``(Cout,)``. max_pool2d accepts ints too (pads with the dtype's
minimum); avg_pool2d excludes padding from the divisor unless ``count_include_pad`` is set (ONNX default).

FLOPs: conv2d ``2*N*Cout*Hout*Wout*(Cin/groups)*kh*kw`` (+ ``N*Cout*Hout*Wout`` with bias); pooling
``N*C*Hout*Wout*kh*kw`` (one compare or add per tap).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nrt_lab.kernels._common import (
    ALL_DTYPES,
    FLOAT_DTYPES,
    Attrs,
    TensorSpec,
    check_dtype_names,
    check_dtypes,
    check_inputs,
    check_shapes,
    check_specs,
    finish,
    is_int,
    shape_of,
    upcast,
)
from nrt_lab.kernels.errors import KernelError

__all__ = [
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "conv2d_flops",
    "max_pool2d_flops",
    "avg_pool2d_flops",
    "CONV2D_DTYPES",
    "MAX_POOL2D_DTYPES",
    "AVG_POOL2D_DTYPES",
    "conv2d_infer",
    "max_pool2d_infer",
    "avg_pool2d_infer",
]

CONV2D_DTYPES = FLOAT_DTYPES
MAX_POOL2D_DTYPES = ALL_DTYPES
AVG_POOL2D_DTYPES = FLOAT_DTYPES

_CONV_NAMES = ("x", "w", "bias")
_CONV_ATTRS = ("stride", "padding", "dilation", "groups")
_MAXPOOL_ATTRS = ("kernel", "stride", "padding")
_AVGPOOL_ATTRS = ("kernel", "stride", "padding", "count_include_pad")


@dataclass(frozen=True)
class _Window:
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    ho: int
    wo: int


def _out_size(kernel: str, what: str, size: int, k: int, s: int, d: int, p0: int, p1: int) -> int:
    span = d * (k - 1) + 1
    if size + p0 + p1 < span:
        raise KernelError(
            f"kernel '{kernel}': the {what} window ({span} after dilation) is larger than the padded input "
            f"({size} + {p0} + {p1} = {size + p0 + p1}); accepted: a window that fits at least once"
        )
    return (size + p0 + p1 - span) // s + 1


def _window(kernel: str, x: tuple[int, ...], kh: int, kw: int, stride: tuple[int, int],
            dilation: tuple[int, int], pads: tuple[int, int, int, int]) -> _Window:
    h, w = x[2], x[3]
    ho = _out_size(kernel, "height", h, kh, stride[0], dilation[0], pads[0], pads[2])
    wo = _out_size(kernel, "width", w, kw, stride[1], dilation[1], pads[1], pads[3])
    return _Window(kh, kw, stride[0], stride[1], dilation[0], dilation[1], pads, ho, wo)


def _check_nchw(kernel: str, name: str, shape: tuple[int, ...]) -> None:
    if len(shape) != 4:
        raise KernelError(f"kernel '{kernel}': input {name} must be 4-D NCHW, got shape {shape}")


def _patches(xp: Any, x: Any, win: _Window, pad_value: float | int) -> Any:
    """(N, C, kh*kw, Ho, Wo): one strided view per kernel tap, stacked (im2col without pixel loops)."""
    pt, pl, pb, pr = win.pads
    if any(win.pads):
        x = xp.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), mode="constant", constant_values=pad_value)
    taps = []
    for i in range(win.kh):
        r0 = i * win.dh
        for j in range(win.kw):
            c0 = j * win.dw
            taps.append(x[:, :, r0:r0 + win.sh * (win.ho - 1) + 1:win.sh, c0:c0 + win.sw * (win.wo - 1) + 1:win.sw])
    return xp.stack(taps, axis=2)


def _conv_plan(a: Attrs, shapes: Sequence[tuple[int, ...]]) -> tuple[_Window, int]:
    """(window, groups) for conv2d, with every shape/attribute check."""
    x, w = shapes[0], shapes[1]
    _check_nchw("conv2d", "x", x)
    if len(w) != 4:
        raise KernelError(f"kernel 'conv2d': input w must be 4-D (Cout, Cin/groups, kh, kw), got shape {w}")
    groups = a.get_int("groups", 1, min_value=1)
    c, cout = x[1], w[0]
    if c % groups or cout % groups:
        raise a.error("groups", groups, f"a divisor of both Cin={c} and Cout={cout}")
    if w[1] != c // groups:
        raise KernelError(
            f"kernel 'conv2d': w has shape {w}, but x {x} with groups={groups} needs w[1] = Cin/groups = "
            f"{c // groups}"
        )
    if w[2] < 1 or w[3] < 1:
        raise KernelError(f"kernel 'conv2d': w has an empty kernel, shape {w}")
    if len(shapes) > 2 and shapes[2] != (cout,):
        raise KernelError(f"kernel 'conv2d': bias must have shape ({cout},) to match w {w}, got {shapes[2]}")
    win = _window("conv2d", x, w[2], w[3], a.get_pair("stride", 1, min_value=1),
                  a.get_pair("dilation", 1, min_value=1), a.get_pads("padding"))
    return win, groups


def conv2d(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """2-D convolution (cross-correlation, as in ONNX/PyTorch) of NCHW x with w, optional bias."""
    a = Attrs("conv2d", attrs, _CONV_ATTRS)
    arrays = check_inputs("conv2d", inputs, 2, 3, _CONV_NAMES)
    check_dtypes("conv2d", arrays, CONV2D_DTYPES, _CONV_NAMES)
    shapes = [shape_of(t) for t in arrays]
    win, groups = _conv_plan(a, shapes)
    x, w = upcast(xp, arrays[0]), upcast(xp, arrays[1])
    n, c = shapes[0][0], shapes[0][1]
    cout = shapes[1][0]
    cg, kk = c // groups, win.kh * win.kw
    cols = _patches(xp, x, win, 0.0).reshape(n, groups, cg * kk, win.ho * win.wo)
    wm = w.reshape(1, groups, cout // groups, cg * kk)
    out = xp.matmul(wm, cols).reshape(n, cout, win.ho, win.wo)
    if len(arrays) > 2:
        out = out + upcast(xp, arrays[2]).reshape(1, cout, 1, 1)
    return finish(xp, out, arrays[0].dtype)


def conv2d_flops(input_shapes: Sequence[tuple[int, ...]], attrs: Mapping[str, Any]) -> int:
    """2*N*Cout*Hout*Wout*(Cin/groups)*kh*kw, plus N*Cout*Hout*Wout with a bias."""
    a = Attrs("conv2d", attrs, _CONV_ATTRS)
    shapes = check_shapes("conv2d", input_shapes, 2, 3, _CONV_NAMES)
    win, groups = _conv_plan(a, shapes)
    n, c = shapes[0][0], shapes[0][1]
    cout = shapes[1][0]
    outs = n * cout * win.ho * win.wo
    return 2 * outs * (c // groups) * win.kh * win.kw + (outs if len(shapes) > 2 else 0)


def _pool_plan(kernel: str, a: Attrs, x: tuple[int, ...]) -> _Window:
    _check_nchw(kernel, "x", x)
    kh, kw = a.get_pair("kernel", None, min_value=1)
    stride = a.get_pair("stride", None, min_value=1) if a.has("stride") else (kh, kw)
    pads = a.get_pads("padding")
    if pads[0] >= kh or pads[2] >= kh or pads[1] >= kw or pads[3] >= kw:
        raise a.error("padding", a.raw("padding"), f"padding smaller than the kernel ({kh}, {kw}) on every side")
    if kernel == "avg_pool2d":
        a.get_bool("count_include_pad", False)
    return _window(kernel, x, kh, kw, stride, (1, 1), pads)


def max_pool2d(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """Max over each kh*kw window of NCHW x (padding never wins: it is -inf or the int minimum)."""
    a = Attrs("max_pool2d", attrs, _MAXPOOL_ATTRS)
    (x,) = check_inputs("max_pool2d", inputs, 1, 1, ("x",))
    dt = check_dtypes("max_pool2d", [x], MAX_POOL2D_DTYPES, ("x",))
    win = _pool_plan("max_pool2d", a, shape_of(x))
    pad_value: float | int = int(np.iinfo(np.dtype(dt)).min) if is_int(dt) else -np.inf
    out = xp.max(_patches(xp, upcast(xp, x), win, pad_value), axis=2)
    return finish(xp, out, x.dtype)


def avg_pool2d(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    """Mean over each kh*kw window of NCHW x; padded cells count only with ``count_include_pad``."""
    a = Attrs("avg_pool2d", attrs, _AVGPOOL_ATTRS)
    (x,) = check_inputs("avg_pool2d", inputs, 1, 1, ("x",))
    check_dtypes("avg_pool2d", [x], AVG_POOL2D_DTYPES, ("x",))
    shape = shape_of(x)
    win = _pool_plan("avg_pool2d", a, shape)
    total = xp.sum(_patches(xp, upcast(xp, x), win, 0.0), axis=2)
    if a.get_bool("count_include_pad", False) or not any(win.pads):
        out = total / float(win.kh * win.kw)
    else:
        ones = xp.ones((1, 1, shape[2], shape[3]), dtype=xp.float32)
        counts = xp.sum(_patches(xp, ones, win, 0.0), axis=2)
        out = total / counts
    return finish(xp, out, x.dtype)


def _pool_flops(kernel: str, allowed: tuple[str, ...], input_shapes: Sequence[tuple[int, ...]],
                attrs: Mapping[str, Any]) -> int:
    a = Attrs(kernel, attrs, allowed)
    (x,) = check_shapes(kernel, input_shapes, 1, 1, ("x",))
    win = _pool_plan(kernel, a, x)
    return x[0] * x[1] * win.ho * win.wo * win.kh * win.kw


def max_pool2d_flops(input_shapes: Sequence[tuple[int, ...]], attrs: Mapping[str, Any]) -> int:
    """N*C*Hout*Wout*kh*kw (one comparison per tap)."""
    return _pool_flops("max_pool2d", _MAXPOOL_ATTRS, input_shapes, attrs)


def avg_pool2d_flops(input_shapes: Sequence[tuple[int, ...]], attrs: Mapping[str, Any]) -> int:
    """N*C*Hout*Wout*kh*kw (one add per tap; the divide is folded in)."""
    return _pool_flops("avg_pool2d", _AVGPOOL_ATTRS, input_shapes, attrs)


def conv2d_infer(specs: Sequence[TensorSpec], attrs: Mapping[str, Any]) -> TensorSpec:
    """(N, Cout, Hout, Wout) in x's dtype."""
    a = Attrs("conv2d", attrs, _CONV_ATTRS)
    shapes, dtypes = check_specs("conv2d", specs, 2, 3, _CONV_NAMES)
    dt = check_dtype_names("conv2d", dtypes, CONV2D_DTYPES, _CONV_NAMES)
    win, _ = _conv_plan(a, shapes)
    return TensorSpec((shapes[0][0], shapes[1][0], win.ho, win.wo), dt)


def _pool_infer(kernel: str, allowed: tuple[str, ...], accepted: tuple[str, ...], specs: Sequence[TensorSpec],
                attrs: Mapping[str, Any]) -> TensorSpec:
    a = Attrs(kernel, attrs, allowed)
    (x,), dtypes = check_specs(kernel, specs, 1, 1, ("x",))
    dt = check_dtype_names(kernel, dtypes, accepted, ("x",))
    win = _pool_plan(kernel, a, x)
    return TensorSpec((x[0], x[1], win.ho, win.wo), dt)


def max_pool2d_infer(specs: Sequence[TensorSpec], attrs: Mapping[str, Any]) -> TensorSpec:
    """(N, C, Hout, Wout) in x's dtype."""
    return _pool_infer("max_pool2d", _MAXPOOL_ATTRS, MAX_POOL2D_DTYPES, specs, attrs)


def avg_pool2d_infer(specs: Sequence[TensorSpec], attrs: Mapping[str, Any]) -> TensorSpec:
    """(N, C, Hout, Wout) in x's dtype."""
    return _pool_infer("avg_pool2d", _AVGPOOL_ATTRS, AVG_POOL2D_DTYPES, specs, attrs)
