"""The text-contrast check shared by test_widget_front.py (a test page with JupyterLab's theme CSS) and
test_browser.py (the real JupyterLab, Light and Dark).

``page.evaluate(CONTRAST_JS, selector)`` looks at every element matching ``selector`` that has text of its own
and a box, and returns ``{"checked": n, "bad": [...]}``: the texts whose colour has a contrast below
:data:`MIN_CONTRAST` (WCAG AA) against what is really behind them (the backgrounds of the element and its
ancestors composited over white). SVG text (plotly's titles, ticks and legends) is checked by its fill; text
in ``<select>`` and ``<option>`` is not checked. Dimmed (opacity < 1) or disabled elements are exempt, as WCAG
has them.
"""

from __future__ import annotations

MIN_CONTRAST = 4.5

CONTRAST_JS = """
(selector) => {
  const parse = (c) => {
    const m = /rgba?\\(([^)]+)\\)/.exec(c || "");
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
  const lum = (c) => {
    const l = c.slice(0, 3).map((v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * l[0] + 0.7152 * l[1] + 0.0722 * l[2];
  };
  const bad = [];
  let checked = 0;
  for (const el of document.querySelectorAll(selector)) {
    if (el.closest("option, select")) continue;
    const inSvg = !!el.closest("svg");
    if (inSvg && !["text", "tspan"].includes(el.tagName)) continue;  // in SVG only text (plotly's titles, ticks)
    const text = [...el.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent).join("").trim();
    if (!text) continue;
    const rect = el.getBoundingClientRect();
    if (!rect.width || !rect.height) continue;
    let inactive = false;
    const layers = [];
    for (let a = el; a; a = a.parentElement) {
      const cs = getComputedStyle(a);
      if (Number(cs.opacity) < 1 || a.disabled) inactive = true;  // dimmed or disabled: WCAG exempts them
      const bg = parse(cs.backgroundColor);
      if (bg && bg[3] > 0) layers.push(bg);
    }
    if (inactive) continue;
    let bg = [255, 255, 255, 1];
    for (const layer of layers.reverse()) bg = over(layer, bg);
    const ecs = getComputedStyle(el);
    const ink = parse(inSvg ? ecs.fill : ecs.color);
    if (!ink) continue;  // fill: none
    if (inSvg) ink[3] *= Number(ecs.fillOpacity);
    const fg = over(ink, bg);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    checked++;
    if (ratio < %MIN%) bad.push({ text: text.slice(0, 40), cls: el.getAttribute("class"), fg: fg.map(Math.round).join(","),
                                  bg: bg.map(Math.round).join(","), ratio: Math.round(ratio * 100) / 100 });
  }
  return { checked, bad };
}
""".replace("%MIN%", str(MIN_CONTRAST))
