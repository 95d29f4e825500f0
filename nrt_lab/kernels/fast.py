"""Unchecked fast paths for the commonest kernels, for plans whose inputs were validated at load.

A loaded model's op graph is validated once (dtypes, shapes, attrs: each kernel's ``infer`` at load);
executing it again should cost what the math costs. These functions skip validation and are only returned
for float32/int32 inputs of one dtype, where no up-casting is needed, so they compute exactly what the checked
kernel computes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["fast_kernel"]

FastFn = Callable[[Any, Sequence[Any], Mapping[str, Any]], Any]

_BINARY: dict[str, Callable[[Any], Any]] = {
    "add": lambda xp: xp.add,
    "sub": lambda xp: xp.subtract,
    "mul": lambda xp: xp.multiply,
}


def _binary(name: str) -> FastFn:
    def run(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
        return _BINARY[name](xp)(inputs[0], inputs[1])

    return run


def _relu(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    return xp.maximum(inputs[0], 0)


def _matmul(xp: Any, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> Any:
    out = xp.matmul(inputs[0], inputs[1])
    if len(inputs) > 2:
        out += inputs[2]
    return out


def fast_kernel(name: str, input_dtypes: Sequence[str]) -> FastFn | None:
    """An unchecked implementation of ``name`` for these input dtypes, or None when only the checked one fits."""
    if not input_dtypes or any(d != input_dtypes[0] for d in input_dtypes):
        return None
    dtype = input_dtypes[0]
    if name in _BINARY and dtype in ("float32", "int32"):
        return _binary(name)
    if name == "relu" and dtype in ("float32", "int32"):
        return _relu
    if name == "matmul" and dtype == "float32":
        return _matmul
    return None
