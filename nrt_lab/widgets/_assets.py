"""The widgets' front-end code, read once at import from the real files in ``nrt_lab/widgets/static/``.

The files are small hand-written ES modules and CSS (no bundler, no chart library). Each widget's ``_esm`` is
``common.js`` followed by its own view code (``core_map.js``, ``driver_status.js``, ``top_view.js``, ``cluster_map.js``). The
default export is a function, so anywidget calls it once per widget model: ``initialize`` builds one store per
model (the full ``state`` trait, then every ``delta`` applied in order) and every ``render`` (each view,
including views created after a reload or in Voila) draws from that store, so all views show the same, current
state. ``widgets.css`` (and ``cluster_map.css``) style every view.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["STATIC_DIR", "CSS", "COMMON_JS", "CLUSTER_MAP_JS", "CORE_MAP_JS", "DRIVER_STATUS_JS", "TOP_VIEW_JS", "widget_esm"]

STATIC_DIR = Path(__file__).resolve().parent / "static"


def _read(name: str) -> str:
    """One static file as text (shipped as package data, see pyproject's ``package-data``)."""
    return (STATIC_DIR / name).read_text(encoding="utf-8")


CSS = _read("widgets.css") + "\n" + _read("cluster_map.css")
COMMON_JS = _read("common.js")
CORE_MAP_JS = _read("core_map.js")
CLUSTER_MAP_JS = _read("cluster_map.js")
DRIVER_STATUS_JS = _read("driver_status.js")
TOP_VIEW_JS = _read("top_view.js")


def widget_esm(view_js: str) -> str:
    """The ES module of one widget: the shared helpers, then its view code."""
    return COMMON_JS + "\n" + view_js
