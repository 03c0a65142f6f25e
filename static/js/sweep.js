// The sweep chart: a validation metric against the dropout rate, drawn from the server's
// summary (GET view.sweep.points_url): per setting the mean ± sample std over folds and seeds
// (error bars, the marker in its rate's colour), each run as a grey dot, and the best setting
// starred. A sweep over weight decay draws a line per decay, told apart by marker symbols. The page computes none
// of it; it only chooses which metric to show (the <select data-role="sweep-metric">, whose
// options the server rendered from view.sweep.metrics). A mean point's customdata is its
// setting key: hovering it highlights that setting's curves, a click pins them.

import { CONFIG, baseLayout, padded } from "./plot.js";

const RETRIES = 3;       // the summary may land a moment after the final event
const RETRY_MS = 1000;

export class SweepChart {
  /** el: the chart's div; select: the metric <select>; view: the run panel's view;
   * onHighlight(key or null): brings a setting's curves forward. */
  constructor(el, select, view, onHighlight) {
    this.el = el; this.select = select; this.sweep = view.sweep;
    this.decay = Object.fromEntries(view.settings.map((s) => [s.key, s.weight_decay]));
    this.symbol = Object.fromEntries(view.settings.map((s) => [s.key, s.symbol || "circle"]));
    this.colors = view.palette;
    this.data = null; this.loading = null; this.pinned = null;
    Plotly.newPlot(el, [], this.layout(), CONFIG);
    el.dataset.points = "0";
    if (select) select.addEventListener("change", () => this.draw());
    const keyOf = (ev) => ev.points[0].customdata;
    el.on("plotly_hover", (ev) => { if (!this.pinned) onHighlight(keyOf(ev)); });
    el.on("plotly_unhover", () => { if (!this.pinned) onHighlight(null); });
    el.on("plotly_click", (ev) => {
      const key = keyOf(ev);
      this.pinned = this.pinned === key ? null : key;
      onHighlight(this.pinned);
    });
  }

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
    return this.sweep.metrics.find((m) => m.key === key) || { key, label: key };
  }

  layout() {
    const linear = this.sweep.x_type === "linear";
    const m = this.data && this.data.metrics[this.metric().key];
    const xs = m ? m.settings.map((s) => s.x) : [];
    return baseLayout({
      margin: { l: 55, r: 10, t: 10, b: 45 }, height: 300,
      xaxis: { title: { text: this.sweep.x_label }, type: linear ? "linear" : "category",
               zeroline: false, // it would hide the error bar of p = 0
               ...(linear && xs.length ? { range: padded(xs) } : {}) },
      yaxis: { title: { text: this.metric().label } },
      legend: { orientation: "h", y: 1.12, x: 0 },
      ...(this.data ? {} : { annotations: [{ text: "drawn when the sweep has finished",
        showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5, font: { color: "#777" } }] }),
    });
  }

  draw() {
    const metric = this.metric();
    const m = this.data && this.data.metrics[metric.key];
    const traces = [];
    let dots = 0;
    if (m) {
      const shown = m.settings.filter((s) => s.mean !== null && s.mean !== undefined);
      const decays = [...new Set(shown.map((s) => this.decay[s.key]))];
      const line = this.colors.neutral;
      decays.forEach((wd) => {
        const pts = shown.filter((s) => this.decay[s.key] === wd);
        traces.push({
          x: pts.map((s) => s.x), y: pts.map((s) => s.mean), customdata: pts.map((s) => s.key),
          text: pts.map((s) => `${s.label} (${s.n} runs)`),
          mode: "lines+markers", type: "scatter",
          name: decays.length > 1 ? `weight decay ${wd}` : "mean ± std",
          line: { color: line, width: 2 },
          error_y: { type: "data", array: pts.map((s) => s.std), visible: true, color: line },
          marker: { size: 11, color: pts.map((s) => s.color), symbol: pts.map((s) => this.symbol[s.key]),
                    line: { color: line, width: 1 } },
          hovertemplate: "%{text}: %{y:.4g} ± %{error_y.array:.2g}<extra></extra>",
        });
      });
      const each = { x: [], y: [], key: [] };
      for (const s of m.settings) {
        for (const v of s.values) {
          if (v === null || v === undefined) continue;
          each.x.push(s.x); each.y.push(v); each.key.push(s.key);
        }
      }
      dots = each.x.length;
      traces.push({ x: each.x, y: each.y, customdata: each.key, mode: "markers", type: "scatter",
                    name: "each run", marker: { size: 5, color: this.colors.dots },
                    hovertemplate: "%{x}: %{y:.4g}<extra>one run</extra>" });
      const best = shown.find((s) => s.key === m.best);
      if (best) {
        traces.push({ x: [best.x], y: [best.mean], customdata: [best.key], mode: "markers",
                      type: "scatter", name: `best (${metric.lower ? "lowest" : "highest"})`,
                      marker: { symbol: "star", size: 18, color: "#ffffff",
                                line: { color: this.colors.neutral, width: 2 } },
                      hovertemplate: `best: ${best.label}<extra></extra>` });
      }
    }
    this.el.dataset.points = String(dots);
    Plotly.react(this.el, traces, this.layout(), CONFIG);
  }
}
