"""ClusterMap / ClusterDashboard front end in a real browser (Debian chromium through Playwright).

The dashboard's own ES module and CSS render the state a real :class:`~nrt_lab.widgets.ClusterDashboard` holds
(fed the fixture cluster of test_cluster_views.py: three nodes, one dead, owners from two Ray jobs and a plain
process, two pending demands) in a page carrying JupyterLab's own Light or Dark theme, through the stand-in
anywidget model and the plotly library model of test_widget_front.py. Checked, because a person sees them at once:

* every node, device and core is drawn; the dead node is marked and says why; hovering a core names its node,
  device, core, owner pid, Ray job and actor; the pending demands and their reasons are listed;
* the utilization chart has a trace per node, axes with units, and a delta appends to it (no redraw);
* in Light and Dark no visible text has a contrast below 4.5:1 (WCAG AA) against what is behind it;
* at 800 px nothing is clipped and no token breaks over two lines (the page itself never scrolls sideways).

Screenshots: ``test-artifacts/browser/cluster-{light,dark,800px}.png``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from page_contrast import CONTRAST_JS  # noqa: E402 - the helpers beside this file
from test_cluster_views import FakeMonitor, fixture_snapshot  # noqa: E402
from test_widget_front import _LAYOUT, _LOAD_LIBRARY, _RENDER, _page, _traits, browser  # noqa: E402, F401

from nrt_lab.widgets import ClusterDashboard  # noqa: E402
from nrt_lab.widgets._plotly import PlotlyLibrary, plotly_source  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "browser"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def dashboard() -> Iterator[tuple[str, dict[str, Any]]]:
    """(ES module, traits) of a ClusterDashboard on the fixture cluster, after a few updates (a history)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import FakeClock

    clock = FakeClock()
    snaps = [fixture_snapshot(util=u) for u in (10.0, 40.0, 70.0, 55.0)]
    widget = ClusterDashboard(FakeMonitor(*snaps), autostart=False, clock=clock)
    try:
        for _ in range(3):
            clock.advance(2.0)
            widget.refresh()
        yield widget._esm, _traits(widget)
    finally:
        widget.close()


def _show(page: Any, esm: str, traits: dict[str, Any]) -> None:
    page.evaluate(_RENDER, [esm, traits, "cluster"])
    page.evaluate(_LOAD_LIBRARY, [PlotlyLibrary._esm, plotly_source()])
    page.wait_for_selector("#cluster .nrtw-chart-nodes .main-svg")
    page.wait_for_selector("#cluster .nrtw-node >> nth=2")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_cluster_dashboard_is_complete_and_readable(browser: Any, dashboard: tuple[str, dict[str, Any]],  # noqa: F811
                                                    theme: str) -> None:
    esm, traits = dashboard
    page = _page(browser, theme, 1400)
    try:
        _show(page, esm, traits)
        info = page.evaluate("""() => {
          const nodes = [...document.querySelectorAll('#cluster .nrtw-node')];
          return { heads: nodes.map((n) => n.querySelector('.nrtw-node-head').textContent),
                   cells: nodes.map((n) => n.querySelectorAll('.nrtw-cell').length),
                   down: nodes.map((n) => n.classList.contains('down')),
                   reasons: nodes.map((n) => (n.querySelector('.nrtw-error') || {}).textContent || ''),
                   pending: [...document.querySelectorAll('#cluster .nrtw-pending li')].map((li) => li.textContent),
                   legend: [...document.querySelectorAll('#cluster table tr')].map((tr) => tr.textContent) };
        }""")
        assert info["cells"] == [32, 24, 2]
        assert info["down"] == [False, True, False]
        assert info["heads"][0].startswith("trn1-0trn1.32xlargealive7/32 cores used")
        assert "health check failed" in info["reasons"][1]
        assert any("actor Predictor (predictor-0)" in row for row in info["legend"])
        assert any("not a Ray process" in row for row in info["legend"])
        assert len(info["pending"]) == 2 and "larger than any node" in info["pending"][0]
        # Hover: node, device, core, owner, Ray job and actor.
        page.locator("#cluster .nrtw-node >> nth=0").locator(".nrtw-cell >> nth=5").hover()
        detail = page.locator("#cluster .nrtw-detail").text_content() or ""
        assert "node trn1-0 (trn1.32xlarge, alive) · device nd2 · core 1 = nc5" in detail
        assert "owner: pid 4102" in detail and "Ray: job 01000000 · task infer" in detail
        chart = page.evaluate("""() => { const d = document.querySelector('#cluster .nrtw-chart-nodes');
          return { names: d.data.map((t) => t.name), points: d.data[0].y.length,
                   titles: [...d.querySelectorAll('.g-xtitle, .g-ytitle')].map((e) => e.textContent) }; }""")
        assert chart["names"] == ["trn1-0 (trn1.32xlarge)", "inf2-1 (inf2.48xlarge)", "trn1-2 (trn1.2xlarge)"]
        assert chart["points"] == 4 and set(chart["titles"]) == {"time", "utilization (%)"}
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.mouse.move(0, 0)
        page.screenshot(path=str(ARTIFACTS / f"cluster-{theme}.png"), full_page=True)
        result = page.evaluate(CONTRAST_JS, "#out *")
        assert result["checked"] > 150 and result["bad"] == [], result["bad"]
    finally:
        page.close()


