// The live mean/std of a sweep's curves (static/js/stats.js). Its agreement with Python's
// app.ml.summary._mean_std is checked from pytest (tests/web/test_js_stats.py).
import assert from "node:assert/strict";
import { test } from "node:test";

import { liveSetting, meanStd, perEpoch } from "../../static/js/stats.js";

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

test("liveSetting: the mean over a setting's runs at their latest common epoch", () => {
  const series = [
    { val_loss: [0.9, 0.6, 0.5], val_acc: [0.5, 0.7, 0.8] },
    { val_loss: [0.8, 0.7], val_acc: [0.6, 0.9] }, // one epoch behind
    { val_loss: [], val_acc: [] }, // another setting, not started
  ];
  const s = liveSetting(series, [0, 1], "val_loss");
  assert.equal(s.epoch, 2); // the last epoch both runs have reached
  assert.ok(Math.abs(s.mean - 0.65) < 1e-12 && s.n === 2);
  assert.equal(liveSetting(series, [0, 1], "val_acc").mean, 0.8);
  assert.deepEqual(liveSetting(series, [0], "val_loss", 1), { epoch: 1, ...meanStd([0.9]) });
  assert.deepEqual(liveSetting(series, [2], "val_loss"), { epoch: 0, mean: null, std: null, n: 0 });
  assert.deepEqual(liveSetting(series, [], "val_loss"), { epoch: 0, mean: null, std: null, n: 0 });
});

test("liveSetting: a best_ metric is each run's lowest validation loss so far", () => {
  const series = [{ val_loss: [0.9, 0.4, 0.6] }, { val_loss: [0.8, null, 0.7] }];
  const s = liveSetting(series, [0, 1], "best_val_loss");
  assert.equal(s.epoch, 3);
  assert.ok(Math.abs(s.mean - (0.4 + 0.7) / 2) < 1e-12);
  assert.equal(liveSetting(series, [0], "best_val_loss", 1).mean, 0.9);
});
