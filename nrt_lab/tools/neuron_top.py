"""``neuron-top``: a terminal UI over the live runtimes of the emulated machine (docs/behaviour.md §7).

The screen (it fits 80×24) holds a title bar (version, instance id, instance type), four sections for the
selected tab -- ``NeuronCore <vers> Utilization``, ``VCPU Utilization``, ``Memory Usage Summary`` and
``Memory Usage Details`` (a tree: runtime → NeuronCore → model) -- and, at the bottom, the tab bar: ``all``
(every runtime aggregated) then one tab per runtime, labelled with its process tag; the active tab is green
and marked ``>…<``. Keys: ``1``-``9`` select a tab, ``a``/``d`` the previous/next one, ``F`` toggles % and
TFLOPS, the arrow keys move in (and fold) the tree, ``x`` expands/collapses the whole tree, ``q`` quits.

The view model (tabs, cells, tree) is :mod:`nrt_lab.monitor.top`, the drawing
:mod:`nrt_lab.tools.neuron_top_render`, the terminal app :mod:`nrt_lab.tools.neuron_top_app` (imported only
when the UI starts); this module is the command line. ``--once`` prints the same sections as plain text (at most 80 columns, no escape
codes) from two samples ``--period`` apart, so that utilization is a real rate. Values that could not be
measured print as ``N/A``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nrt_lab.monitor import Monitor, diagnose, register_device_user
from nrt_lab.monitor.top import (
    ALL_TAB,
    CoreCell,
    MemoryNode,
    Tab,
    core_cells,
    daemon_rows,
    memory_nodes,
    tabs_of,
)
from nrt_lab.tools import _cli
from nrt_lab.tools.neuron_top_render import WIDTH, format_bytes, render_once

if TYPE_CHECKING:
    from nrt_lab.tools.neuron_top_app import NeuronTopApp, SnapshotReady

__all__ = [
    "ALL_TAB",
    "PROG",
    "WIDTH",
    "CoreCell",
    "MemoryNode",
    "NeuronTopApp",
    "SnapshotReady",
    "Tab",
    "build_parser",
    "core_cells",
    "daemon_addresses",
    "format_bytes",
    "main",
    "memory_nodes",
    "once_output",
    "render_once",
    "tabs_of",
]

PROG = "neuron-top"


def __getattr__(name: str) -> Any:
    """The textual app's classes, imported on first use (textual is slow to import; ``--once`` needs none)."""
    if name in ("NeuronTopApp", "SnapshotReady"):
        return getattr(importlib.import_module("nrt_lab.tools.neuron_top_app"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def daemon_addresses(arguments: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """The Runtime 1.x daemons to show: ``NEURON_RTD_ADDRESS`` (when set) then the addresses given as arguments
    (``neuron-top unix:/run/neuron2.sock``); running daemons at other addresses are shown too."""
    first = [env["NEURON_RTD_ADDRESS"]] if env.get("NEURON_RTD_ADDRESS") else []
    return first + list(arguments)


def once_output(*, period: float = 1.0, tag_filter: str | None = None, root: Path | str | None = None,
                flops: bool = False, sleep: Callable[[float], object] = time.sleep,
                addresses: Sequence[str] = ()) -> str:
    """Sample the machine twice ``period`` seconds apart (``sleep`` waits) and render the second sample, with
    the troubleshooting findings for this environment (the same diagnose() as ``nrt-lab doctor``) and the
    Runtime 1.x daemons (those at ``addresses`` and any other running one)."""
    monitor = Monitor(Path(root) if root is not None else None)
    monitor.sample(tag_filter)
    sleep(period)
    snapshot = monitor.sample(tag_filter)
    daemons = daemon_rows(monitor.machine.owners(), snapshot, addresses)
    return render_once(snapshot, flops=flops, findings=diagnose(snapshot, os.environ), daemons=daemons)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``neuron-top``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Show NeuronCore and vCPU utilization, memory usage and loaded models of the Neuron "
                    "runtimes on this (emulated) machine.",
    )
    parser.add_argument("--period", type=_cli.positive_seconds, default=1.0, metavar="SECONDS",
                        help="seconds between samples (default 1)")
    parser.add_argument("--once", action="store_true",
                        help="print one plain-text snapshot (two samples PERIOD apart) and exit")
    parser.add_argument("--tag", type=_cli.regex, default=None, metavar="REGEX",
                        help="only show runtimes whose process tag matches REGEX")
    parser.add_argument("addresses", nargs="*", metavar="ADDRESS",
                        help="also show the Runtime 1.x daemon (neuron-rtd) at ADDRESS, e.g. unix:/run/neuron2.sock "
                             "(NEURON_RTD_ADDRESS is shown too)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neuron-top`` console script."""
    args = build_parser().parse_args(argv)
    if args.once:
        try:
            with _cli.stop_on_signals() as stop:
                text = once_output(period=args.period, tag_filter=args.tag, sleep=stop.wait,
                                   addresses=daemon_addresses(args.addresses, os.environ))
                if stop.is_set():
                    return 0
        except _cli.machine_errors() + (ValueError,) as exc:  # an unusable machine or state root: one line
            return _cli.error(PROG, str(exc))
        _cli.write_output(text)
        return 0
    try:
        device_user = register_device_user()  # shows in `neuron-ls -a`
    except _cli.machine_errors() as exc:
        return _cli.error(PROG, str(exc))
    try:
        from nrt_lab.tools.neuron_top_app import NeuronTopApp

        app = NeuronTopApp(period=args.period, tag_filter=args.tag,
                           addresses=daemon_addresses(args.addresses, os.environ))
        # SIGTERM (and SIGINT, should it arrive) quit the app like `q`: the terminal is restored and the
        # device-user record withdrawn, instead of dying in raw mode.
        with _cli.stop_on_signals(lambda _signum: app.exit()):
            result: Any = app.run()
    finally:
        device_user.release()
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
