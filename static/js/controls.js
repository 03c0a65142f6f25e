// The controls form and the small buttons around it. The address bar always carries the
// current setup (only the values that differ from each field's data-default, the starting
// setup the server rendered from the config model, in the canonical order of data-order),
// replaced in place so that no history entries pile up. A slider and its box move together;
// the layer rows add and remove hidden layers (each row a width and that layer's rate, all
// rates moving together while "one p for every layer" is ticked); picking a dataset bounds the
// training examples by what it has and redraws the data card (dp:data-changed, which the card
// listens for). A note says when a sweep's rates replace the layers' rates. "Copy link"
// buttons copy. Every value and bound comes from the server's markup: nothing is restated.

const ROW_FIELDS = ["model.hidden", "model.dropout"]; // one value per layer row
const DATA_DELAY_MS = 120; // typing settles this long before the data card is redrawn

/** The text a field submits, as app.web.forms.form_params reads the form. */
function fieldText(form, name) {
  const all = [...form.querySelectorAll(`[name="${name}"]`)];
  // a checkbox's hidden twin only says "false" when the box is not ticked
  const els = all.some((el) => el.type === "checkbox") ? all.filter((el) => el.type !== "hidden") : all;
  if (!els.length) return null;
  if (els[0].type === "radio") return (els.find((el) => el.checked) || { value: "" }).value;
  if (els[0].type === "checkbox") return els[0].checked && !els[0].disabled ? "true" : "false";
  if (ROW_FIELDS.includes(name)) {
    const values = els.map((el) => el.value.trim()).filter((v) => v !== "");
    if (name === "model.dropout" && new Set(values).size === 1) return values[0];
    return values.join(",");
  }
  return els[els.length - 1].value.trim();
}

/** The query string of a form: name=value for fields whose value is not their default. */
export function setupQuery(form) {
  const params = new URLSearchParams();
  const blocks = [...form.querySelectorAll("[data-field][data-default]")]
    .sort((a, b) => Number(a.dataset.order) - Number(b.dataset.order));
  for (const block of blocks) {
    const name = block.dataset.field, text = fieldText(form, name);
    if (text !== null && text !== block.dataset.default) params.set(name, text);
  }
  return params.toString().replace(/%2C/g, ",");
}

function syncUrl(form) {
  const query = setupQuery(form), path = location.pathname; // the playground, or a room
  history.replaceState(null, "", query ? `${path}?${query}` : path);
}

// A sweep of rates replaces the layers' rates (unless it sweeps the input rate), and lists
// its own rates instead of the p = 0 twin: say so there, and take the twin's box out.
function markSwept(form) {
  const value = (name) => (form.elements[name] ? form.elements[name].value.trim() : "");
  const sweeping = ["sweep.dropout", "sweep.grid_step", "sweep.random_samples"].some(value);
  const sweep = sweeping || ["sweep.folds", "sweep.repeats"].some((n) => Number(value(n)) > 1);
  const target = value("sweep.target") || "hidden";
  const field = form.querySelector('[data-field="model.dropout"]');
  if (field) {
    const swept = sweeping && target !== "input";
    field.classList.toggle("swept", swept);
    field.querySelector('[data-role="swept-note"]').hidden = !swept;
  }
  const twin = form.querySelector('input[type=checkbox][name="baseline"]');
  if (twin && !twin.closest("fieldset:disabled")) {
    twin.disabled = sweep;
    const note = form.querySelector('[data-role="baseline-note"]');
    if (note) note.hidden = !sweep;
  }
}

// -- sliders: each range input has data-for, the id of its box --------------------------------

function sliderOf(box) {
  return box.id ? box.form.querySelector(`input[type=range][data-for="${box.id}"]`) : null;
}

function follow(form, target) {
  if (target.type === "range" && target.dataset.for) {
    const box = document.getElementById(target.dataset.for);
    if (box) box.value = target.value;
    return box;
  }
  const slider = sliderOf(target);
  if (slider && target.value.trim() !== "" && !Number.isNaN(Number(target.value))) {
    slider.value = target.value;
  }
  return target;
}

// -- the layer rows -------------------------------------------------------------------------

function rows(form) {
  return [...form.querySelectorAll('[data-role="layer-row"]')].filter((r) => !r.closest("template"));
}

function sameRate(form) {
  const box = form.querySelector('[data-role="same-rate"]');
  return box && box.checked;
}

/** A rate typed or slid in one row: every row takes it while one p applies to all. */
function linkRates(form, box) {
  if (!box || box.name !== "model.dropout" || !sameRate(form)) return;
  for (const row of rows(form)) {
    const rate = row.querySelector(".rate"), slider = row.querySelector(".slider");
    if (rate === box) continue;
    rate.value = box.value;
    if (box.value.trim() !== "" && !Number.isNaN(Number(box.value))) slider.value = box.value;
  }
}

