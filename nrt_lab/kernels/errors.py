"""The one exception kernels raise for input the caller got wrong.

A :class:`KernelError` always names the kernel, the offending input or attribute, its value and what is
accepted, so that a bad graph fails with a sentence rather than a NumPy traceback from deep inside.
"""

from __future__ import annotations

__all__ = ["KernelError"]


class KernelError(ValueError):
    """Bad kernel name, inputs, dtypes or attributes (a ``ValueError``, so generic handlers still catch it)."""
