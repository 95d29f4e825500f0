// History ring: one row per update, [total TFLOPS, util of core 0, util of core 1, ...] (same rule as Python).
function derive(st, reset) {
  const inst = st.inst;
  if (!inst) return;
  if (reset || !Array.isArray(st.hist)) st.hist = [];
  const n = inst.total, row = new Array(n + 1);
  let flops = 0;
  for (let i = 0; i < n; i++) {
    const v = st[`c${i}`];
    row[i + 1] = v ? v[0] : 0;
    flops += v ? v[1] : 0;
  }
  row[0] = flops;
  st.hist.push(row);
  const cap = st.cap || 60;
  while (st.hist.length > cap) st.hist.shift();
}

const OUTCOMES = ["completed", "w/ error", "num. error", "timed out", "bad input", "failed to queue"];
const ERRORS = ["generic", "numerical", "transient", "model", "runtime", "hardware"];
const HOST = ["App. Memory", "Constants", "DMA Buffers", "Tensors"];
const DEVICE = ["Constants", "Model Code", "Model Scratchpad", "Runtime Memory", "Tensors"];

const CHART_MS = 500, CHART_SHARE = 0.3;

class TopView {
  constructor(model, el, store) {
    this.model = model; this.store = store; this.cells = {}; this.layout = null; this.selected = null;
    this.head = h("div", { class: "nrtw-bar" });
    this.tabs = h("div", { class: "nrtw-tabs" });
    this.grid = h("div", { class: "nrtw-grid" });
    this.spark = h("div", { class: "nrtw-bar" });
    this.tables = h("div");
    this.el = el;
    this.charts = h("div", { class: "nrtw-charts" });
    this.areaDiv = h("div", { class: "nrtw-chart nrtw-chart-area" });
    this.heatDiv = h("div", { class: "nrtw-chart nrtw-chart-heat" });
    this.csvBtn = h("button", { title: "download the history shown in the charts as CSV", onclick: () => this.downloadCsv() }, "CSV");
    this.execDiv = h("div", { class: "nrtw-chart nrtw-chart-exec" });
    this.memDiv = h("div", { class: "nrtw-chart nrtw-chart-mem" });
    this.charts.append(this.areaDiv, this.heatDiv, this.execDiv, this.memDiv);
    this.execRing = []; this.execPrev = {}; this.execAdded = 0; this.execT = null;
    el.append(this.head, this.tabs, this.grid, this.charts, this.spark, this.tables);
    this.P = null; this.chartKey = null;
    if (model.get("charts") !== false) {
      this.areaDiv.textContent = "Loading plotly.js …";
      plotlyReady().then((P) => {
        this.P = P; this.areaDiv.textContent = ""; this.drawCharts(null);
        // A chart drawn before its output area was laid out (JupyterLab attaches views after render) takes
        // plotly's default 700 px and overlaps its neighbour: resize every chart to its grid cell whenever the
        // cell changes size (first layout, window or sidebar resize, a narrower notebook).
        if (typeof ResizeObserver !== "undefined") {
          this.resizer = new ResizeObserver(() => {
            for (const d of [this.areaDiv, this.heatDiv, this.execDiv, this.memDiv]) if (d.data) P.Plots.resize(d);
          });
          for (const d of [this.areaDiv, this.heatDiv, this.execDiv, this.memDiv]) this.resizer.observe(d);
        }
      });
    } else {
      this.charts.style.display = "none";
    }
    this.title = h("span", { class: "nrtw-title" });
    this.info = h("span", { class: "nrtw-muted" });
    this.modeBtn = h("button", { title: "toggle % and TFLOPS (neuron-top key F)", onclick: () => {
      this.model.set("mode", this.model.get("mode") === "tflops" ? "percent" : "tflops"); this.model.save_changes();
    } });
    this.head.append(this.title, this.info, this.modeBtn, this.csvBtn, controls(model));
    for (const name of ["mode", "tab", "compact", "size"]) model.on(`change:${name}`, () => this.update(null));
  }
  procs() { return entries(this.store.state, "p"); }
  shownPids() {
    const tab = this.model.get("tab") || "all";
    return new Set(this.procs().filter((p) => tab === "all" || String(p.pid) === tab).map((p) => p.pid));
  }
  update(changed) {
    const st = this.store.state;
    const inst = st.inst || { devices: [], total: 0 };
    const mode = this.model.get("mode") || "percent";
    const compactView = !!this.model.get("compact");
    this.el.classList.toggle("nrtw-compact", compactView);
    this.title.textContent = compactView ? "Utilization" : `NeuronCore ${inst.version || ""} Utilization`;
    this.info.textContent = `${inst.name || "?"} · lnc ${inst.lnc} · ${inst.total} cores · ` +
      `${this.procs().length} runtime(s) · period ${st.per ?? "-"} s`;
    this.modeBtn.textContent = mode === "tflops" ? "Show %" : "Show TFLOPS";
    if (st.err) { this.grid.replaceChildren(h("div", { class: "nrtw-error" }, st.err)); return; }
    const layout = JSON.stringify(inst.devices);
    if (changed === null || changed.has("inst") || layout !== this.layout) {
      this.layout = layout;
      this.buildGrid(inst);
      changed = null;
    }
    const procChanged = changed === null || [...changed].some((k) => !/^c\d+$/.test(k) && k !== "t" && k !== "per");
    this.tabs.style.display = this.model.get("compact") ? "none" : "";  // the table below keys the owners
    if (procChanged) this.drawTabs();
    const shown = this.shownPids();
    for (let i = 0; i < inst.total; i++) {
      if (changed === null || changed.has(`c${i}`) || procChanged) this.drawCell(i, st, mode, shown);
    }
    const compact = !!this.model.get("compact");
    this.spark.style.display = compact ? "none" : "";
    if (!compact) this.drawSpark(st, inst, mode, shown);
    this.recordExec(st);
    this.execDiv.style.display = compactView ? "none" : "";  // the Dashboard: its executions table says it
    this.memDiv.style.display = compactView ? "none" : "";
    this.drawCharts(changed);
    // Tables only when something they show changed (not on a delta of core values alone).
    if (changed === null || procChanged || [...changed].some((k) => /^(x|l|m|md|v)\d+$|^sys$/.test(k))) this.drawTables(st, shown);
  }
  buildGrid(inst) {
    this.cells = {};
    this.grid.replaceChildren(...inst.devices.map(([first, count], d) =>
      h("div", { class: "nrtw-row" }, h("span", { class: "nrtw-dev" }, `nd${d}`),
        Array.from({ length: count }, (_, j) => {
          const core = first + j;
          const el = h("div", { class: "nrtw-cell", onclick: () => {
            this.selected = this.selected === core ? null : core; this.update(null);
          } });
          this.cells[core] = el;
          return el;
        }))));
  }
  drawCell(core, st, mode, shown) {
    const el = this.cells[core];
    if (!el) return;
    const [u, f, pid] = st[`c${core}`] || [0, 0, 0];
    const p = st[`p${pid}`];
    const value = !pid ? "·" : mode === "tflops" ? fmtNum(f, 3) : `${Math.round(u)}%`;
    el.replaceChildren(h("span", {}, String(core)), h("span", {}, value));
    const idle = !(u >= 0.5);
    const bg = idle ? "" : heatColor(u);
    el.style.background = bg;
    el.style.color = idle ? "" : textColor(bg);
    el.style.border = p ? `3px solid ${p.color}` : "";  // owner colour as frame, utilization as fill
    el.className = "nrtw-cell" + (idle ? " free" : "") + (pid && !shown.has(pid) && this.model.get("tab") !== "all" ? " dim" : "") +
      (!pid && this.model.get("tab") !== "all" ? " dim" : "") + (this.selected === core ? " sel" : "");
    el.title = `nc${core}: ${u.toFixed(1)} % · ${fmtNum(f, 4)} TFLOPS` + (p ? ` · pid ${pid} (${p.tag})` : " · free");
  }
  drawTabs() {
    const tab = this.model.get("tab") || "all";
    const pick = (t) => { this.model.set("tab", t); this.model.save_changes(); };
    this.tabs.replaceChildren(
      h("button", { class: tab === "all" ? "on" : "", onclick: () => pick("all") }, "all"),
      ...this.procs().map((p) => h("button", { class: tab === String(p.pid) ? "on" : "", onclick: () => pick(String(p.pid)),
        title: p.cmd }, h("span", { class: "nrtw-swatch", style: `background:${p.color}` }), ` ${p.tag} (${p.pid})`)));
  }
  // ---- plotly charts: utilization per process (stacked area; machine TFLOPS in TFLOPS mode) and per core
  // (heatmap cores x time). A full draw (Plotly.react) only when the layout, the mode or the set of processes
  // changes; every other update appends one column with Plotly.extendTraces, bounded by the history size.
  chartRows() {
    const st = this.store.state, hist = st.hist || [], per = Number(st.per) || 1, t = Number(st.t) || 0;
    return hist.map((row, i) => [new Date((t - (hist.length - 1 - i) * per) * 1000), row]);
  }
  chartProcs() {
    const st = this.store.state, total = (st.inst || {}).total || 0, shown = this.shownPids();
    const cores = {};
    for (let i = 0; i < total; i++) {
      const v = st[`c${i}`];
      if (v && v[2] && shown.has(v[2])) (cores[v[2]] = cores[v[2]] || []).push(i);
    }
    return this.procs().filter((p) => cores[p.pid]).map((p) => ({ p, cores: cores[p.pid] }));
  }
  chartStyle() {
    const fg = getComputedStyle(this.el).color || "#222";
    const big = this.model.get("size") === "presentation";
    const grid = "rgba(128,128,128,0.3)";
    return { paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", font: { color: fg, size: big ? 15 : 11 },
      margin: { l: 56, r: 12, t: 30, b: 46 }, height: big ? 320 : this.model.get("compact") ? 200 : 250,
      showlegend: !this.model.get("compact"),  // compact: the owner colours are keyed by the table below
      xaxis: { type: "date", title: { text: "time" }, tickformat: "%H:%M:%S", gridcolor: grid, zeroline: false },
      legend: { orientation: "h", y: -0.42 } };
  }
  heatScale() {
    // The grid's scale: idle (< 0.5 %) in the theme's neutral cell colour (no white block in Dark), then
    // heatColor's light-to-dark green. Read at each full draw: a theme change redraws in full.
    const free = getComputedStyle(this.el).getPropertyValue("--nrtw-free-bg").trim() || "#eeeeee";
    return [[0, free], [0.004, free], [0.005, heatColor(0.5)], [1, heatColor(100)]];
  }
  drawCharts(changed) {
    if (!this.P || this.model.get("charts") === false) return;
    const P = this.P, st = this.store.state, inst = st.inst || { total: 0 };
    if (st.err || !inst.total) return;
    const mode = this.model.get("mode") || "percent", cap = st.cap || 60;
    const procs = this.chartProcs();
    const key = JSON.stringify([mode, inst.total, this.model.get("tab") || "all", procs.map((x) => x.p.pid),
      this.model.get("size"), !!this.model.get("compact")]);
    const rows = this.chartRows();
    const share = (row, cores) => cores.reduce((a, c) => a + row[c + 1], 0) / inst.total;
    const config = { displaylogo: false, responsive: true,
      toImageButtonOptions: { format: "png", filename: `nrt_lab-${inst.name}-utilization` } };
    if (changed === null || key !== this.chartKey || !this.areaDiv.data) {
      this.chartKey = key;
      this.chartSeq = st.seq || 0;
      const base = this.chartStyle();
      const area = mode === "tflops"
        ? [{ type: "scatter", mode: "lines", name: "machine TFLOPS", x: rows.map((r) => r[0]), y: rows.map((r) => r[1][0]),
             fill: "tozeroy", line: { color: "#2e7d32" }, hovertemplate: "%{x|%H:%M:%S}<br>%{y:.4g} TFLOPS<extra></extra>" }]
        : procs.map(({ p, cores }) => ({ type: "scatter", mode: "lines", stackgroup: "u", name: `${p.tag} (${p.pid})`,
             x: rows.map((r) => r[0]), y: rows.map((r) => share(r[1], cores)), line: { color: p.color, width: 1 },
             fillcolor: p.color, hovertemplate: `${p.tag} (pid ${p.pid}, ${p.cores})<br>%{x|%H:%M:%S}<br>%{y:.1f} % of the machine<extra></extra>` }));
      P.react(this.areaDiv, area, Object.assign({}, base, {
        title: { text: mode === "tflops" ? "Machine TFLOPS over time" : "Utilization per process (stacked, % of all cores)", font: { size: 12 } },
        yaxis: { title: { text: mode === "tflops" ? "TFLOPS" : "% of machine" }, rangemode: "tozero",
                 range: mode === "tflops" ? undefined : [0, 100], gridcolor: base.xaxis.gridcolor } }), config);
      P.react(this.heatDiv, [{ type: "heatmap", transpose: true, x: rows.map((r) => r[0]), y: Array.from({ length: inst.total }, (_, i) => `nc${i}`),
        z: rows.map((r) => r[1].slice(1)), zmin: 0, zmax: 100, colorscale: this.heatScale(),
        colorbar: { title: { text: "%" }, thickness: 10 },
        hovertemplate: "%{y}<br>%{x|%H:%M:%S}<br>%{z:.1f} %<extra></extra>" }],
        Object.assign({}, base, { title: { text: "Utilization per NeuronCore (%)", font: { size: 12 } }, showlegend: false,
          yaxis: { title: { text: "NeuronCore" }, type: "category", autorange: "reversed", gridcolor: base.xaxis.gridcolor } }), config);
      P.react(this.execDiv, this.execTraces(procs), Object.assign({}, base, {
        title: { text: "Executions/s; latency ms (p50 dotted, p99 dashed)", font: { size: 12 } },
        margin: Object.assign({}, base.margin, { r: 50 }),
        yaxis: { title: { text: "executions/s" }, rangemode: "tozero", gridcolor: base.xaxis.gridcolor },
        yaxis2: { title: { text: "latency (ms)" }, overlaying: "y", side: "right", rangemode: "tozero", showgrid: false } }), config);
      this.execAdded = 0;
      this.drawMemory(P, base, config, true);
      return;
    }
    // Charts redraw at most every CHART_MS (plotly redraws a whole heatmap per call): rows that arrive in
    // between are appended together at the next draw, so the grid keeps up with a 10 Hz stream.
    // All views of the page share one budget: chart drawing takes at most CHART_SHARE of the main thread, so
    // many 128-core widgets still apply every delta and redraw their grids at 10 Hz.
    const gate = (globalThis.__nrtLabChartGate = globalThis.__nrtLabChartGate || { next: 0 });
    const now = performance.now(), wait = Math.max((this.chartAt || 0) + CHART_MS, gate.next) - now;
    if (wait > 0) {
      if (!this.chartTimer) this.chartTimer = setTimeout(() => { this.chartTimer = null; this.drawCharts(new Set(["t"])); }, wait);
      return;
    }
    this.chartAt = now;
    const gateDone = () => { const end = performance.now(); gate.next = end + (end - now) * (1 / CHART_SHARE - 1); };
    // Every history row added since the last draw (several when frames were coalesced), in one call per chart.
    const fresh = Math.min(rows.length, Math.max(0, (st.seq || 0) - (this.chartSeq ?? (st.seq || 0))));
    this.chartSeq = st.seq || 0;
    if (!fresh) return;
    const added = rows.slice(rows.length - fresh);
    const xs = added.map((r) => r[0]);
    if (mode === "tflops") P.extendTraces(this.areaDiv, { x: [xs], y: [added.map((r) => r[1][0])] }, [0], cap);
    else if (procs.length) P.extendTraces(this.areaDiv, { x: procs.map(() => xs),
      y: procs.map(({ cores }) => added.map((r) => share(r[1], cores))) }, procs.map((_, i) => i), cap);
    P.extendTraces(this.heatDiv, { x: [xs], z: [added.map((r) => r[1].slice(1))] }, [0], cap);
    const newExec = this.execRing.slice(this.execRing.length - Math.min(this.execRing.length, this.execAdded));
    this.execAdded = 0;
    if (newExec.length && procs.length) {
      const cols = this.execColumns(newExec, procs), ex = newExec.map((e) => e.x);
      P.extendTraces(this.execDiv, { x: cols.map(() => ex), y: cols }, cols.map((_, i) => i), cap);
    }
    this.drawMemory(P, this.chartStyle(), config, false);
    gateDone();
    globalThis.__nrtLabChartDraws = (globalThis.__nrtLabChartDraws || 0) + 1;
  }
  // Executions per second, latency percentiles and new errors per process, one entry per update this view saw
  // (rates from the cumulative counters; a new view starts its own record).
  recordExec(st) {
    const t = Number(st.t);
    if (!t || t === this.execT) return;
    this.execT = t;
    const entry = { x: new Date(t * 1000), p: {} };
    for (const p of this.procs()) {
      const x = st[`x${p.pid}`] || [], l = (st[`l${p.pid}`] || {}).t;
      const done = x[0] || 0, errs = x.slice(6, 12).reduce((a, b) => a + (b || 0), 0);
      const prev = this.execPrev[p.pid];
      entry.p[p.pid] = {
        rate: prev && t > prev.t ? Math.max(0, (done - prev.c) / (t - prev.t)) : null,
        p50: l ? l[3] : null, p99: l ? l[5] : null, err: prev && errs > prev.e ? errs - prev.e : null,
      };
      this.execPrev[p.pid] = { c: done, e: errs, t };
    }
    this.execRing.push(entry);
    this.execAdded++;
    const cap = st.cap || 60;
    while (this.execRing.length > cap) this.execRing.shift();
  }
  // Device memory per NeuronCore as % of its share of the HBM (device memory / cores of the device).
  memoryBars() {
    const st = this.store.state, inst = st.inst || { devices: [] }, y = [], text = [], color = [], x = [];
    inst.devices.forEach(([first, count], d) => {
      const capacity = (inst.hbm || [])[d] / count;
      for (let core = first; core < first + count; core++) {
        const [, , pid, used] = st[`c${core}`] || [0, 0, 0, 0];
        const p = st[`p${pid}`];
        x.push(`nc${core}`);
        y.push(capacity ? Math.round(((used || 0) / capacity) * 1000) / 10 : 0);
        text.push(`${fmtBytes(used || 0)} of ${fmtBytes(capacity)}` + (p ? ` · ${p.tag} (${pid})` : " · free"));
        color.push(p ? p.color : "#9e9e9e");
      }
    });
    return { x, y, text, color, key: JSON.stringify([y, color]) };
  }
  drawMemory(P, base, config, full) {
    const bars = this.memoryBars();
    if (!full && bars.key === this.memKey) return;
    this.memKey = bars.key;
    if (!full) { P.restyle(this.memDiv, { y: [bars.y], text: [bars.text], "marker.color": [bars.color] }, [0]); return; }
    P.react(this.memDiv, [{ type: "bar", x: bars.x, y: bars.y, text: bars.text, marker: { color: bars.color },
      textposition: "none", hovertemplate: "%{x}: %{y:.1f} % · %{text}<extra></extra>" }],
      Object.assign({}, base, { title: { text: "Device memory used per NeuronCore (% of its HBM share)", font: { size: 12 } },
        showlegend: false, xaxis: { type: "category", title: { text: "NeuronCore" }, gridcolor: base.xaxis.gridcolor },
        yaxis: { title: { text: "% used" }, range: [0, 100], gridcolor: base.xaxis.gridcolor } }), config);
  }
  execColumns(entries, procs) {
    const cols = [];
    for (const { p } of procs) {
      const v = (e, k) => (e.p[p.pid] ? e.p[p.pid][k] : null);
      cols.push(entries.map((e) => v(e, "rate")), entries.map((e) => v(e, "p50")), entries.map((e) => v(e, "p99")),
        entries.map((e) => (v(e, "err") ? 0 : null)));
    }
    return cols;
  }
  execTraces(procs) {
    const xs = this.execRing.map((e) => e.x), cols = this.execColumns(this.execRing, procs), traces = [];
    procs.forEach(({ p }, i) => {
      const who = `${p.tag} (${p.pid})`;
      traces.push(
        { type: "scatter", mode: "lines", name: who, legendgroup: who, x: xs, y: cols[4 * i], line: { color: p.color },
          hovertemplate: `${who}<br>%{x|%H:%M:%S}<br>%{y:.4g} executions/s<extra></extra>` },
        { type: "scatter", mode: "lines", name: `${who} latency p50`, legendgroup: who, showlegend: false, x: xs, y: cols[4 * i + 1], yaxis: "y2",
          line: { color: p.color, dash: "dot", width: 1 }, hovertemplate: `${who} p50<br>%{y:.4g} ms<extra></extra>` },
        { type: "scatter", mode: "lines", name: `${who} latency p99`, legendgroup: who, showlegend: false, x: xs, y: cols[4 * i + 2], yaxis: "y2",
          line: { color: p.color, dash: "dash", width: 1 }, hovertemplate: `${who} p99<br>%{y:.4g} ms<extra></extra>` },
        { type: "scatter", mode: "markers", name: `${who} errors`, legendgroup: who, showlegend: false, x: xs, y: cols[4 * i + 3],
          marker: { color: "#d32f2f", symbol: "x", size: 9 }, hovertemplate: `${who}: new errors at %{x|%H:%M:%S}<extra></extra>` });
    });
    return traces;
  }
  downloadCsv() {
    const st = this.store.state, total = (st.inst || {}).total || 0;
    const head = ["time", "machine_tflops"].concat(Array.from({ length: total }, (_, i) => `nc${i}_util_pct`));
    const lines = [head.join(",")].concat(this.chartRows().map(([x, row]) => [x.toISOString()].concat(row).join(",")));
    const url = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
    const a = h("a", { href: url, download: `nrt_lab-${(st.inst || {}).name || "machine"}-history.csv` });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
  drawSpark(st, inst, mode, shown) {
    const hist = st.hist || [];
    const W = 260, H = 36;
    let values, label;
    if (this.selected !== null && this.selected < inst.total) {
      values = hist.map((r) => r[this.selected + 1]);
      label = `nc${this.selected} utilization % (last ${hist.length} updates, click the core again to clear)`;
    } else if (mode === "tflops" && (this.model.get("tab") || "all") === "all") {
      values = hist.map((r) => r[0]);
      label = `machine TFLOPS (last ${hist.length} updates)`;
    } else {
      const cores = [];
      for (let i = 0; i < inst.total; i++) { const v = st[`c${i}`]; if (v && v[2] && shown.has(v[2])) cores.push(i); }
      values = hist.map((r) => cores.length ? cores.reduce((a, c) => a + r[c + 1], 0) / cores.length : 0);
      label = `mean utilization % of ${cores.length} owned core(s) (last ${hist.length} updates; click a core for its own)`;
    }
    const max = mode === "tflops" && this.selected === null ? Math.max(1e-12, ...values) : 100;
    const root = svg("svg", { width: W, height: H, class: "nrtw-spark" });
    root.append(svg("rect", { x: 0, y: 0, width: W, height: H, fill: "var(--jp-layout-color2, #f5f5f5)" }));
    if (values.length > 1) {
      const pts = values.map((v, i) => `${(i / (values.length - 1)) * (W - 2) + 1},${H - 1 - (v / max) * (H - 2)}`);
      root.append(svg("polyline", { points: pts.join(" "), fill: "none", stroke: "#2e7d32", "stroke-width": 1.5 }));
    }
    const last = values.length ? values[values.length - 1] : 0;
    this.spark.replaceChildren(root, h("span", { class: "nrtw-muted" }, `${label}: now ${fmtNum(last, 3)}`));
  }
  drawTables(st, shown) {
    const procs = this.procs().filter((p) => shown.has(p.pid));
    if (!procs.length) { this.tables.replaceChildren(h("div", { class: "nrtw-muted" }, "No Neuron runtime is running.")); return; }
    const sum = (arrays, n) => arrays.reduce((acc, a) => acc.map((x, i) => x + ((a || [])[i] || 0)), new Array(n).fill(0));
    const mem = sum(procs.map((p) => st[`m${p.pid}`]), 9);
    const host = mem.slice(0, 4), dev = mem.slice(4, 9);
    const memTable = h("table", {},
      h("tr", {}, h("th", {}, "Host"), h("th", { class: "num" }, "Total"), HOST.map((t) => h("th", { class: "num" }, t))),
      h("tr", {}, h("td", {}, ""), h("td", { class: "num" }, fmtBytes(host.reduce((a, b) => a + b, 0))),
        host.map((v) => h("td", { class: "num" }, fmtBytes(v)))),
      h("tr", {}, h("th", {}, "Device"), h("th", { class: "num" }, "Total"), DEVICE.map((t) => h("th", { class: "num" }, t))),
      h("tr", {}, h("td", {}, ""), h("td", { class: "num" }, fmtBytes(dev.reduce((a, b) => a + b, 0))),
        dev.map((v) => h("td", { class: "num" }, fmtBytes(v)))));
    const lat = (l, i) => (l ? fmtNum(l[i], 3) : "-");
    const exec = h("table", {},
      h("tr", {}, ["", "pid", "tag", "cores", "vCPU usr/sys %"].concat(OUTCOMES, ["errors", "latency p50", "p99", "p100 (ms)", "device p50"])
        .map((t) => h("th", { class: "num" }, t))),
      procs.map((p) => {
        const x = st[`x${p.pid}`] || new Array(12).fill(0);
        const l = st[`l${p.pid}`] || {};
        const v = st[`v${p.pid}`];
        const errs = x.slice(6, 12);
        return h("tr", {},
          h("td", {}, h("span", { class: "nrtw-swatch", style: `background:${p.color}` })),
          h("td", { class: "num" }, String(p.pid)), h("td", {}, p.tag), h("td", {}, p.cores),
          h("td", { class: "num" }, v ? `${fmtNum(v[0], 3)} / ${fmtNum(v[1], 3)}` : "N/A"),
          x.slice(0, 6).map((n) => h("td", { class: "num" }, String(n))),
          h("td", { class: "num", title: ERRORS.map((e, i) => `${e}: ${errs[i]}`).join(", ") }, String(errs.reduce((a, b) => a + b, 0))),
          h("td", { class: "num" }, lat(l.t, 3)), h("td", { class: "num" }, lat(l.t, 5)), h("td", { class: "num" }, lat(l.t, 6)),
          h("td", { class: "num" }, lat(l.d, 3)));
      }));
    const models = [];
    for (const p of procs) for (const m of st[`md${p.pid}`] || []) models.push([p, m]);
    const modelTable = models.length ? h("table", {},
      h("tr", {}, ["pid", "model id", "name", "core", "device memory"].map((t) => h("th", {}, t))),
      models.map(([p, m]) => h("tr", {}, h("td", {}, String(p.pid)), h("td", { class: "num" }, String(m[0])),
        h("td", {}, m[1]), h("td", {}, `nc${m[2]}`), h("td", { class: "num" }, fmtBytes(m[3])))))
      : h("div", { class: "nrtw-muted" }, "No model loaded.");
    const sys = st.sys || [];
    const system = h("div", { class: "nrtw-muted" },
      `System: ${sys[0] ?? "?"} vCPUs, user ${fmtNum(sys[1], 3)} %, system ${fmtNum(sys[2], 3)} %, ` +
      `host memory ${fmtBytes(sys[3])} of ${fmtBytes(sys[4])}`);
    if (this.model.get("compact")) {  // the Dashboard: executions only, memory in TopView itself
      this.tables.replaceChildren(scroller(exec));
      return;
    }
    this.tables.replaceChildren(
      h("div", { class: "nrtw-section" }, "Executions and latency"), scroller(exec),
      h("div", { class: "nrtw-cols" },
        h("div", { class: "nrtw-scroll" }, h("div", { class: "nrtw-section" }, "Memory Usage Summary"), memTable),
        h("div", { class: "nrtw-scroll" }, h("div", { class: "nrtw-section" }, "Memory Usage Details (models)"), modelTable)),
      system);
  }
}

export default makeWidget(derive, TopView);
