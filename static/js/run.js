// A run panel (<section id="run" data-exp data-view>, templates/partials/run.html): its curve
// charts, the sweep chart and the decision surfaces, fed by /api/experiments/<id>/events. The
// stream replays stored epochs first, then live ones, so the same code draws a share link
// opened tomorrow and a run training now; EventSource reconnects by itself with
// Last-Event-ID and the server resumes after it with no gap and no duplicate.
//
// What arrives is kept (`series`, the snapshots); what is drawn is everything up to one epoch,
// the cursor. On a share page the cursor follows what arrives (redraws batched, the first at
// once). On the page of one's own fresh run (data-pace) it moves at most at replay.paceRate,
// so a run that arrives in half a second is still seen learning for a few seconds. The replay
// controls move the same cursor: Play from the start, Pause, or drag the epoch scrubber; a
// sweep's rate slider picks whose curves and surface to show. Only drawing ever waits: the
// status, progress bar, announcements, summary and "dp:final" events follow the stream at
// once.
//
// The view (data-view, built in Python) says everything the page shows: fields, labels,
// colours, settings, snapshot runs. The status bar is a server partial that refreshes itself
// on "dp:status"; between refreshes the page only moves its progress bar.

import { CurveChart } from "./curves.js";
import { pageRoomStream } from "./hub.js";
import { SnapshotView, drawConfusion } from "./insight.js";
import { PACE_SECONDS, REPLAY_SECONDS, ReplayControls, advance, paceRate, playFrom } from "./replay.js";
import { SweepChart } from "./sweep.js";

const FLUSH_MS = 120; // following a stream: at most ~8 redraws per second however fast it is
const FRAME_MS = 40; // pacing or replaying: a redraw every frame of ~25 per second
const FINAL = ["done", "failed", "cancelled"];
const SAID = { queued: "Queued.", running: "Training.", done: "Training done.",
               failed: "Training failed.", cancelled: "Training stopped." };

