// One chart of curves against epoch (loss, accuracy or R², generalization gap), redrawn up to
// the epoch the panel shows (static/js/run.js: live, paced or replayed, so the chart takes the
// epoch to draw up to rather than the points to add).
//
// What it shows comes from the run panel's view (built in Python): the chart's fields with
// their labels, colours, dashes and widths; the runs with their labels; the settings with
// their colours (the colour of their dropout rate) and, when they differ in weight decay, a
// marker symbol. A single run: one trace per field in its rate's colour, the split as the line
// style. Several runs (a sweep, or a run beside its p = 0 twin): a thin trace per run
// (validation), and per setting a thick mean curve (validation solid, train dashed) with a
// ±1 std band (stats.perEpoch), and a key of the line styles (view.key).
//
// The y range starts from plot.robustRange, so a first-epoch spike cannot squash the rest;
// once the user zooms (drag) or zooms out (double-click: every point), their range stays
// (Plotly's uirevision) until the log toggle asks for a new one. Hovering an epoch here shows
// the same epoch on the panel's other charts (hoverAt, wired by run.js).

import { CONFIG, epochLayout, fade, robustRange } from "./plot.js";
import { perEpoch } from "./stats.js";

const TALL = 400; // px: the headline chart beside the decision surfaces
const TALL_NARROW = 320; // px: the same on a phone
const UNIFIED_MAX = 4;
const OFFSCREEN_MS = 1000; // a chart out of view redraws this seldom while the panel animates // settings up to which one hover box lists every curve at an epoch

export class CurveChart {
  /** el: the chart's div; chart: view.charts[key]; view: the run panel's view; tall: the
   * headline's height. */
  constructor(el, chart, view, tall = false) {
    this.el = el; this.chart = chart; this.view = view; this.tall = tall;
    this.many = view.runs.length > 1;
    this.unified = view.settings.length <= UNIFIED_MAX;
    this.specs = []; this.log = false; this.user = false; this.revision = 1;
    this.given = null; // the y range last handed to Plotly (kept once the user zooms)
    this.focus = null; this.pinned = false; this.series = null; this.upTo = 0;
    this.build();
    Plotly.newPlot(el, this.data(), this.layout(null), CONFIG);
    // off screen, a chart redraws at most every OFFSCREEN_MS (and at once when it scrolls in)
    this.onScreen = true; this.stale = false; this.drawnAt = 0;
    if (typeof IntersectionObserver !== "undefined") {
      new IntersectionObserver((entries) => {
        this.onScreen = entries[entries.length - 1].isIntersecting;
        if (this.onScreen && this.stale) this.redraw();
      }).observe(el);
    }
    el.on("plotly_relayout", (ev) => {
      if (Object.keys(ev || {}).some((k) => /^[xy]axis\.(range|autorange)/.test(k))) {
        this.user = true;
      }
    });
    el.dataset.drawn = "0";
  }

  add(spec, trace) {
    this.specs.push({ ...spec, trace: { mode: "lines", type: "scatter", ...trace } });
    return this.specs.length - 1;
  }

