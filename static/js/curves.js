// One chart of curves against epoch (loss, accuracy or R², generalization gap), fed live.
// What it shows comes from the run panel's view (built in Python): the chart's fields with
// their labels, colours and dashes; the runs with their labels; the settings of a sweep with
// their colours (the colour of their dropout rate) and, when they differ in weight decay, a
// marker symbol. A single run: one trace per field in its rate's colour, the split as the line
// style, extended as epochs arrive. Several runs: a thin trace per run (validation), and per
// setting a thick mean curve (validation solid, train dashed) with a ±1 std band, recomputed
// (stats.perEpoch) for the settings that changed, and a key of the line styles (view.key).

import { CONFIG, epochLayout, fade } from "./plot.js";
import { perEpoch } from "./stats.js";

export class CurveChart {
  /** el: the chart's div; chart: view.charts[key]; view: the run panel's view. */
  constructor(el, chart, view) {
    this.el = el; this.chart = chart; this.many = view.runs.length > 1;
    this.traces = []; this.perRun = {}; this.group = {};
    if (!this.many) {
      for (const f of chart.fields) {
        this.perRun["0:" + f.field] = this.add({
          name: f.label, line: { color: f.color, dash: f.dash, width: 2 },
          hovertemplate: `${f.label}<br>epoch %{x}: %{y:.4g}<extra></extra>` });
      }
    } else {
      const byKey = Object.fromEntries(view.settings.map((s) => [s.key, s]));
      for (const run of view.runs) {
        const s = byKey[run.setting];
        this.perRun[run.index + ":" + chart.val] = this.add({
          name: `run ${run.index}`, showlegend: false, legendgroup: s.key, opacity: 0.35,
          line: { color: s.color, width: 1 }, meta: { setting: s.key, run: true },
          hovertemplate: `${run.label}<br>epoch %{x}: %{y:.4g}<extra></extra>` });
      }
      for (const s of view.settings) {
        const g = { setting: s };
        if (s.runs.length > 1) {
          g.lo = this.add({ showlegend: false, legendgroup: s.key, hoverinfo: "skip",
                            line: { width: 0 }, meta: { setting: s.key } });
          g.hi = this.add({ showlegend: false, legendgroup: s.key, hoverinfo: "skip",
                            line: { width: 0 }, fill: "tonexty", fillcolor: fade(s.color),
                            meta: { setting: s.key } });
        }
        const marks = s.symbol ? { mode: "lines+markers",
          marker: { symbol: s.symbol, size: 8, color: s.color, maxdisplayed: 12 } } : {};
        g.val = this.add({ name: s.label, legendgroup: s.key, meta: { setting: s.key },
                           line: { color: s.color, width: 3 }, ...marks,
                           hovertemplate: `${s.label} mean<br>epoch %{x}: %{y:.4g}<extra></extra>` });
        if (chart.train) {
          g.train = this.add({ name: `${s.label} train`, showlegend: false, legendgroup: s.key,
                               meta: { setting: s.key }, line: { color: s.color, width: 2, dash: "dash" },
                               hovertemplate: `${s.label} train mean<br>epoch %{x}: %{y:.4g}<extra></extra>` });
        }
        this.group[s.key] = g;
      }
      if (chart.train) { // what the line styles mean: legend entries without data
        for (const k of view.key) {
          this.add({ name: k.label, x: [null], y: [null], hoverinfo: "skip", meta: { key: true },
                     line: { color: view.palette.neutral, dash: k.dash, width: 2 } });
        }
      }
    }
    this.pending = this.traces.map(() => ({ x: [], y: [] }));
    Plotly.newPlot(el, this.traces, epochLayout(view.epochs, chart.y_label), CONFIG);
  }

  add(trace) {
    this.traces.push({ x: [], y: [], mode: "lines", type: "scatter", ...trace });
    return this.traces.length - 1;
  }

  /** Queue one epoch's metrics `m` of run `run` (drawn at the next flush). */
  push(run, m) {
    for (const f of this.chart.fields) {
      const i = this.perRun[run + ":" + f.field];
      if (i === undefined) continue;
      this.pending[i].x.push(m.epoch);
      this.pending[i].y.push(m[f.field]);
    }
  }

  /** Draw what was queued; recompute the mean curves of the settings in `dirty` from
   * `series` (per run: { field: [value per epoch] }). */
  flush(series, dirty) {
    const idx = [], xs = [], ys = [];
    this.pending.forEach((p, i) => { if (p.x.length) { idx.push(i); xs.push(p.x); ys.push(p.y); } });
    if (idx.length) Plotly.extendTraces(this.el, { x: xs, y: ys }, idx);
    this.pending = this.traces.map(() => ({ x: [], y: [] }));
    if (!this.many) return;
    const upd = { x: [], y: [] }, which = [];
    const set = (i, x, y) => { if (i !== undefined) { which.push(i); upd.x.push(x); upd.y.push(y); } };
    for (const key of dirty) {
      const g = this.group[key];
      const val = perEpoch(series, g.setting.runs, this.chart.val);
      set(g.val, val.x, val.mean);
      set(g.lo, val.x, val.mean.map((m, j) => m - val.std[j]));
      set(g.hi, val.x, val.mean.map((m, j) => m + val.std[j]));
      if (g.train !== undefined) {
        const tr = perEpoch(series, g.setting.runs, this.chart.train);
        set(g.train, tr.x, tr.mean);
      }
    }
    if (which.length) Plotly.restyle(this.el, upd, which);
  }

  /** Bring one setting's curves forward (null: everything back to normal). */
  highlight(key) {
    const op = this.traces.map((t) => {
      if (t.meta && t.meta.key) return 1;
      const mine = !key || (t.meta && t.meta.setting === key);
      if (t.meta && t.meta.run) return mine ? (key ? 0.9 : 0.35) : 0.05;
      return mine ? 1 : 0.15;
    });
    Plotly.restyle(this.el, { opacity: op });
  }
}
