// The sweep chart: a validation metric against the dropout rate.
//
// While the sweep trains it is live (`live`): each setting's mean over its runs at their
// latest common epoch (stats.liveSetting, from the epochs the panel already has), so the
// U-curve forms as the runs learn; the chart says it is live and at which epoch. When training
// ends it switches to the server's summary (GET view.sweep.points_url): per setting the mean ±
// sample std over folds and seeds (error bars, the marker in its rate's colour), each run as a
// grey dot, the best setting starred. A sweep over weight decay draws a line per decay, told
// apart by marker symbols. The x axis spans the settings' rates from the first point on (the
// server's view.sweep.x_range, or its categories).
//
// Hovering a mean point shows that setting's tooltip (the grey dots and the star take no
// hover, so a dot under the mean cannot win; the tooltip lists the runs' values) and
// highlights its curves; a click pins them (onSelect), as the rate slider does.

import { CONFIG, baseLayout } from "./plot.js";
import { liveSetting } from "./stats.js";

const RETRIES = 3;       // the summary may land a moment after the final event
const RETRY_MS = 1000;

export class SweepChart {
  /** el: the chart's div; select: the metric <select>; view: the run panel's view;
   * onHighlight(key or null): brings a setting's curves forward on hover; onSelect(key or
   * null): a click pins a setting (or unpins it). */
  constructor(el, select, view, onHighlight, onSelect) {
    this.el = el; this.select = select; this.sweep = view.sweep; this.view = view;
    this.decay = Object.fromEntries(view.settings.map((s) => [s.key, s.weight_decay]));
    this.symbol = Object.fromEntries(view.settings.map((s) => [s.key, s.symbol || "circle"]));
    this.colors = view.palette;
    this.data = null; this.loading = null; this.pinned = null; this.livePoints = null;
    Plotly.newPlot(el, [], this.layout(), CONFIG);
    el.dataset.points = "0";
    if (select) select.addEventListener("change", () => this.draw());
    const keyOf = (ev) => ev.points[0].customdata;
    el.on("plotly_hover", (ev) => { if (!this.pinned) onHighlight(keyOf(ev)); });
    el.on("plotly_unhover", () => { if (!this.pinned) onHighlight(null); });
    el.on("plotly_click", (ev) => onSelect(this.pinned === keyOf(ev) ? null : keyOf(ev)));
  }

  /** The setting pinned now (null: none), by a click here or by the rate slider. */
  pin(key) { this.pinned = key; }

  /** Fetch the summary (once it is ready; calls while a fetch is under way share it). */
  load() {
    if (this.data || this.loading) return this.loading;
    this.loading = (async () => {
      for (let attempt = 0; attempt <= RETRIES && !this.data; attempt++) {
        if (attempt) await new Promise((ok) => setTimeout(ok, RETRY_MS));
        try {
          const res = await fetch(this.sweep.points_url);
          const body = res.ok ? await res.json() : { ready: false };
          if (body.ready) this.data = body;
        } catch { /* the server is restarting: try again, then leave the chart waiting */ }
      }
      this.loading = null;
      this.draw();
    })();
    return this.loading;
  }

  metric() {
    const key = this.select ? this.select.value : this.sweep.metrics[0].key;
    return this.sweep.metrics.find((m) => m.key === key) || this.sweep.metrics[0];
  }

  /** Each setting's live point from `series` (per run: { field: [value per epoch] }), at
   * most at epoch `upTo`; drawn unless the summary is already there. */
  live(series, upTo) {
    if (this.data) return;
    this.series = series; this.upTo = upTo;
    this.draw();
  }

  layout(note) {
    const linear = this.sweep.x_type === "linear";
    const xaxis = { title: { text: this.sweep.x_label }, type: linear ? "linear" : "category",
                    zeroline: false }; // it would hide the error bar of p = 0
    if (linear && this.sweep.x_range) xaxis.range = this.sweep.x_range;
    if (!linear && this.sweep.categories) {
      xaxis.categoryorder = "array"; xaxis.categoryarray = this.sweep.categories;
      xaxis.range = [-0.5, this.sweep.categories.length - 0.5];
    }
    const empty = !note;
    return baseLayout({
      margin: { l: 55, r: 10, t: 24, b: 110 }, height: 370, xaxis,
      yaxis: { title: { text: this.metric().label }, ...(empty ? { showticklabels: false, range: [0, 1] } : {}) },
      legend: { orientation: "h", x: 0, y: -72 / 236, yanchor: "top" }, // under the axis title
      annotations: [{ text: note || "drawn from the first epoch on", showarrow: false,
                      xref: "paper", yref: "paper", x: empty ? 0.5 : 1, y: empty ? 0.5 : 1,
                      xanchor: empty ? "center" : "right", yanchor: empty ? "middle" : "bottom",
                      yshift: empty ? 0 : 4, font: { color: "#555", size: 12 } }],
    });
  }

