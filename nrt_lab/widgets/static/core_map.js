class CoreMapView {
  constructor(model, el, store) {
    this.model = model; this.store = store; this.hovered = null;
    this.head = h("div", { class: "nrtw-bar" });
    this.body = h("div");
    this.detail = h("div", { class: "nrtw-detail" }, "Hover a NeuronCore for details.");
    this.legend = h("div");
    this.actions = h("div");
    el.append(this.head, this.body, this.detail, this.legend, this.actions);
    // Hover details belong to the pointer: gone when it leaves the grid (or topology), never left stale.
    this.body.addEventListener("mouseleave", () => { this.hovered = null; this.showDetail(); });
    this.ctl = controls(model);
    for (const name of ["pending", "message", "view", "show_grid"]) model.on(`change:${name}`, () => this.update(null));
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
    const showGrid = this.model.get("show_grid") !== false;
    this.body.replaceChildren(view === "topology" ? this.topology(st, inst, byPid, me)
      : showGrid ? this.grid(st, inst, byPid, me)
      : h("div", { class: "nrtw-muted" }, "Cores: see the utilization grid (owner colour as frame)."));
    this.detail.style.display = view !== "topology" && !showGrid ? "none" : "";
    this.showDetail();
    this.legend.replaceChildren(scroller(this.legendTable(owners, me)));
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
    const label = o ? short(o.tag, 6) : "·";
    const el = h("div", {
      class: "nrtw-cell" + (o ? "" : " free") + (o && pid === me ? " me" : ""),
      style: o ? `background:${o.color};color:${textColor(o.color)}` : "",
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
        const line = svg("line", { x1, y1, x2, y2, stroke: "#607d8b", "stroke-width": 2 });
        const t = svg("title", {}); t.textContent = `link nd${a} ↔ nd${b}`; line.append(t);
        root.append(line);
      }
    }
    inst.devices.forEach(([first, count], i) => {
      const [x, y] = pos[i] || [W / 2, H / 2];
      const cols = Math.min(count, 4), rows = Math.ceil(count / cols), size = 13;
      const w = cols * size + 8, hgt = rows * size + 18;
      const g = svg("g", {});
      const box = svg("rect", { x: x - w / 2, y: y - hgt / 2, width: w, height: hgt, rx: 4,
        fill: "var(--jp-layout-color1, #fff)", stroke: "#455a64" });
      const peers = (inst.links || []).filter(([a, b]) => a === i || b === i).map(([a, b]) => `nd${a === i ? b : a}`);
      const info = svg("title", {});
      info.textContent = `nd${i}: NeuronCores nc${first}-nc${first + count - 1}` +
        (inst.mem ? `, ${fmtBytes(inst.mem[i])} device memory` : "") + `; connected to ${peers.join(", ") || "none"}`;
      box.append(info);
      g.append(box);
      const label = svg("text", { x, y: y - hgt / 2 + 11, "text-anchor": "middle", "font-size": 10,
        fill: "currentColor" });
      label.textContent = `nd${i}`;
      g.append(label);
      for (let j = 0; j < count; j++) {
        const core = first + j, pid = st[`c${core}`] || 0, o = byPid[pid];
        const cx = x - w / 2 + 4 + (j % cols) * size, cy = y - hgt / 2 + 14 + Math.floor(j / cols) * size;
        // Live: utilization fills the core, the owner's colour frames it (as in TopView's grid).
        const u = Array.isArray(st.u) ? st.u[core] : null;
        const fill = u === null ? (o ? o.color : "var(--nrtw-free-bg)") : u >= 0.5 ? heatColor(u) : "var(--nrtw-free-bg)";
        const r = svg("rect", { x: cx, y: cy, width: size - 2, height: size - 2, rx: 2, fill,
          stroke: u !== null && o ? o.color : o && pid === me ? "#000" : "rgba(0,0,0,0.3)",
          "stroke-width": u !== null && o ? 2.5 : o && pid === me ? 2 : 1, class: "nrtw-topo-core" });
        const t = svg("title", {});
        t.textContent = this.coreInfo(core) + (u !== null ? `\nutilization: ${u} %` : ""); r.append(t);
        r.addEventListener("mouseenter", () => { this.hovered = core; this.showDetail(); });
        g.append(r);
      }
      root.append(g);
    });
    const caption = h("div", { class: "nrtw-muted" },
      `${inst.kind} topology (device links from neuron-ls CONNECTED DEVICES; fill = utilization, frame = owner; ` +
      "hover a device, a core or a link)" +
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