/** Ids and names of the rows after an add or remove: the first row's boxes keep the field's
 * own ids (f-model.hidden, f-model.dropout), the others get -2, -3, ... */
function renumber(form) {
  const all = rows(form);
  all.forEach((row, i) => {
    const n = i + 1, sfx = n === 1 ? "" : `-${n}`;
    row.querySelector(".layer-n").textContent = String(n);
    const width = row.querySelector(".width"), rate = row.querySelector(".rate");
    const slider = row.querySelector(".slider"), remove = row.querySelector('[data-role="remove-layer"]');
    width.id = `f-model.hidden${sfx}`;
    rate.id = `f-model.dropout${sfx}`;
    slider.dataset.for = rate.id;
    width.setAttribute("aria-label", `layer ${n}: width (units)`);
    slider.setAttribute("aria-label", `layer ${n}: dropout rate p, slider`);
    rate.setAttribute("aria-label", `layer ${n}: dropout rate p`);
    remove.setAttribute("aria-label", `remove layer ${n}`);
  });
  const block = form.querySelector('[data-field="model.hidden"]');
  const add = form.querySelector('[data-role="add-layer"]');
  if (block && add) add.disabled = Boolean(block.dataset.fixed) || all.length >= Number(block.dataset.maxRows);
}

function addLayer(form) {
  const block = form.querySelector('[data-field="model.hidden"]');
  const all = rows(form), last = all[all.length - 1];
  const row = block.querySelector('template[data-role="layer-row-template"]').content
    .firstElementChild.cloneNode(true);
  const start = block.dataset.default.split(",")[0] || "1";
  const rateDefault = form.querySelector('[data-field="model.dropout"]').dataset.default.split(",")[0];
  row.querySelector(".width").value = last ? last.querySelector(".width").value : start;
  const rate = last ? last.querySelector(".rate").value : rateDefault;
  row.querySelector(".rate").value = rate;
  row.querySelector(".slider").value = rate;
  block.querySelector('[data-role="layer-rows"]').append(row);
  renumber(form);
  row.querySelector(".width").focus();
  form.dispatchEvent(new Event("change", { bubbles: true }));
}

function removeLayer(form, button) {
  const row = button.closest('[data-role="layer-row"]');
  const next = row.nextElementSibling || row.previousElementSibling;
  row.remove();
  renumber(form);
  const focus = next ? next.querySelector('[data-role="remove-layer"]')
    : form.querySelector('[data-role="add-layer"]');
  if (focus) focus.focus();
  form.dispatchEvent(new Event("change", { bubbles: true }));
}

// -- the dataset: its size bound, and the data card ------------------------------------------

/** The training examples' slider and box end at the chosen dataset's largest training split. */
function boundTraining(form) {
  const picked = form.querySelector('input[name="dataset.name"]:checked');
  const box = form.elements["dataset.n_train"];
  if (!picked || !box || !picked.dataset.maxTrain) return;
  const most = picked.dataset.maxTrain, slider = sliderOf(box);
  box.max = most;
  if (slider) slider.max = most;
  if (Number(box.value) > Number(most)) {
    box.value = most;
    if (slider) slider.value = most;
  }
}

/** The dataset fields as the data card asks for them (a change elsewhere redraws nothing). */
function dataQuery(form) {
  return [...form.querySelectorAll('[name^="dataset."]')]
    .filter((el) => !["radio", "checkbox"].includes(el.type) || el.checked)
    .map((el) => `${el.name}=${el.value.trim()}`).join("&");
}

function dataChanged(form) {
  clearTimeout(form._dataTimer);
  form._dataTimer = setTimeout(() => {
    const now = dataQuery(form);
    if (now === form._drawn) return; // e.g. the change event of a box already drawn on input
    form._drawn = now;
    if (window.htmx && document.getElementById("data")) htmx.trigger(document.body, "dp:data-changed");
  }, DATA_DELAY_MS);
}

export function initControls(form) {
  if (form.dataset.ready) return;
  form.dataset.ready = "1";
  const update = (e) => {
    const target = e && e.target;
    if (target && target !== form && target.form === form) {
      const box = follow(form, target);
      linkRates(form, box);
      if (target.dataset.role === "same-rate" && target.checked && rows(form).length) {
        linkRates(form, rows(form)[0].querySelector(".rate"));
      }
      if (target.name === "dataset.name") boundTraining(form);
      const name = box ? box.name : target.name;
      if (name && name.startsWith("dataset.")) dataChanged(form);
    }
    syncUrl(form);
    markSwept(form);
  };
  form.addEventListener("input", update);
  form.addEventListener("change", update);
  form.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-role]");
    if (!button || button.disabled) return;
    if (button.dataset.role === "add-layer") addLayer(form);
    if (button.dataset.role === "remove-layer") removeLayer(form, button);
  });
  form._drawn = dataQuery(form); // the data card came with the page, drawn from these values
  renumber(form);
  markSwept(form);
}

export function initCopy(button) {
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
