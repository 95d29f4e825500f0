"""Benchmark: the widgets in a real browser (Debian chromium, Playwright): page cost, time to first chart, update rate.

Machine: trn2.48xlarge at LNC 1 (128 NeuronCores) with 4 owner processes. The widgets' own ES modules and CSS run
in a page with JupyterLab's Light theme variables, fed the state the real Python widgets hold (as a front end
gets it), through a stand-in for the anywidget model; no Jupyter server, so what is measured is the widgets'
code, not JupyterLab's. It prints

* bytes a page receives to open a Dashboard (plotly.js library + the three widgets' states), budget 6 MB;
* time from an empty page to the first chart drawn (library evaluated, widgets rendered), budget 3 s;
* with 4 TopViews open (128 cores each), every view receiving a delta that changes all 128 cores every
  100 ms (the worst case of a 10 Hz widget): updates applied and drawn per second per view (goal ≥ 10), frame
  times, and how often the charts redraw (they batch rows: plotly redraws a whole figure per call);
* how many times plotly.js was evaluated (goal: once).

Not a test. Usage: .venv/bin/python benchmarks/widget_browser.py [--seconds 5] [--owners 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nrt_lab.driver import open_machine
from nrt_lab.widgets import Dashboard, TopView
from nrt_lab.widgets._assets import CSS
from nrt_lab.widgets._plotly import PlotlyLibrary, plotly_source

CHROMIUM = "/usr/bin/chromium"
THEME = Path(sys.prefix) / "share/jupyter/lab/themes/@jupyterlab/theme-light-extension/index.css"
_OWNER = ("import nrt_lab, sys; nrt_lab.init(); print('ok', flush=True); sys.stdin.read()")

_RENDER = """
async ([esm, traits, id]) => {
  const handlers = {};
  const model = { get: (k) => traits[k], set: (k, v) => { traits[k] = v; for (const f of handlers[`change:${k}`] || []) f(); },
    save_changes: () => {}, send: () => {}, off: () => {}, on: (e, f) => { (handlers[e] = handlers[e] || []).push(f); } };
  const url = URL.createObjectURL(new Blob([esm], { type: "text/javascript" }));
  const widget = (await import(url)).default();
  const el = document.createElement("div"); el.id = id; document.getElementById("out").append(el);
  widget.initialize({ model }); widget.render({ model, el });
  (globalThis.__models = globalThis.__models || {})[id] = model;
}
"""
_LIBRARY = """
async ([esm, source]) => {
  const url = URL.createObjectURL(new Blob([esm], { type: "text/javascript" }));
  (await import(url)).default.initialize({ model: { get: (k) => (k === "source" ? source : undefined), on: () => {} } });
}
"""
# Every view gets a delta changing all its cores every 100 ms; frames are timed with requestAnimationFrame.
_STORM = """
async ([ids, seconds]) => {
  const frames = []; let last = performance.now(), running = true;
  const tick = (t) => { frames.push(t - last); last = t; if (running) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  const applied = Object.fromEntries(ids.map((id) => [id, 0]));
  const draws0 = globalThis.__nrtLabChartDraws || 0;
  const started = performance.now();
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      for (const id of ids) {
        const m = globalThis.__models[id], st = m.get("state"), set = { t: (st.t || 0) + applied[id] + 1 };
        for (let i = 0; i < st.inst.total; i++) set[`c${i}`] = [Math.round(Math.random() * 1000) / 10, 0.1, st[`c${i}`][2]];
        const t0 = performance.now();
        m.set("delta", { seq: (m.get("delta").seq || st.seq) + 1, set, del: [] });
        applied[id]++;
      }
      if (performance.now() - started > seconds * 1000) { clearInterval(timer); resolve(); }
    }, 100);
  });
  running = false;
  const elapsed = (performance.now() - started) / 1000;
  frames.sort((a, b) => a - b);
  return { rates: ids.map((id) => applied[id] / elapsed), chartDraws: ((globalThis.__nrtLabChartDraws || 0) - draws0) / elapsed / ids.length, p50: frames[Math.floor(frames.length / 2)],
           p95: frames[Math.floor(frames.length * 0.95)], max: frames[frames.length - 1], frames: frames.length };
}
"""


def _traits(widget: Any) -> dict[str, Any]:
    return json.loads(json.dumps({k: v for k, v in widget.get_state().items() if not k.startswith("_")}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the update storm (default 5)")
    parser.add_argument("--owners", type=int, default=4, help="owner processes (default 4)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="nrt_lab_bench_")) / "state"
    open_machine(root).create("trn2.48xlarge", 1)
    procs = []
    try:
        for index in range(args.owners):
            env = {k: v for k, v in os.environ.items() if not k.startswith(("NEURON", "NRT_LAB"))}
            env.update(NRT_LAB_ROOT=str(root), NEURON_RT_NUM_CORES="16", NEURON_PROCESS_TAG=f"job{index}")
            procs.append(subprocess.Popen([sys.executable, "-c", _OWNER], env=env, text=True,
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE))
        for proc in procs:
            assert proc.stdout is not None
            proc.stdout.readline()
        board = Dashboard(root=root, autostart=False)
        board.refresh()
        parts = [("status", board.driver_status), ("coremap", board.core_map), ("top", board.top_view)]
        source = plotly_source()
        states = {name: json.dumps(_traits(w)) for name, w in parts}
        page_bytes = len(source) + sum(len(s) for s in states.values())
        extra = [TopView(root=root, autostart=False) for _ in range(3)]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_content('<!DOCTYPE html><html><body data-jp-theme-light="true"><div id="out"></div></body></html>')
            if THEME.exists():
                page.add_style_tag(content=THEME.read_text(encoding="utf-8"))
            page.add_style_tag(content=CSS)
            t0 = time.perf_counter()
            page.evaluate(_LIBRARY, [PlotlyLibrary._esm, source])
            for name, widget in parts:
                page.evaluate(_RENDER, [widget._esm, json.loads(states[name]), name])
            page.wait_for_selector("#top .nrtw-chart-heat .main-svg")
            first_chart = time.perf_counter() - t0
            for index, widget in enumerate(extra):
                page.evaluate(_RENDER, [widget._esm, _traits(widget), f"top{index + 2}"])
            page.wait_for_selector("#top4 .nrtw-chart-heat .main-svg")
            loads = page.evaluate("() => globalThis.__nrtLabPlotlyLoads")
            storm = page.evaluate(_STORM, [["top", "top2", "top3", "top4"], args.seconds])
            browser.close()
        for widget in extra:
            widget.close()
        board.close()
        print(f"machine: trn2.48xlarge, LNC 1, 128 NeuronCores, {args.owners} owners; chromium headless, this machine")
        print(f"opening a Dashboard: {page_bytes / 1e6:.2f} MB to the page (plotly.js {len(source) / 1e6:.2f} MB, "
              f"widget states {(page_bytes - len(source)) / 1e3:.0f} kB; budget 6 MB)")
        print(f"time to first chart: {first_chart:.2f} s (budget 3 s); plotly.js evaluated {loads} time(s) for "
              "4 chart widgets (goal 1)")
        rates = ", ".join(f"{r:.1f}" for r in storm["rates"])
        print(f"4 TopViews, a 128-core delta each every 100 ms for {args.seconds:g} s: updates/s per view {rates} "
              f"(goal >= 10); frame time p50 {storm['p50']:.1f} ms, p95 {storm['p95']:.1f} ms, "
              f"max {storm['max']:.0f} ms over {storm['frames']} frames; charts redrawn {storm['chartDraws']:.1f}/s "
              "per view (rows appended in batches, chart work capped at 30 % of the main thread)")
        return 0
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=15)


if __name__ == "__main__":
    raise SystemExit(main())
