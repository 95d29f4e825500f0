"""Dashboard: DriverStatus, CoreMap and TopView in one box, fed by one sampling thread.

The three widgets share a :class:`~nrt_lab.widgets._sampler.Sampler`: each tick reads the machine once and
updates the widgets whose own period has elapsed (each keeps its own pause and period controls).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import ipywidgets

from nrt_lab.widgets._base import SIZES, WIDGET_VIEW_MIME
from nrt_lab.widgets._sampler import Sampler
from nrt_lab.widgets.core_map import CoreMap
from nrt_lab.widgets.driver_status import DriverStatus
from nrt_lab.widgets.top_view import PLOTLY_MIME, TopView

__all__ = ["Dashboard", "show"]


class Dashboard(ipywidgets.VBox):  # type: ignore[misc]
    """The three nrt_lab widgets stacked, with one background thread for all of them.

    ``Dashboard(root=None, period=1.0, autostart=True)``: ``period`` is TopView's; CoreMap follows it (at least
    1 s) and DriverStatus reads every 2 s. Attributes ``driver_status``, ``core_map``, ``top_view``.
    """

    def __init__(self, *, root: Path | str | None = None, period: float = 1.0, autostart: bool = True,
                 size: str = "normal", **kwargs: Any) -> None:
        if size not in SIZES:
            raise ValueError(f"size={size!r} is invalid; accepted: {', '.join(map(repr, SIZES))}")
        self.sampler = Sampler(root, name="Dashboard")
        # A collapsible header: the one-line verdict about this kernel; "Details" opens the tables.
        self.driver_status = DriverStatus(sampler=self.sampler, autostart=False, collapsed=True, size=size)
        # One grid only: TopView's (owner colour as frame, utilization as fill); the core map keeps its legend,
        # actions and topology view.
        self.core_map = CoreMap(sampler=self.sampler, autostart=False, period=max(1.0, period), show_grid=False,
                                size=size)
        self.top_view = TopView(sampler=self.sampler, autostart=False, period=period, compact=True, size=size)
        # Utilization (grid, charts, executions) on the left, owners (legend, actions) on the right.
        self.top_view.layout = ipywidgets.Layout(flex="3 1 560px", min_width="0")
        self.core_map.layout = ipywidgets.Layout(flex="2 1 360px", min_width="0")
        body = ipywidgets.HBox([self.top_view, self.core_map],
                               layout=ipywidgets.Layout(flex_flow="row wrap", align_items="flex-start"))
        self._body = body
        super().__init__(children=[self.driver_status, body], **kwargs)
        if autostart:
            self.start()

    @property
    def size(self) -> str:
        """``normal`` or ``presentation`` (bigger cells and fonts, for a projector); settable."""
        return str(self.top_view.size)

    @size.setter
    def size(self, value: str) -> None:
        for part in self.parts:
            part.size = value

    def open_in_sidecar(self, title: str = "nrt_lab", anchor: str = "split-right") -> Any:
        """Show this dashboard in a JupyterLab side panel (the ``sidecar`` package); returns the panel.

        ``anchor`` is sidecar's: the default ``split-right`` gives the dashboard half of the main area beside the
        notebook; ``right`` puts it in the narrow right sidebar, where the grid and charts scroll sideways."""
        try:
            from sidecar import Sidecar
        except ImportError as exc:
            raise ImportError("a side panel needs the sidecar package: pip install 'nrt_lab[lab]' "
                              "(or pip install sidecar)") from exc
        from IPython.display import display

        panel = Sidecar(title=title, anchor=anchor)
        with panel:
            display(self)  # type: ignore[no-untyped-call]
        return panel

    @property
    def parts(self) -> tuple[DriverStatus, CoreMap, TopView]:
        """The three widgets."""
        return self.driver_status, self.core_map, self.top_view

    @property
    def thread(self) -> Any:
        """The one sampling thread (None before start)."""
        return self.sampler.thread

    def start(self) -> None:
        """Start the shared thread (every part that is not paused updates)."""
        for part in self.parts:
            self.sampler.attach(part)
        self.sampler.start()
        for part in self.parts:
            part.running = self.sampler.alive

    def stop(self) -> None:
        """Stop the shared thread and wait for it."""
        self.sampler.stop()
        for part in self.parts:
            part.running = False

    def pause(self) -> None:
        """Pause every part."""
        for part in self.parts:
            part.paused = True

    def resume(self) -> None:
        """Resume every part."""
        for part in self.parts:
            part.paused = False

    def refresh(self) -> None:
        """Read the machine now and update every part."""
        for part in self.parts:
            part.refresh()

    def close(self) -> None:
        """Stop the thread and close the three widgets and the box (also for a dashboard whose construction
        failed half-way, which ipywidgets closes when it is collected)."""
        if hasattr(self, "_body"):
            self.stop()
            for part in self.parts:
                part.close()
            self._body.close()
        super().close()

    def _plain(self) -> str:
        return "Dashboard(\n  " + ",\n  ".join(repr(p) for p in self.parts) + "\n)"

    def __repr__(self) -> str:
        return self._plain()

    def _repr_html_(self) -> str:
        return '<div class="nrt-lab-static nrt-dashboard">' + "<hr>".join(
            p._repr_html_() for p in self.parts) + "</div>"

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        data: dict[str, Any] = {"text/plain": self._plain(), "text/html": self._repr_html_()}
        figure = self.top_view.figure_json()
        if figure is not None:
            data[PLOTLY_MIME] = figure
        if self.comm is not None and self._view_name is not None:
            data[WIDGET_VIEW_MIME] = {"version_major": 2, "version_minor": 0, "model_id": self.model_id}
        return data, {}


_last: Dashboard | None = None


def show(root: Path | str | None = None, period: float = 1.0, new: bool = False, size: str = "normal",
         sidecar: bool = False) -> Dashboard:
    """Display the dashboard (driver status, core map, live top) and return it.

    Calling it again shows the same live dashboard once more (a second view of the same state) unless
    ``new=True`` or another ``root`` is given; ``.close()`` on the result stops its thread. ``size="presentation"``
    draws bigger cells and fonts; ``sidecar=True`` opens it in a JupyterLab side panel instead of the cell.
    """
    global _last
    resolved = None if root is None else Path(root).expanduser().absolute()
    reuse = (_last is not None and not new and _last.comm is not None and _last.sampler.alive
             and _last.sampler.root == resolved)
    if not reuse:
        _last = Dashboard(root=resolved, period=period, size=size)
    assert _last is not None
    _last.size = size
    if sidecar:
        _last.open_in_sidecar()
        return _last
    try:
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython ships with ipywidgets
        print(html.unescape(repr(_last)))
        return _last
    display(_last)  # type: ignore[no-untyped-call]
    return _last
