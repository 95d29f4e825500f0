"""The widgets' front-end code in a real browser (Debian chromium through Playwright), without a Jupyter server.

Each widget's own ES module (``_esm``) and CSS render the state a real widget holds for a real emulated machine,
in a page that carries JupyterLab's own Light or Dark theme variables (the theme CSS shipped with JupyterLab),
through a stand-in for the anywidget model (``get``/``set``/``on``/``send``). Checked here, because a person sees
them at once (issue 9):

* the number formatter (``fmtNum``) keeps significant zeros (100 was shown as "1") and agrees with Python's
  :func:`~nrt_lab.widgets._static.format_number`; ``textColor`` agrees with Python's :func:`text_color`;
* in Light and in Dark no visible text has a contrast below 4.5:1 against what is behind it (WCAG AA), and idle
  or free cells are not white boxes in Dark;
* at 800 px no table is clipped: the widget scrolls sideways and no token (``nc0-nc1``) breaks over two lines.

Screenshots of every case go to ``test-artifacts/browser/``. The full JupyterLab tests are in test_browser.py.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from nrt_lab.driver import Machine
from nrt_lab.widgets import CoreMap, DriverStatus, TopView
from nrt_lab.widgets._assets import COMMON_JS, CSS
from nrt_lab.widgets._palette import OWNER_PALETTE, text_color
from nrt_lab.widgets._plotly import PlotlyLibrary, plotly_source
from nrt_lab.widgets._static import format_number

sys.path.insert(0, str(Path(__file__).parent))
from page_contrast import CONTRAST_JS  # noqa: E402 - the helper beside this file

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "browser"
THEMES = Path(sys.prefix) / "share" / "jupyter" / "lab" / "themes" / "@jupyterlab"

pytestmark = pytest.mark.timeout(120)


def _theme_css(name: str) -> str:
    path = THEMES / f"theme-{name}-extension" / "index.css"
    if not path.exists():
        pytest.skip(f"JupyterLab's {name} theme is not installed ({path})")
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium for the module (skipped when chromium or playwright is missing)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (Debian: apt-get install chromium)")
    try:
        sync_api: ModuleType = __import__("playwright.sync_api", fromlist=["sync_playwright"])
    except ImportError:
        pytest.skip("the playwright Python module is missing (pip install -e '.[test]')")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                      args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            yield chromium
        finally:
            chromium.close()


# Loads one widget's ES module from text and renders it with a stand-in anywidget model.
_RENDER = """
async ([esm, traits, id]) => {
  const handlers = {};
  const model = {
    get: (k) => traits[k],
    set: (k, v) => { traits[k] = v; for (const f of handlers[`change:${k}`] || []) f(); },
    save_changes: () => {}, send: () => {}, off: () => {},
    on: (evt, fn) => { (handlers[evt] = handlers[evt] || []).push(fn); },
  };
  const url = URL.createObjectURL(new Blob([esm], { type: "text/javascript" }));
  const mod = await import(url);
  const widget = mod.default();
  const el = document.createElement("div");
  el.id = id;
  el.className = "jp-OutputArea-output";
  document.getElementById("out").append(el);
  widget.initialize({ model });
  widget.render({ model, el });
  (globalThis.__models = globalThis.__models || {})[id] = model;
}
"""

# The library model's ES module, as the front end runs it when the model is created (initialize only).
_LOAD_LIBRARY = """
async ([esm, source]) => {
  const url = URL.createObjectURL(new Blob([esm], { type: "text/javascript" }));
  const mod = await import(url);
  mod.default.initialize({ model: { get: (k) => (k === "source" ? source : undefined), on: () => {} } });
}
"""


# Tokens that must stay on one line, and whether each widget's box stays inside the page (scrolling inside).
_LAYOUT = """
() => {
  const broken = [];
  for (const td of document.querySelectorAll("#out td, #out th")) {
    if (td.classList.contains("wrap") || !td.textContent.trim()) continue;
    const walker = document.createTreeWalker(td, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (!node.textContent.trim()) continue;
      const range = document.createRange();
      range.selectNodeContents(node);
      const tops = [...range.getClientRects()].map((r) => r.top);
      if (tops.length && Math.max(...tops) - Math.min(...tops) > 4) broken.push(node.textContent.slice(0, 40));
    }
  }
  const page = document.getElementById("out").getBoundingClientRect();
  const roots = [...document.querySelectorAll("#out .nrtw, #out .nrtw-scroll")].map((el) => ({
    right: el.getBoundingClientRect().right, overflowX: getComputedStyle(el).overflowX,
    wide: el.scrollWidth > el.clientWidth + 1,
  }));
  return { broken, pageRight: page.right, roots, docWide: document.documentElement.scrollWidth > innerWidth + 1 };
}
"""


def _traits(widget: Any) -> dict[str, Any]:
    """The synced traits a front end would get (the widget's full state), JSON round-tripped."""
    state = widget.get_state()
    return json.loads(json.dumps({k: v for k, v in state.items() if not k.startswith("_")}))


@pytest.fixture
def scene(machine: Machine, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str, dict[str, Any]]]]:
    """(id, ES module, traits) of DriverStatus, CoreMap and TopView on a trn1.32xlarge with three owners."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_widgets import _kill, _start

    started: list[Any] = []
    made: list[Any] = []
    try:
        _start(machine.root, [{"NEURON_RT_NUM_CORES": "8", "NEURON_PROCESS_TAG": "alpha", "FAKE_KERNEL_ID": "4f2c"},
                              {"NEURON_RT_NUM_CORES": "4", "NEURON_PROCESS_TAG": "beta"},
                              {"NEURON_RT_NUM_CORES": "2", "NEURON_PROCESS_TAG": "gamma"}], started)
        status = DriverStatus(autostart=False, env={"NEURON_RT_VISIBLE_CORES": "0-3", "NEURON_RT_LOG_LEVEL": "nope"})
        core_map, top = CoreMap(autostart=False), TopView(autostart=False)
        made += [status, core_map, top]
        core_map.message = "Released this process's NeuronCores nc0-nc3 (nrt_lab.close())."
        top_traits = _traits(top)
        total = top_traits["state"]["inst"]["total"]
        for core in range(total):  # every step of the utilization scale, to check each fill's text
            top_traits["state"][f"c{core}"][0] = round(core * 100 / (total - 1), 1)
        yield [("status", status._esm, _traits(status)), ("coremap", core_map._esm, _traits(core_map)),
               ("top", top._esm, top_traits)]
    finally:
        for widget in made:
            widget.close()
        _kill(started)


def _page(browser: Any, theme: str, width: int) -> Any:
    page = browser.new_page(viewport={"width": width, "height": 1000})
    light = "true" if theme == "light" else "false"
    page.set_content(f'<!DOCTYPE html><html><body data-jp-theme-light="{light}" data-jp-theme-name="JupyterLab {theme.title()}">'
                     '<div id="out" style="padding:8px"></div></body></html>')
    page.add_style_tag(content=_theme_css(theme))
    page.add_style_tag(content="body { background: var(--jp-layout-color0); color: var(--jp-ui-font-color1);"
                               " margin: 0; font-family: var(--jp-ui-font-family); }")
    page.add_style_tag(content=CSS)
    return page


def test_number_formatter_and_text_colour_match_python(browser: Any) -> None:
    page = browser.new_page()
    try:
        page.add_script_tag(content=COMMON_JS)
        values = [100, 190, 220, 1e-05, 0, -220, -3.5, 0.5, 12.345, 1234, 999.6, 99.96, 2.5e-07, 0.00123, 7,
                  1e6, 42.0, 0.1]
        shown = page.evaluate("(vs) => vs.map((v) => fmtNum(v))", values)
        assert shown == [format_number(v) for v in values]
        assert shown[:5] == ["100", "190", "220", "1e-5", "0"]
        specials = page.evaluate("() => [fmtNum(NaN), fmtNum(null), fmtNum(undefined), fmtNum(-0), "
                                 "fmtNum(Infinity), fmtNum(100, 4), fmtNum(1e-5, 4)]")
        assert specials == ["-", "-", "-", "0", "inf", "100", "1e-5"]
        colors = list(OWNER_PALETTE) + ["#ffffff", "#000000", "#777777", "#767676", "#c8e6c9", "#1b5e20", "#59a14f"]
        assert page.evaluate("(cs) => cs.map(textColor)", colors) == [text_color(c) for c in colors]
    finally:
        page.close()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_widgets_are_readable_in_light_and_dark(browser: Any, scene: list[tuple[str, str, dict[str, Any]]],
                                                theme: str) -> None:
    page = _page(browser, theme, 1400)
    try:
        for name, esm, traits in scene:
            page.evaluate(_RENDER, [esm, traits, name])
        page.wait_for_selector("#top .nrtw-cell >> nth=31")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"widgets-{theme}.png"), full_page=True)
        result = page.evaluate(CONTRAST_JS, "#out *")
        assert result["checked"] > 100 and result["bad"] == [], result["bad"]
        # The check itself can fail: grey on grey is caught.
        page.evaluate("() => document.getElementById('out').insertAdjacentHTML('beforeend',"
                      " '<span style=\"color:#777;background:#888\">unreadable</span>')")
        assert [b["text"] for b in page.evaluate(CONTRAST_JS, "#out *")["bad"]] == ["unreadable"]
        # Free cells take the theme's neutral colours: never a light box in Dark, never a dark one in Light.
        free_bg = page.evaluate("() => getComputedStyle(document.querySelector('#coremap .nrtw-cell.free'))"
                                ".backgroundColor")
        assert free_bg == ("rgb(238, 238, 238)" if theme == "light" else "rgb(66, 66, 66)")
        # The header is calm here (others own cores, this kernel has none): but the bad log level is an error.
        verdict = page.locator("#status .nrtw-verdict")
        assert "nrtw-sev-error" in (verdict.get_attribute("class") or "")
        numbers = page.locator("#top td.num").all_inner_texts()
        assert numbers and all(not t.endswith(".") for t in numbers)
    finally:
        page.close()


def test_widgets_fit_800_px_without_clipping_or_broken_tokens(browser: Any,
                                                              scene: list[tuple[str, str, dict[str, Any]]]) -> None:
    page = _page(browser, "light", 800)
    try:
        for name, esm, traits in scene:
            page.evaluate(_RENDER, [esm, traits, name])
        page.wait_for_selector("#top .nrtw-cell >> nth=31")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "widgets-800px.png"), full_page=True)
        layout = page.evaluate(_LAYOUT)
        assert layout["broken"] == [], layout["broken"]
        assert not layout["docWide"], "the page itself scrolls sideways: something is wider than 800 px"
        for root in layout["roots"]:
            assert root["right"] <= layout["pageRight"] + 1
            assert not root["wide"] or root["overflowX"] == "auto"  # wide content scrolls inside the widget
        assert any(root["wide"] for root in layout["roots"])  # the executions table is wider than 800 px...
        widest = page.evaluate("() => { const t = [...document.querySelectorAll('#top .nrtw-scroll')]"
                               ".find((el) => el.scrollWidth > el.clientWidth + 1); if (!t) return null;"
                               " t.scrollLeft = 10000; return t.scrollLeft; }")
        assert widest, "...so its own box scrolls sideways (not the page, not the whole widget)"
    finally:
        page.close()


def test_plotly_charts_load_the_library_once_render_axes_and_extend(
        browser: Any, scene: list[tuple[str, str, dict[str, Any]]]) -> None:
    page = _page(browser, "light", 1400)
    try:
        (_, top_esm, top_traits), = [item for item in scene if item[0] == "top"]
        # Two TopViews before the library arrives (a reload can order models either way), then the library.
        page.evaluate(_RENDER, [top_esm, top_traits, "top"])
        page.evaluate(_RENDER, [top_esm, json.loads(json.dumps(top_traits)), "top2"])
        page.evaluate(_LOAD_LIBRARY, [PlotlyLibrary._esm, plotly_source()])
        page.evaluate(_LOAD_LIBRARY, [PlotlyLibrary._esm, plotly_source()])  # a second library model: no reload
        page.wait_for_selector("#top2 .nrtw-chart-heat .main-svg")
        assert page.evaluate("() => globalThis.__nrtLabPlotlyLoads") == 1
        info = page.evaluate("""() => {
          const area = document.querySelector('#top .nrtw-chart-area'), heat = document.querySelector('#top .nrtw-chart-heat');
          return { areaTraces: area.data.map((t) => t.name), heatRows: heat.data[0].z.length,
                   cores: heat.data[0].z[0].length,
                   titles: [...document.querySelectorAll('#top .g-xtitle, #top .g-ytitle')].map((e) => e.textContent) };
        }""")
        assert len(info["areaTraces"]) == 3 and all("(" in name for name in info["areaTraces"])
        assert info["heatRows"] == 1 and info["cores"] == 32
        assert {"time", "% of machine", "NeuronCore"} <= set(info["titles"])
        # One update: a delta appends one column to every trace (extendTraces), it does not redraw.
        page.evaluate("""() => { const m = globalThis.__models.top, st = m.get('state');
          m.set('delta', { seq: st.seq + 1, set: { t: st.t + 1, c0: [55, 0, st.c0[2]] }, del: [] }); }""")
        page.wait_for_function("() => document.querySelector('#top .nrtw-chart-heat').data[0].z.length === 2",
                               timeout=5000)  # drawn on the next frame (charts at most every 0.5 s)
        grown = page.evaluate("() => { const d = document.querySelector('#top .nrtw-chart-heat').data[0];"
                              " return [d.z.length, d.z[1][0], document.querySelector('#top .nrtw-chart-area')"
                              ".data[0].y.length]; }")
        assert grown == [2, 55, 2]
        execs = page.evaluate("() => { const d = document.querySelector('#top .nrtw-chart-exec').data;"
                              " return [d.length, d[0].y.length, d[0].y[1], d[1].yaxis]; }")
        assert execs == [12, 2, 0, "y2"]  # per process: executions/s, p50, p99, error markers
        memory = page.evaluate("() => { const d = document.querySelector('#top .nrtw-chart-mem').data[0];"
                               " return [d.type, d.y.length, Math.max(...d.y), d.text[0]]; }")
        assert memory[:2] == ["bar", 32] and 0 < memory[2] <= 100 and " of 16.0 GiB" in memory[3], memory
        # Hover shows the core, the time and the value.
        box = page.locator("#top .nrtw-chart-heat .nsewdrag").first.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + 3)
        page.wait_for_selector("#top .nrtw-chart-heat .hovertext", timeout=5000)
        assert "nc" in page.locator("#top .nrtw-chart-heat .hovertext").first.text_content()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "widgets-charts.png"), full_page=True)
    finally:
        page.close()


# JupyterLab 4 at 1366 x 768, file browser closed: the output area is about 1190 px wide, and under the menu,
# tab bar, notebook toolbar, status bar and the cell's own input (`nrt_lab.show()`) about 610 px remain.
DASHBOARD_BOX = {"width": 1190, "height": 610}


def test_dashboard_fits_one_screen_with_8_owners(browser: Any, machine: Machine) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from test_widgets import _kill, _start

    from nrt_lab.widgets import Dashboard

    started: list[Any] = []
    board = None
    try:
        _start(machine.root, [{"NEURON_RT_NUM_CORES": "4", "NEURON_PROCESS_TAG": f"job{i}"} for i in range(8)],
               started)
        board = Dashboard(autostart=False)
        parts = [("status", board.driver_status), ("top", board.top_view), ("coremap", board.core_map)]
        page = _page(browser, "light", 1366)
        try:
            page.evaluate(f"""() => {{ const out = document.getElementById('out');
              out.style.width = '{DASHBOARD_BOX["width"]}px';
              out.innerHTML = '<div id="slot-status"></div><div id="row" style="display:flex;flex-flow:row wrap;'
                + 'align-items:flex-start"><div id="slot-top" style="flex:3 1 560px;min-width:0"></div>'
                + '<div id="slot-coremap" style="flex:2 1 360px;min-width:0"></div></div>'; }}""")
            page.evaluate(_LOAD_LIBRARY, [PlotlyLibrary._esm, plotly_source()])
            for name, widget in parts:
                page.evaluate(_RENDER.replace('document.getElementById("out")', f'document.getElementById("slot-{name}")'),
                              [widget._esm, _traits(widget), name])
            page.wait_for_selector("#top .nrtw-chart-heat .main-svg")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-1366x768.png"),
                            clip={"x": 0, "y": 0, "width": 1366, "height": 768})
            height = page.evaluate("() => document.getElementById('out').getBoundingClientRect().height")
            legend_rows = page.locator("#coremap table tr").count()
            assert legend_rows == 9  # header + 8 owners
            assert page.locator(".nrtw-grid").count() == 1  # one core grid
            assert height <= DASHBOARD_BOX["height"], f"the dashboard is {height:.0f} px tall"
            print(f"dashboard height {height:.0f} px of {DASHBOARD_BOX['height']}")
        finally:
            page.close()
    finally:
        if board is not None:
            board.close()
        _kill(started)


def test_topology_view_shows_utilization_and_details(browser: Any,
                                                     scene: list[tuple[str, str, dict[str, Any]]]) -> None:
    (_, esm, traits), = [item for item in scene if item[0] == "coremap"]
    traits = json.loads(json.dumps(traits))
    traits["view"] = "topology"
    traits["state"]["u"] = [(core * 7) % 101 for core in range(32)]
    page = _page(browser, "dark", 1000)
    try:
        page.evaluate(_RENDER, [esm, traits, "topo"])
        cores = page.locator("#topo .nrtw-topo-core")
        assert cores.count() == 32
        info = page.evaluate("""() => { const r = document.querySelectorAll('#topo .nrtw-topo-core');
          return { fill: r[12].getAttribute('fill'), free: r[0].getAttribute('fill'), title: r[12].textContent,
                   device: document.querySelector('#topo svg g rect title').textContent,
                   link: document.querySelector('#topo svg line title').textContent }; }""")
        assert info["fill"] == "#37743b" and "utilization: 84 %" in info["title"]  # the heat scale at 84 %
        assert info["free"] == "var(--nrtw-free-bg)"  # 0 %: the theme's neutral cell
        assert info["device"].startswith("nd0: NeuronCores nc0-nc1, 32.0 GiB device memory; connected to nd")
        assert info["link"].startswith("link nd")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "topology-dark.png"), full_page=True)
    finally:
        page.close()
