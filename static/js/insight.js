// What a network has learned, beyond its curves: the decision surface (classification on the
// plane) or the Monte Carlo dropout band (1-D regression), one snapshot every few epochs; and
// the validation confusion matrix after the last epoch.
//
// The panel has one pane per run it shows (templates/partials/run.html [data-pane]): run 0
// alone; a paired run's two runs side by side (the chosen rate and its p = 0 twin, replayed in
// step); a sweep's one pane, whose run the rate slider picks (setRun). Each pane shows the
// latest snapshot at or before the epoch the panel draws (replay.snapshotIndex), so paced
// drawing, the replay and the epoch scrubber move curves and surfaces together.
// Snapshots arrive as `snapshot` events on the run's stream (the run panel hands them over);
// the training and validation points come once from /api/experiments/<id>/points. Colours come
// from the run panel's view: the classes' own palette on the decision surface, the colour of
// the run's dropout rate for its prediction and Monte Carlo band.

import { CONFIG, baseLayout, fade } from "./plot.js";
import { snapshotIndex } from "./replay.js";

export class SnapshotView {
  /** panel: the run panel; id: the experiment; kind: "surface" or "curve"; view: the run
   * panel's view (colours of the classes and of each setting). */
  constructor(panel, id, kind, view) {
    this.view = view; this.colors = view.palette; this.kind = kind;
    this.snaps = {}; this.points = null; this.epoch = 0;
    this.panes = [...panel.querySelectorAll("[data-pane]")].map((fig) => ({
      fig, run: Number(fig.dataset.run), shown: null,
      el: fig.querySelector(`[data-chart="${kind}"]`),
      epochLabel: fig.querySelector('[data-role="pane-epoch"]'),
      rateLabel: fig.querySelector('[data-role="pane-rate"]'),
    }));
    fetch(`/api/experiments/${id}/points`).then((r) => (r.ok ? r.json() : null))
      .then((p) => { this.points = p; this.draw(this.epoch, true); }, () => {});
  }

  add(run, snap) {
    const list = (this.snaps[run] = this.snaps[run] || []);
    list.push(snap);
    if (list.length > 1 && list[list.length - 2].epoch > snap.epoch) {
      list.sort((a, b) => a.epoch - b.epoch);
    }
  }

  /** Show run `run` (of setting `setting`, a view.settings entry) in pane `i`; run -1: a
   * setting that keeps no snapshots (app.ml.runs.SNAPSHOT_RUNS settings at most do). */
  setRun(i, run, setting) {
    const pane = this.panes[i];
    if (!pane || pane.run === run) return;
    pane.run = run; pane.shown = null; pane.fig.dataset.run = String(run);
    if (pane.rateLabel && setting) {
      pane.rateLabel.textContent = setting.label;
      pane.rateLabel.style.color = setting.text_color;
      pane.rateLabel.style.borderColor = setting.color;
    }
    this.draw(this.epoch, true);
  }

  /** Each pane at its latest snapshot at or before `epoch` (redrawn only when that changes,
   * or with `force`). */
  draw(epoch, force = false) {
    this.epoch = epoch;
    for (const pane of this.panes) {
      const list = this.snaps[pane.run] || [];
      const i = snapshotIndex(list.map((s) => s.epoch), epoch);
      if (i < 0) {
        if (pane.epochLabel) {
          pane.epochLabel.textContent = pane.run < 0 ? "not kept for this setting (only the first settings keep snapshots)"
            : list.length ? `first snapshot at epoch ${list[0].epoch}` : "waiting for the first snapshot";
        }
        if (pane.shown) { Plotly.react(pane.el, [], pane.el.layout || {}, CONFIG); pane.shown = null; }
        pane.el.dataset.epoch = "0";
        continue;
      }
      const snap = list[i];
      if (snap === pane.shown && !force) continue;
      pane.shown = snap;
      if (pane.epochLabel) pane.epochLabel.textContent = `epoch ${snap.epoch}`;
      pane.el.dataset.epoch = String(snap.epoch);
      pane.el.dataset.run = String(pane.run);
      Plotly.react(pane.el, this.kind === "surface" ? this.surface(snap) : this.curve(snap, pane.run),
                   this.layout(pane, snap), CONFIG);
    }
  }

  layout(pane, snap) {
    const surface = this.kind === "surface";
    const width = pane.el.clientWidth || 300;
    const one = this.panes.length === 1;
    // a square plot area for the plane; the curve a little flatter
    const height = Math.round(Math.max(220, Math.min(400, surface ? width - 40 + 36 : width * 0.75)));
    const lay = baseLayout({
      margin: { l: 36, r: 6, t: 6, b: 30 }, height,
      showlegend: !surface && one, legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" },
      xaxis: { zeroline: false, ...(surface ? {} : { title: { text: "x (standardized)", standoff: 2 } }) },
      yaxis: { zeroline: false },
    });
    if (!surface && one) lay.margin.t = 40;
    if (surface) { // the plane at equal scales: a square stays a square in a wide pane
      lay.xaxis.range = snap.extent.slice(0, 2); lay.yaxis.range = snap.extent.slice(2);
      lay.xaxis.constrain = "domain"; lay.yaxis.constrain = "domain";
      lay.yaxis.scaleanchor = "x"; lay.yaxis.scaleratio = 1;
    }
    return lay;
  }