export function initRun(panel) {
  if (panel.dataset.ready || !panel.dataset.view) return;
  panel.dataset.ready = "1";
  const id = panel.dataset.exp, view = JSON.parse(panel.dataset.view);
  const paced = panel.dataset.pace === "1";
  const $ = (role) => panel.querySelector(`[data-role="${role}"]`); // fresh: partials swap

  const charts = {};
  for (const [key, chart] of Object.entries(view.charts)) {
    const el = panel.querySelector(`[data-chart="${key}"]`);
    if (el) charts[key] = new CurveChart(el, chart, view, Boolean(el.closest(".headline")));
  }
  const all = Object.values(charts);
  // per run, per field: the values epoch by epoch, as they arrived
  const series = view.runs.map(() => Object.fromEntries(view.fields.map((f) => [f, []])));

  // -- what a setting's selection changes: its curves, its surface, the sweep chart's pin
  let pinned = null;
  const highlight = (key) => all.forEach((c) => c.highlight(key, key !== null && key === pinned));
  const sweepEl = panel.querySelector('[data-chart="sweep"]');
  const sweep = view.sweep && sweepEl && new SweepChart(sweepEl, $("sweep-metric"), view,
    (key) => highlight(key), (key) => select(key === null ? null : view.settings.findIndex((s) => s.key === key)));
  if (sweep && FINAL.includes(panel.dataset.status)) sweep.load();

  const insightBox = panel.querySelector("[data-insight]");
  const snapshots = insightBox ? new SnapshotView(panel, id, insightBox.dataset.insight, view) : null;

  const rate = $("rate"), rateLabel = $("rate-label"), allRates = $("all-rates");
  function select(i) { // pin setting i (null: none) and show its surface
    pinned = i === null ? null : view.settings[i].key;
    if (sweep) sweep.pin(pinned);
    highlight(pinned);
    if (allRates) allRates.hidden = pinned === null;
    if (i === null) return;
    const s = view.settings[i];
    if (rate) {
      rate.value = String(i);
      rate.setAttribute("aria-valuetext", s.label);
      rateLabel.textContent = s.label;
      rateLabel.style.color = s.text_color;
    }
    const snap = view.snapshots.find((x) => x.setting === s.key);
    if (snapshots) snapshots.setRun(0, snap ? snap.run : -1, s);
  }
  if (rate) rate.addEventListener("input", () => select(Number(rate.value)));
  if (allRates) allRates.addEventListener("click", () => select(null));

  // -- hover an epoch on one chart: the same epoch on the others; the log toggle
  for (const c of all) {
    c.onHover((epoch, keys) => all.forEach((o) => { if (o !== c) o.hoverAt(epoch, keys); }),
              () => all.forEach((o) => { if (o !== c) o.unhover(); }));
  }
  const log = $("log");
  if (log && charts.loss) log.addEventListener("change", () => charts.loss.setLog(log.checked));

  // -- the cursor: which epoch is drawn, and how it moves
  let received = 0, latest = 0; // epoch events received; the furthest run's epochs
  let cursor = 0, drawn = -1, dirty = false, mode = "live"; // live | play | pause
  let timer = null, last = 0;
  const liveRate = paced ? paceRate(view.epochs, PACE_SECONDS) : Infinity;
  const replayRate = paceRate(view.epochs, REPLAY_SECONDS);
  const controlsBox = $("replay");
  const controls = controlsBox && new ReplayControls(controlsBox, view.epochs,
    (epoch) => { mode = "pause"; cursor = epoch; render(); },
    (play) => {
      if (!play) { mode = "pause"; render(); return; }
      if (timer) { clearTimeout(timer); timer = null; }
      cursor = playFrom(cursor, latest); mode = "play"; dirty = true;
      render(); wake(FRAME_MS, true);
    });

  function render() {
    const upTo = Math.floor(cursor);
    if (upTo !== drawn || dirty) {
      // charts out of view catch up less often while the cursor moves, and always at its end
      const end = upTo >= latest;
      all.forEach((c) => c.draw(series, upTo, end));
      if (sweep) sweep.live(series, upTo);
      drawn = upTo; dirty = false;
    }
    if (snapshots) snapshots.draw(upTo);
    const moving = mode === "play" || (mode === "live" && cursor < latest);
    if (controls) controls.update(upTo, latest, moving);
    panel.dataset.drawn = String(upTo);
    panel.dataset.points = String(received);
  }

  function tick() {
    timer = null;
    const now = performance.now(), dt = now - last;
    last = now;
    if (mode === "live") cursor = liveRate === Infinity ? latest : advance(cursor, latest, dt, liveRate);
    else if (mode === "play") {
      cursor = advance(cursor, latest, dt, replayRate);
      if (cursor >= latest) mode = "live";
    }
    render();
    if (mode !== "pause" && cursor < latest) wake(FRAME_MS);
  }

  /** Draw again after `delay` ms unless a draw is already due. `restart`: the drawing was
   * idle (or jumps to a replay), so the clock starts now and a burst of epochs after a pause
   * in the stream is paced from its arrival, not from the last draw. */
  function wake(delay, restart = false) {
    if (timer) return;
    if (restart) last = performance.now();
    timer = setTimeout(tick, delay);
  }
  function arrived() { // new data: the first point at once, then batched or paced
    if (timer) return;
    if (mode === "pause") { timer = setTimeout(() => { timer = null; render(); }, FLUSH_MS); return; }
    const first = drawn <= 0;
    wake(first ? 0 : liveRate === Infinity && mode === "live" ? FLUSH_MS : FRAME_MS, true);
  }

  // -- status, progress and announcements: never paced
  const announcer = $("announce");
  let quarter = 0;
  function announce(text) { if (announcer) announcer.textContent = text; }
  function progress() {
    // the status bar may have been drawn by the server a moment ago, before the latest epochs
    const bar = $("progress"), text = $("progress-text");
    const done = Math.max(received, bar ? Number(bar.getAttribute("value")) || 0 : 0);
    if (bar) bar.value = done;
    if (text) text.textContent = `${done} / ${view.total} epochs`;
    const q = Math.floor((4 * received) / Math.max(1, view.total));
    if (q > quarter && q < 4) { quarter = q; announce(`${received} of ${view.total} epochs trained.`); }
  }
  function refreshStatus() { // the status bar partial asks the server
    const bar = panel.querySelector(`#statusbar-${id}`) || panel.querySelector(".statusbar");
    if (bar && window.htmx) htmx.trigger(bar, "dp:status");
  }

  // A status bar the server drew before the latest epochs or before the end is brought up to
  // date: a refresh asked for while another was in flight is dropped by htmx, so one that
  // lands with a status behind the stream's asks again.
  panel.addEventListener("htmx:afterSettle", (e) => {
    if (!e.target.classList || !e.target.classList.contains("statusbar")) return;
    progress();
    const status = $("status");
    if (panel.dataset.final && status && status.textContent.trim() !== panel.dataset.final) refreshStatus();
  });

  const handlers = {
    status(data) {
      panel.dataset.status = data.status;
      refreshStatus();
      if (SAID[data.status]) announce(SAID[data.status]);
    },
    epoch(m) {
      received += 1;
      for (const f of view.fields) series[m.run][f].push(m[f]);
      latest = Math.max(latest, series[m.run][view.fields[0]].length);
      dirty = dirty || m.epoch <= cursor; // a lagging run's epoch below the cursor
      progress();
      arrived();
    },
    snapshot(snap) {
      if (!snapshots) return;
      snapshots.add(snap.run, snap);
      if (!timer) render();
    },
  };
  function finished(final, data) {
    if (panel.dataset.final) return;
    if (!paced && mode === "live") { // following a stream: everything is drawn at the end
      if (timer) { clearTimeout(timer); timer = null; }
      cursor = latest; render();
    }
    panel.dataset.status = final;
    refreshStatus();
    const error = $("error");
    if (data.error && error) { error.hidden = false; error.textContent = data.error; }
    announce(`${SAID[final]} ${received} of ${view.total} epochs.${data.error ? " " + data.error : ""}`);
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
