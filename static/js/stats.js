// The one computation left in the page: while a sweep trains, the mean curve and ±1 std band
// of each setting, epoch by epoch, over the runs that reached that epoch, and each setting's
// current point on the sweep chart (`liveSetting`). Finished summaries (the sweep chart, the
// tables) come from the server; these live values cannot wait for it.
// meanStd is the same rule as app.ml.summary._mean_std (tests/web/test_js_stats.py runs both
// on the same values), so the live band and the final table never disagree.

/** Mean and sample std (n-1; 0 for one value) over the values that are not null/undefined.
 * Returns { mean, std, n }; mean and std are null when no value is left. */
export function meanStd(values) {
  const vs = values.filter((v) => v !== null && v !== undefined);
  const n = vs.length;
  if (n === 0) return { mean: null, std: null, n: 0 };
  const mean = vs.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(vs.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, std, n };
}

/** Per epoch (1-based), meanStd of `field` over the runs `runs` (indices into `series`, where
 * series[r][field][e] is run r's value at epoch e+1). Epochs no run has a value for are left
 * out. Returns { x: epochs, mean: [...], std: [...] }. */
export function perEpoch(series, runs, field) {
  const x = [], mean = [], std = [];
  const longest = Math.max(0, ...runs.map((r) => (series[r][field] || []).length));
  for (let e = 0; e < longest; e++) {
    const s = meanStd(runs.map((r) => (series[r][field] || [])[e]));
    if (!s.n) continue;
    x.push(e + 1); mean.push(s.mean); std.push(s.std);
  }
  return { x, mean, std };
}

/** A setting's live point on the sweep chart: meanStd over its runs of `field` at their
 * latest common epoch (the last epoch every run has reached, at most `upTo`). A "best_" field
 * is the lowest validation loss up to that epoch (best_val_loss). Returns { epoch, mean, std,
 * n }, epoch 0 (and mean null) before every run has one epoch. */
export function liveSetting(series, runs, field, upTo = Infinity) {
  const best = field.startsWith("best_");
  const key = best ? "val_loss" : field;
  const epoch = Math.min(upTo, ...runs.map((r) => ((series[r] || {})[key] || []).length));
  if (!runs.length || epoch < 1) return { epoch: 0, mean: null, std: null, n: 0 };
  const values = runs.map((r) => {
    const vs = series[r][key].slice(0, epoch);
    if (!best) return vs[epoch - 1];
    const ok = vs.filter((v) => v !== null && v !== undefined);
    return ok.length ? Math.min(...ok) : null;
  });
  return { epoch, ...meanStd(values) };
}