  // p(class 1) on a grid x grid raster, one byte per cell (base64), rows from y0 up.
  surface(snap) {
    const [c0, c1] = this.colors.classes;
    const n = snap.grid, raw = atob(snap.p1), z = [];
    for (let i = 0; i < n; i++) {
      const row = [];
      for (let j = 0; j < n; j++) row.push(raw.charCodeAt(i * n + j) / 255);
      z.push(row);
    }
    const [x0, x1, y0, y1] = snap.extent, step = (a, b) => (b - a) / (n - 1);
    const xs = Array.from({ length: n }, (_, j) => x0 + j * step(x0, x1));
    const ys = Array.from({ length: n }, (_, i) => y0 + i * step(y0, y1));
    const traces = [
      { type: "heatmap", x: xs, y: ys, z, zmin: 0, zmax: 1, zsmooth: "fast", opacity: 0.75,
        colorscale: [[0, c0], [0.5, this.colors.mid], [1, c1]], showscale: false,
        hovertemplate: "x₁ %{x:.2f}, x₂ %{y:.2f}: p(class 1) = %{z:.2f}<extra></extra>" },
      { type: "contour", x: xs, y: ys, z, showscale: false, hoverinfo: "skip",
        contours: { start: 0.5, end: 0.5, size: 1, coloring: "none" },
        line: { color: "#222", width: 2 } },
    ];
    if (this.points) {
      for (const [split, open] of [["train", false], ["val", true]]) {
        const pts = this.points[split];
        traces.push({ type: "scatter", mode: "markers", hoverinfo: "skip",
          name: split === "train" ? "training" : "validation",
          x: pts.x.map((p) => p[0]), y: pts.x.map((p) => p[1]),
          marker: { size: open ? 4 : 5, symbol: open ? "circle-open" : "circle",
                    color: pts.y.map((c) => (c ? c1 : c0)),
                    line: { width: open ? 1 : 0.5, color: open ? undefined : "#fff" } } });
      }
    }
    return traces;
  }

  // The eval-mode prediction, and the MC-dropout mean ± 2 std the server sampled.
  curve(snap, runIndex) {
    const run = this.view.runs[runIndex];
    const s = this.view.settings.find((x) => x.key === run.setting) || {};
    const color = s.color || this.colors.neutral, dotted = s.dot_color || color;
    const hi = snap.mc_mean.map((m, i) => m + 2 * snap.mc_std[i]);
    const lo = snap.mc_mean.map((m, i) => m - 2 * snap.mc_std[i]);
    const traces = [
      { x: snap.x, y: lo, mode: "lines", line: { width: 0 }, showlegend: false, hoverinfo: "skip" },
      { x: snap.x, y: hi, mode: "lines", line: { width: 0 }, fill: "tonexty",
        fillcolor: fade(color), name: `MC dropout mean ± 2 std (${snap.mc_passes} passes)` },
      { x: snap.x, y: snap.mc_mean, mode: "lines", name: "MC dropout mean",
        line: { color: dotted, dash: "dot", width: 3 } },
      { x: snap.x, y: snap.pred, mode: "lines", name: "prediction (eval mode)",
        line: { color, width: 3 } },
    ];
    if (this.points) {
      traces.push({ x: this.points.train.x.map((p) => p[0]), y: this.points.train.y,
                    mode: "markers", name: "training points",
                    marker: { size: 5, color: this.colors.points } });
    }
    return traces;
  }
}

/** The validation confusion matrix (rows: true class, columns: predicted), counts written in,
 * shaded light to dark by count in `counts` (two colours, no rate's or class's). */
export function drawConfusion(el, matrix, counts) {
  const n = matrix.length, labels = Array.from({ length: n }, (_, i) => String(i));
  el.innerHTML = "";
  Plotly.newPlot(el, [{
    type: "heatmap", z: matrix, x: labels, y: labels, showscale: false,
    colorscale: [[0, counts[0]], [1, counts[1]]],
    text: matrix.map((r) => r.map(String)), texttemplate: "%{text}",
    hovertemplate: "true %{y}, predicted %{x}: %{z}<extra></extra>",
  }], baseLayout({ margin: { l: 50, r: 10, t: 10, b: 45 }, height: 300,
                   xaxis: { title: { text: "predicted" }, type: "category" },
                   yaxis: { title: { text: "true" }, type: "category", autorange: "reversed" } }),
  CONFIG);
  el.dataset.total = String(matrix.flat().reduce((a, b) => a + b, 0));
}
