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

// A wide table in a box that scrolls sideways on its own (narrow notebooks: nothing clipped, tokens unbroken).
function scroller(child) {
  return h("div", { class: "nrtw-scroll" }, child);
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

// Numbers for people (same rule as Python's nrt_lab.widgets._static.format_number): `digits` significant digits
// with trailing zeros of the fraction only removed (100 stays "100"), integers of more digits in full (1234),
// tiny values as 1e-5; null/undefined/NaN are "-" (no data), infinities "inf"/"-inf".
function fmtNum(v, digits) {
  if (v === null || v === undefined || v === "") return "-";
  const x = Number(v);
  digits = digits || 3;
  if (Number.isNaN(x)) return "-";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 10 ** digits) return String(Math.round(x));
  const strip = (m) => (m.includes(".") ? m.replace(/0+$/, "").replace(/\.$/, "") : m);
  if (a < 1e-3) {
    const [m, e] = x.toExponential(digits - 1).split("e");
    return `${strip(m)}e${Number(e)}`;
  }
  const p = x.toPrecision(digits);
  if (p.includes("e")) return String(Math.round(x));  // 999.6 -> "1.00e+3" otherwise
  const out = strip(p);
  return out === "-0" ? "0" : out;
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

// WCAG relative luminance of "#rrggbb" (null when it is not one).
function luminance(color) {
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color || "");
  if (!m) return null;
  const lin = (x) => { const c = parseInt(x, 16) / 255; return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * lin(m[1]) + 0.7152 * lin(m[2]) + 0.0722 * lin(m[3]);
}

// Black or white text, whichever contrasts more with `bg` (same rule as Python's _palette.text_color).
function textColor(bg) {
  const l = luminance(bg);
  if (l === null) return "#000000";
  return (l + 0.05) / 0.05 >= 1.05 / (l + 0.05) ? "#000000" : "#ffffff";
}

// Utilization fill: a fixed light-to-dark green scale (the same in Light and Dark; the text on it is black or
// white by WCAG contrast). Idle cells (< 0.5 %) take the theme's neutral cell colours instead (class "free").
const HEAT_LOW = [200, 230, 201], HEAT_HIGH = [27, 94, 32];
function heatColor(u) {
  const l = Math.max(0, Math.min(1, (Number(u) || 0) / 100));
  const hex = (i) => Math.round(HEAT_LOW[i] + l * (HEAT_HIGH[i] - HEAT_LOW[i])).toString(16).padStart(2, "0");
  return `#${hex(0)}${hex(1)}${hex(2)}`;
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
        const sized = () => el.classList.toggle("nrtw-big", model.get("size") === "presentation");
        sized();
        model.on("change:size", sized);
        const view = new View(model, el, store);
        // Deltas are applied to the store at once, drawn at most once per animation frame (their changed keys
        // merged): a 10 Hz stream to several widgets never queues redraws (and a hidden tab draws nothing).
        let pending, scheduled = false;
        const flush = () => { scheduled = false; const c = pending; pending = undefined; view.update(c); };
        const later = globalThis.requestAnimationFrame || ((fn) => setTimeout(fn, 16));
        const listener = (changed) => {
          if (changed === null || pending === null) pending = null;
          else { pending = pending || new Set(); for (const k of changed) pending.add(k); }
          if (!scheduled) { scheduled = true; later(flush); }
        };
        store.listeners.add(listener);
        view.update(null);
        // JupyterLab's Settings → Theme changes these attributes once the new theme's CSS is in: redraw in full,
        // so that plotly's charts (which take their text colour from the page when drawn) follow the theme.
        const themed = typeof MutationObserver !== "undefined" && document.body
          ? new MutationObserver(() => listener(null)) : null;
        if (themed) themed.observe(document.body, { attributes: true,
                                                    attributeFilter: ["data-jp-theme-name", "data-jp-theme-light"] });
        return () => { store.listeners.delete(listener); if (themed) themed.disconnect(); };
      },
    };
  };
}
