"""Each kernel's declared shape inference (``Kernel.infer``) agrees with what the kernel computes.

The builder and the runtime's load check rely on ``infer`` instead of running the graph, so for any inputs
and attrs: ``infer`` either returns the exact (shape, dtype) of the kernel's result, or raises KernelError
exactly when the kernel itself would. Hypothesis draws shapes, dtypes and attrs (``NRT_LAB_FUZZ_EXAMPLES``
examples, default 200); a few fixed cases pin the dtype rules.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nrt_lab.kernels import ALL_DTYPES, KernelError, TensorSpec, get_kernel, infer_output, kernel_names
from nrt_lab.kernels._common import dtype_name

EXAMPLES = int(os.environ.get("NRT_LAB_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

_ATTR_KEYS = ("axes", "keepdims", "axis", "shape", "perm", "starts", "ends", "steps", "stride", "padding",
              "dilation", "groups", "kernel", "count_include_pad", "alpha", "beta", "transA", "transB", "eps",
              "scale", "causal")
_small = st.integers(-3, 4)
_values = st.none() | st.booleans() | _small | st.lists(_small, max_size=4) | st.floats(-2, 2)
_shapes = st.lists(st.integers(0, 4), max_size=4).map(tuple)


def _array(spec: TensorSpec) -> np.ndarray[Any, Any]:
    dtype = np.dtype(ml_dtypes.bfloat16) if spec.dtype == "bfloat16" else np.dtype(spec.dtype)
    return (np.arange(int(np.prod(spec.shape)), dtype=np.float32) % 5 + 1).astype(dtype).reshape(spec.shape)


def _agree(name: str, specs: list[TensorSpec], attrs: dict[str, Any]) -> None:
    try:
        inferred: TensorSpec | None = infer_output(name, specs, attrs)
    except KernelError:
        inferred = None
    arrays = [_array(s) for s in specs]
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # means of empty slices: NaN, as intended
            out = get_kernel(name)(np, arrays, attrs)
    except KernelError as exc:
        if name in ("onnx.Gather", "onnx.GatherElements") and "out of range" in str(exc):
            return  # the indices' values, not their shape: refused at execution, as ONNX requires
        assert inferred is None, f"{name}: infer accepted {specs} {attrs} but the kernel refused them"
        return
    assert inferred is not None, f"{name}: the kernel ran on {specs} {attrs} but infer refused them"
    assert (tuple(out.shape), dtype_name(out.dtype)) == inferred, (name, specs, attrs)


@FUZZ
@given(st.sampled_from(kernel_names()),
       st.lists(st.tuples(_shapes, st.sampled_from(ALL_DTYPES)), min_size=1, max_size=4),
       st.dictionaries(st.sampled_from(_ATTR_KEYS), _values, max_size=3))
def test_infer_agrees_with_the_kernel(name: str, raw: list[tuple[tuple[int, ...], str]],
                                      attrs: dict[str, Any]) -> None:
    _agree(name, [TensorSpec(shape, dtype) for shape, dtype in raw], attrs)


@FUZZ
@given(st.sampled_from(kernel_names()), st.sampled_from(ALL_DTYPES), _shapes,
       st.dictionaries(st.sampled_from(_ATTR_KEYS), _values, max_size=2))
def test_infer_agrees_on_same_shape_inputs(name: str, dtype: str, shape: tuple[int, ...],
                                           attrs: dict[str, Any]) -> None:
    """Inputs that fit together more often than random ones (same shape and dtype, 1 to 3 of them)."""
    for count in (1, 2, 3):
        _agree(name, [TensorSpec(shape, dtype)] * count, attrs)


@pytest.mark.parametrize(("name", "specs", "attrs", "expected"), [
    ("matmul", [((2, 3), "int8"), ((3, 4), "int8")], {}, ((2, 4), "int32")),
    ("matmul", [((5, 2, 3), "bfloat16"), ((3,), "bfloat16")], {}, ((5, 2), "bfloat16")),
    ("reduce_sum", [((2, 3), "int8")], {"axes": [0]}, ((3,), "int32")),
    ("reduce_mean", [((2, 3), "int32")], {"keepdims": True}, ((1, 1), "float32")),
    ("reduce_max", [((2, 3), "int8")], {"axes": -1}, ((2,), "int8")),
    ("conv2d", [((1, 4, 8, 8), "float32"), ((6, 2, 3, 3), "float32")], {"groups": 2, "padding": 1},
     ((1, 6, 8, 8), "float32")),
    ("attention", [((2, 5, 8), "float16"), ((2, 7, 8), "float16"), ((2, 7, 3), "float16")], {},
     ((2, 5, 3), "float16")),
    ("softmax", [((0,), "float32")], {}, ((0,), "float32")),  # was a raw ValueError from NumPy
    ("attention", [((1, 2, 4), "float32"), ((1, 0, 4), "float32"), ((1, 0, 3), "float32")], {},
     ((1, 2, 3), "float32")),
    ("slice", [((10, 4), "int32")], {"starts": [-3], "ends": [100], "steps": [2]}, ((2, 4), "int32")),
])
def test_dtype_and_shape_rules(name: str, specs: list[tuple[tuple[int, ...], str]], attrs: dict[str, Any],
                               expected: tuple[tuple[int, ...], str]) -> None:
    spec_list = [TensorSpec(s, d) for s, d in specs]
    assert infer_output(name, spec_list, attrs) == expected
    _agree(name, spec_list, attrs)


def test_every_kernel_declares_inference() -> None:
    for name in kernel_names():
        assert callable(get_kernel(name).infer), name


def test_bad_specs_are_kernel_errors() -> None:
    with pytest.raises(KernelError, match="must be a \\(shape, dtype name\\) pair"):
        infer_output("relu", [((2,), np.float32)])  # type: ignore[list-item]
    with pytest.raises(KernelError, match="takes 2 input"):
        infer_output("add", [TensorSpec((2,), "float32")])
    with pytest.raises(KernelError, match="unknown kernel"):
        infer_output("nope", [])
