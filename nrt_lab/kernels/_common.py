"""Shared plumbing for the kernels: dtype policy, input checks and typed attribute parsing.

Dtype policy (documented once, used by every kernel):

* float32 computes in float32.
* float16 and bfloat16 (``ml_dtypes.bfloat16``) are upcast to float32, computed there, and the result is cast
  back to the input dtype: one rounding at the end, like an accelerator that accumulates in fp32.
* int8 and int32 are computed in their own dtype where a kernel accepts them (elementwise add/sub/mul wrap
  around on overflow, as two's-complement hardware does), except where a kernel documents otherwise
  (matmul and sum accumulate in int32 and return int32).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from nrt_lab.kernels.errors import KernelError

__all__ = [
    "FLOAT_DTYPES",
    "INT_DTYPES",
    "ALL_DTYPES",
    "Attrs",
    "TensorSpec",
    "dtype_name",
    "check_inputs",
    "check_dtypes",
    "check_dtype_names",
    "check_shapes",
    "check_specs",
    "shape_of",
    "broadcast",
    "num_elements",
    "normalize_axis",
    "upcast",
    "finish",
    "is_int",
]

FLOAT_DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")
INT_DTYPES: tuple[str, ...] = ("int8", "int32")
ALL_DTYPES: tuple[str, ...] = FLOAT_DTYPES + INT_DTYPES

_LOW_PRECISION = {"float16", "bfloat16"}


_NAME_CACHE: dict[Any, str] = {}


def dtype_name(dtype: Any) -> str:
    """Canonical name of a NumPy/CuPy dtype ("bfloat16" for ml_dtypes' bfloat16); cached (on the hot path)."""
    try:
        return _NAME_CACHE[dtype]
    except (KeyError, TypeError):
        pass
    try:
        name = str(np.dtype(dtype).name)
    except TypeError:
        return str(dtype)
    try:
        _NAME_CACHE[dtype] = name
    except TypeError:
        pass
    return name


def is_int(name: str) -> bool:
    """True for the integer dtypes kernels accept."""
    return name in INT_DTYPES


def _fmt_list(items: Iterable[object]) -> str:
    return ", ".join(str(i) for i in items)


def check_inputs(kernel: str, inputs: Any, min_n: int, max_n: int, names: Sequence[str]) -> list[Any]:
    """Check the number of inputs and that each one is an array; returns them as a list."""
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
        raise KernelError(
            f"kernel '{kernel}': inputs must be a sequence (list or tuple) of arrays, got {type(inputs).__name__}"
        )
    n = len(inputs)
    if not min_n <= n <= max_n:
        if min_n == max_n:
            expect = f"{min_n}"
        elif max_n >= 1 << 30:
            expect = f"at least {min_n}"
        else:
            expect = f"{min_n} to {max_n}"
        raise KernelError(f"kernel '{kernel}' takes {expect} input(s) ({_fmt_list(names)}), got {n}")
    for i, a in enumerate(inputs):
        if not (hasattr(a, "shape") and hasattr(a, "dtype") and hasattr(a, "astype")):
            raise KernelError(
                f"kernel '{kernel}': input {i} ({_input_name(names, i)}) is a {type(a).__name__}, "
                "expected an array (numpy.ndarray or cupy.ndarray)"
            )
    return list(inputs)


def _input_name(names: Sequence[str], i: int) -> str:
    return names[i] if i < len(names) else names[-1]


class TensorSpec(NamedTuple):
    """Shape and dtype name of a tensor: what shape inference reads and returns, without any data."""

    shape: tuple[int, ...]
    dtype: str


def check_dtypes(
    kernel: str, arrays: Sequence[Any], accepted: Sequence[str], names: Sequence[str], *, same: bool = True
) -> str:
    """Check every array's dtype is accepted (and, by default, that they all match); returns the dtype name."""
    return check_dtype_names(kernel, [dtype_name(a.dtype) for a in arrays], accepted, names, same=same)


def check_dtype_names(
    kernel: str, dtypes: Sequence[str], accepted: Sequence[str], names: Sequence[str], *, same: bool = True
) -> str:
    """The dtype rule of :func:`check_dtypes` on dtype names (shape inference has no arrays); returns the first."""
    first = dtypes[0]
    for i, dn in enumerate(dtypes):
        if dn not in accepted:
            raise KernelError(
                f"kernel '{kernel}' does not accept dtype {dn} (input {i}, {_input_name(names, i)}); "
                f"accepted dtypes: {_fmt_list(accepted)}"
            )
        if same and dn != first:
            raise KernelError(
                f"kernel '{kernel}': all inputs must share one dtype, but input 0 ({_input_name(names, 0)}) is "
                f"{first} and input {i} ({_input_name(names, i)}) is {dn}; cast them first"
            )
    return first


def shape_of(a: Any) -> tuple[int, ...]:
    """The shape of an array as a tuple of Python ints."""
    shape = a.shape
    return shape if type(shape) is tuple else tuple(int(s) for s in shape)


def check_shapes(kernel: str, shapes: Any, min_n: int, max_n: int, names: Sequence[str]) -> list[tuple[int, ...]]:
    """Validate ``input_shapes`` given to a FLOP counter: a sequence of tuples of non-negative ints."""
    if isinstance(shapes, (str, bytes)) or not isinstance(shapes, Sequence):
        raise KernelError(
            f"kernel '{kernel}': input_shapes must be a sequence of shapes, got {type(shapes).__name__}"
        )
    n = len(shapes)
    if not min_n <= n <= max_n:
        expect = f"{min_n}" if min_n == max_n else f"{min_n} to {max_n}" if max_n < 1 << 30 else f"at least {min_n}"
        raise KernelError(f"kernel '{kernel}' takes {expect} input(s) ({_fmt_list(names)}), got {n} shapes")
    out: list[tuple[int, ...]] = []
    for i, s in enumerate(shapes):
        if isinstance(s, (str, bytes)) or not isinstance(s, (Sequence, np.ndarray)):
            raise KernelError(f"kernel '{kernel}': shape of input {i} must be a tuple of ints, got {s!r}")
        dims = []
        for d in s:
            if not _is_int(d) or int(d) < 0:
                raise KernelError(
                    f"kernel '{kernel}': shape of input {i} must be a tuple of non-negative ints, got {tuple(s)!r}"
                )
            dims.append(int(d))
        out.append(tuple(dims))
    return out


def check_specs(
    kernel: str, specs: Any, min_n: int, max_n: int, names: Sequence[str]
) -> tuple[list[tuple[int, ...]], list[str]]:
    """Validate the input specs given to shape inference: (shapes, dtype names), like :func:`check_shapes`."""
    if isinstance(specs, (str, bytes)) or not isinstance(specs, Sequence):
        raise KernelError(f"kernel '{kernel}': input specs must be a sequence of (shape, dtype), got {specs!r}")
    dtypes: list[str] = []
    shapes: list[Any] = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, tuple) or len(spec) != 2 or not isinstance(spec[1], str):
            raise KernelError(f"kernel '{kernel}': spec of input {i} must be a (shape, dtype name) pair, got {spec!r}")
        shapes.append(spec[0])
        dtypes.append(spec[1])
    return check_shapes(kernel, shapes, min_n, max_n, names), dtypes


