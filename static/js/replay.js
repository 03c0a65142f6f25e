// Watching a run learn: when the page draws each epoch (pacing), and the replay controls.
//
// Training is fast: a default run can arrive whole in half a second, and drawn as it arrives
// nothing visibly "learns". The page of one's own fresh run (data-pace on the panel) therefore
// draws its epochs at most `paceRate` per millisecond, so that a run of N epochs that arrives
// at once is drawn over about PACE_SECONDS, one that arrives slower is drawn as it arrives,
// and the first epoch is drawn at once. Only drawing waits: the server trains at full speed,
// and the status ("done"), progress and summary never wait for the drawing.
//
// The replay (play/pause and a scrubber over epochs) moves the same cursor: the curves are
// drawn up to the cursor's epoch and each decision surface shows its latest snapshot at or
// before it (`snapshotIndex`). The pure rules come first (tests/js/replay.test.mjs), then the
// small class that binds them to the panel's controls (static/js/run.js drives it).

export const PACE_SECONDS = 3.5; // a whole fast run is drawn over about this long
export const REPLAY_SECONDS = 4; // a replay from the first epoch takes about this long

/** Epochs per millisecond at which `epochs` epochs are drawn over `seconds` (the first epoch
 * is drawn at once, the other epochs - 1 over the time). */
export function paceRate(epochs, seconds) {
  return Math.max(1, epochs - 1) / (seconds * 1000);
}

/** The drawing cursor (an epoch, fractional) after `dtMs` more milliseconds: it moves towards
 * `target` (the latest epoch received) at `rate` epochs per ms and never past it; the first
 * epoch is drawn at once, whatever the time. */
export function advance(cursor, target, dtMs, rate) {
  if (target < 1) return cursor;
  if (cursor < 1) return 1;
  return Math.min(target, cursor + Math.max(0, dtMs) * rate);
}

/** Which snapshot belongs to an epoch: the index of the latest one taken at or before it in
 * `epochs` (the snapshots' epochs, ascending), or -1 when the first comes later. */
export function snapshotIndex(epochs, epoch) {
  let lo = 0, hi = epochs.length - 1, found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (epochs[mid] <= epoch) { found = mid; lo = mid + 1; } else hi = mid - 1;
  }
  return found;
}

/** Where Play starts: from the first epoch when the cursor is at the end (a replay), else
 * where the cursor was paused. */
export function playFrom(cursor, target) {
  return Math.floor(cursor) >= target ? 1 : Math.max(1, cursor);
}

/** The replay controls of a run panel (templates/partials/run.html .replay): a Play/Pause
 * button and an epoch scrubber, with the label "epoch k of N". `onSeek(epoch)` is called when
 * the user drags the scrubber, `onPlay(playing)` when the button is pressed. */
export class ReplayControls {
  constructor(box, epochs, onSeek, onPlay) {
    this.box = box; this.epochs = epochs;
    this.button = box.querySelector('[data-role="play"]');
    this.scrub = box.querySelector('[data-role="epoch"]');
    this.label = box.querySelector('[data-role="epoch-label"]');
    this.scrub.addEventListener("input", () => onSeek(Number(this.scrub.value)));
    this.button.addEventListener("click", () => onPlay(this.button.getAttribute("aria-pressed") !== "true"));
  }

  /** Show where the drawing is: `shown` of `received` epochs, playing or not. */
  update(shown, received, playing) {
    if (received > 0 && this.box.hidden) this.box.hidden = false;
    this.scrub.max = String(Math.max(1, received));
    if (document.activeElement !== this.scrub || playing) this.scrub.value = String(Math.max(1, shown));
    this.scrub.setAttribute("aria-valuetext", `epoch ${shown} of ${this.epochs}`);
    this.label.textContent = `epoch ${shown} of ${this.epochs}`;
    this.button.setAttribute("aria-pressed", String(playing));
    this.button.textContent = playing ? "Pause" : shown < received ? "Play" : "Replay";
    this.box.dataset.shown = String(shown);
  }
}
