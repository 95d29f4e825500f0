"""``nrt-lab doctor``: the troubleshooting findings for this shell's environment, with their remedies.

The findings are :func:`nrt_lab.monitor.diagnose`'s, the same the DriverStatus widget shows. Exit status: 0
when no finding is an error, 1 when one is (or the machine cannot be read).
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from nrt_lab.monitor import SEVERITIES, Finding, Monitor, diagnose, neff_findings, unreadable_machine
from nrt_lab.tools import _cli

__all__ = ["add_parser", "run", "render_text", "collect", "main"]

EXIT_OK, EXIT_ERROR = 0, 1


def add_parser(sub: Any) -> None:
    """Register ``doctor`` on the ``nrt-lab`` sub-parsers object."""
    doctor = sub.add_parser("doctor", help="check the driver, the machine and this shell's NEURON_* variables")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.add_argument("--neff", action="append", default=[], metavar="FILE",
                        help="also check this NEFF's version against Runtime 2.x and neuron-rtd (repeatable)")


def collect(env: Mapping[str, str] | None = None, neffs: Sequence[str] = ()) -> list[Finding]:
    """The findings for ``env`` (default: this process's environment) on the machine of ``NRT_LAB_ROOT``, and for
    the NEFF files ``neffs``."""
    env = dict(os.environ) if env is None else dict(env)
    try:
        snapshot = Monitor().sample(runtimes=False)
    except Exception as exc:  # noqa: BLE001 - an unusable state root is itself the finding to report
        return [unreadable_machine(str(exc) or type(exc).__name__)]
    findings = diagnose(snapshot, env)
    if neffs:  # imported here, not at import time: `nrt-lab --help` need not load the NEFF tools
        from nrt_lab.neff import HEADER_SIZE
    for path in neffs:
        try:  # the header is all it takes: never the whole (large) file; never wait on a FIFO
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    raise OSError(0, "not a regular file")
                head = handle.read(HEADER_SIZE)
        except OSError as exc:
            findings.append(Finding("neff:unreadable", "error", f"{path} cannot be read", exc.strerror or str(exc),
                                    "give the path of a readable .neff file", ""))
            continue
        findings.extend(neff_findings(path, head, snapshot))
    return findings


def _counted(count: int, severity: str) -> str:
    """``1 error``, ``2 warnings``, ``3 info``."""
    return f"{count} {severity}{'' if count == 1 or severity == 'info' else 's'}"


def render_text(findings: Sequence[Finding]) -> str:
    """Findings as text, errors first, each with its detail and remedy."""
    if not findings:
        return "No problem found.\n"
    lines: list[str] = []
    for severity in SEVERITIES:
        for finding in (f for f in findings if f.severity == severity):
            lines.append(f"{severity.upper()}: {finding.title}")
            if finding.detail:
                lines.append(f"  {finding.detail}")
            lines.append(f"  remedy: {finding.remedy}" + (f" ({finding.ref})" if finding.ref else ""))
    counts = ", ".join(_counted(sum(1 for f in findings if f.severity == s), s) for s in SEVERITIES)
    return "\n".join(lines) + f"\n{counts}\n"


def run(args: argparse.Namespace) -> int:
    """Run ``nrt-lab doctor`` with parsed arguments; returns the exit status."""
    findings = collect(neffs=getattr(args, "neff", ()))
    if args.json:
        text = json.dumps({"findings": [f.to_json() for f in findings],
                           "errors": sum(1 for f in findings if f.severity == "error")}, indent=2) + "\n"
    else:
        text = render_text(findings)
    _cli.write_output(text)
    return EXIT_ERROR if any(f.severity == "error" for f in findings) else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nrt_lab.tools.doctor``: the same as ``nrt-lab doctor``."""
    parser = argparse.ArgumentParser(prog="nrt-lab doctor", description="Troubleshooting findings and remedies.")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
