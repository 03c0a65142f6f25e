// Dropout Playground's page script: the entry point, loaded by templates/base.html as
// <script type="module" src="{{ asset('js/main.js') }}">. The server renders the markup (forms,
// status, tables, the thinned network) and htmx swaps its partials; these modules only draw
// what needs Plotly, each named after the view it draws:
//   run.js (a run panel: its stream) -> curves.js, sweep.js, insight.js; board.js (a room's
//   board); compare.js; controls.js (URL sync, copy buttons, the layer rows); replay.js (the
//   pace and the replay of a run panel); plot.js (shared Plotly pieces);
//   stats.js (the live mean/std of a sweep's curves, the page's one computation).
// No build step: modules import each other by relative URL ("./curves.js"). The server
// serves each under a content-hashed URL with these imports rewritten to the hashed URLs
// (app/web/assets.py), so a release never mixes modules; the imports here stay as they are.
// Plotly and htmx are classic deferred scripts (window.Plotly, window.htmx) placed before this
// module in base.html: module scripts run after the deferred scripts before them.

import { initBoard } from "./board.js";
import { initCompare } from "./compare.js";
import { initControls, initCopy } from "./controls.js";
import { initRun } from "./run.js";

/** Start every view found in `root` (the page, or content htmx just swapped in). Each init
 * marks its element (data-ready), so calling this twice on the same element is harmless. */
function init(root) {
  const all = (sel) => [...(root.matches?.(sel) ? [root] : []), ...root.querySelectorAll(sel)];
  all("[data-exp][data-view]").forEach(initRun);
  all("[data-compare]").forEach(initCompare);
  all("[data-room]").forEach(initBoard);
  all("form#controls").forEach(initControls);
  all("[data-copy]").forEach(initCopy);
}

// Forms that destroy something ask first.
document.addEventListener("submit", (e) => {
  const form = e.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) e.preventDefault();
});

// A run started: errors from an earlier refused attempt no longer apply.
document.addEventListener("htmx:afterRequest", (e) => {
  const form = e.detail.elt;
  if (form.id !== "controls" || !e.detail.successful) return;
  form.querySelectorAll(".field.has-error").forEach((f) => f.classList.remove("has-error"));
  form.querySelectorAll(".field .error, .form-errors").forEach((el) => el.remove());
});

// A run panel (or board) being replaced closes its stream.
document.addEventListener("htmx:beforeSwap", (e) => {
  const old = e.detail.target;
  if (old && old._source) old._source.close();
});

init(document.body); // modules run once the document is parsed
if (window.htmx) htmx.onLoad(init);
