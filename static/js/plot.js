// Shared Plotly pieces: the config and base layout every chart uses, the page's palettes,
// and the small pure helpers that turn server values into Plotly input (a faded fill colour,
// a padded axis range, user text made safe for legends). Every chart module imports these,
// so the charts look alike and no module restates them.

// The server (app/web/palette.py) picks every colour of a run panel and of the compare page:
// a dropout rate's colour, the classes', the neutral ones. Only a room's board still colours
// its curves here, one Okabe-Ito colour per participant.
export const PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
                        "#000000", "#8C7A00"];

export const CONFIG = { responsive: true, displaylogo: false };

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
