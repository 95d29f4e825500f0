"""The widgets' front-end code: small hand-written ES modules and CSS (no bundler, no chart library).

Each widget's ``_esm`` is :data:`COMMON_JS` followed by its own view code. The default export is a function,
so anywidget calls it once per widget model: ``initialize`` builds one store per model (the full ``state``
trait, then every ``delta`` applied in order) and every ``render`` (each view, including views created after a
reload or in Voila) draws from that store, so all views show the same, current state.
"""

from __future__ import annotations

__all__ = ["CSS", "COMMON_JS", "CORE_MAP_JS", "DRIVER_STATUS_JS", "TOP_VIEW_JS"]

CSS = r"""
.nrtw { font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: 12px;
  color: var(--jp-ui-font-color1, #222); line-height: 1.35; }
.nrtw table { border-collapse: collapse; margin: 4px 0; }
.nrtw th, .nrtw td { padding: 2px 6px; border-bottom: 1px solid var(--jp-border-color2, #e0e0e0); text-align: left;
  vertical-align: top; }
.nrtw th { font-weight: 600; }
.nrtw td.num, .nrtw th.num { text-align: right; font-variant-numeric: tabular-nums; }
.nrtw code { font-family: var(--jp-code-font-family, monospace); font-size: 11px; }
.nrtw-bar { display: flex; align-items: center; gap: 8px; flex-wrap: wrap; margin: 2px 0 6px 0; }
.nrtw-title { font-weight: 700; font-size: 13px; }
.nrtw-muted { color: var(--jp-ui-font-color2, #666); }
.nrtw button { font: inherit; padding: 1px 8px; border-radius: 3px; cursor: pointer;
  border: 1px solid var(--jp-border-color1, #bbb); background: var(--jp-layout-color2, #f3f3f3);
  color: var(--jp-ui-font-color1, #222); }
.nrtw button.on { background: var(--jp-brand-color1, #1976d2); color: #fff; border-color: transparent; }
.nrtw button.danger { background: #c62828; color: #fff; border-color: transparent; }
.nrtw button:disabled { opacity: 0.5; cursor: default; }
.nrtw select { font: inherit; }
.nrtw-dot { display: inline-block; width: 8px; height: 8px; border-radius: 50%; background: #9e9e9e; }
.nrtw-dot.live { background: #2e7d32; }
.nrtw-dot.paused { background: #ef6c00; }
.nrtw-grid { display: flex; flex-direction: row; flex-wrap: wrap; gap: 3px 14px; }
.nrtw-row { display: flex; align-items: center; gap: 2px; }
.nrtw-dev { width: 34px; font-family: var(--jp-code-font-family, monospace); font-size: 11px;
  color: var(--jp-ui-font-color2, #666); }
.nrtw-cell { min-width: 30px; height: 26px; display: flex; flex-direction: column; align-items: center;
  justify-content: center; font-family: var(--jp-code-font-family, monospace); font-size: 10px;
  border: 1px solid rgba(0, 0, 0, 0.25); border-radius: 2px; box-sizing: border-box; cursor: default; }
.nrtw-cell.me { outline: 2px solid var(--jp-ui-font-color0, #000); outline-offset: -1px; font-weight: 700; }
.nrtw-cell.dim { opacity: 0.25; }
.nrtw-cell.sel { box-shadow: 0 0 0 2px var(--jp-brand-color1, #1976d2); }
.nrtw-swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; vertical-align: middle;
  border: 1px solid rgba(0, 0, 0, 0.3); }
.nrtw-badge { display: inline-block; padding: 0 5px; border-radius: 8px; font-size: 10px; color: #fff;
  background: #546e7a; margin-left: 4px; }
.nrtw-detail { min-height: 2.7em; padding: 3px 6px; margin: 4px 0; white-space: pre-wrap;
  background: var(--jp-layout-color2, #f5f5f5); border-radius: 3px; font-family: var(--jp-code-font-family, monospace);
  font-size: 11px; }
.nrtw-msg { margin: 4px 0; padding: 3px 6px; border-left: 3px solid var(--jp-brand-color1, #1976d2); }
.nrtw-msg.warn { border-left-color: #c62828; }
.nrtw-error { color: #c62828; }
.nrtw-sev-error { color: #c62828; font-weight: 700; }
.nrtw-sev-warning { color: #ef6c00; font-weight: 700; }
.nrtw-sev-info { color: #1565c0; font-weight: 700; }
.nrtw-sev-ok { color: #2e7d32; font-weight: 700; }
.nrtw-tabs { display: flex; gap: 2px; flex-wrap: wrap; margin: 4px 0; }
.nrtw-tabs button { border-radius: 3px 3px 0 0; }
.nrtw-cols { display: flex; gap: 16px; flex-wrap: wrap; }
.nrtw-spark { display: block; }
.nrtw-topo { max-width: 720px; }
.nrtw-section { font-weight: 700; margin-top: 6px; }
"""

