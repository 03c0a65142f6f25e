// A workshop room's board (<section class="board" data-room="CODE">): everyone's validation
// curves, live, from ONE EventSource on /api/rooms/CODE/events. The server replays the room's
// whole history, then follows live, with SSE ids; a reconnect resumes after the last id by
// itself (Last-Event-ID). So this page holds no gap logic and never refetches the room: it
// adds a trace per `experiment` event and extends it per `epoch` event of run 0, batching the
// redraws per animation frame. The leaderboard is an htmx partial that refreshes itself on
// "dp:room-update" (dispatched on body, at most every 2 s while events flow, once after).

import { CONFIG, PALETTE, baseLayout, plain } from "./plot.js";

const UPDATE_MS = 2000;

export function initBoard(box) {
  if (box.dataset.ready) return;
  box.dataset.ready = "1";
  const code = box.dataset.room, el = box.querySelector('[data-chart="room-curves"]');
  const index = {};          // experiment id -> trace index
  let count = 0, added = [], pending = {}, frame = null;

  Plotly.newPlot(el, [], baseLayout({
    margin: { l: 55, r: 10, t: 10, b: 70 }, height: 360,
    xaxis: { title: { text: "epoch", standoff: 4 }, rangemode: "tozero" },
    yaxis: { title: { text: "validation loss" } },
    legend: { orientation: "h", y: -0.3, x: 0 }, showlegend: true, // names even when alone
  }), CONFIG);

  function draw() { // once per frame: new traces first, then every queued point at once
    frame = null;
    if (added.length) { Plotly.addTraces(el, added); added = []; }
    const idx = Object.keys(pending).map(Number);
    if (idx.length) {
      Plotly.extendTraces(el, { x: idx.map((i) => pending[i].x), y: idx.map((i) => pending[i].y) }, idx);
      pending = {};
    }
    el.dataset.experiments = String(count);
  }
  const later = () => { if (!frame) frame = requestAnimationFrame(draw); };

  // The leaderboard refreshes at most every UPDATE_MS while events flow, and once more after
  // the last one, so it always ends up current.
  let refreshed = 0, trailing = null;
  function changed() {
    if (trailing) return;
    trailing = setTimeout(() => {
      trailing = null; refreshed = Date.now();
      document.body.dispatchEvent(new CustomEvent("dp:room-update"));
    }, Math.max(0, refreshed + UPDATE_MS - Date.now()));
  }

  const source = new EventSource(`/api/rooms/${code}/events`);
  box._source = source;
  const on = (name, handle) => source.addEventListener(name, (e) => handle(JSON.parse(e.data), e));
  // Subscribed: what the room holds is on its way (tests wait for this attribute).
  source.addEventListener("open", () => { el.dataset.experiments = String(count); });

  on("experiment", (x) => {
    if (x.exp in index) return;  // the same experiment announced again: keep its trace
    index[x.exp] = count;
    const who = `${plain(x.author)} · ${plain(x.label)}`;
    const name = x.name ? `<br>${plain(x.name)}` : "";
    added.push({ x: [], y: [], mode: "lines", type: "scatter", name: who,
                 line: { width: 2, color: PALETTE[count % PALETTE.length] },
                 hovertemplate: `${who}${name}<br>epoch %{x}: %{y:.4g}<extra></extra>` });
    count += 1;
    later();
  });
  on("epoch", (m) => {
    if (m.run !== 0 || !(m.exp in index)) return;
    const p = (pending[index[m.exp]] = pending[index[m.exp]] || { x: [], y: [] });
    p.x.push(m.epoch); p.y.push(m.val_loss);
    later();
    changed();
  });
  for (const name of ["status", "done", "failed", "cancelled", "member"]) on(name, changed);
  on("room", (_, e) => roomChanged(box, e.lastEventId));
}

// The presenter changed the room: reload so that the page shows the new rules (the presenter's
// own page stays). The stream replays the room's history, old `room` events included: those
// up to the room's log position when the server rendered this page (data-seq) are already in
// it, so only later ones reload (a room event's id is its row number in the room's log).
function roomChanged(box, id) {
  if (document.body.classList.contains("page-present")) return;
  if (Number(id) > Number(box.dataset.seq || 0)) location.reload();
}
