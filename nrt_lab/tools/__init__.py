"""Command-line faces of nrt_lab: ``neuron-ls``, ``neuron-top``, ``neuron-monitor`` and ``nrt-lab``.

Renderers here are pure functions of the emulated machine's data; entry points live in their own modules.
"""

from __future__ import annotations

__all__: list[str] = []
