// One event stream per page in a workshop room: the room's (/api/rooms/CODE/events). The
// board draws from it, and on a participant's page their own run panel does too, so a page
// holds one connection (browsers allow six per host over HTTP/1.1: a presenter with a few
// board tabs would run out).
//
// The server replays the room's log and then follows it; EventSource resumes after a lost
// connection with Last-Event-ID by itself. The hub adds only what a page needs on top:
// - a run panel swapped in after its experiment's first events (the Train button's answer
//   can come after them) gets them replayed from the hub's copy of the page's own experiments;
// - a presenter's change newer than the page (ids above data-seq) is announced on the body as
//   "dp:room-changed", and htmx partials (banner, controls, leaderboard) redraw in place;
// - when the server says this viewer now sees more or less (a `room` event's `sees_all`), the
//   stream is opened again from the start and every view starts over ("reset"), so what a
//   page holds is always what the server lets it see.

const KINDS = ["room", "member", "experiment", "status", "epoch", "snapshot",
               "done", "failed", "cancelled"];
const hubs = new Map();

/** The page's stream of the room whose board is `box` (<section data-room data-seq>). */
export function roomStream(box) {
  const code = box.dataset.room;
  if (!hubs.has(code)) hubs.set(code, new RoomStream(box));
  return hubs.get(code);
}

/** The room stream of this page, if it is a room's page (a participant's run panel). */
export function pageRoomStream() {
  const box = document.querySelector("[data-room]");
  return box ? roomStream(box) : null;
}

/** Compare two event ids of a room's log ("r" or "r.n"): <0, 0, >0. */
export function compareIds(a, b) {
  const [ra, na = 0] = String(a).split(".").map(Number);
  const [rb, nb = 0] = String(b).split(".").map(Number);
  return ra - rb || na - nb;
}

class RoomStream {
  constructor(box) {
    this.code = box.dataset.room;
    this.roomSeen = Number(box.dataset.seq || 0); // room events up to here are in the page
    this.seesAll = box.dataset.seesAll !== "false";
    this.views = new Set(); // (kind, data, id) => void, for every event
    this.followers = new Map(); // exp -> Set of handlers, for the page's own experiments
    this.kept = new Map(); // exp -> [[kind, data, id]]: the page's own experiments' events
    this.mine = new Set();
    this.open();
  }

  open() {
    if (this.source) this.source.close();
    this.source = new EventSource(`/api/rooms/${this.code}/events`);
    for (const kind of KINDS) {
      this.source.addEventListener(kind, (e) => this.dispatch(kind, JSON.parse(e.data), e.lastEventId));
    }
  }

  /** Draw every event of the room: `view(kind, data, id)`, and view("reset") to start over. */
  subscribe(view) { this.views.add(view); }

  /** Every event of one of the page's own experiments, those already here first. */
  follow(exp, handler) {
    for (const [kind, data, id] of this.kept.get(exp) || []) handler(kind, data, id);
    if (!this.followers.has(exp)) this.followers.set(exp, new Set());
    this.followers.get(exp).add(handler);
  }

  dispatch(kind, data, id) {
    if (kind === "experiment" && data.mine) this.mine.add(data.exp);
    if (data.exp && this.mine.has(data.exp)) this.keep(kind, data, id);
    for (const view of this.views) view(kind, data, id);
    if (kind === "room" && Number(id) > this.roomSeen) {
      this.roomSeen = Number(id);
      document.body.dispatchEvent(new CustomEvent("dp:room-changed", { detail: data }));
      if (data.sees_all !== this.seesAll) this.startOver(data.sees_all);
    }
  }

  keep(kind, data, id) { // each event once, whatever replays (see startOver)
    const list = this.kept.get(data.exp) || [];
    if (list.length && compareIds(id, list[list.length - 1][2]) <= 0) return;
    list.push([kind, data, id]);
    this.kept.set(data.exp, list);
    for (const handler of this.followers.get(data.exp) || []) handler(kind, data, id);
  }

  startOver(seesAll) {
    this.seesAll = seesAll;
    for (const view of this.views) view("reset");
    this.open();
  }
}