  build() {
    const chart = this.chart, view = this.view;
    if (!this.many) {
      for (const f of chart.fields) {
        this.add({ kind: "run", run: 0, field: f.field }, {
          name: f.label, line: { color: f.color, dash: f.dash, width: f.width || 2 },
          hovertemplate: `${f.label}: %{y:.4g}<extra></extra>` });
      }
      return;
    }
    const byKey = Object.fromEntries(view.settings.map((s) => [s.key, s]));
    for (const run of view.runs) {
      const s = byKey[run.setting];
      const alone = s.runs.length === 1 || this.unified; // the mean carries the hover
      this.add({ kind: "run", run: run.index, field: chart.val, setting: s.key }, {
        name: `run ${run.index}`, showlegend: false, legendgroup: s.key,
        line: { color: s.color, width: 1 }, meta: { setting: s.key, run: true },
        ...(alone ? { hoverinfo: "skip" }
          : { hovertemplate: `${run.label}<br>epoch %{x}: %{y:.4g}<extra></extra>` }) });
    }
    const epochText = this.unified ? "" : "<br>epoch %{x}";
    for (const s of view.settings) {
      if (s.runs.length > 1) {
        this.add({ kind: "lo", setting: s.key }, { showlegend: false, legendgroup: s.key,
          hoverinfo: "skip", line: { width: 0 }, meta: { setting: s.key, band: true } });
        this.add({ kind: "hi", setting: s.key }, { showlegend: false, legendgroup: s.key,
          hoverinfo: "skip", line: { width: 0 }, fill: "tonexty", fillcolor: fade(s.color),
          meta: { setting: s.key, band: true } });
      }
      const marks = s.symbol ? { mode: "lines+markers",
        marker: { symbol: s.symbol, size: 8, color: s.color, maxdisplayed: 12 } } : {};
      const mean = s.runs.length > 1 ? " mean" : "";
      this.add({ kind: "mean", setting: s.key, field: chart.val }, {
        name: s.label, legendgroup: s.key, meta: { setting: s.key },
        line: { color: s.color, width: 3 }, ...marks,
        hovertemplate: `${s.label}${mean}${epochText}: %{y:.4g}<extra></extra>` });
      if (chart.train) {
        this.add({ kind: "mean", setting: s.key, field: chart.train }, {
          name: `${s.label} train`, showlegend: false, legendgroup: s.key,
          meta: { setting: s.key }, line: { color: s.color, width: 2, dash: "dash" },
          hovertemplate: `${s.label} train${mean}${epochText}: %{y:.4g}<extra></extra>` });
      }
    }
    if (chart.train) { // what the line styles mean: legend entries without data
      for (const k of view.key) {
        this.add({ kind: "key" }, { name: k.label, hoverinfo: "skip", meta: { key: true },
          line: { color: view.palette.neutral, dash: k.dash, width: 2 } });
      }
    }
  }

  /** Every trace with its points up to epoch `upTo` of `series` (per run: { field: [value
   * per epoch] }), and the highlight applied. */
  data() {
    const series = this.series, upTo = this.upTo;
    const stats = {}; // per setting and field: the mean curve, once per draw
    const meanOf = (key, field) => {
      const id = key + "\n" + field;
      if (!stats[id]) {
        const runs = this.view.settings.find((s) => s.key === key).runs;
        const all = perEpoch(series, runs, field);
        const n = all.x.filter((e) => e <= upTo).length;
        stats[id] = { x: all.x.slice(0, n), mean: all.mean.slice(0, n), std: all.std.slice(0, n) };
      }
      return stats[id];
    };
    return this.specs.map((spec) => {
      let x = [], y = [];
      if (series && spec.kind === "run") {
        y = (series[spec.run][spec.field] || []).slice(0, upTo);
        x = y.map((_, i) => i + 1);
      } else if (series && spec.kind === "mean") {
        ({ x, mean: y } = meanOf(spec.setting, spec.field));
      } else if (series && (spec.kind === "lo" || spec.kind === "hi")) {
        const m = meanOf(spec.setting, this.chart.val), sign = spec.kind === "lo" ? -1 : 1;
        x = m.x; y = m.mean.map((v, i) => v + sign * m.std[i]);
      } else if (spec.kind === "key") {
        x = [null]; y = [null];
      }
      return { ...spec.trace, x, y, ...this.emphasis(spec) };
    });
  }

  /** Opacity (and visibility) of a trace under the highlight: the focused setting forward,
   * the others faded; pinned, the others' bands hidden so they do not clutter the chart. */
  emphasis(spec) {
    const key = this.focus, meta = spec.trace.meta || {};
    if (!this.many || meta.key) return {};
    const mine = !key || meta.setting === key;
    if (meta.band) return mine ? { visible: true, opacity: 1 } : this.pinned ? { visible: false } : { visible: true, opacity: 0.3 };
    if (meta.run) return { opacity: mine ? (key ? 0.9 : 0.35) : 0.05 };
    return { opacity: mine ? 1 : 0.15 };
  }

