// A run panel (<section id="run" data-exp data-view>, templates/partials/run.html): its curve
// charts, the sweep chart and the insight plots, fed by /api/experiments/<id>/events. The
// stream replays stored epochs first, then live ones, so the same code draws a share link
// opened tomorrow and a run training now; EventSource reconnects by itself with
// Last-Event-ID and the server resumes after it with no gap and no duplicate.
//
// The view (data-view, built in Python) says everything the page shows: fields, labels,
// colours, settings. The status bar is a server partial that refreshes itself on "dp:status";
// between refreshes the page only moves its progress bar along with the epochs it draws.

import { CurveChart } from "./curves.js";
import { pageRoomStream } from "./hub.js";
import { SnapshotView, drawConfusion } from "./insight.js";
import { SweepChart } from "./sweep.js";

const FLUSH_MS = 120; // batch redraws: at most ~8 per second however fast epochs arrive
const FINAL = ["done", "failed", "cancelled"];

export function initRun(panel) {
  if (panel.dataset.ready || !panel.dataset.view) return;
  panel.dataset.ready = "1";
  const id = panel.dataset.exp, view = JSON.parse(panel.dataset.view);
  const $ = (role) => panel.querySelector(`[data-role="${role}"]`); // fresh: partials swap

  const charts = Object.entries(view.charts).flatMap(([key, chart]) => {
    const el = panel.querySelector(`[data-chart="${key}"]`);
    return el ? [new CurveChart(el, chart, view)] : [];
  });
  // per run, per field: the values epoch by epoch (for the mean curves of a sweep)
  const series = view.runs.map(() => Object.fromEntries(view.fields.map((f) => [f, []])));
  const settingOf = view.runs.map((r) => r.setting);

  const sweepEl = panel.querySelector('[data-chart="sweep"]');
  const sweep = view.sweep && sweepEl && new SweepChart(sweepEl, $("sweep-metric"), view,
    (key) => charts.forEach((c) => c.highlight(key)));
  if (sweep && FINAL.includes(panel.dataset.status)) sweep.load();

  const insightBox = panel.querySelector("[data-insight]");
  const snapshots = insightBox && insightBox.dataset.insight
    ? new SnapshotView(panel, id, insightBox.dataset.insight, view) : null;

  let received = 0, timer = null, dirty = new Set(), snapDirty = false;

  function flush() {
    timer = null;
    charts.forEach((c) => c.flush(series, dirty));
    if (snapshots && snapDirty) snapshots.draw();
    dirty = new Set(); snapDirty = false;
    panel.dataset.points = String(received);
    const progress = $("progress"), text = $("progress-text");
    if (progress) progress.value = received;
    if (text) text.textContent = `${received} / ${view.total} epochs`;
  }
  const later = () => { if (!timer) timer = setTimeout(flush, FLUSH_MS); };

  function refreshStatus() { // the status bar partial asks the server
    const bar = panel.querySelector(`#statusbar-${id}`) || panel.querySelector(".statusbar");
    if (bar && window.htmx) htmx.trigger(bar, "dp:status");
  }

  const handlers = {
    status(data) {
      panel.dataset.status = data.status;
      refreshStatus();
    },
    epoch(m) {
      received += 1;
      for (const f of view.fields) series[m.run][f].push(m[f]);
      charts.forEach((c) => c.push(m.run, m));
      dirty.add(settingOf[m.run]);
      later();
    },
    snapshot(snap) {
      if (!snapshots) return;
      snapshots.add(snap.run, snap);
      snapDirty = true;
      later();
    },
  };
  function finished(final, data) {
    if (panel.dataset.final) return;
    if (timer) clearTimeout(timer);
    flush();
    panel.dataset.status = final;
    refreshStatus();
    const error = $("error");
    if (data.error && error) { error.hidden = false; error.textContent = data.error; }
    if (sweep) sweep.load();
    const confusion = data.summary && data.summary.runs && data.summary.runs[0].confusion;
    const confusionEl = panel.querySelector('[data-chart="confusion"]');
    if (confusion && confusionEl) drawConfusion(confusionEl, confusion, view.palette.counts);
    panel.dataset.final = final;
    document.body.dispatchEvent(new CustomEvent(`dp:final-${id}`));
    document.body.dispatchEvent(new CustomEvent("dp:final"));
  }

  // In a workshop room the page has one stream, the room's (hub.js), which carries this
  // panel's experiment too; elsewhere the panel follows its experiment's own stream.
  const room = pageRoomStream();
  if (room) {
    room.follow(id, (kind, data) => {
      if (FINAL.includes(kind)) finished(kind, data);
      else if (handlers[kind]) handlers[kind](data);
    });
    return;
  }
  const source = new EventSource(`/api/experiments/${id}/events`);
  panel._source = source; // closed when the panel is swapped out (main.js)
  for (const kind of Object.keys(handlers)) {
    source.addEventListener(kind, (e) => handlers[kind](JSON.parse(e.data)));
  }
  for (const final of FINAL) {
    source.addEventListener(final, (e) => {
      source.close();
      finished(final, JSON.parse(e.data));
    });
  }
}
