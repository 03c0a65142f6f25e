// The room stream's ids ("r" or "r.n", app/web/stream.py) compare as the server orders them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { compareIds } from "../../static/js/hub.js";

test("a room's event ids order by row, then by the experiment event in it", () => {
  const ids = ["12", "3.7", "3.10", "4", "3", "12.2", "11.40"];
  assert.deepEqual([...ids].sort(compareIds), ["3", "3.7", "3.10", "4", "11.40", "12", "12.2"]);
});

test("an id equals itself, and a row's own event comes before its experiment events", () => {
  assert.equal(compareIds("5.3", "5.3"), 0);
  assert.ok(compareIds("5", "5.1") < 0);
  assert.ok(compareIds("9.100", "10") < 0);
});
