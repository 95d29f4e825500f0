"""Static plotly figures for post-hoc analysis: a neuron-monitor recording (``neuron-monitor ... > run.jsonl``) or a
live TopView's history, drawn as the live widgets draw them (see docs/visualizer.md).

>>> from nrt_lab import plot
>>> rec = plot.read_recording("run.jsonl")        # one report per line; a bad line names its number
>>> plot.utilization_figure(rec).show()           # stacked per process; also core_heatmap, memory_figure, ...
"""

from __future__ import annotations

from nrt_lab.widgets._figures import (
    Recording,
    core_heatmap,
    execution_figure,
    figures,
    from_top_view,
    memory_figure,
    parse_reports,
    read_recording,
    utilization_figure,
)

__all__ = [
    "Recording",
    "core_heatmap",
    "execution_figure",
    "figures",
    "from_top_view",
    "memory_figure",
    "parse_reports",
    "read_recording",
    "utilization_figure",
]
