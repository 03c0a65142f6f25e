// A workshop room's board (<section class="board" data-room="CODE">): everyone's validation
// curves, live, and the room's U-curve, from the page's one room stream (hub.js). The server
// replays the room's history, then follows it, and resumes after a lost connection by itself:
// this page holds no gap logic and never refetches the curves. A trace is added for an
// experiment at its first epoch and extended per epoch of run 0, the redraws batched per
// animation frame. The U-curve's points are computed by the server
// (/api/rooms/CODE/ucurve) and fetched again when experiments end. The leaderboard is an htmx
// partial that refreshes itself on "dp:room-update" (at most every 2 s while events flow,
// and once after the last).

import { roomStream } from "./hub.js";
import { CONFIG, PALETTE, baseLayout, fade, plain, textSize } from "./plot.js";

const UPDATE_MS = 2000;
const FINAL = ["done", "failed", "cancelled"];

export function initBoard(box) {
  if (box.dataset.ready) return;
  box.dataset.ready = "1";
  const el = box.querySelector('[data-chart="room-curves"]');
  const ucurveEl = box.querySelector('[data-chart="room-ucurve"]');
  const size = textSize();
  let meta = {}, index = {}, count = 0, added = [], pending = {}, frame = null;

  const layout = () => baseLayout({
    font: { size }, margin: { l: 60, r: 10, t: 10, b: 80 }, height: size > 13 ? 460 : 360,
    xaxis: { title: { text: "epoch", standoff: 4 }, rangemode: "tozero" },
    yaxis: { title: { text: "validation loss" } },
    legend: { orientation: "h", y: -0.25, x: 0, font: { size } }, showlegend: true,
  });
  Plotly.newPlot(el, [], layout(), CONFIG);

  function draw() { // once per frame: new traces first, then every queued point at once
    frame = null;
    const began = performance.now();
    if (added.length) { Plotly.addTraces(el, added); added = []; }
    const idx = Object.keys(pending).map(Number);
    if (idx.length) {
      Plotly.extendTraces(el, { x: idx.map((i) => pending[i].x), y: idx.map((i) => pending[i].y) }, idx);
      if (window.dpBench) { // bench/workshop.py: when each epoch reached the screen
        performance.mark("dp:board-drawn", { detail: idx.flatMap((i) => pending[i].ended) });
        performance.measure("dp:board-draw", { start: began });
      }
      pending = {};
    }
    el.dataset.experiments = String(count);
  }
  const later = () => { if (!frame) frame = requestAnimationFrame(draw); };

  function trace(exp) { // an experiment's trace, made at its first epoch
    if (exp in index) return index[exp];
    const x = meta[exp] || { author: "?", label: "", name: "" };
    const who = `${plain(x.author)} · ${plain(x.label)}`;
    const name = x.name ? `<br>${plain(x.name)}` : "";
    added.push({ x: [], y: [], mode: "lines", type: "scatter", name: who,
                 line: { width: x.mine ? 3 : 2, color: PALETTE[count % PALETTE.length] },
                 hovertemplate: `${who}${name}<br>epoch %{x}: %{y:.4g}<extra></extra>` });
    index[exp] = count;
    count += 1;
    return index[exp];
  }

  // The leaderboard and the U-curve refresh at most every UPDATE_MS while events flow, and
  // once more after the last one, so they always end up current.
  let refreshed = 0, trailing = null, ucurveDue = false;
  function changed(ucurve = false) {
    ucurveDue = ucurveDue || ucurve;
    if (trailing) return;
    trailing = setTimeout(() => {
      trailing = null; refreshed = Date.now();
      document.body.dispatchEvent(new CustomEvent("dp:room-update"));
      if (ucurveDue) { ucurveDue = false; drawUcurve(ucurveEl, size); }
    }, Math.max(0, refreshed + UPDATE_MS - Date.now()));
  }

  const stream = roomStream(box);
  box._source = stream.source;
  stream.subscribe((kind, data) => {
    if (kind === "reset") { // the viewer sees more or less now: start over
      Plotly.react(el, [], layout(), CONFIG);
      meta = {}; index = {}; count = 0; added = []; pending = {};
      changed(true);
      return;
    }
    if (kind === "experiment") meta[data.exp] = data;
    else if (kind === "epoch") {
      if (data.run !== 0) return;
      const i = trace(data.exp);
      const p = (pending[i] = pending[i] || { x: [], y: [], ended: [] });
      p.x.push(data.epoch); p.y.push(data.val_loss); p.ended.push(data.ended_at);
      later();
      changed();
    } else if (FINAL.includes(kind)) changed(true);
    else if (kind === "room") changed(true); // ranking or visibility may have changed
    else changed();
  });
  el.dataset.experiments = "0";
  drawUcurve(ucurveEl, size);
}

/** The room's U-curve, as the server computed it: a dot per finished experiment, the mean
 * per rate as a line with a ±1 std band. */
async function drawUcurve(el, size) {
  if (!el) return;
  let data;
  try {
    const res = await fetch(el.dataset.url, { headers: { Accept: "application/json" } });
    if (!res.ok) return;
    data = await res.json();
  } catch { return; } // the server is restarting: the next event fetches again
  // one mean curve (with its ±1 std band) per setup: the same data and network
  const traces = data.curves.flatMap((c, i) => {
    const color = PALETTE[i % PALETTE.length], m = c.means, name = plain(c.setup);
    const xs = m.map((p) => p.x);
    return [
      { x: xs, y: m.map((p) => p.mean - p.std), mode: "lines", type: "scatter",
        line: { width: 0 }, hoverinfo: "skip", showlegend: false, legendgroup: name },
      { x: xs, y: m.map((p) => p.mean + p.std), mode: "lines", type: "scatter",
        line: { width: 0 }, fill: "tonexty", fillcolor: fade(color), hoverinfo: "skip",
        showlegend: false, legendgroup: name },
      { x: xs, y: m.map((p) => p.mean), mode: "lines+markers", type: "scatter",
        name: `room mean ± std: ${name}`, legendgroup: name, meta: "mean",
        line: { color, width: 3 }, marker: { size: 10 }, text: m.map((p) => p.n),
        hovertemplate: `${name}<br>p = %{x}: mean %{y:.4g} over %{text} experiments<extra></extra>` },
    ];
  });
  traces.push({ x: data.points.map((p) => p.x), y: data.points.map((p) => p.y),
    mode: "markers", type: "scatter", name: "one experiment", meta: "dots",
    marker: { size: data.points.map((p) => (p.mine ? 13 : 9)), color: "rgba(60,60,60,0.55)",
              line: { color: "#000", width: data.points.map((p) => (p.mine ? 2 : 0)) } },
    text: data.points.map((p) => `${plain(p.author)} · ${plain(p.label)}<br>${plain(p.setup)}`),
    hovertemplate: "%{text}<br>%{y:.4g}<extra></extra>" });
  const title = document.querySelector('[data-role="ucurve-metric"]');
  if (title) title.textContent = data.metric;
  Plotly.react(el, traces, baseLayout({
    font: { size }, margin: { l: 60, r: 10, t: 10, b: 90 }, height: size > 13 ? 460 : 340,
    xaxis: { title: { text: "dropout rate p (hidden layers)" }, rangemode: "tozero" },
    yaxis: { title: { text: data.metric } },
    legend: { orientation: "h", y: -0.28, x: 0, font: { size } },
  }), CONFIG);
  el.dataset.points = String(data.points.length);
}
