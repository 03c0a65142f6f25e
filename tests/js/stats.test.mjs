// The live mean/std of a sweep's curves (static/js/stats.js). Its agreement with Python's
// app.ml.summary._mean_std is checked from pytest (tests/web/test_js_stats.py).
import assert from "node:assert/strict";
import { test } from "node:test";

import { meanStd, perEpoch } from "../../static/js/stats.js";

test("meanStd: mean and sample std (n-1)", () => {
  const s = meanStd([1, 2, 3, 4]);
  assert.equal(s.n, 4);
  assert.equal(s.mean, 2.5);
  assert.ok(Math.abs(s.std - Math.sqrt(5 / 3)) < 1e-15);
});

test("meanStd: one value has std 0, none has null", () => {
  assert.deepEqual(meanStd([0.7]), { mean: 0.7, std: 0, n: 1 });
  assert.deepEqual(meanStd([]), { mean: null, std: null, n: 0 });
  assert.deepEqual(meanStd([null, undefined]), { mean: null, std: null, n: 0 });
});

test("meanStd: null and undefined (a diverged or unfinished run) are skipped", () => {
  assert.deepEqual(meanStd([2, null, 4, undefined]), meanStd([2, 4]));
  assert.deepEqual(meanStd([0, null]), { mean: 0, std: 0, n: 1 }); // 0 is a value
});

test("perEpoch: per epoch over the runs that reached it", () => {
  const series = [
    { val_loss: [1, 2, 3] },
    { val_loss: [3, 4] },
    { val_loss: [5, 6, 7, 8] }, // another setting's run: not asked for
  ];
  const out = perEpoch(series, [0, 1], "val_loss");
  assert.deepEqual(out.x, [1, 2, 3]);
  assert.deepEqual(out.mean, [2, 3, 3]);
  assert.deepEqual(out.std, [Math.SQRT2, Math.SQRT2, 0]);
});

test("perEpoch: epochs without any value are left out; no runs, no points", () => {
  const series = [{ val_loss: [null, 2] }, { val_loss: [null, 4] }];
  assert.deepEqual(perEpoch(series, [0, 1], "val_loss"), { x: [2], mean: [3], std: [Math.SQRT2] });
  assert.deepEqual(perEpoch(series, [], "val_loss"), { x: [], mean: [], std: [] });
  assert.deepEqual(perEpoch([{}], [0], "val_loss"), { x: [], mean: [], std: [] });
});