  draw() {
    if (this.data) this.drawSummary();
    else this.drawLive();
  }

  /** The live points: a line per weight decay through each setting's current mean. */
  drawLive() {
    const metric = this.metric();
    const pts = this.series ? this.view.settings.map((s) => ({ s, ...liveSetting(
      this.series, s.runs, metric.key, this.upTo) })).filter((p) => p.mean !== null) : [];
    const decays = [...new Set(pts.map((p) => this.decay[p.s.key]))];
    const traces = decays.map((wd) => {
      const mine = pts.filter((p) => this.decay[p.s.key] === wd);
      return {
        x: mine.map((p) => p.s.x), y: mine.map((p) => p.mean), customdata: mine.map((p) => p.s.key),
        text: mine.map((p) => `${p.s.label}, epoch ${p.epoch}` + (p.n > 1 ? ` (mean of ${p.n} runs)` : "")),
        mode: "lines+markers", type: "scatter",
        name: decays.length > 1 ? `weight decay ${wd}` : "live: current epoch",
        line: { color: this.colors.neutral, width: 2, dash: "dot" },
        marker: { size: 11, color: mine.map((p) => p.s.color),
                  symbol: mine.map((p) => this.symbol[p.s.key]),
                  line: { color: this.colors.neutral, width: 1 } },
        hovertemplate: "%{text}: %{y:.4g}<extra>live</extra>",
      };
    });
    const epochs = pts.map((p) => p.epoch);
    const lo = Math.min(...epochs), hi = Math.max(...epochs);
    const note = pts.length ? `live, at epoch ${lo === hi ? lo : `${lo}–${hi}`} of ${this.view.epochs}` : null;
    this.livePoints = pts.length;
    this.el.dataset.live = String(pts.length);
    this.el.dataset.liveEpoch = String(pts.length ? lo : 0);
    Plotly.react(this.el, traces, this.layout(note), CONFIG);
  }

  /** The server's summary: mean ± std per setting, a grey dot per run, the best starred. */
  drawSummary() {
    const metric = this.metric();
    const m = this.data.metrics[metric.key];
    const traces = [];
    const shown = m.settings.filter((s) => s.mean !== null && s.mean !== undefined);
    const decays = [...new Set(shown.map((s) => this.decay[s.key]))];
    const line = this.colors.neutral;
    const fmt = (v) => (v === null || v === undefined ? "n/a" : Number(v).toPrecision(3));
    decays.forEach((wd) => {
      const pts = shown.filter((s) => this.decay[s.key] === wd);
      traces.push({
        x: pts.map((s) => s.x), y: pts.map((s) => s.mean), customdata: pts.map((s) => s.key),
        text: pts.map((s) => `${s.label}${s.key === m.best ? " (best)" : ""}: mean of ${s.n} run${s.n === 1 ? "" : "s"}`
          + (s.values.length > 1 ? `<br>each run: ${s.values.map(fmt).join(", ")}` : "")),
        mode: "lines+markers", type: "scatter",
        name: decays.length > 1 ? `weight decay ${wd}` : "mean ± std",
        line: { color: line, width: 2 },
        error_y: { type: "data", array: pts.map((s) => s.std), visible: true, color: line },
        marker: { size: 11, color: pts.map((s) => s.color), symbol: pts.map((s) => this.symbol[s.key]),
                  line: { color: line, width: 1 } },
        hovertemplate: "%{text}<br>%{y:.4g} ± %{error_y.array:.2g}<extra></extra>",
      });
    });
    const each = { x: [], y: [], key: [] };
    for (const s of m.settings) {
      for (const v of s.values) {
        if (v === null || v === undefined) continue;
        each.x.push(s.x); each.y.push(v); each.key.push(s.key);
      }
    }
    // single runs take no hover: the mean under them always wins, and lists their values
    traces.push({ x: each.x, y: each.y, customdata: each.key, mode: "markers", type: "scatter",
                     name: "each run", marker: { size: 5, color: this.colors.dots },
                     hoverinfo: "skip" });
    const best = shown.find((s) => s.key === m.best);
    if (best) {
      traces.push({ x: [best.x], y: [best.mean], customdata: [best.key], mode: "markers",
                    type: "scatter", name: `best (${metric.lower ? "lowest" : "highest"})`,
                    marker: { symbol: "star", size: 18, color: "#ffffff",
                              line: { color: this.colors.neutral, width: 2 } },
                    hoverinfo: "skip" });
    }
    this.el.dataset.points = String(each.x.length);
    this.el.dataset.live = "0";
    Plotly.react(this.el, traces, this.layout("final: mean ± std over each setting's runs"), CONFIG);
  }
}
