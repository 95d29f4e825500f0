// ClusterMap / ClusterDashboard: nodes x devices x NeuronCores of an emulated Ray cluster (cluster_map.py).
// State keys: nodes (layout), n<i> (node header), c<i> (owner id per core), u<i> (utilization % per core),
// o<id> (owner: node, pid, Ray label, colour), pending, hist (derived: [t, mean % of node 0, node 1, ...]).
const CLUSTER_STATE_COLORS = { alive: "nrtw-sev-ok", dead: "nrtw-sev-error", unreachable: "nrtw-sev-warning",
  stopped: "nrtw-sev-calm" };
const CLUSTER_CHART_MS = 500;

function clusterDerive(st, reset) {
  // The browser appends the same history row as Python's _derive from each delta.
  const nodes = st.nodes;
  if (!nodes) { st.hist = []; return; }
  const hist = reset || !Array.isArray(st.hist) ? [] : st.hist;
  const row = [st.t || 0];
  nodes.forEach((_, i) => { const n = st[`n${i}`] || {}; row.push(n.util === undefined ? null : n.util); });
  hist.push(row);
  const cap = st.cap || 120;
  if (hist.length > cap) hist.splice(0, hist.length - cap);
  st.hist = hist;
}

class ClusterMapView {
  constructor(model, el, store) {
    this.model = model; this.store = store; this.el = el; this.hovered = null;
    this.head = h("div", { class: "nrtw-bar" });
    this.body = h("div", { class: "nrtw-cluster" });
    this.detail = h("div", { class: "nrtw-detail" }, "Hover a NeuronCore for details.");
    this.legend = h("div");
    this.pending = h("div");
    this.status = h("div");
    this.chart = h("div", { class: "nrtw-chart nrtw-chart-nodes" });
    this.errors = h("div", { class: "nrtw-error" });
    el.append(this.head, this.status, this.chart, this.body, this.detail, this.legend, this.pending, this.errors);
    this.body.addEventListener("mouseleave", () => { this.hovered = null; this.showDetail(); });
    this.title = h("span", { class: "nrtw-title" }, "Neuron cluster");
    this.info = h("span", { class: "nrtw-muted" });
    this.head.append(this.title, this.info,
      h("button", { onclick: () => model.send({ action: "refresh" }), title: "sample the cluster now" }, "Refresh"),
      controls(model));
    this.P = null; this.chartKey = null;
    if (model.get("dashboard")) {
      this.chart.textContent = "Loading plotly.js …";
      plotlyReady().then((P) => {
        this.P = P; this.chart.textContent = ""; this.drawChart(null);
        if (typeof ResizeObserver !== "undefined") {
          this.resizer = new ResizeObserver(() => { if (this.chart.data) P.Plots.resize(this.chart); });
          this.resizer.observe(this.chart);
        }
      });
    } else {
      this.chart.style.display = "none";
      this.status.style.display = "none";
    }
  }
  owners() { return entries(this.store.state, "o"); }
  coreText(i, core, dev) {
    const st = this.store.state, node = st.nodes[i], info = st[`n${i}`] || {};
    const owner = st[`o${(st[`c${i}`] || [])[core] || 0}`];
    const u = (st[`u${i}`] || [])[core];
    const first = node.devices[dev] ? node.devices[dev][0] : 0;
    let text = `node ${node.name} (${node.inst}, ${info.state}) · device nd${dev} · core ${core - first} = nc${core}`;
    text += `\nutilization: ${u === undefined || u === null ? "-" : `${fmtNum(u)} %`}`;
    if (!owner) return text + "\nfree";
    text += `\nowner: pid ${owner.pid}, tag ${owner.tag}, cores ${owner.cores}`;
    text += `\nRay: ${owner.ray || "not a Ray process"}`;
    if (owner.actor) text += `\nactor id: ${owner.actor}`;
    text += `\ncommand: ${owner.cmd}`;
    return text;
  }
  showDetail() {
    const hv = this.hovered;
    this.detail.textContent = hv === null ? "Hover a NeuronCore for details." : this.coreText(hv[0], hv[1], hv[2]);
  }
  update(changed) {
    const st = this.store.state;
    const nodes = st.nodes;
    if (!nodes) {
      this.info.textContent = "";
      this.body.replaceChildren(h("div", { class: "nrtw-error" }, st.err || "the cluster could not be read"));
      return;
    }
    const alive = nodes.filter((_, i) => (st[`n${i}`] || {}).state === "alive").length;
    const used = nodes.reduce((a, _, i) => a + ((st[`n${i}`] || {}).used || 0), 0);
    const total = nodes.reduce((a, n) => a + n.total, 0);
    this.info.textContent = `${st.addr || ""} · ${nodes.length} nodes (${alive} alive) · ` +
      `${used} of ${total} NeuronCores used`;
    this.body.replaceChildren(...nodes.map((node, i) => this.nodeCard(node, i)));
    this.showDetail();
    this.legend.replaceChildren(scroller(this.legendTable()));
    this.pending.replaceChildren(this.pendingList());
    this.errors.textContent = st.err || "";
    if (this.model.get("dashboard")) {
      this.status.replaceChildren(scroller(this.statusTable()));
      this.drawChart(changed);
    }
  }
  nodeCard(node, i) {
    const st = this.store.state, info = st[`n${i}`] || {};
    const owners = st[`c${i}`] || [], util = st[`u${i}`] || [];
    const alive = info.state === "alive";
    const head = h("div", { class: "nrtw-bar nrtw-node-head" },
      h("span", { class: "nrtw-title" }, node.name),
      h("span", {}, node.inst + (node.lnc !== 1 ? ` (lnc ${node.lnc})` : "")),
      h("span", { class: CLUSTER_STATE_COLORS[info.state] || "nrtw-sev-calm", title: info.reason || "" }, info.state),
      h("span", { class: "nrtw-muted" }, `${alive ? info.used : "-"}/${node.total} cores used` +
        (info.util === null || info.util === undefined ? "" : ` · ${fmtNum(info.util)} %`)));
    const rows = node.devices.map(([first, count], dev) =>
      h("div", { class: "nrtw-row" }, h("span", { class: "nrtw-dev" }, `nd${dev}`),
        Array.from({ length: count }, (_, j) => {
          const core = first + j, owner = st[`o${owners[core] || 0}`], u = util[core];
          const busy = alive && u !== undefined && u !== null && u >= 0.5;
          const fill = busy ? heatColor(u) : null;
          const style = (fill ? `background:${fill};color:${textColor(fill)};` : "") +
            (owner ? `box-shadow: inset 0 0 0 3px ${owner.color};` : "");
          return h("div", {
            class: "nrtw-cell" + (fill ? "" : " free") + (alive ? "" : " dim"),
            style, title: this.coreText(i, core, dev),
            onmouseenter: () => { this.hovered = [i, core, dev]; this.showDetail(); },
          }, h("span", {}, String(core)), h("span", {}, alive && u !== undefined ? `${u}%` : "·"));
        })));
    const reason = info.reason ? h("div", { class: alive ? "nrtw-muted" : "nrtw-error" }, info.reason) : null;
    return h("div", { class: "nrtw-node" + (alive ? "" : " down") }, head,
      h("div", { class: "nrtw-grid" }, rows), reason);
  }
  legendTable() {
    const owners = this.owners().sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : a.pid - b.pid));
    if (!owners.length) return h("div", { class: "nrtw-muted" }, "No process holds a NeuronCore.");
    return h("table", {},
      h("tr", {}, ["", "node", "pid", "Ray job / actor or task", "cores", "tag"].map((t) => h("th", {}, t))),
      owners.map((o) => h("tr", {},
        h("td", {}, h("span", { class: "nrtw-swatch", style: `background:${o.color}` })),
        h("td", {}, o.node), h("td", { class: "num" }, String(o.pid)),
        h("td", { title: o.actor ? `actor id ${o.actor}` : "" }, o.ray || "not a Ray process"),
        h("td", {}, o.cores), h("td", { title: o.cmd }, short(o.tag, 24)))));
  }
  pendingList() {
    const pending = this.store.state.pending || [];
    if (!pending.length) return h("div", { class: "nrtw-muted" }, "Nothing waits for a node.");
    return h("div", {}, h("div", { class: "nrtw-section" }, `Pending: ${pending.length} waiting for a node`),
      h("ul", { class: "nrtw-pending" }, pending.map(([kind, name, job, demand, reason]) =>
        h("li", {}, h("b", {}, `${kind} ${name}`), job ? ` (job ${job})` : "", ` asks ${demand}: `,
          h("span", { class: "nrtw-sev-warning" }, reason)))));
  }
  statusTable() {
    const st = this.store.state;
    return h("table", {},
      h("tr", {}, ["node", "instance", "state", "cores used", "utilization", "device memory", "reason"]
        .map((t) => h("th", {}, t))),
      st.nodes.map((node, i) => {
        const info = st[`n${i}`] || {};
        return h("tr", {},
          h("td", {}, node.name), h("td", {}, node.inst),
          h("td", { class: CLUSTER_STATE_COLORS[info.state] || "" }, info.state),
          h("td", { class: "num" }, `${info.state === "alive" ? info.used : "-"}/${node.total}`),
          h("td", { class: "num" }, info.util === null || info.util === undefined ? "-" : `${fmtNum(info.util)} %`),
          h("td", { class: "num" }, info.state === "alive" ? `${fmtBytes(info.mem)} of ${fmtBytes(info.memtotal)}` : "-"),
          h("td", { class: "wrap" }, info.reason || ""));
      }));
  }
  // Mean utilization per node over time: a full draw (Plotly.react) when the nodes change, else the new rows are
  // appended with extendTraces (at most every CLUSTER_CHART_MS), bounded by the history size.
  drawChart(changed) {
    if (!this.P) return;
    const P = this.P, st = this.store.state, nodes = st.nodes || [], hist = st.hist || [];
    const key = JSON.stringify([nodes.map((n) => n.name), this.model.get("size")]);
    const xs = (rows) => rows.map((r) => new Date(r[0] * 1000));
    if (changed === null || key !== this.chartKey || !this.chart.data) {
      this.chartKey = key; this.chartLen = hist.length; this.chartT = hist.length ? hist[hist.length - 1][0] : null;
      const fg = getComputedStyle(this.el).color || "#222", grid = "rgba(128,128,128,0.3)";
      const traces = nodes.map((n, i) => ({ type: "scatter", mode: "lines+markers", name: `${n.name} (${n.inst})`,
        x: xs(hist), y: hist.map((r) => r[i + 1]), connectgaps: false, marker: { size: 4 },
        hovertemplate: `${n.name} (${n.inst})<br>%{x|%H:%M:%S}<br>%{y:.1f} % of its NeuronCores<extra></extra>` }));
      P.react(this.chart, traces, { paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
        font: { color: fg, size: this.model.get("size") === "presentation" ? 15 : 11 },
        title: { text: "Utilization per node (mean of its NeuronCores, %)", font: { size: 12 } },
        margin: { l: 56, r: 12, t: 30, b: 46 }, height: 260, showlegend: true, legend: { orientation: "h", y: -0.45 },
        xaxis: { type: "date", title: { text: "time" }, tickformat: "%H:%M:%S", gridcolor: grid, zeroline: false },
        yaxis: { title: { text: "utilization (%)" }, range: [0, 100], gridcolor: grid } },
        { displaylogo: false, responsive: true, toImageButtonOptions: { format: "png", filename: "nrt_lab-cluster" } });
      return;
    }
    const now = performance.now();
    if (now < (this.chartAt || 0) + CLUSTER_CHART_MS) {
      if (!this.chartTimer) this.chartTimer = setTimeout(() => { this.chartTimer = null; this.drawChart(new Set(["t"])); },
        (this.chartAt || 0) + CLUSTER_CHART_MS - now);
      return;
    }
    this.chartAt = now;
    const fresh = hist.filter((r) => this.chartT === null || r[0] > this.chartT);
    if (!fresh.length) return;
    this.chartT = fresh[fresh.length - 1][0];
    P.extendTraces(this.chart, { x: nodes.map(() => xs(fresh)), y: nodes.map((_, i) => fresh.map((r) => r[i + 1])) },
      nodes.map((_, i) => i), st.cap || 120);
  }
}

export default makeWidget(clusterDerive, ClusterMapView);
