class DriverStatusView {
  constructor(model, el, store) {
    this.model = model; this.store = store;
    this.head = h("div", { class: "nrtw-bar" });
    this.body = h("div");
    el.append(this.head, this.body);
    this.ctl = controls(model);
    this.toggle = h("button", { class: "nrtw-toggle", title: "show or hide the driver, configuration and findings",
      onclick: () => { this.model.set("collapsed", !this.model.get("collapsed")); this.model.save_changes(); } });
    model.on("change:collapsed", () => this.update());
  }
  update() {
    const st = this.store.state;
    const driver = st.driver || {}, gate = st.gate || {}, daemon = st.daemon || {}, runtime = st.runtime || {};
    this.head.replaceChildren(
      h("span", { class: "nrtw-title" }, "Neuron driver & runtime"),
      // Calm (neutral) unless something is wrong for THIS kernel (the severity diagnose() gives this process).
      h("span", { class: `nrtw-verdict nrtw-sev-${(st.verdict || {}).level || "calm"}` }, (st.verdict || {}).text || ""),
      this.toggle, h("button", { onclick: () => this.model.send({ action: "refresh" }) }, "Refresh"), this.ctl);
    const collapsed = !!this.model.get("collapsed");
    this.toggle.textContent = collapsed ? "Details ▸" : "Details ▾";
    this.toggle.setAttribute("aria-expanded", String(!collapsed));
    this.body.style.display = collapsed ? "none" : "";
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
        h("td", { class: "wrap" }, c.note || ""))))
      : h("div", { class: "nrtw-muted" }, "No NEURON_* variable is set in this kernel.");
    const eff = st.effective || {};
    const effective = h("div", { class: "nrtw-muted" },
      Object.entries(eff).map(([k, v]) => `${k}: ${v}`).join(" · "));
    const findings = (st.findings || []).length ? h("ul", {}, st.findings.map((f) => h("li", {},
      h("span", { class: `nrtw-sev-${f.severity === "info" ? "calm" : f.severity}` }, f.severity === "info" ? "NOTE" : f.severity.toUpperCase()), " ", f.title,
      f.detail ? h("div", {}, h("code", {}, f.detail)) : null,
      h("div", { class: "wrap" }, "Remedy: ", f.remedy, f.ref ? h("span", { class: "nrtw-muted" }, ` (${f.ref})`) : null))))
      : h("div", { class: "nrtw-sev-ok" }, "No problem found.");
    this.body.replaceChildren(scroller(info),
      h("div", { class: "nrtw-section" }, "NEURON_* configuration of this kernel"), scroller(config), effective,
      h("div", { class: "nrtw-section" }, "Troubleshooting"), findings);
  }
}

export default makeWidget(null, DriverStatusView);