def test_cluster_dashboard_applies_deltas_and_extends_the_chart(browser: Any,  # noqa: F811
                                                                 dashboard: tuple[str, dict[str, Any]]) -> None:
    esm, traits = dashboard
    page = _page(browser, "light", 1400)
    try:
        _show(page, esm, traits)
        page.evaluate("""() => { const m = globalThis.__models.cluster, st = m.get('state');
          const u0 = st.u0.slice(); u0[0] = 99;
          m.set('delta', { seq: st.seq + 1, set: { t: st.t + 2, u0, n0: Object.assign({}, st.n0, { util: 42 }) },
                           del: [] }); }""")
        page.wait_for_function("() => document.querySelector('#cluster .nrtw-chart-nodes').data[0].y.length === 5",
                               timeout=5000)
        cell = page.locator("#cluster .nrtw-node >> nth=0").locator(".nrtw-cell >> nth=0").text_content()
        assert cell == "099%"
        last = page.evaluate("() => document.querySelector('#cluster .nrtw-chart-nodes').data[0].y.at(-1)")
        assert last == 42
    finally:
        page.close()


def test_cluster_dashboard_fits_800_px(browser: Any, dashboard: tuple[str, dict[str, Any]]) -> None:  # noqa: F811
    esm, traits = dashboard
    page = _page(browser, "light", 800)
    try:
        _show(page, esm, json.loads(json.dumps(traits)))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "cluster-800px.png"), full_page=True)
        layout = page.evaluate(_LAYOUT)
        assert layout["broken"] == [], layout["broken"]
        assert not layout["docWide"], "the page itself scrolls sideways: something is wider than 800 px"
        for root in layout["roots"]:
            assert root["right"] <= layout["pageRight"] + 1
            assert not root["wide"] or root["overflowX"] == "auto"
    finally:
        page.close()


# ---------------------------------------------------------------------------------------------- real JupyterLab

_CLUSTER_NOTEBOOK_CODE = """\
# A ClusterDashboard fed by the fixture cluster of tests/test_cluster_views.py (no Ray needed): each sample
# moves trn1-0's utilization, so the chart grows and the grid changes.
import itertools
import sys

sys.path.insert(0, {tests!r})
from test_cluster_views import fixture_snapshot

from nrt_lab.widgets import ClusterDashboard


class Cycling:
    def __init__(self) -> None:
        self.values = itertools.cycle([10.0, 40.0, 70.0, 55.0])

    def sample(self):
        return fixture_snapshot(util=next(self.values))


dashboard = ClusterDashboard(Cycling(), period=0.5)
dashboard
"""


def _write_cluster_notebook(path: Path) -> None:
    source = _CLUSTER_NOTEBOOK_CODE.format(tests=str(Path(__file__).parent))
    notebook = {"cells": [{"cell_type": "code", "execution_count": None, "id": "c12v0001", "metadata": {},
                           "outputs": [], "source": source.splitlines(keepends=True)}],
                "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                                            "name": "python3"}},
                "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(notebook, indent=1), encoding="utf-8")


@pytest.mark.timeout(150)
def test_cluster_dashboard_in_jupyterlab(tmp_path: Path, browser: Any) -> None:  # noqa: F811
    """The widget through JupyterLab's real widget manager (comm, deltas, the plotly library model), live,
    readable in JupyterLab Light and Dark; the page asks nothing of any host but 127.0.0.1."""
    import test_browser as lab_test

    sync_api = lab_test._require_browser()
    budget = lab_test.Budget(90.0)
    console: list[str] = []
    foreign: list[str] = []
    shot = ARTIFACTS / "cluster-jupyterlab.png"
    with lab_test.running_lab(tmp_path, budget) as lab:  # the module's chromium (one Playwright per thread)
        _write_cluster_notebook(tmp_path / "root" / "cluster.ipynb")
        lab.notebook = "cluster.ipynb"
        page = None
        failed = True
        context = browser.new_context(viewport=lab_test.VIEWPORT)
        try:
            page = lab_test._new_page(context, console, foreign, "cluster")
            lab_test._open_notebook(page, lab, budget)
            lab_test._run_all_cells(page, budget, lab.steps)
            lab_test._wait_cells_done(page, budget, code_cells=1)
            sync_api.expect(page.locator(".nrtw-node")).to_have_count(3, timeout=budget.ms(20))
            page.wait_for_selector(".nrtw-chart-nodes .main-svg", timeout=budget.ms(20))
            points = "() => document.querySelector('.nrtw-chart-nodes').data[0].y.length"
            first = page.evaluate(points)
            page.wait_for_function(f"(n) => ({points})() >= n + 2", arg=first, timeout=budget.ms(15))
            lab.steps.append(f"chart {first} -> {page.evaluate(points)} points after {budget.elapsed():.1f} s")
            assert page.locator(".nrtw-node.down").count() == 1
            page.locator(".nrtw-node >> nth=0").locator(".nrtw-cell >> nth=0").hover()
            detail = page.locator(".nrtw-detail").text_content() or ""
            assert "node trn1-0" in detail and "Ray: job 01000000 · actor Predictor (predictor-0)" in detail
            page.mouse.move(0, 0)
            page.locator(".nrtw-title", has_text="Neuron cluster").first.evaluate(
                "(el) => el.scrollIntoView({block: 'start'})")
            page.screenshot(path=str(shot), timeout=budget.ms(10))
            lab_test._check_contrast(page, budget, "JupyterLab Light", lab.steps)
            shot = ARTIFACTS / "cluster-jupyterlab-dark.png"
            lab_test._change_theme(page, budget, "JupyterLab Dark")
            lab_test._check_contrast(page, budget, "JupyterLab Dark", lab.steps)
            page.screenshot(path=str(shot), timeout=budget.ms(10))
            assert not foreign, f"the page asked hosts other than 127.0.0.1: {foreign}"
            failed = False
        finally:
            lab_test._save_artifacts(page, shot, lab, console, failed, prefix="cluster-")
            context.close()
            print("\n".join(lab.steps))
