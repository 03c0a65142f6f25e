// Dropout Playground front end: live charts fed by Server-Sent Events, and URL <-> controls.
//
// A run panel (<section id="run" data-exp=...>, templates/partials/run.html) draws Plotly
// charts (loss, accuracy or R², generalization gap, and for sweeps the validation metric against
// the dropout rate) and follows /api/experiments/<id>/events. The stream replays stored epochs
// first, then live ones, so the same code draws a share link opened tomorrow and a run that is
// training now. The browser's EventSource reconnects by itself with Last-Event-ID; the server
// resumes after it with no gap and no duplicate.
(function () {
  "use strict";

  // Okabe-Ito, colour-blind safe. A single run: train is always blue, validation vermillion.
  const C = { train: "#0072B2", val: "#D55E00", dropout: "#56B4E9", gap: "#009E73" };
  const SETTING_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
                          "#000000", "#8C7A00"];
  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const FLUSH_MS = 120; // batch redraws: at most ~8 per second however fast epochs arrive

  // ---- what each chart shows -------------------------------------------------------------

  // [metric, legend label, colour, dash] per chart, for a single run.
  function chartSpecs(task) {
    const score = task === "classification" ? ["train_acc", "val_acc"] : ["train_r2", "val_r2"];
    return {
      loss: { train: "train_loss", val: "val_loss",
              fields: [["train_loss", "train (eval mode)", C.train, "solid"],
                       ["val_loss", "validation", C.val, "solid"],
                       ["train_loss_dropout", "train mini-batch, dropout on", C.dropout, "dot"]] },
      score: { train: score[0], val: score[1],
               fields: [[score[0], "train (eval mode)", C.train, "solid"],
                        [score[1], "validation", C.val, "solid"]] },
      gap: { train: null, val: "generalization_gap",
             fields: [["generalization_gap", "val − train loss", C.gap, "solid"]] },
    };
  }

  function layout(epochs) {
    return {
      margin: { l: 50, r: 10, t: 10, b: 70 }, height: 250,
      xaxis: { title: { text: "epoch", standoff: 4 }, range: [0, epochs + 1] },
      legend: { orientation: "h", y: -0.38, x: 0 }, font: { size: 13 },
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", hovermode: "closest",
    };
  }

  // ---- settings of a sweep: runs that differ only by fold or seed ---------------------------

  function settingsOf(runs) {
    const decays = new Set(runs.map((r) => r.weight_decay));
    const keys = [], byKey = {};
    for (const run of runs) {
      const key = JSON.stringify([run.dropout, run.weight_decay]);
      if (!byKey[key]) {
        const p = Array.isArray(run.dropout) ? run.dropout.join("/") : run.dropout;
        byKey[key] = { key, dropout: run.dropout, weight_decay: run.weight_decay, runs: [],
                       label: "p=" + p + (decays.size > 1 ? `, L2=${run.weight_decay}` : "") };
        keys.push(key);
      }
      byKey[key].runs.push(run.index);
      run.setting = key;
    }
    keys.forEach((k, i) => { byKey[k].color = colorAt(i, keys.length); });
    return keys.map((k) => byKey[k]);
  }

  function colorAt(i, n) {
    if (n <= SETTING_COLORS.length) return SETTING_COLORS[i];
    const t = (i / (n - 1)) * (VIRIDIS.length - 1), lo = Math.floor(t), f = t - lo;
    const hi = Math.min(lo + 1, VIRIDIS.length - 1);
    const c = VIRIDIS[lo].map((v, j) => Math.round(v + f * (VIRIDIS[hi][j] - v)));
    return `rgb(${c.join(",")})`;
  }

  function meanStd(values) {
    const n = values.length, mean = values.reduce((a, b) => a + b, 0) / n;
    const sd = n > 1 ? Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1)) : 0;
    return [mean, sd];
  }

  // ---- one chart of curves ------------------------------------------------------------------
  // A single run: one trace per field, extended as epochs arrive. Many runs: a thin trace per
  // run (validation), and per setting a thick mean curve (validation solid, train dashed) with
  // a ±1 std band, recomputed at each redraw.

  class CurveChart {
    constructor(el, spec, runs, settings, epochs) {
      this.el = el; this.spec = spec; this.many = runs.length > 1;
      this.traces = []; this.perRun = {}; this.group = {};
      if (!this.many) {
        for (const [field, label, color, dash] of spec.fields) {
          this.perRun["0:" + field] = this.add({ name: label, line: { color, dash, width: 2 },
            hovertemplate: `${label}<br>epoch %{x}: %{y:.4g}<extra></extra>` });
        }
      } else {
        for (const run of runs) {
          const s = settings.find((x) => x.key === run.setting);
          this.perRun[run.index + ":" + spec.val] = this.add({
            name: `run ${run.index}`, showlegend: false, legendgroup: s.key, opacity: 0.35,
            line: { color: s.color, width: 1 }, meta: { setting: s.key, run: true },
            hovertemplate: `${s.label}, run ${run.index} (fold ${run.fold}, seed +${run.repeat})` +
                           "<br>epoch %{x}: %{y:.4g}<extra></extra>" });
        }
        for (const s of settings) {
          const band = s.runs.length > 1;
          const g = {};
          if (band) {
            g.lo = this.add({ showlegend: false, legendgroup: s.key, hoverinfo: "skip",
                              line: { width: 0 }, meta: { setting: s.key } });
            g.hi = this.add({ showlegend: false, legendgroup: s.key, hoverinfo: "skip",
                              line: { width: 0 }, fill: "tonexty", fillcolor: fade(s.color),
                              meta: { setting: s.key } });
          }
          g.val = this.add({ name: s.label, legendgroup: s.key, meta: { setting: s.key },
                             line: { color: s.color, width: 3 },
                             hovertemplate: `${s.label} mean<br>epoch %{x}: %{y:.4g}<extra></extra>` });
          if (spec.train) {
            g.train = this.add({ name: `${s.label} train`, showlegend: false, legendgroup: s.key,
                                 meta: { setting: s.key }, line: { color: s.color, width: 2, dash: "dash" },
                                 hovertemplate: `${s.label} train mean<br>epoch %{x}: %{y:.4g}<extra></extra>` });
          }
          this.group[s.key] = { ...g, setting: s };
        }
      }
      this.pending = this.traces.map(() => ({ x: [], y: [] }));
      Plotly.newPlot(el, this.traces, layout(epochs), { responsive: true, displaylogo: false });
    }

    add(trace) {
      this.traces.push({ x: [], y: [], mode: "lines", type: "scatter", ...trace });
      return this.traces.length - 1;
    }

    push(run, m) {
      for (const [field] of this.spec.fields) {
        const i = this.perRun[run + ":" + field];
        if (i === undefined) continue;
        this.pending[i].x.push(m.epoch);
        this.pending[i].y.push(m[field]);
      }
    }

    flush(series, dirty) {
      const idx = [], xs = [], ys = [];
      this.pending.forEach((p, i) => { if (p.x.length) { idx.push(i); xs.push(p.x); ys.push(p.y); } });
      if (idx.length) Plotly.extendTraces(this.el, { x: xs, y: ys }, idx);
      this.pending = this.traces.map(() => ({ x: [], y: [] }));
      if (!this.many) return;
      const upd = { x: [], y: [] }, which = [];
      for (const key of dirty) {
        const g = this.group[key];
        const val = aggregate(series, g.setting.runs, this.spec.val);
        const set = (i, x, y) => { if (i !== undefined) { which.push(i); upd.x.push(x); upd.y.push(y); } };
        set(g.val, val.x, val.mean);
        set(g.lo, val.x, val.mean.map((m, j) => m - val.sd[j]));
        set(g.hi, val.x, val.mean.map((m, j) => m + val.sd[j]));
        if (g.train !== undefined) {
          const tr = aggregate(series, g.setting.runs, this.spec.train);
          set(g.train, tr.x, tr.mean);
        }
      }
      if (which.length) Plotly.restyle(this.el, upd, which);
    }

    highlight(key) { // null: everything back to normal
      const op = this.traces.map((t) => {
        const mine = !key || (t.meta && t.meta.setting === key);
        if (t.meta && t.meta.run) return mine ? (key ? 0.9 : 0.35) : 0.05;
        return mine ? 1 : 0.15;
      });
      Plotly.restyle(this.el, { opacity: op });
    }
  }

  function fade(color) {
    if (color.startsWith("rgb(")) return color.replace("rgb(", "rgba(").replace(")", ",0.18)");
    const n = parseInt(color.slice(1), 16);
    return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},0.18)`;
  }

  // Mean and std over the runs of a setting, epoch by epoch, over the runs that reached it.
  function aggregate(series, runIdx, field) {
    const x = [], mean = [], sd = [];
    const longest = Math.max(...runIdx.map((r) => series[r].epoch.length));
    for (let e = 0; e < longest; e++) {
      const vals = runIdx.map((r) => series[r][field][e]).filter((v) => v !== undefined && v !== null);
      if (!vals.length) continue;
      const [m, s] = meanStd(vals);
      x.push(e + 1); mean.push(m); sd.push(s);
    }
    return { x, mean, sd };
  }

  // ---- the sweep chart: validation metric against dropout rate -----------------------------

  class SweepChart {
    constructor(el, select, task, settings, runs, epochs, onHighlight) {
      this.el = el; this.select = select; this.task = task; this.settings = settings;
      this.runs = runs; this.epochs = epochs; this.pinned = null;
      select.addEventListener("change", () => this.draw(this.last));
      Plotly.newPlot(el, [], this.layout(), { responsive: true, displaylogo: false });
      const keyOf = (ev) => ev.points[0].customdata;
      el.on("plotly_hover", (ev) => { if (!this.pinned) onHighlight(keyOf(ev)); });
      el.on("plotly_unhover", () => { if (!this.pinned) onHighlight(null); });
      el.on("plotly_click", (ev) => {
        const key = keyOf(ev);
        this.pinned = this.pinned === key ? null : key;
        onHighlight(this.pinned);
      });
    }

    layout() {
      const numeric = this.settings.every((s) => typeof s.dropout === "number");
      return {
        margin: { l: 55, r: 10, t: 10, b: 45 }, height: 300, font: { size: 13 },
        xaxis: { title: { text: "dropout rate p" }, type: numeric ? "linear" : "category",
                 ...(numeric ? { range: padded(this.settings.map((s) => s.dropout)) } : {}) },
        yaxis: { title: { text: this.select.selectedOptions[0].textContent } },
        legend: { orientation: "h", y: 1.12, x: 0 }, hovermode: "closest",
        paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
      };
    }

    // Finished runs only (all epochs in): points appear as runs finish.
    draw(series) {
      this.last = series;
      const metric = this.select.value, lower = metric.endsWith("loss") || metric.includes("gap");
      const value = (r) => {
        const s = series[r];
        if (metric === "best_val_loss") return Math.min(...s.val_loss.filter((v) => v !== null));
        return s[metric][s[metric].length - 1];
      };
      const done = (r) => series[r].epoch.length === this.epochs;
      const decays = [...new Set(this.settings.map((s) => s.weight_decay))];
      const traces = [];
      let best = null;
      for (const wd of decays) {
        const pts = { x: [], y: [], err: [], key: [], n: [] };
        for (const s of this.settings.filter((x) => x.weight_decay === wd)) {
          const vals = s.runs.filter(done).map(value).filter((v) => v !== null && isFinite(v));
          if (!vals.length) continue;
          const [m, sd] = meanStd(vals);
          pts.x.push(xOf(s)); pts.y.push(m); pts.err.push(sd); pts.key.push(s.key); pts.n.push(vals.length);
          if (!best || (lower ? m < best.y : m > best.y)) best = { x: xOf(s), y: m, key: s.key };
        }
        traces.push({
          x: pts.x, y: pts.y, customdata: pts.key, mode: "lines+markers", type: "scatter",
          name: decays.length > 1 ? `L2 = ${wd}` : "mean ± std",
          error_y: { type: "data", array: pts.err, visible: true },
          marker: { size: 9 }, text: pts.n,
          hovertemplate: "p=%{x}: %{y:.4g} ± %{error_y.array:.2g} (%{text} runs)<extra></extra>",
        });
      }
      const each = { x: [], y: [], key: [] };
      for (const s of this.settings) {
        for (const r of s.runs.filter(done)) { each.x.push(xOf(s)); each.y.push(value(r)); each.key.push(s.key); }
      }
      traces.push({ x: each.x, y: each.y, customdata: each.key, mode: "markers", type: "scatter",
                    name: "each run", marker: { size: 5, color: "rgba(80,80,80,0.45)" },
                    hovertemplate: "p=%{x}: %{y:.4g}<extra>one run</extra>" });
      if (best) {
        traces.push({ x: [best.x], y: [best.y], customdata: [best.key], mode: "markers", type: "scatter",
                      name: lower ? "best (lowest)" : "best (highest)",
                      marker: { symbol: "star", size: 18, color: "#E69F00", line: { color: "#000", width: 1 } },
                      hovertemplate: "best: p=%{x}<extra></extra>" });
      }
      this.el.dataset.points = String(each.x.length);
      Plotly.react(this.el, traces, this.layout(), { responsive: true, displaylogo: false });
    }
  }

  function padded(values) { // room around the points, so none sits on the axis line
    const lo = Math.min(...values), hi = Math.max(...values), pad = Math.max(0.03, (hi - lo) * 0.06);
    return [lo - pad, hi + pad];
  }

  function xOf(setting) {
    return typeof setting.dropout === "number" ? setting.dropout : JSON.stringify(setting.dropout);
  }

  // ---- insight: decision surface / MC-dropout curve, scrubbable by epoch -------------------

  class SnapshotView {
    constructor(panel, id, kind, runs) {
      this.el = panel.querySelector(`[data-chart="${kind}"]`);
      this.kind = kind; this.snaps = {}; this.follow = true; this.points = null;
      this.scrub = panel.querySelector('[data-role="scrub"]');
      this.label = panel.querySelector('[data-role="scrub-label"]');
      this.runSelect = panel.querySelector('[data-role="snap-run"]');
      this.run = this.runSelect ? Number(this.runSelect.value) : 0;
      this.color = C;
      fetch(`/api/experiments/${id}/points`).then((r) => r.ok ? r.json() : null)
        .then((p) => { this.points = p; this.draw(); });
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
      const traces = this.kind === "surface" ? this.surface(snap) : this.curve(snap);
      const lay = { margin: { l: 45, r: 10, t: 10, b: 40 }, height: 330, font: { size: 13 },
                    showlegend: this.kind === "curve", legend: { orientation: "h", y: -0.15 },
                    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
                    xaxis: { title: { text: "x₁ (standardized)" } },
                    yaxis: { title: { text: this.kind === "surface" ? "x₂ (standardized)" : "y" } } };
      if (this.kind === "surface") {
        lay.xaxis.range = snap.extent.slice(0, 2); lay.yaxis.range = snap.extent.slice(2);
      } else {
        lay.xaxis.title.text = "x (standardized)";
      }
      Plotly.react(this.el, traces, lay, { responsive: true, displaylogo: false });
    }

    surface(snap) {
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
          colorscale: [[0, C.train], [0.5, "#f7f7f7"], [1, C.val]],
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
                      color: pts.y.map((c) => (c ? C.val : C.train)),
                      line: { width: open ? 1 : 0.5, color: open ? undefined : "#fff" } } });
        }
      }
      return traces;
    }

    curve(snap) {
      const hi = snap.mc_mean.map((m, i) => m + 2 * snap.mc_std[i]);
      const lo = snap.mc_mean.map((m, i) => m - 2 * snap.mc_std[i]);
      const traces = [
        { x: snap.x, y: lo, mode: "lines", line: { width: 0 }, showlegend: false, hoverinfo: "skip" },
        { x: snap.x, y: hi, mode: "lines", line: { width: 0 }, fill: "tonexty",
          fillcolor: "rgba(213,94,0,0.2)", name: `MC dropout mean ± 2 std (${snap.mc_passes} passes)` },
        { x: snap.x, y: snap.mc_mean, mode: "lines", name: "MC dropout mean",
          line: { color: C.val, dash: "dot", width: 2 } },
        { x: snap.x, y: snap.pred, mode: "lines", name: "prediction (eval mode)",
          line: { color: C.train, width: 3 } },
      ];
      if (this.points) {
        traces.push({ x: this.points.train.x.map((p) => p[0]), y: this.points.train.y,
                      mode: "markers", name: "training points",
                      marker: { size: 5, color: "rgba(40,40,40,0.6)" } });
      }
      return traces;
    }
  }

  function drawConfusion(el, matrix) {
    const n = matrix.length, labels = Array.from({ length: n }, (_, i) => String(i));
    Plotly.newPlot(el, [{
      type: "heatmap", z: matrix, x: labels, y: labels, showscale: false,
      colorscale: [[0, "#f7fbff"], [1, "#08519c"]],
      text: matrix.map((r) => r.map(String)), texttemplate: "%{text}",
      hovertemplate: "true %{y}, predicted %{x}: %{z}<extra></extra>",
    }], { margin: { l: 50, r: 10, t: 10, b: 45 }, height: 300, font: { size: 13 },
          xaxis: { title: { text: "predicted" }, type: "category" },
          yaxis: { title: { text: "true" }, type: "category", autorange: "reversed" },
          paper_bgcolor: "rgba(0,0,0,0)" }, { responsive: true, displaylogo: false });
    el.dataset.total = String(matrix.flat().reduce((a, b) => a + b, 0));
  }

  // One sampled dropout mask over the real architecture: dropped units grey, kept units
  // filled and labelled with their scale 1/(1-p). Wide layers show a sample of 12 units.
  function drawThinned(box) {
    const sizes = JSON.parse(box.dataset.sizes), rates = JSON.parse(box.dataset.rates);
    const inputRate = Number(box.dataset.inputRate);
    const layerRate = (i) => (i === 0 ? inputRate : i === sizes.length - 1 ? 0 : rates[i - 1]);
    const W = 520, H = 260, SHOW = 12, colW = W / sizes.length;
    const cols = sizes.map((n, i) => {
      const shown = Math.min(n, SHOW), p = layerRate(i);
      return Array.from({ length: shown }, (_, j) => ({
        x: colW * (i + 0.5), y: 22 + ((H - 60) * (j + 0.5)) / shown, kept: Math.random() >= p,
      }));
    });
    let svg = `<svg viewBox="0 0 ${W} ${H}" xmlns="http://www.w3.org/2000/svg" role="img" ` +
              `aria-label="network with one dropout mask">`;
    for (let i = 0; i + 1 < cols.length; i++) {
      for (const a of cols[i]) for (const b of cols[i + 1]) {
        if (a.kept && b.kept) svg += `<line x1="${a.x}" y1="${a.y}" x2="${b.x}" y2="${b.y}" stroke="#9fb3c8" stroke-width="0.5"/>`;
      }
    }
    let kept = 0, total = 0;
    cols.forEach((col, i) => {
      const p = layerRate(i), r = Math.max(3, Math.min(8, 90 / col.length));
      for (const u of col) {
        svg += u.kept
          ? `<circle cx="${u.x}" cy="${u.y}" r="${r}" fill="${i === 0 ? "#555" : C.train}"/>`
          : `<circle cx="${u.x}" cy="${u.y}" r="${r}" fill="#e6e6e6" stroke="#8a8a8a" stroke-dasharray="2 2"/>`;
        if (i > 0 && i < cols.length - 1) { total += 1; kept += u.kept ? 1 : 0; }
      }
      const name = i === 0 ? "input" : i === cols.length - 1 ? "output" : `hidden ${i}`;
      const more = sizes[i] > col.length ? ` (${col.length} of ${sizes[i]})` : "";
      const info = p > 0 ? `p=${p}, keep ${(1 - p).toFixed(2)}, ×${(1 / (1 - p)).toFixed(2)}` : "no dropout";
      svg += `<text x="${col[0].x}" y="${H - 26}" text-anchor="middle" font-size="11">${name}${more}</text>`;
      svg += `<text x="${col[0].x}" y="${H - 12}" text-anchor="middle" font-size="10" fill="#555">${info}</text>`;
    });
    svg += "</svg>";
    box.innerHTML = svg;
    box.dataset.kept = String(kept); box.dataset.total = String(total);
  }

  // ---- a run panel: charts + stream ---------------------------------------------------------

  function initRun(panel) {
    if (panel.dataset.ready) return;
    panel.dataset.ready = "1";
    const id = panel.dataset.exp, task = panel.dataset.task;
    const runs = JSON.parse(panel.dataset.runs), epochs = Number(panel.dataset.epochs);
    const settings = settingsOf(runs);
    const specs = chartSpecs(task);
    const charts = Object.entries(specs).map(([key, spec]) =>
      new CurveChart(panel.querySelector(`[data-chart="${key}"]`), spec, runs, settings, epochs));
    const fields = [...new Set(Object.values(specs).flatMap((s) => s.fields.map((f) => f[0])))];
    const series = runs.map(() => Object.fromEntries([["epoch", []], ...fields.map((f) => [f, []])]));
    const sweepEl = panel.querySelector('[data-chart="sweep"]');
    const sweep = sweepEl && new SweepChart(sweepEl, panel.querySelector('[data-role="sweep-metric"]'),
      task, settings, runs, epochs, (key) => charts.forEach((c) => c.highlight(key)));
    const $ = (role) => panel.querySelector(`[data-role="${role}"]`);
    let received = 0, timer = null, dirty = new Set(), finishedRun = false, snapDirty = false;
    const insightBox = panel.querySelector("[data-insight]");
    const snapshots = insightBox && insightBox.dataset.insight
      ? new SnapshotView(panel, id, insightBox.dataset.insight, runs) : null;
    const thinned = $("thinned");
    if (thinned) {
      drawThinned(thinned);
      $("resample").addEventListener("click", () => drawThinned(thinned));
    }

    function flush() {
      timer = null;
      charts.forEach((c) => c.flush(series, dirty));
      if (sweep && finishedRun) sweep.draw(series);
      if (snapshots && snapDirty) snapshots.draw();
      dirty = new Set(); finishedRun = false; snapDirty = false;
      panel.dataset.points = String(received);
      $("progress").value = received;
      $("progress-text").textContent = `${received} / ${panel.dataset.total} epochs`;
    }

    function onEpoch(m) {
      received += 1;
      const s = series[m.run];
      s.epoch.push(m.epoch);
      for (const f of fields) s[f].push(m[f]);
      charts.forEach((c) => c.push(m.run, m));
      dirty.add(runs[m.run].setting);
      if (m.epoch === epochs) finishedRun = true;
      if (!timer) timer = setTimeout(flush, FLUSH_MS);
    }

    function setStatus(status, error) {
      panel.dataset.status = status;
      $("status").textContent = status;
      $("stop").hidden = !(status === "queued" || status === "running");
      if (error) { $("error").hidden = false; $("error").textContent = error; }
    }

    const source = new EventSource(`/api/experiments/${id}/events`);
    panel._source = source;
    source.addEventListener("status", (e) => setStatus(JSON.parse(e.data).status));
    source.addEventListener("epoch", (e) => onEpoch(JSON.parse(e.data)));
    source.addEventListener("snapshot", (e) => {
      if (!snapshots) return;
      const snap = JSON.parse(e.data);
      snapshots.add(snap.run, snap);
      snapDirty = true;
      if (!timer) timer = setTimeout(flush, FLUSH_MS);
    });
    for (const final of ["done", "failed", "cancelled"]) {
      source.addEventListener(final, (e) => {
        source.close();
        if (timer) clearTimeout(timer);
        finishedRun = true;
        flush();
        const data = JSON.parse(e.data);
        setStatus(final, data.error);
        const confusion = data.summary && data.summary.runs && data.summary.runs[0].confusion;
        const confusionEl = panel.querySelector('[data-chart="confusion"]');
        if (confusion && confusionEl) { confusionEl.innerHTML = ""; drawConfusion(confusionEl, confusion); }
        panel.dataset.final = final;
        document.body.dispatchEvent(new CustomEvent(`dp:final-${id}`));
        document.body.dispatchEvent(new CustomEvent("dp:final"));
      });
    }
  }

  // ---- the compare view: several experiments' mean curves, one colour each --------------

  async function initCompare(box) {
    if (box.dataset.ready) return;
    box.dataset.ready = "1";
    const ids = JSON.parse(box.dataset.compare);
    const exps = await Promise.all(ids.map((id) =>
      fetch(`/api/experiments/${id}`).then((r) => r.json())));
    const loss = [], score = [];
    exps.forEach((exp, n) => {
      const letter = String.fromCharCode(65 + n), color = SETTING_COLORS[n % SETTING_COLORS.length];
      const runs = exp.runs, settings = settingsOf(runs);
      const series = runs.map((r) => {
        const s = { epoch: r.epochs.map((e) => e.epoch) };
        for (const f of ["train_loss", "val_loss", "train_acc", "val_acc", "train_r2", "val_r2"]) {
          s[f] = r.epochs.map((e) => e[f]);
        }
        return s;
      });
      const sc = exp.task === "classification" ? ["train_acc", "val_acc"] : ["train_r2", "val_r2"];
      settings.forEach((st, j) => {
        const name = settings.length > 1 ? `${letter} ${st.label}` : letter;
        const opacity = settings.length > 1 ? 1 - (0.6 * j) / settings.length : 1;
        for (const [out, train, val] of [[loss, "train_loss", "val_loss"], [score, sc[0], sc[1]]]) {
          const v = aggregate(series, st.runs, val), t = aggregate(series, st.runs, train);
          out.push({ x: v.x, y: v.mean, name: `${name} validation`, legendgroup: name, opacity,
                     mode: "lines", line: { color, width: 2.5 } });
          out.push({ x: t.x, y: t.mean, name: `${name} train`, legendgroup: name, opacity,
                     showlegend: false, mode: "lines", line: { color, width: 1.5, dash: "dash" } });
        }
      });
    });
    const epochs = Math.max(...exps.map((e) => e.config.train.epochs));
    for (const [key, traces] of [["compare-loss", loss], ["compare-score", score]]) {
      const el = box.querySelector(`[data-chart="${key}"]`);
      Plotly.newPlot(el, traces, { ...layout(epochs), height: 320 },
                     { responsive: true, displaylogo: false });
      el.dataset.traces = String(traces.length);
    }
  }

  // ---- a workshop room's board: everyone's validation curves, live --------------------------

  // People's display names go into Plotly legends and tooltips, which read a little HTML
  // (<b>, <a href>...) and %{...} templates: show them as the plain text they are.
  function plain(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/%\{/g, "%\u200b{");
  }

  function initBoard(box) {
    if (box.dataset.ready) return;
    box.dataset.ready = "1";
    const code = box.dataset.room, el = box.querySelector('[data-chart="room-curves"]');
    // Epoch events that arrive while the stored state is being fetched are held back and
    // applied after it, each at most once: the fetch may or may not already contain them.
    let index = {}, last = {}, pending = null, loads = 0, held = null;
    async function load() {
      const mine = ++loads;
      held = held || [];
      let data;
      try {
        data = await (await fetch(`/api/rooms/${code}`)).json();
      } catch (err) {  // the server is restarting: the event source reconnects and says hello
        if (mine === loads) held = null;
        return;
      }
      if (mine !== loads) return;  // a newer load is on its way
      index = {}; last = {};
      const traces = data.experiments.map((e, i) => {
        index[e.id] = i;
        last[e.id] = e.epochs.length ? e.epochs[e.epochs.length - 1] : 0;
        const p = Array.isArray(e.dropout) ? e.dropout.join("/") : e.dropout;
        return { x: e.epochs, y: e.val_loss, mode: "lines", type: "scatter",
                 name: `${plain(e.author)} · ${e.hidden.join("-") || "linear"} · p=${p}`,
                 line: { width: 2, color: SETTING_COLORS[i % SETTING_COLORS.length] },
                 hovertemplate: `${plain(e.author)}, p=${p}<br>epoch %{x}: %{y:.4g}<extra></extra>` };
      });
      Plotly.react(el, traces, { ...layout(Math.max(10, ...data.experiments.map(
        (e) => e.epochs.length))), height: 360, xaxis: { title: { text: "epoch" } },
        yaxis: { title: { text: "validation loss" } } }, { responsive: true, displaylogo: false });
      el.dataset.experiments = String(data.experiments.length);
      const early = held;
      held = null;
      early.forEach(extend);
    }
    function extend(m) {
      const i = index[m.exp];
      if (i === undefined) { reload(); return; }  // a new experiment: fetch its curve
      if (m.epoch <= last[m.exp]) return;          // already drawn
      if (m.epoch > last[m.exp] + 1) { reload(); return; }  // missed one: redraw from storage
      last[m.exp] = m.epoch;
      Plotly.extendTraces(el, { x: [[m.epoch]], y: [[m.val_loss]] }, [i]);
    }
    const reload = () => { if (!pending) pending = setTimeout(() => { pending = null; load(); }, 500); };
    const source = new EventSource(`/api/rooms/${code}/events`);
    source.addEventListener("hello", load);  // (re)connected: start from the stored state
    source.addEventListener("epoch", (e) => {
      const m = JSON.parse(e.data);
      if (m.run !== 0) return;
      if (held) held.push(m); else extend(m);
    });
    // The leaderboard (an htmx partial) refreshes at most every 2 s while events flow, and
    // once more after the last one, so it always ends up current.
    let refreshed = 0, trailing = null;
    const changed = () => {
      const wait = Math.max(0, refreshed + 2000 - Date.now());
      if (trailing) return;
      trailing = setTimeout(() => {
        trailing = null; refreshed = Date.now();
        document.body.dispatchEvent(new CustomEvent("dp:room-update"));
      }, wait);
    };
    source.addEventListener("status", () => { reload(); changed(); });
    source.addEventListener("epoch", changed);
    for (const f of ["done", "failed", "cancelled"]) source.addEventListener(f, changed);
    source.addEventListener("room", () => {
      if (!document.body.classList.contains("page-present")) location.reload();
    });
  }

  // ---- controls <-> URL ---------------------------------------------------------------------
  // The address bar always carries the current setup (only values that differ from the
  // defaults), replaced in place so no history entries pile up.

  function syncUrl(form) {
    const params = new URLSearchParams();
    for (const el of form.elements) {
      if (!el.name || el.dataset.default === undefined) continue;
      if (el.value.trim() !== el.dataset.default) params.set(el.name, el.value.trim());
    }
    const query = params.toString().replace(/%2C/g, ",");
    const path = location.pathname; // the playground, or a workshop room's page
    history.replaceState(null, "", query ? `${path}?${query}` : path);
  }

  // A sweep of rates replaces model.dropout (or the input rate): say so next to it.
  function markSwept(form) {
    const value = (name) => (form.elements[name] ? form.elements[name].value.trim() : "");
    const sweeping = ["sweep.dropout", "sweep.grid_step", "sweep.random_samples"].some(value);
    const target = value("sweep.target") || "hidden";
    const field = form.querySelector('[data-field="model.dropout"]');
    if (!field) return;
    const swept = sweeping && target !== "input";
    field.classList.toggle("swept", swept);
    field.querySelector('[data-role="swept-note"]').hidden = !swept;
  }

  function initControls(form) {
    if (form.dataset.ready) return;
    form.dataset.ready = "1";
    const update = () => { syncUrl(form); markSwept(form); };
    form.addEventListener("input", update);
    form.addEventListener("change", update);
    markSwept(form);
  }

  function initCopy(button) {
    if (button.dataset.ready) return;
    button.dataset.ready = "1";
    button.addEventListener("click", async () => {
      const url = new URL(button.dataset.copy, location.href).href;
      try {
        await navigator.clipboard.writeText(url);
        button.textContent = "Copied";
      } catch {
        window.prompt("Copy this link", url);
      }
      setTimeout(() => { button.textContent = "Copy link"; }, 1500);
    });
  }

  function init(root) {
    const all = (sel) => [...(root.matches?.(sel) ? [root] : []), ...root.querySelectorAll(sel)];
    all("[data-exp]").forEach(initRun);
    all("[data-compare]").forEach(initCompare);
    all("[data-room]").forEach(initBoard);
    all("form#controls").forEach(initControls);
    all("[data-copy]").forEach(initCopy);
  }

  // Forms that destroy something ask first.
  document.addEventListener("submit", (e) => {
    const form = e.target;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) e.preventDefault();
  });

  // A run started: errors from an earlier refused attempt no longer apply.
  document.addEventListener("htmx:afterRequest", (e) => {
    const form = e.detail.elt;
    if (form.id !== "controls" || !e.detail.successful) return;
    form.querySelectorAll(".field.has-error").forEach((f) => f.classList.remove("has-error"));
    form.querySelectorAll(".field .error, .form-errors").forEach((el) => el.remove());
  });

  // A run panel being replaced (a new run started) closes its stream.
  document.addEventListener("htmx:beforeSwap", (e) => {
    const old = e.detail.target;
    if (old && old._source) old._source.close();
  });
  document.addEventListener("DOMContentLoaded", () => {
    init(document.body);
    if (window.htmx) htmx.onLoad((el) => init(el));
  });
})();
