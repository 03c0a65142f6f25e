// The pure helpers of static/js/plot.js and static/js/controls.js.
import assert from "node:assert/strict";
import { test } from "node:test";

import { setupQuery } from "../../static/js/controls.js";
import { CONFIG, PALETTE, fade, padded, plain, robustRange } from "../../static/js/plot.js";

test("fade: a band's fill is the colour at 18 % opacity", () => {
  assert.equal(fade("#0072B2"), "rgba(0,114,178,0.18)");
  assert.equal(fade("#ffffff"), "rgba(255,255,255,0.18)");
  assert.equal(fade("rgb(1,2,3)"), "rgba(1,2,3,0.18)");
});

test("padded: room around the values, at least 0.03", () => {
  assert.deepEqual(padded([0, 0.5]), [-0.03, 0.53]);
  const [lo, hi] = padded([0, 10]);
  assert.ok(Math.abs(lo + 0.6) < 1e-12 && Math.abs(hi - 10.6) < 1e-12);
  assert.deepEqual(padded([0.2]), [0.17, 0.23]);
});

test("plain: people's text cannot inject markup or templates into Plotly", () => {
  assert.equal(plain("Ada"), "Ada");
  assert.equal(plain("<b>x</b> & y"), "&lt;b&gt;x&lt;/b&gt; &amp; y");
  assert.equal(plain("%{y}"), "%\u200b{y}");
  assert.equal(plain("&lt;"), "&amp;lt;"); // escaped once, not decoded
  assert.equal(plain(42), "42");
});

test("setupQuery: only values that differ from their default, in the fields' order", () => {
  // a stand-in for the form: field blocks (data-field, data-default, data-order) and inputs
  const block = (field, def, order) => ({ dataset: { field, default: def, order: String(order) } });
  const input = (name, value, extra = {}) => ({ name, value, type: "text", ...extra });
  const blocks = [block("train.epochs", "50", 2), block("model.dropout", "0.2", 1),
                  block("sweep.dropout", "", 3), block("baseline", "true", 4)];
  const inputs = [
    input("model.dropout", " 0.3 "), input("model.dropout", "0.3"), // one rate per layer row
    input("train.epochs", "50"),
    input("sweep.dropout", "0, 0.5"),
    input("baseline", "false", { type: "hidden" }), input("baseline", "on", { type: "checkbox", checked: false }),
  ];
  const form = { querySelectorAll: (sel) => (sel === "[data-field][data-default]" ? blocks
    : inputs.filter((el) => sel === `[name="${el.name}"]`)) };
  assert.equal(setupQuery(form), "model.dropout=0.3&sweep.dropout=0,+0.5&baseline=false");
});

// WCAG contrast, as app/web/palette.py computes it (tests/web/test_palette.py checks that one)
function luminance(hex) {
  const c = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255)
    .map((v) => (v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
  return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
}
const contrast = (a, b) => {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
};

test("PALETTE: every board line has 3:1 on the page's backgrounds, and they differ", () => {
  for (const color of PALETTE) {
    for (const bg of ["#ffffff", "#f7f8fa"]) {
      assert.ok(contrast(color, bg) >= 3, `${color} on ${bg}: ${contrast(color, bg).toFixed(2)}`);
    }
  }
  assert.equal(new Set(PALETTE.map((c) => c.toLowerCase())).size, PALETTE.length);
  assert.ok(Math.abs(contrast("#767676", "#ffffff") - 4.54) < 0.01); // the formula itself
});

test("CONFIG: no toolbar over the charts; double-click zooms back out", () => {
  assert.equal(CONFIG.displayModeBar, false);
  assert.equal(CONFIG.doubleClick, "reset+autosize");
});

test("robustRange: a first-epoch spike does not squash the rest", () => {
  // digits-like: epoch 1 at 2.3, then 0.1-0.4
  const xs = Array.from({ length: 50 }, (_, i) => i + 1);
  const ys = xs.map((e) => (e === 1 ? 2.3 : e === 2 ? 0.9 : 0.1 + 0.3 / e));
  const { range, clipped } = robustRange(xs, ys);
  assert.ok(clipped);
  assert.ok(range[1] < 0.5 && range[1] > 0.15, `top ${range[1]}`); // epochs 6+ reach 0.15
  assert.ok(range[0] < 0.106 && range[0] > 0.08, `bottom ${range[0]}`);
});

test("robustRange: early values within twice the later span are all kept", () => {
  const xs = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20];
  const ys = xs.map((e) => 0.7 - 0.02 * e); // a smooth fall from 0.68 to 0.30
  const { range, clipped } = robustRange(xs, ys);
  assert.equal(clipped, false);
  assert.ok(range[0] < 0.3 && range[1] > 0.68);
});

test("robustRange: few epochs, flat values, gaps, log axes", () => {
  assert.equal(robustRange([], []), null);
  assert.equal(robustRange([1, 2], [null, undefined]), null);
  // three epochs: nothing is "early" yet, everything shows
  const three = robustRange([1, 2, 3], [2.3, 0.5, 0.4]);
  assert.equal(three.clipped, false);
  assert.ok(three.range[0] < 0.4 && three.range[1] > 2.3);
  // one value: a band around it
  const one = robustRange([1], [0.5]);
  assert.ok(one.range[0] < 0.5 && one.range[1] > 0.5);
  // a log axis works in log10 units and skips values that are not positive
  const log = robustRange([1, 2, 3], [0.01, 0, 1], true);
  assert.ok(log.range[0] < -2 && log.range[1] > 0 && log.range[1] < 0.5);
  assert.ok(!robustRange([1, 2], [NaN, Infinity]));
});
