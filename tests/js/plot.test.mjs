// The pure helpers of static/js/plot.js and static/js/controls.js.
import assert from "node:assert/strict";
import { test } from "node:test";

import { setupQuery } from "../../static/js/controls.js";
import { fade, padded, plain } from "../../static/js/plot.js";

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

test("setupQuery: only values that differ from their default, commas kept", () => {
  const field = (name, value, def) => ({ name, value, dataset: def === undefined ? {} : { default: def } });
  const form = { elements: [
    field("model.dropout", " 0.3 ", "0.2"),
    field("train.epochs", "50", "50"),
    field("sweep.dropout", "0, 0.5", ""),
    field("room", "ABC", undefined), // hidden inputs without a default are not setup
    field("", "x", "y"),
  ] };
  assert.equal(setupQuery(form), "model.dropout=0.3&sweep.dropout=0,+0.5");
});
