"""Command-line faces of nrt_lab: ``neuron-ls``, ``neuron-top``, ``neuron-monitor``, the Prometheus exporter and
``nrt-lab``.

Each tool is a command line over the read-side API (``nrt_lab.monitor``: snapshots, neuron-top's view model
``monitor.top``, neuron-monitor's report builder ``monitor.report``) plus a renderer; write-side admin
commands use only the top level of ``nrt_lab.driver`` / ``nrt_lab.runtime``. Argument checks, error lines,
closed pipes, signals, control-character escaping and bounded file reads live in :mod:`nrt_lab.tools._cli`.
"""

from __future__ import annotations

__all__: list[str] = []
