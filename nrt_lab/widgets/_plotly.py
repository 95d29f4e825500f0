"""plotly.js for every chart of a page, shipped once: one hidden widget model per kernel carries the library.

plotly.js is ~4.8 MB. A FigureWidget per chart ships it once per figure; here one :class:`PlotlyLibrary` model
(one per kernel, created by the first chart widget and shared by all) carries the text of the plotly Python
package's own ``plotly.min.js`` in a synced trait. When the front end creates that model (on display of any
widget, after a reload, in a second tab, in Voila) its ``initialize`` evaluates the library once per page and
resolves ``globalThis.__nrtLabPlotly`` (a promise every chart awaits); ``globalThis.__nrtLabPlotlyLoads`` counts
evaluations, so a test or benchmark can check that the library reached the page once. Nothing is downloaded.
"""

from __future__ import annotations

import threading
from pathlib import Path

import anywidget
import traitlets

__all__ = ["PlotlyLibrary", "plotly_library", "plotly_source", "PLOTLY_READY_JS"]

# Shared by the chart views (prepended to their ES modules): the promise resolved when plotly.js is loaded.
PLOTLY_READY_JS = """
function plotlyReady() {
  const g = globalThis;
  if (!g.__nrtLabPlotly) g.__nrtLabPlotly = new Promise((resolve) => { g.__nrtLabPlotlyResolve = resolve; });
  return g.__nrtLabPlotly;
}
"""

_LIBRARY_JS = PLOTLY_READY_JS + """
function loadPlotly(source) {
  const g = globalThis;
  plotlyReady();
  if (g.Plotly && g.Plotly.newPlot) { g.__nrtLabPlotlyResolve(g.Plotly); return; }
  if (!source) return;
  // The UMD bundle, with module/define/exports hidden, sets self.Plotly.
  new Function("define", "module", "exports", source)(undefined, undefined, undefined);
  g.__nrtLabPlotlyLoads = (g.__nrtLabPlotlyLoads || 0) + 1;
  g.__nrtLabPlotlyResolve(g.Plotly);
}
export default {
  initialize({ model }) { loadPlotly(model.get("source")); },
  render({ el }) { el.style.display = "none"; },
};
"""

_lock = threading.Lock()
_library: PlotlyLibrary | None = None


def plotly_source() -> str:
    """The text of the installed plotly package's ``plotly.min.js`` (ImportError naming the extra if missing)."""
    try:
        import plotly
    except ImportError as exc:
        raise ImportError("nrt_lab's charts need plotly: pip install 'nrt_lab[lab]' (or pip install plotly)") from exc
    path = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    return path.read_text(encoding="utf-8")


class PlotlyLibrary(anywidget.AnyWidget):  # type: ignore[misc]
    """The hidden model that brings plotly.js to the page once (see the module's docstring)."""

    _esm = _LIBRARY_JS
    source = traitlets.Unicode("").tag(sync=True)

    def _repr_mimebundle_(self, **kwargs: object) -> tuple[dict[str, str], dict[str, str]]:
        return {"text/plain": "PlotlyLibrary()"}, {}


def plotly_library() -> PlotlyLibrary:
    """This kernel's one library model (created on first use, again if it was closed)."""
    global _library
    with _lock:
        if _library is None or _library.comm is None:
            _library = PlotlyLibrary(source=plotly_source())
        return _library
