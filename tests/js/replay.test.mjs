// The pure rules of watching a run learn (static/js/replay.js): how fast the page draws the
// epochs it has (pacing), and which decision surface belongs to an epoch. A simulation of the
// drawing loop checks the promises the page makes: a run that arrives whole in half a second
// is drawn over about 3-4 s, one that arrives slower is drawn as it arrives, the first epoch
// at once.
import assert from "node:assert/strict";
import { test } from "node:test";

import { PACE_SECONDS, advance, paceRate, playFrom, snapshotIndex } from "../../static/js/replay.js";

/** Simulate the panel's loop (static/js/run.js tick): epochs arrive at `arrivals[i]` ms; the
 * page redraws every `frame` ms while the cursor is behind. Returns, per epoch, when it was
 * first drawn (ms). */
function simulate(arrivals, epochs, frame = 40) {
  const rate = paceRate(epochs, PACE_SECONDS);
  const drawnAt = [];
  let cursor = 0, t = 0;
  const end = arrivals[arrivals.length - 1] + 60_000;
  while (t <= end && drawnAt.length < epochs) {
    const target = arrivals.filter((a) => a <= t).length;
    const before = Math.floor(cursor);
    cursor = advance(cursor, target, frame, rate);
    for (let e = before + 1; e <= Math.floor(cursor); e++) drawnAt[e - 1] = t;
    t += frame;
  }
  return drawnAt;
}

test("paceRate: N epochs take the given seconds, the first one free", () => {
  assert.equal(paceRate(151, 3), 150 / 3000);
  assert.equal(paceRate(1, 3), 1 / 3000); // never zero: one epoch is drawn at once anyway
  assert.ok(PACE_SECONDS >= 3 && PACE_SECONDS <= 4);
});

test("advance: the first epoch at once, then at most rate per ms, never past the target", () => {
  assert.equal(advance(0, 0, 1000, 1), 0); // nothing arrived: nothing drawn
  assert.equal(advance(0, 150, 0, 0.01), 1); // the first epoch the moment it is there
  assert.equal(advance(1, 150, 100, 0.01), 2);
  assert.equal(advance(10, 12, 10_000, 0.01), 12); // caught up: drawn as it arrives
  assert.equal(advance(5, 150, -20, 0.01), 5); // a clock step back moves nothing
});

test("a run that arrives whole in half a second is drawn over about 3-4 s", () => {
  const epochs = 150;
  const arrivals = Array.from({ length: epochs }, (_, i) => 10 + (500 * i) / epochs);
  const drawn = simulate(arrivals, epochs);
  assert.ok(drawn[0] <= 40, `first epoch drawn at ${drawn[0]} ms`); // within a frame
  const last = drawn[epochs - 1];
  assert.ok(last >= 3000 && last <= 4000, `last epoch drawn at ${last} ms`);
  // steadily: no half of the run jumps in at once
  assert.ok(drawn[74] > 1200 && drawn[74] < 2300, `epoch 75 at ${drawn[74]} ms`);
});

test("a run that arrives slower than the pace is drawn as it arrives", () => {
  const epochs = 60;
  const arrivals = Array.from({ length: epochs }, (_, i) => 200 * (i + 1)); // 12 s
  const drawn = simulate(arrivals, epochs);
  drawn.forEach((t, i) => assert.ok(t - arrivals[i] <= 80, `epoch ${i + 1}: ${t - arrivals[i]} ms late`));
});

test("snapshotIndex: the latest snapshot at or before the epoch", () => {
  const epochs = [4, 8, 12, 15];
  assert.equal(snapshotIndex(epochs, 3), -1); // before the first: none
  assert.equal(snapshotIndex(epochs, 4), 0);
  assert.equal(snapshotIndex(epochs, 7), 0);
  assert.equal(snapshotIndex(epochs, 8), 1);
  assert.equal(snapshotIndex(epochs, 14), 2);
  assert.equal(snapshotIndex(epochs, 15), 3);
  assert.equal(snapshotIndex(epochs, 999), 3);
  assert.equal(snapshotIndex([], 5), -1);
  for (let e = 0; e < 20; e++) { // against the plain rule
    const plain = epochs.reduce((best, s, i) => (s <= e ? i : best), -1);
    assert.equal(snapshotIndex(epochs, e), plain, `epoch ${e}`);
  }
});

test("playFrom: from the start at the end, else where it was paused", () => {
  assert.equal(playFrom(150, 150), 1);
  assert.equal(playFrom(150.7, 150), 1);
  assert.equal(playFrom(40.5, 150), 40.5);
  assert.equal(playFrom(0, 150), 1);
});