COMMON_JS = r"""
const SVGNS = "http://www.w3.org/2000/svg";

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "style") el.style.cssText = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function svg(tag, attrs) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  return el;
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(n), i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${v.toFixed(0)} B` : `${v.toFixed(1)} ${units[i]}`;
}

function fmtNum(v, digits) {
  if (v === null || v === undefined) return "-";
  return Number(v).toPrecision(digits || 3).replace(/\.?0+(e|$)/, "$1");
}

function ranges(cores, prefix) {
  prefix = prefix === undefined ? "nc" : prefix;
  const c = [...new Set(cores)].sort((a, b) => a - b);
  if (!c.length) return "none";
  const parts = [];
  let start = c[0], prev = c[0];
  for (const x of c.slice(1).concat([null])) {
    if (x !== null && x === prev + 1) { prev = x; continue; }
    parts.push(start === prev ? `${prefix}${start}` : `${prefix}${start}-${prefix}${prev}`);
    if (x !== null) { start = prev = x; }
  }
  return parts.join(",");
}

function short(text, limit) {
  text = String(text || "");
  return text.length <= limit ? text : text.slice(0, limit - 3) + "...";
}

function textColor(bg) {
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(bg || "");
  if (!m) return "#000";
  const [r, g, b] = [m[1], m[2], m[3]].map((x) => parseInt(x, 16));
  return 0.2126 * r + 0.7152 * g + 0.0722 * b > 140 ? "#000" : "#fff";
}

function entries(state, prefix) {
  const re = new RegExp(`^${prefix}\\d+$`);
  return Object.keys(state).filter((k) => re.test(k)).map((k) => state[k])
    .sort((a, b) => ((a.start || 0) - (b.start || 0)) || (a.pid - b.pid));
}

// One store per widget model: the full state, then each delta applied once, in order.
function createStore(model, derive) {
  const store = { state: {}, seq: -1, listeners: new Set() };
  const fire = (changed) => {
    for (const fn of [...store.listeners]) {
      try { fn(changed); } catch (err) { console.error("[nrt_lab]", err); }
    }
  };
  const reset = () => {
    store.state = JSON.parse(JSON.stringify(model.get("state") || {}));
    store.seq = typeof store.state.seq === "number" ? store.state.seq : -1;
    fire(null);
  };
  const apply = () => {
    const d = model.get("delta");
    if (!d || typeof d.seq !== "number" || d.seq <= store.seq) return;
    const changed = new Set();
    for (const [k, v] of Object.entries(d.set || {})) { store.state[k] = v; changed.add(k); }
    for (const k of d.del || []) { delete store.state[k]; changed.add(k); }
    store.seq = d.seq;
    store.state.seq = d.seq;
    if (derive) derive(store.state, false);
    fire(changed);
  };
  model.on("change:state", reset);
  model.on("change:delta", apply);
  reset();
  return store;
}

const PERIODS = [0.1, 0.2, 0.5, 1, 2, 5, 10];

// Live/paused indicator, pause/resume button and period selector (all synced traits).
function controls(model) {
  const dot = h("span", { class: "nrtw-dot" });
  const pause = h("button", { title: "pause or resume live updates" });
  const select = h("select", { title: "sampling period (seconds)" });
  const err = h("span", { class: "nrtw-error" });
  const refresh = () => {
    const paused = model.get("paused"), running = model.get("running");
    dot.className = "nrtw-dot " + (!running ? "" : paused ? "paused" : "live");
    dot.title = !running ? "stopped" : paused ? "paused" : "live";
    pause.textContent = paused ? "Resume" : "Pause";
    pause.disabled = !running;
    const period = model.get("period");
    const options = PERIODS.includes(period) ? PERIODS : PERIODS.concat([period]).sort((a, b) => a - b);
    select.replaceChildren(...options.map((p) => h("option", { value: p, selected: p === period }, `${p} s`)));
    err.textContent = model.get("error") || "";
  };
  pause.addEventListener("click", () => { model.set("paused", !model.get("paused")); model.save_changes(); });
  select.addEventListener("change", () => { model.set("period", Number(select.value)); model.save_changes(); });
  for (const name of ["paused", "running", "period", "error"]) model.on(`change:${name}`, refresh);
  refresh();
  return h("span", { class: "nrtw-bar", style: "margin:0" }, dot, pause, select, err);
}

function makeWidget(derive, View) {
  return () => {
    let store = null;
    return {
      initialize({ model }) { store = createStore(model, derive); },
      render({ model, el }) {
        if (!store) store = createStore(model, derive);
        el.classList.add("nrtw");
        const view = new View(model, el, store);
        const listener = (changed) => view.update(changed);
        store.listeners.add(listener);
        view.update(null);
        return () => { store.listeners.delete(listener); };
      },
    };
  };
}
"""

