"""``nrt-lab compile``: compile an ONNX model to a NEFF (the emulated ``neuronx-cc compile``), or report coverage.

``nrt-lab compile model.onnx -o model.neff [--batch N] [--input-shape NAME=1x3x224x224] [--dtype fp32|bf16|fp16]
[--lnc N]`` writes the NEFF atomically, only on success, and prints what it declares; ``--report`` prints which
ops are supported (with counts) and which are not (with their node names) without compiling. Exit status: 0
success, 1 the model cannot be compiled (one line naming why), 2 bad arguments.
"""

from __future__ import annotations

import argparse
from typing import Any

from nrt_lab.tools import _cli

__all__ = ["add_parser", "run"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROG = "nrt-lab compile"


def add_parser(sub: Any) -> None:
    """Register ``compile`` on the ``nrt-lab`` sub-parsers object."""
    p = sub.add_parser("compile", help="compile an ONNX model to a NEFF (or --report its op coverage)")
    p.add_argument("model", metavar="MODEL.onnx", help="the ONNX model file (external data beside it)")
    p.add_argument("-o", "--output", metavar="FILE.neff", help="where to write the NEFF (default: MODEL.neff)")
    p.add_argument("--batch", type=_cli.bounded_int("--batch", 1, 1 << 20), metavar="N",
                   help="value of every input's dynamic first (batch) dimension")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0xD1x...",
                   help="static shape of one input (repeatable), e.g. input=1x3x224x224")
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="compute dtype: weights and activations are cast, inputs/outputs stay as declared")
    p.add_argument("--lnc", type=int, choices=(1, 2), default=1, help="logical NeuronCore size (trn2: 2)")
    p.add_argument("--report", action="store_true", help="print op coverage and exit without compiling")


def run(args: argparse.Namespace) -> int:
    """Run ``nrt-lab compile``; every failure is one line on stderr."""
    from pathlib import Path

    from nrt_lab.compiler import build, coverage, parse_input_shape
    from nrt_lab.errors import NrtError
    from nrt_lab.neff import write_neff

    try:
        if args.report:
            report = coverage(args.model)
            _cli.write_output(report.render() + "\n")
            return EXIT_OK if report.ok else EXIT_FAILED
        shapes: dict[str, tuple[int, ...]] = {}
        for text in args.input_shape:
            name, shape = parse_input_shape(text)
            shapes[name] = shape
        compiled = build(args.model, batch=args.batch, input_shapes=shapes, dtype=args.dtype, lnc=args.lnc)
        output = Path(args.output) if args.output else Path(args.model).with_suffix(".neff")
        try:
            write_neff(output, compiled.neff)
        except OSError as exc:
            return _cli.error(PROG, f"cannot write {str(output)!r}: {exc.strerror or exc}", EXIT_FAILED)
    except NrtError as exc:
        return _cli.error(PROG, exc.message, EXIT_FAILED)
    _cli.write_output(compiled.summary() + f"\nwrote {output} ({len(compiled.neff)} bytes)\n")
    return EXIT_OK
