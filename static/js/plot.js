// Shared Plotly pieces: the config and base layout every chart uses, the page's palettes,
// and the small pure helpers that turn server values into Plotly input (a faded fill colour,
// a padded axis range, a range the first epochs cannot squash, user text made safe for
// legends). Every chart module imports these, so the charts look alike and no module
// restates them.

// The server (app/web/palette.py) picks every colour of a run panel and of the compare page:
// a dropout rate's colour, the classes', the neutral ones. Only a room's board still colours
// its curves here, one colour per participant: Okabe-Ito's hues, the pink, orange and sky
// blue darkened (and sky blue turned purple, apart from blue) so that every line has 3:1
// against the page (tests/js/plot.test.mjs).
export const PALETTE = ["#0072B2", "#D55E00", "#009E73", "#B4487F", "#A66A00", "#6A51A3",
                        "#000000", "#8C7A00"];

// No toolbar over the charts (it covered their top edge): drag to zoom, double-click to zoom
// back out (first to the initial range, then to every point), which the panel says.
export const CONFIG = { responsive: true, displaylogo: false, displayModeBar: false,
                        doubleClick: "reset+autosize" };

/** Chart text: 13 px, or 18 px on a projector (presenter mode, a room's board). */
export function textSize() {
  return typeof document !== "undefined" && document.body.classList.contains("present") ? 18 : 13;
}

/** The look shared by every chart: transparent background, its text size, nearest-point
 * hover. */
export function baseLayout(extra = {}) {
  return { font: { size: textSize() }, hovermode: "closest",
           paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", ...extra };
}

/** Curves against epoch, 1..epochs, legend below. The y label (a quantity with its unit, from
 * the server) sits above the plot, level: rotated along a 170 px axis it would be cut off. */
export function epochLayout(epochs, yLabel) {
  return baseLayout({
    margin: { l: 50, r: 10, t: yLabel ? 24 : 10, b: 70 }, height: yLabel ? 264 : 250,
    xaxis: { title: { text: "epoch", standoff: 4 }, range: [0, epochs + 1] },
    legend: { orientation: "h", y: -0.38, x: 0 },
    annotations: yLabel ? [{ text: yLabel, showarrow: false, xref: "paper", yref: "paper",
                             x: 0, y: 1, xanchor: "left", yanchor: "bottom", yshift: 4,
                             font: { size: 12, color: "#555" } }] : [],
  });
}

/** "#rrggbb" (or "rgb(r,g,b)") at 18 % opacity: the fill of a ±1 std band. */
export function fade(color) {
  if (color.startsWith("rgb(")) return color.replace("rgb(", "rgba(").replace(")", ",0.18)");
  const n = parseInt(color.slice(1), 16);
  return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},0.18)`;
}

/** An axis range with room around the values, so that no point sits on the axis line. */
export function padded(values) {
  const lo = Math.min(...values), hi = Math.max(...values);
  const pad = Math.max(0.03, (hi - lo) * 0.06);
  return [lo - pad, hi + pad];
}

/** People's text (display names, experiment names) as Plotly shows it: legends and tooltips
 * read a little HTML (<b>, <a href>...) and %{...} templates, so both are neutralised. */
export function plain(text) {
  return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/%\{/g, "%\u200b{");
}

/** The initial y range of curves against epoch, not squashed by the first epochs: from the
 * values after the first few epochs (a tenth of those drawn, at most 5), unless the early ones
 * lie within twice that span anyway. xs are epochs, ys values (flat over traces; null and
 * non-finite values skipped; on a log axis non-positive ones too, and the range is in log10
 * units as Plotly wants it). Returns { range, clipped } (clipped: some early point lies
 * outside), or null with nothing to draw. */
export function robustRange(xs, ys, log = false) {
  const pts = [];
  for (let i = 0; i < ys.length; i++) {
    const y = ys[i];
    if (y === null || y === undefined || !Number.isFinite(y) || (log && y <= 0)) continue;
    pts.push([xs[i], log ? Math.log10(y) : y]);
  }
  if (!pts.length) return null;
  const last = Math.max(...pts.map((p) => p[0]));
  const skip = Math.min(5, Math.floor(last / 10));
  const late = pts.filter((p) => p[0] > skip).map((p) => p[1]);
  const all = pts.map((p) => p[1]);
  const span = (vs) => [Math.min(...vs), Math.max(...vs)];
  let [lo, hi] = span(late.length ? late : all);
  const [alo, ahi] = span(all);
  const clipped = ahi - alo > 2 * (hi - lo) && hi > lo;
  if (!clipped) [lo, hi] = [alo, ahi];
  const pad = hi > lo ? (hi - lo) * 0.06 : Math.max(Math.abs(hi) * 0.05, 0.05);
  return { range: [lo - pad, hi + pad], clipped };
}