CORE_MAP_JS = r"""
class CoreMapView {
  constructor(model, el, store) {
    this.model = model; this.store = store; this.hovered = null;
    this.head = h("div", { class: "nrtw-bar" });
    this.body = h("div");
    this.detail = h("div", { class: "nrtw-detail" }, "Hover a NeuronCore for details.");
    this.legend = h("div");
    this.actions = h("div");
    el.append(this.head, this.body, this.detail, this.legend, this.actions);
    this.ctl = controls(model);
    for (const name of ["pending", "message", "view"]) model.on(`change:${name}`, () => this.update(null));
  }
  owners() { return entries(this.store.state, "o"); }
  send(msg) { this.model.send(msg); }
  update() {
    const st = this.store.state;
    const inst = st.inst || { devices: [], total: 0 };
    const me = (st.me || {}).pid;
    const owners = this.owners();
    const byPid = Object.fromEntries(owners.map((o) => [o.pid, o]));
    const view = this.model.get("view") || "grid";
    const owned = Object.keys(st).filter((k) => /^c\d+$/.test(k) && st[k]).length;
    const toggle = (name, label) => h("button", {
      class: view === name ? "on" : "",
      onclick: () => { this.model.set("view", name); this.model.save_changes(); },
    }, label);
    this.head.replaceChildren(
      h("span", { class: "nrtw-title" }, "NeuronCore map"),
      h("span", { class: "nrtw-muted" },
        `${inst.name || "?"} · lnc ${inst.lnc} · ${inst.total} cores on ${inst.devices.length} devices · ` +
        `${owned} owned, ${inst.total - owned} free`),
      toggle("grid", "Grid"), toggle("topology", "Topology"),
      h("button", { onclick: () => this.send({ action: "refresh" }), title: "read the machine now" }, "Refresh"),
      this.ctl);
    if (st.err) { this.body.replaceChildren(h("div", { class: "nrtw-error" }, st.err)); return; }
    this.body.replaceChildren(view === "topology" ? this.topology(st, inst, byPid, me) : this.grid(st, inst, byPid, me));
    this.showDetail();
    this.legend.replaceChildren(this.legendTable(owners, me));
    this.actions.replaceChildren(this.actionBar(st, byPid, me));
  }
  coreInfo(core) {
    const st = this.store.state, inst = st.inst || { devices: [] };
    let dev = 0;
    inst.devices.forEach(([first, count], i) => { if (core >= first && core < first + count) dev = i; });
    const local = core - (inst.devices[dev] ? inst.devices[dev][0] : 0);
    const pid = st[`c${core}`] || 0;
    const o = st[`o${pid}`];
    const me = (st.me || {}).pid;
    let text = `nc${core} — device nd${dev}, core ${local} of ${inst.devices[dev] ? inst.devices[dev][1] : "?"}`;
    if (!o) return text + "\nfree";
    text += `\nowner: pid ${o.pid}${o.pid === me ? " (this kernel)" : ""}, tag ${o.tag}, runtime ${o.rt}`;
    text += `\ncommand: ${o.cmd}`;
    if (o.kernel) text += `\nJupyter kernel: ${o.kernel}`;
    text += `\ncores of this owner: ${ranges(o.cores)}`;
    return text;
  }
  showDetail() {
    this.detail.textContent = this.hovered === null ? "Hover a NeuronCore for details." : this.coreInfo(this.hovered);
  }
  cell(core, st, byPid, me) {
    const pid = st[`c${core}`] || 0;
    const o = byPid[pid];
    const bg = o ? o.color : "#e6e6e6";
    const label = o ? short(o.tag, 6) : "·";
    const el = h("div", {
      class: "nrtw-cell" + (o && pid === me ? " me" : ""),
      style: `background:${bg};color:${textColor(bg)}`,
      title: this.coreInfo(core),
      onmouseenter: () => { this.hovered = core; this.showDetail(); },
    }, h("span", {}, String(core)), h("span", {}, label));
    return el;
  }
  grid(st, inst, byPid, me) {
    return h("div", { class: "nrtw-grid" }, inst.devices.map(([first, count], i) =>
      h("div", { class: "nrtw-row" }, h("span", { class: "nrtw-dev" }, `nd${i}`),
        Array.from({ length: count }, (_, j) => this.cell(first + j, st, byPid, me)))));
  }
  topology(st, inst, byPid, me) {
    const W = 640, n = inst.devices.length;
    const H = inst.kind === "chain" ? 160 : inst.kind === "single" ? 140 : 440;
    const pos = (inst.pos || []).map(([x, y]) => [60 + x * (W - 120), 50 + y * (H - 100)]);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", class: "nrtw-topo" });
    for (const [a, b, wrap] of inst.links || []) {
      const [x1, y1] = pos[a], [x2, y2] = pos[b];
      if (wrap) {
        // Wrap-around link: a dashed stub leaving each end towards the outside (neuron-ls -t's *––►).
        const ux = Math.sign(x1 - x2), uy = Math.sign(y1 - y2), len = ux ? 56 : 46;
        for (const [x, y, sx, sy] of [[x1, y1, ux, uy], [x2, y2, -ux, -uy]]) {
          root.append(svg("line", { x1: x, y1: y, x2: x + sx * len, y2: y + sy * len, stroke: "#90a4ae",
            "stroke-width": 1.5, "stroke-dasharray": "4 3" }));
          root.append(svg("circle", { cx: x + sx * len, cy: y + sy * len, r: 2.5, fill: "#90a4ae" }));
        }
      } else {
        root.append(svg("line", { x1, y1, x2, y2, stroke: "#607d8b", "stroke-width": 2 }));
      }
    }
    inst.devices.forEach(([first, count], i) => {
      const [x, y] = pos[i] || [W / 2, H / 2];
      const cols = Math.min(count, 4), rows = Math.ceil(count / cols), size = 13;
      const w = cols * size + 8, hgt = rows * size + 18;
      const g = svg("g", {});
      g.append(svg("rect", { x: x - w / 2, y: y - hgt / 2, width: w, height: hgt, rx: 4,
        fill: "var(--jp-layout-color1, #fff)", stroke: "#455a64" }));
      const label = svg("text", { x, y: y - hgt / 2 + 11, "text-anchor": "middle", "font-size": 10,
        fill: "currentColor" });
      label.textContent = `nd${i}`;
      g.append(label);
      for (let j = 0; j < count; j++) {
        const core = first + j, pid = st[`c${core}`] || 0, o = byPid[pid];
        const cx = x - w / 2 + 4 + (j % cols) * size, cy = y - hgt / 2 + 14 + Math.floor(j / cols) * size;
        const r = svg("rect", { x: cx, y: cy, width: size - 2, height: size - 2, rx: 2,
          fill: o ? o.color : "#e6e6e6", stroke: o && pid === me ? "#000" : "rgba(0,0,0,0.3)",
          "stroke-width": o && pid === me ? 2 : 1 });
        const t = svg("title", {}); t.textContent = this.coreInfo(core); r.append(t);
        r.addEventListener("mouseenter", () => { this.hovered = core; this.showDetail(); });
        g.append(r);
      }
      root.append(g);
    });
    const caption = h("div", { class: "nrtw-muted" },
      `${inst.kind} topology (device links from neuron-ls CONNECTED DEVICES)` +
      (inst.kind === "torus" ? "; dashed = wrap-around link" : ""));
    return h("div", {}, root, caption);
  }
  legendTable(owners, me) {
    if (!owners.length) return h("div", { class: "nrtw-muted" }, "No process owns a NeuronCore.");
    const pending = this.model.get("pending") || {};
    const rows = owners.map((o) => {
      let action;
      if (o.pid === me) {
        action = h("button", { onclick: () => this.send({ action: "release" }),
          title: "nrt_lab.close() in this kernel" }, "Release");
      } else if (pending.pid === o.pid) {
        action = h("span", {},
          h("button", { class: "danger", onclick: () => this.send({ action: "confirm", pid: o.pid, token: pending.token }) },
            `Confirm SIGTERM to ${o.pid}`), " ",
          h("button", { onclick: () => this.send({ action: "cancel" }) }, "Cancel"));
      } else {
        action = h("button", { onclick: () => this.send({ action: "select", pid: o.pid }),
          title: "select for termination (asks for confirmation)" }, "Terminate…");
      }
      return h("tr", {},
        h("td", {}, h("span", { class: "nrtw-swatch", style: `background:${o.color}` })),
        h("td", { class: "num" }, String(o.pid), o.pid === me ? h("span", { class: "nrtw-badge" }, "this kernel") : null),
        h("td", {}, o.tag),
        h("td", { title: o.cmd }, h("code", {}, short(o.cmd, 56))),
        h("td", { title: o.kernel || "" }, o.kernel ? h("code", {}, short(o.kernel, 13)) : "-"),
        h("td", {}, ranges(o.cores)),
        h("td", {}, o.rt),
        h("td", {}, action));
    });
    return h("table", {},
      h("tr", {}, ["", "pid", "tag", "command", "kernel", "cores", "runtime", ""].map((t) => h("th", {}, t))), rows);
  }
  actionBar(st, byPid, me) {
    const mine = byPid[me];
    const msg = this.model.get("message") || "";
    const pending = this.model.get("pending") || {};
    return h("div", {},
      h("div", { class: "nrtw-bar" },
        h("button", { disabled: !mine, onclick: () => this.send({ action: "release" }) },
          mine ? `Release this kernel's cores (${ranges(mine.cores)})` : "This kernel holds no NeuronCore"),
        pending.pid ? h("span", { class: "nrtw-error" },
          `Pending: terminate pid ${pending.pid} (${pending.tag}) — confirm or cancel in the legend`) : null),
      msg ? h("div", { class: "nrtw-msg" + (/refused|failed|not /i.test(msg) ? " warn" : "") }, msg) : null);
  }
}

export default makeWidget(null, CoreMapView);
"""

