// Dropout Playground front end: live charts fed by Server-Sent Events, and URL <-> controls.
//
// A run panel (<section id="run" data-exp=...>, templates/partials/run.html) draws three Plotly
// charts (loss, accuracy or R², generalization gap) and follows /api/experiments/<id>/events.
// The stream replays stored epochs first, then live ones, so the same code draws a share link
// opened tomorrow and a run that is training now. The browser's EventSource reconnects by
// itself with Last-Event-ID; the server resumes after it with no gap and no duplicate.
(function () {
  "use strict";

  // Okabe-Ito, colour-blind safe. Train is always blue, validation always vermillion.
  const C = { train: "#0072B2", val: "#D55E00", dropout: "#56B4E9", gap: "#009E73" };
  const RUN_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
                      "#F0E442", "#000000"];
  const FLUSH_MS = 120; // batch redraws: at most ~8 per second however fast epochs arrive

  // The fields each chart draws: [metric, legend label, colour, line dash].
  function chartSpecs(task) {
    const score = task === "classification" ? ["train_acc", "val_acc"] : ["train_r2", "val_r2"];
    return {
      loss: { fields: [["train_loss", "train (eval mode)", C.train, "solid"],
                       ["val_loss", "validation", C.val, "solid"],
                       ["train_loss_dropout", "train mini-batch, dropout on", C.dropout, "dot"]] },
      score: { fields: [[score[0], "train (eval mode)", C.train, "solid"],
                        [score[1], "validation", C.val, "solid"]] },
      gap: { fields: [["generalization_gap", "val − train loss", C.gap, "solid"]] },
    };
  }

  function rateLabel(run) {
    const p = Array.isArray(run.dropout) ? run.dropout.join("/") : run.dropout;
    return "p=" + p;
  }

  // Traces for one chart: one per field for a single run; for many runs, one per (run, field)
  // with train dashed and validation solid, coloured by dropout rate.
  function makeTraces(spec, runs) {
    const traces = [], index = {};
    const rates = [...new Set(runs.map((r) => JSON.stringify(r.dropout)))];
    const many = runs.length > 1;
    runs.forEach((run) => {
      spec.fields.forEach(([field, label, color, dash]) => {
        if (many && field === "train_loss_dropout") return; // too busy for a sweep
        const rateIdx = rates.indexOf(JSON.stringify(run.dropout));
        index[run.index + ":" + field] = traces.length;
        traces.push({
          x: [], y: [], mode: "lines", type: "scatter",
          name: many ? `${rateLabel(run)} ${label}` : label,
          legendgroup: many ? rateLabel(run) : field,
          showlegend: !many || (run.fold === 0 && run.repeat === 0),
          line: { color: many ? RUN_COLORS[rateIdx % RUN_COLORS.length] : color,
                  dash: many ? (field.startsWith("train") ? "dash" : "solid") : dash, width: 2 },
          hovertemplate: `${many ? rateLabel(run) + " run " + run.index + " " : ""}${label}` +
                         "<br>epoch %{x}: %{y:.4g}<extra></extra>",
        });
      });
    });
    return { traces, index };
  }

  function layout(epochs) {
    return {
      margin: { l: 50, r: 10, t: 10, b: 70 }, height: 250,
      xaxis: { title: { text: "epoch", standoff: 4 }, range: [0, epochs + 1] },
      legend: { orientation: "h", y: -0.38, x: 0 }, font: { size: 13 },
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    };
  }

  function initRun(panel) {
    if (panel.dataset.ready) return;
    panel.dataset.ready = "1";
    const id = panel.dataset.exp, task = panel.dataset.task;
    const runs = JSON.parse(panel.dataset.runs), epochs = Number(panel.dataset.epochs);
    const specs = chartSpecs(task);
    const charts = {};
    for (const [key, spec] of Object.entries(specs)) {
      const el = panel.querySelector(`[data-chart="${key}"]`);
      const { traces, index } = makeTraces(spec, runs);
      Plotly.newPlot(el, traces, layout(epochs),
                     { responsive: true, displaylogo: false });
      charts[key] = { el, index, spec, pending: traces.map(() => ({ x: [], y: [] })) };
    }
    const $ = (role) => panel.querySelector(`[data-role="${role}"]`);
    let received = 0, timer = null;

    function flush() {
      timer = null;
      for (const chart of Object.values(charts)) {
        const idx = [], xs = [], ys = [];
        chart.pending.forEach((p, i) => {
          if (p.x.length) { idx.push(i); xs.push(p.x); ys.push(p.y); }
        });
        if (idx.length) Plotly.extendTraces(chart.el, { x: xs, y: ys }, idx);
        chart.pending = chart.pending.map(() => ({ x: [], y: [] }));
      }
      panel.dataset.points = String(received);
      const total = Number(panel.dataset.total);
      $("progress").value = received;
      $("progress-text").textContent = `${received} / ${total} epochs`;
    }

    function onEpoch(m) {
      received += 1;
      for (const chart of Object.values(charts)) {
        for (const [field] of chart.spec.fields) {
          const i = chart.index[m.run + ":" + field];
          if (i === undefined) continue;
          chart.pending[i].x.push(m.epoch);
          chart.pending[i].y.push(m[field]);
        }
      }
      if (!timer) timer = setTimeout(flush, FLUSH_MS);
    }

    function setStatus(status, error) {
      panel.dataset.status = status;
      $("status").textContent = status;
      $("stop").hidden = !(status === "queued" || status === "running");
      if (error) { $("error").hidden = false; $("error").textContent = error; }
    }

    const source = new EventSource(`/api/experiments/${id}/events`);
    panel._source = source;
    source.addEventListener("status", (e) => setStatus(JSON.parse(e.data).status));
    source.addEventListener("epoch", (e) => onEpoch(JSON.parse(e.data)));
    for (const final of ["done", "failed", "cancelled"]) {
      source.addEventListener(final, (e) => {
        source.close();
        if (timer) { clearTimeout(timer); }
        flush();
        const data = JSON.parse(e.data);
        setStatus(final, data.error);
        panel.dataset.final = final;
        document.body.dispatchEvent(new CustomEvent(`dp:final-${id}`));
        document.body.dispatchEvent(new CustomEvent("dp:final"));
      });
    }
  }

  // Controls -> URL: the address bar always carries the current setup (only values that
  // differ from the defaults), replaced in place so no history entries pile up.
  function syncUrl(form) {
    const params = new URLSearchParams();
    for (const el of form.elements) {
      if (!el.name || el.dataset.default === undefined) continue;
      if (el.value.trim() !== el.dataset.default) params.set(el.name, el.value.trim());
    }
    const query = params.toString().replace(/%2C/g, ",");
    history.replaceState(null, "", query ? `/?${query}` : "/");
  }

  function initControls(form) {
    if (form.dataset.ready) return;
    form.dataset.ready = "1";
    form.addEventListener("input", () => syncUrl(form));
    form.addEventListener("change", () => syncUrl(form));
  }

  function initCopy(button) {
    if (button.dataset.ready) return;
    button.dataset.ready = "1";
    button.addEventListener("click", async () => {
      const url = new URL(button.dataset.copy, location.href).href;
      try {
        await navigator.clipboard.writeText(url);
        button.textContent = "Copied";
      } catch {
        window.prompt("Copy this link", url);
      }
      setTimeout(() => { button.textContent = "Copy link"; }, 1500);
    });
  }

  function init(root) {
    const all = (sel) => [...(root.matches?.(sel) ? [root] : []), ...root.querySelectorAll(sel)];
    all("[data-exp]").forEach(initRun);
    all("form#controls").forEach(initControls);
    all("[data-copy]").forEach(initCopy);
  }

  // A run panel being replaced (a new run started) closes its stream.
  document.addEventListener("htmx:beforeSwap", (e) => {
    const old = e.detail.target;
    if (old && old._source) old._source.close();
  });
  document.addEventListener("DOMContentLoaded", () => {
    init(document.body);
    if (window.htmx) htmx.onLoad((el) => init(el));
  });
})();