  layout(fit) {
    const base = epochLayout(this.view.epochs, this.chart.y_label);
    const yaxis = { type: this.log ? "log" : "linear", ...(fit ? { range: fit.range } : {}) };
    const notes = [...(base.annotations || [])];
    // said under the chart's title (the figure's clip-note) while the range leaves points out
    const clipNote = this.el.closest("figure") && this.el.closest("figure").querySelector('[data-role="clip-note"]');
    if (clipNote) clipNote.hidden = !(fit && fit.clipped && !this.user);
    const phone = typeof window !== "undefined" && window.innerWidth < 700;
    // room under the plot for the axis and the legend's rows (about 7 px a character), the
    // legend just under the axis title; each row past the first makes the chart taller
    const width = Math.max(200, (this.el.clientWidth || 400) - 70);
    const names = this.specs.filter((sp) => sp.trace.showlegend !== false).map((sp) => sp.trace.name || "");
    let rows = 1, used = 0;
    for (const n of names) {
      const w = 40 + 7 * n.length;
      if (used && used + w > width) { rows += 1; used = 0; }
      used += w;
    }
    const margin = { ...base.margin, b: 52 + 20 * rows };
    const height = (this.tall ? (phone ? TALL_NARROW : TALL) : base.height) + 20 * (rows - 1);
    const legend = { ...base.legend, yanchor: "top", y: -46 / (height - margin.t - margin.b) };
    return { ...base, height, margin, yaxis, annotations: notes, legend,
             hovermode: this.unified ? "x unified" : "closest", uirevision: this.revision };
  }

  /** Draw every curve up to epoch `upTo` of `series` (`all`: even off screen). */
  draw(series, upTo, all = true) {
    this.series = series; this.upTo = upTo;
    const now = performance.now();
    if (!all && !this.onScreen && now - this.drawnAt < OFFSCREEN_MS) { this.stale = true; return; }
    this.stale = false; this.drawnAt = now;
    const data = this.data();
    if (!this.user) { // the range follows the data until the user picks one
      const xs = [], ys = [];
      for (const t of data) {
        if (t.visible === false || (t.meta && t.meta.key)) continue;
        for (let i = 0; i < t.x.length; i++) { xs.push(t.x[i]); ys.push(t.y[i]); }
      }
      this.given = robustRange(xs, ys, this.log) || this.given;
    }
    Plotly.react(this.el, data, this.layout(this.given), CONFIG);
    this.el.dataset.drawn = String(upTo);
  }

  redraw() { if (this.series) this.draw(this.series, this.upTo); }

  /** A log or linear y axis (the user's zoom is dropped: a new range for the new scale). */
  setLog(on) {
    this.log = on; this.user = false; this.given = null; this.revision += 1;
    this.redraw();
  }

  /** Bring one setting's curves forward (null: everything back to normal); pinned: the
   * other settings' bands are hidden too. */
  highlight(key, pinned = false) {
    this.focus = key; this.pinned = Boolean(key) && pinned;
    this.redraw();
  }

  /** Call over(epoch, settings) when the user hovers an epoch here, out() when they leave. */
  onHover(over, out) {
    this.el.on("plotly_hover", (ev) => {
      const pts = (ev && ev.points) || [];
      if (!pts.length) return;
      over(pts[0].x, pts.map((p) => (p.data.meta || {}).setting).filter(Boolean));
    });
    this.el.on("plotly_unhover", () => out());
  }

  /** Show epoch `epoch` as if hovered: every curve in a unified chart, else the mean curves
   * of `settings` (all of them when none is given). */
  hoverAt(epoch, settings) {
    if (!this.el.data || epoch === undefined || epoch === null) return;
    if (this.unified || !this.many) {
      Plotly.Fx.hover(this.el, { xval: epoch });
      return;
    }
    const points = [];
    this.el.data.forEach((t, i) => {
      const spec = this.specs[i];
      if (spec.kind !== "mean" || (settings.length && !settings.includes(spec.setting))) return;
      const j = t.x.indexOf(epoch);
      if (j >= 0) points.push({ curveNumber: i, pointNumber: j });
    });
    if (points.length) Plotly.Fx.hover(this.el, points);
  }

  unhover() { if (this.el.data) Plotly.Fx.unhover(this.el); }
}
