"""Dashboard: DriverStatus, CoreMap and TopView in one box, fed by one sampling thread.

The three widgets share a :class:`~nrt_lab.widgets._sampler.Sampler`: each tick reads the machine once and
updates the widgets whose own period has elapsed (each keeps its own pause and period controls).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import ipywidgets

from nrt_lab.widgets._base import WIDGET_VIEW_MIME
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
                 **kwargs: Any) -> None:
        self.sampler = Sampler(root, name="Dashboard")
        self.driver_status = DriverStatus(sampler=self.sampler, autostart=False)
        # One grid only: TopView's (owner colour as frame, utilization as fill); the core map keeps its legend,
        # actions and topology view.
        self.core_map = CoreMap(sampler=self.sampler, autostart=False, period=max(1.0, period), show_grid=False)
        self.top_view = TopView(sampler=self.sampler, autostart=False, period=period)
        super().__init__(children=[self.driver_status, self.core_map, self.top_view], **kwargs)
        if autostart:
            self.start()

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
        """Stop the thread and close the three widgets and the box."""
        self.stop()
        for part in self.parts:
            part.close()
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


def show(root: Path | str | None = None, period: float = 1.0, new: bool = False) -> Dashboard:
    """Display the dashboard (driver status, core map, live top) and return it.

    Calling it again shows the same live dashboard once more (a second view of the same state) unless
    ``new=True`` or another ``root`` is given; ``.close()`` on the result stops its thread.
    """
    global _last
    resolved = None if root is None else Path(root).expanduser().absolute()
    reuse = (_last is not None and not new and _last.comm is not None and _last.sampler.alive
             and _last.sampler.root == resolved)
    if not reuse:
        _last = Dashboard(root=resolved, period=period)
    assert _last is not None
    try:
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython ships with ipywidgets
        print(html.unescape(repr(_last)))
        return _last
    display(_last)  # type: ignore[no-untyped-call]
    return _last
