// What one network has learned, beyond its curves: the decision surface (classification on
// the plane) or the Monte Carlo dropout band (1-D regression), one snapshot per few epochs,
// scrubbable with a slider; and the validation confusion matrix after the last epoch.
// Snapshots arrive as `snapshot` events on the run's stream (the run panel hands them over);
// the training and validation points come once from /api/experiments/<id>/points. Colours come
// from the run panel's view: the classes' own palette on the decision surface, the colour of
// the run's dropout rate for its prediction and Monte Carlo band.

import { CONFIG, baseLayout, fade } from "./plot.js";

export class SnapshotView {
  /** panel: the run panel; id: the experiment; kind: "surface" or "curve"; view: the run
   * panel's view (colours of the classes and of each run's setting). */
  constructor(panel, id, kind, view) {
    this.view = view; this.colors = view.palette;
    this.el = panel.querySelector(`[data-chart="${kind}"]`);
    this.kind = kind; this.snaps = {}; this.follow = true; this.points = null;
    this.scrub = panel.querySelector('[data-role="scrub"]');
    this.label = panel.querySelector('[data-role="scrub-label"]');
    this.runSelect = panel.querySelector('[data-role="snap-run"]');
    this.run = this.runSelect ? Number(this.runSelect.value) : 0;
    fetch(`/api/experiments/${id}/points`).then((r) => (r.ok ? r.json() : null))
      .then((p) => { this.points = p; this.draw(); }, () => {});
    this.scrub.addEventListener("input", () => {
      this.follow = Number(this.scrub.value) === Number(this.scrub.max);
      this.draw();
    });
    if (this.runSelect) {
      this.runSelect.addEventListener("change", () => {
        this.run = Number(this.runSelect.value); this.follow = true; this.sync(); this.draw();
      });
    }
  }

  add(run, snap) {
    (this.snaps[run] = this.snaps[run] || []).push(snap);
    if (run === this.run) this.sync();
  }

  sync() { // the slider spans this run's snapshots; it follows the newest unless moved back
    const list = this.snaps[this.run] || [];
    this.scrub.max = String(Math.max(0, list.length - 1));
    this.scrub.disabled = list.length < 2;
    if (this.follow) this.scrub.value = this.scrub.max;
  }

  draw() {
    const list = this.snaps[this.run] || [];
    if (!list.length) return;
    const snap = list[Math.min(Number(this.scrub.value), list.length - 1)];
    this.label.textContent = `${snap.epoch}`;
    this.el.dataset.epoch = String(snap.epoch);
    const surface = this.kind === "surface";
    const lay = baseLayout({
      margin: { l: 45, r: 10, t: 10, b: 40 }, height: surface ? 330 : 380, // + the legend above
      showlegend: !surface, legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" },
      xaxis: { title: { text: surface ? "x₁ (standardized)" : "x (standardized)" } },
      yaxis: { title: { text: surface ? "x₂ (standardized)" : "y" } },
    });
    if (surface) {
      lay.xaxis.range = snap.extent.slice(0, 2); lay.yaxis.range = snap.extent.slice(2);
    }
    Plotly.react(this.el, surface ? this.surface(snap) : this.curve(snap), lay, CONFIG);
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
      { type: "heatmap", x: xs, y: ys, z, zmin: 0, zmax: 1, zsmooth: "best", opacity: 0.75,
        colorscale: [[0, c0], [0.5, this.colors.mid], [1, c1]],
        colorbar: { title: { text: "p(class 1)" }, thickness: 12 },
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
          marker: { size: open ? 5 : 6, symbol: open ? "circle-open" : "circle",
                    color: pts.y.map((c) => (c ? c1 : c0)),
                    line: { width: open ? 1 : 0.5, color: open ? undefined : "#fff" } } });
      }
    }
    return traces;
  }

  // The eval-mode prediction, and the MC-dropout mean ± 2 std the server sampled.
  curve(snap) {
    const run = this.view.runs[this.run];
    const color = (this.view.settings.find((s) => s.key === run.setting) || {}).color
      || this.colors.neutral;
    const hi = snap.mc_mean.map((m, i) => m + 2 * snap.mc_std[i]);
    const lo = snap.mc_mean.map((m, i) => m - 2 * snap.mc_std[i]);
    const traces = [
      { x: snap.x, y: lo, mode: "lines", line: { width: 0 }, showlegend: false, hoverinfo: "skip" },
      { x: snap.x, y: hi, mode: "lines", line: { width: 0 }, fill: "tonexty",
        fillcolor: fade(color), name: `MC dropout mean ± 2 std (${snap.mc_passes} passes)` },
      { x: snap.x, y: snap.mc_mean, mode: "lines", name: "MC dropout mean",
        line: { color, dash: "dot", width: 2 } },
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
