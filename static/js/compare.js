// The compare view (<div data-compare='[{id, letter, task, symbol, settings, runs, charts}]'>):
// several experiments' mean curves overlaid, a line per setting of a sweep. As everywhere, a
// line's colour is its dropout rate's (the server's settings carry it) and the split its style
// (validation solid, train dashed); experiments are told apart by their letter and a marker
// symbol. The server grouped the runs into settings, labelled them and named each chart's
// train and validation fields; the page fetches each experiment's epochs from
// /api/experiments/<id> and averages them with stats.perEpoch.

import { CONFIG, epochLayout } from "./plot.js";
import { perEpoch } from "./stats.js";

export async function initCompare(box) {
  if (box.dataset.ready) return;
  box.dataset.ready = "1";
  const items = JSON.parse(box.dataset.compare);
  const exps = await Promise.all(items.map((it) =>
    fetch(`/api/experiments/${it.id}`).then((r) => r.json())));
  const out = { loss: [], score: [] };
  items.forEach((it, n) => {
    const fields = Object.keys(out).flatMap((k) => [it.charts[k].train, it.charts[k].val]);
    const series = {}; // run index -> field -> values epoch by epoch
    for (const r of exps[n].runs) {
      series[r.index] = Object.fromEntries(fields.map((f) => [f, r.epochs.map((e) => e[f])]));
    }
    it.settings.forEach((st) => {
      const name = `${it.letter} ${st.label}`;
      const marker = { symbol: it.symbol, size: 8, color: st.color, maxdisplayed: 10 };
      for (const [key, traces] of Object.entries(out)) {
        const chart = it.charts[key];
        const v = perEpoch(series, st.runs, chart.val), t = perEpoch(series, st.runs, chart.train);
        traces.push({ x: v.x, y: v.mean, name: `${name} validation`, legendgroup: name,
                      mode: "lines+markers", marker, line: { color: st.color, width: 2.5 } });
        traces.push({ x: t.x, y: t.mean, name: `${name} train`, legendgroup: name,
                      showlegend: false, mode: "lines+markers", marker,
                      line: { color: st.color, width: 1.5, dash: "dash" } });
      }
    });
  });
  const epochs = Math.max(...exps.map((e) => e.config.train.epochs));
  for (const [key, traces] of Object.entries(out)) {
    const el = box.querySelector(`[data-chart="compare-${key}"]`);
    const yLabel = items.length ? items[0].charts[key].y_label : "";
    const same = items.every((it) => it.charts[key].y_label === yLabel);
    Plotly.newPlot(el, traces, { ...epochLayout(epochs, same ? yLabel : ""), height: 320 }, CONFIG);
    el.dataset.traces = String(traces.length);
  }
}