DRIVER_STATUS_JS = r"""
class DriverStatusView {
  constructor(model, el, store) {
    this.model = model; this.store = store;
    this.head = h("div", { class: "nrtw-bar" });
    this.body = h("div");
    el.append(this.head, this.body);
    this.ctl = controls(model);
  }
  update() {
    const st = this.store.state;
    const driver = st.driver || {}, gate = st.gate || {}, daemon = st.daemon || {}, runtime = st.runtime || {};
    this.head.replaceChildren(
      h("span", { class: "nrtw-title" }, "Neuron driver & runtime"),
      h("span", { class: gate.ok ? "nrtw-sev-ok" : "nrtw-sev-error" }, gate.ok ? "runtime can start" : "runtime cannot start"),
      h("button", { onclick: () => this.model.send({ action: "refresh" }) }, "Refresh"), this.ctl);
    if (st.err) { this.body.replaceChildren(h("div", { class: "nrtw-error" }, st.err)); return; }
    const row = (k, v, cls) => h("tr", {}, h("th", {}, k), h("td", { class: cls || "" }, v));
    const info = h("table", {},
      row("instance", st.instance || "?"),
      row("driver package", driver.package || "aws-neuronx-dkms"),
      row("installed version", driver.installed || "not installed", driver.installed ? "" : "nrtw-sev-error"),
      row("loaded version", driver.loaded || "not loaded", driver.loaded ? "" : "nrtw-sev-error"),
      row("reload pending", driver.reload_pending ? "yes — takes effect at the next `nrt-lab driver reload`" : "no",
        driver.reload_pending ? "nrtw-sev-warning" : ""),
      row("runtime (libnrt)", `${st.runtime_version} (needs driver ≥ ${gate.minimum})`),
      row("gate verdict", gate.ok ? "OK" : gate.message, gate.ok ? "nrtw-sev-ok" : "nrtw-sev-error"),
      row("this kernel", runtime.text || ""),
      row("neuron-rtd (runtime 1.x daemon)", daemon.text || "not running", daemon.running ? "nrtw-sev-warning" : ""));
    const config = (st.config || []).length ? h("table", {},
      h("tr", {}, ["variable", "value", "status", "note"].map((t) => h("th", {}, t))),
      st.config.map((c) => h("tr", {},
        h("td", {}, h("code", {}, c.name)), h("td", {}, h("code", {}, c.value)),
        h("td", { class: `nrtw-sev-${c.status === "ok" ? "ok" : c.status === "error" ? "error" : c.status === "info" ? "info" : "warning"}` }, c.status),
        h("td", {}, c.note || ""))))
      : h("div", { class: "nrtw-muted" }, "No NEURON_* variable is set in this kernel.");
    const eff = st.effective || {};
    const effective = h("div", { class: "nrtw-muted" },
      Object.entries(eff).map(([k, v]) => `${k}: ${v}`).join(" · "));
    const findings = (st.findings || []).length ? h("ul", {}, st.findings.map((f) => h("li", {},
      h("span", { class: `nrtw-sev-${f.severity}` }, f.severity.toUpperCase()), " ", f.title,
      f.symptom ? h("div", {}, h("code", {}, f.symptom)) : null,
      h("div", {}, "Remedy: ", f.remedy, f.ref ? h("span", { class: "nrtw-muted" }, ` (${f.ref})`) : null))))
      : h("div", { class: "nrtw-sev-ok" }, "No problem found.");
    this.body.replaceChildren(info,
      h("div", { class: "nrtw-section" }, "NEURON_* configuration of this kernel"), config, effective,
      h("div", { class: "nrtw-section" }, "Troubleshooting"), findings);
  }
}

export default makeWidget(null, DriverStatusView);
"""