def broadcast(kernel: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy broadcasting of shapes, as a :class:`KernelError` when they are incompatible."""
    if all(shape == shapes[0] for shape in shapes):
        return shapes[0]
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise KernelError(
            f"kernel '{kernel}': input shapes {_fmt_list(shapes)} do not broadcast together "
            "(NumPy rules: trailing dimensions must be equal or 1)"
        ) from None


def num_elements(shape: Sequence[int]) -> int:
    """Number of elements of a shape (1 for a scalar)."""
    return math.prod(int(d) for d in shape)


def normalize_axis(kernel: str, key: str, axis: int, ndim: int) -> int:
    """Map a possibly negative axis into ``[0, ndim)`` or raise a KernelError naming the attribute."""
    if not -ndim <= axis < ndim:
        raise KernelError(
            f"kernel '{kernel}': attribute '{key}'={axis!r} is out of range for a {ndim}-D input; "
            f"accepted: an int in [{-ndim}, {ndim - 1}]"
        )
    return axis % ndim


def upcast(xp: Any, a: Any) -> Any:
    """float16/bfloat16 -> float32 for computing; other dtypes unchanged (no copy)."""
    if dtype_name(a.dtype) in _LOW_PRECISION:
        return a.astype(xp.float32)
    return a


def finish(xp: Any, out: Any, dtype: Any) -> Any:
    """Make ``out`` an array (NumPy returns scalars for 0-D results) of ``dtype`` (the caller's dtype)."""
    out = xp.asarray(out)
    if dtype_name(out.dtype) != dtype_name(dtype):
        out = out.astype(dtype)
    return out


def _is_int(v: object) -> bool:
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


class Attrs:
    """Typed, validated access to a kernel's ``attrs`` mapping; unknown keys are rejected up front."""

    def __init__(self, kernel: str, attrs: Mapping[str, Any] | None, allowed: Sequence[str]) -> None:
        """Reject a non-mapping ``attrs`` and any key not in ``allowed`` (typos fail loudly)."""
        self.kernel = kernel
        if attrs is None:
            attrs = {}
        if not isinstance(attrs, Mapping):
            raise KernelError(
                f"kernel '{kernel}': attrs must be a mapping of attribute name to value, got {type(attrs).__name__}"
            )
        for key in attrs:
            if key not in allowed:
                accepted = _fmt_list(allowed) if allowed else "none (this kernel takes no attributes)"
                raise KernelError(
                    f"kernel '{kernel}': unknown attribute '{key}'={attrs[key]!r}; accepted attributes: {accepted}"
                )
        self._attrs = attrs

    def error(self, key: str, value: object, accepted: str) -> KernelError:
        """A KernelError naming this kernel, the attribute, its value and what is accepted."""
        return KernelError(f"kernel '{self.kernel}': attribute '{key}'={value!r} is invalid; accepted: {accepted}")

    def has(self, key: str) -> bool:
        """Whether the caller set ``key`` (to something other than None)."""
        return self._attrs.get(key) is not None

    def raw(self, key: str) -> Any:
        """The value as given (None when absent)."""
        return self._attrs.get(key)

    def get_int(self, key: str, default: int | None = None, *, min_value: int | None = None) -> int:
        """An integer attribute (bools rejected), optionally bounded below."""
        v = self._attrs.get(key)
        if v is None:
            if default is None:
                raise self.error(key, v, "a required int")
            return default
        accepted = "an int" + (f" >= {min_value}" if min_value is not None else "")
        if not _is_int(v):
            raise self.error(key, v, accepted)
        iv = int(v)
        if min_value is not None and iv < min_value:
            raise self.error(key, v, accepted)
        return iv

    def get_float(self, key: str, default: float | None = None) -> float:
        """A finite real attribute."""
        v = self._attrs.get(key)
        if v is None:
            if default is None:
                raise self.error(key, v, "a required finite float")
            return default
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Real, np.floating, np.integer)):
            raise self.error(key, v, "a finite float")
        fv = float(v)
        if not math.isfinite(fv):
            raise self.error(key, v, "a finite float")
        return fv

    def get_bool(self, key: str, default: bool) -> bool:
        """A boolean attribute: True/False or the ONNX-style ints 0/1."""
        v = self._attrs.get(key)
        if v is None:
            return default
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if _is_int(v) and int(v) in (0, 1):
            return bool(int(v))
        raise self.error(key, v, "True/False or 0/1")

    def get_ints(self, key: str, *, required: bool = False, allow_scalar: bool = False) -> tuple[int, ...] | None:
        """A sequence of ints (a 1-D integer array is fine); None when absent and not required."""
        v = self._attrs.get(key)
        accepted = "a sequence of ints" + (" or a single int" if allow_scalar else "")
        if v is None:
            if required:
                raise self.error(key, v, "a required " + accepted.removeprefix("a "))
            return None
        if allow_scalar and _is_int(v):
            return (int(v),)
        if isinstance(v, np.ndarray):
            if v.ndim != 1 or not np.issubdtype(v.dtype, np.integer):
                raise self.error(key, v, accepted)
            return tuple(int(x) for x in v)
        if isinstance(v, (str, bytes)) or not isinstance(v, Sequence) or not all(_is_int(x) for x in v):
            raise self.error(key, v, accepted)
        return tuple(int(x) for x in v)

    def get_required_ints(self, key: str) -> tuple[int, ...]:
        """A sequence of ints that must be present."""
        value = self.get_ints(key, required=True)
        if value is None:  # pragma: no cover - get_ints raised already
            raise self.error(key, value, "a required sequence of ints")
        return value

    def get_pair(self, key: str, default: int | None, *, min_value: int) -> tuple[int, int]:
        """An int or a pair of ints (height, width), each at least ``min_value``."""
        v = self._attrs.get(key)
        accepted = f"an int >= {min_value} or a pair (h, w) of ints >= {min_value}"
        if v is None:
            if default is None:
                raise self.error(key, v, "a required " + accepted.removeprefix("an "))
            return (default, default)
        if _is_int(v):
            vals: tuple[int, ...] = (int(v), int(v))
        else:
            try:
                seq = self.get_ints(key)
            except KernelError:
                raise self.error(key, v, accepted) from None
            if seq is None or len(seq) != 2:
                raise self.error(key, v, accepted)
            vals = seq
        if any(x < min_value for x in vals):
            raise self.error(key, v, accepted)
        return (vals[0], vals[1])

    def get_pads(self, key: str) -> tuple[int, int, int, int]:
        """Spatial padding as (top, left, bottom, right): an int, a pair (h, w) or ONNX's 4-tuple order."""
        v = self._attrs.get(key)
        accepted = "an int >= 0, a pair (h, w) or a 4-tuple (top, left, bottom, right) of ints >= 0"
        if v is None:
            return (0, 0, 0, 0)
        if _is_int(v):
            vals: tuple[int, ...] = (int(v),) * 4
        else:
            try:
                seq = self.get_ints(key)
            except KernelError:
                raise self.error(key, v, accepted) from None
            if seq is None or len(seq) not in (2, 4):
                raise self.error(key, v, accepted)
            vals = (seq[0], seq[1], seq[0], seq[1]) if len(seq) == 2 else seq
        if any(x < 0 for x in vals):
            raise self.error(key, v, accepted)
        return (vals[0], vals[1], vals[2], vals[3])
