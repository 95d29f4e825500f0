"""Array math for the emulated NeuronCores, on NumPy or CuPy, with declared FLOP counts.

This is the bottom layer beside ``hardware``: it imports nothing else from ``nrt_lab``. Pick the array
module with :func:`get_backend`, look ops up with :func:`get_kernel` / :func:`run_kernel`, ask an op's output
shape and dtype without computing it with :func:`infer_output` (``Kernel.infer``), and read :attr:`Kernel.doc`
for each op's inputs and attributes.

Dtypes: float32, float16, bfloat16 (``ml_dtypes.bfloat16``), int8, int32. float16/bfloat16 compute in float32
and are cast back; see each kernel's ``accepted_dtypes`` and the module docs for integer rules.
"""

from __future__ import annotations

from nrt_lab.kernels._common import ALL_DTYPES, FLOAT_DTYPES, INT_DTYPES, TensorSpec
from nrt_lab.kernels.backend import (
    ACCEPTED_BACKENDS,
    BACKEND_ENV,
    Backend,
    BackendConfigError,
    BackendUnavailableError,
    get_backend,
    namespace_of,
    reset_backend_cache,
    select_backend,
)
from nrt_lab.kernels.errors import KernelError
from nrt_lab.kernels.fast import fast_kernel
from nrt_lab.kernels.registry import (
    FlopsFn,
    InferFn,
    Kernel,
    KernelFn,
    get_kernel,
    infer_output,
    kernel_flops,
    kernel_names,
    run_kernel,
)

__all__ = [
    "ACCEPTED_BACKENDS",
    "ALL_DTYPES",
    "BACKEND_ENV",
    "Backend",
    "BackendConfigError",
    "BackendUnavailableError",
    "FLOAT_DTYPES",
    "FlopsFn",
    "INT_DTYPES",
    "InferFn",
    "Kernel",
    "KernelError",
    "KernelFn",
    "TensorSpec",
    "fast_kernel",
    "get_backend",
    "get_kernel",
    "infer_output",
    "kernel_flops",
    "kernel_names",
    "namespace_of",
    "reset_backend_cache",
    "run_kernel",
    "select_backend",
]