TOP_VIEW_JS = r"""
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

function heat(u) {
  const l = Math.max(0, Math.min(1, u / 100));
  const c = (a, b) => Math.round(a - l * (a - b));
  return `rgb(${c(255, 46)},${c(255, 125)},${c(255, 50)})`;
}

class TopView {
  constructor(model, el, store) {
    this.model = model; this.store = store; this.cells = {}; this.layout = null; this.selected = null;
    this.head = h("div", { class: "nrtw-bar" });
    this.tabs = h("div", { class: "nrtw-tabs" });
    this.grid = h("div", { class: "nrtw-grid" });
    this.spark = h("div", { class: "nrtw-bar" });
    this.tables = h("div");
    el.append(this.head, this.tabs, this.grid, this.spark, this.tables);
    this.title = h("span", { class: "nrtw-title" });
    this.info = h("span", { class: "nrtw-muted" });
    this.modeBtn = h("button", { title: "toggle % and TFLOPS (neuron-top key F)", onclick: () => {
      this.model.set("mode", this.model.get("mode") === "tflops" ? "percent" : "tflops"); this.model.save_changes();
    } });
    this.head.append(this.title, this.info, this.modeBtn, controls(model));
    for (const name of ["mode", "tab"]) model.on(`change:${name}`, () => this.update(null));
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
    this.title.textContent = `NeuronCore ${inst.version || ""} Utilization`;
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
    if (procChanged) this.drawTabs();
    const shown = this.shownPids();
    for (let i = 0; i < inst.total; i++) {
      if (changed === null || changed.has(`c${i}`) || procChanged) this.drawCell(i, st, mode, shown);
    }
    this.drawSpark(st, inst, mode, shown);
    this.drawTables(st, shown);
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
    el.style.background = heat(u);
    el.style.color = u > 60 ? "#fff" : "";
    el.style.borderLeft = p ? `4px solid ${p.color}` : "";
    el.className = "nrtw-cell" + (pid && !shown.has(pid) && this.model.get("tab") !== "all" ? " dim" : "") +
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
    this.tables.replaceChildren(
      h("div", { class: "nrtw-section" }, "Executions and latency"), exec,
      h("div", { class: "nrtw-cols" },
        h("div", {}, h("div", { class: "nrtw-section" }, "Memory Usage Summary"), memTable),
        h("div", {}, h("div", { class: "nrtw-section" }, "Memory Usage Details (models)"), modelTable)),
      system);
  }
}

export default makeWidget(derive, TopView);
"""
