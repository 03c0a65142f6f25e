// The controls form and the small buttons around it. The address bar always carries the
// current setup (only the values that differ from each field's data-default, which the server
// rendered from the config model), replaced in place so that no history entries pile up; a
// note says when a sweep's rates replace the single dropout rate; "Copy link" buttons copy.

/** The query string of a form: name=value for fields whose value is not their default. */
export function setupQuery(form) {
  const params = new URLSearchParams();
  for (const el of form.elements) {
    if (!el.name || el.dataset.default === undefined) continue;
    if (el.value.trim() !== el.dataset.default) params.set(el.name, el.value.trim());
  }
  return params.toString().replace(/%2C/g, ",");
}

function syncUrl(form) {
  const query = setupQuery(form), path = location.pathname; // the playground, or a room
  history.replaceState(null, "", query ? `${path}?${query}` : path);
}

// A sweep of rates replaces model.dropout (unless it sweeps the input rate): say so there.
function markSwept(form) {
  const value = (name) => (form.elements[name] ? form.elements[name].value.trim() : "");
  const sweeping = ["sweep.dropout", "sweep.grid_step", "sweep.random_samples"].some(value);
  const target = value("sweep.target") || "hidden";
  const field = form.querySelector('[data-field="model.dropout"]');
  if (!field) return;
  const swept = sweeping && target !== "input";
  field.classList.toggle("swept", swept);
  field.querySelector('[data-role="swept-note"]').hidden = !swept;
}

export function initControls(form) {
  if (form.dataset.ready) return;
  form.dataset.ready = "1";
  const update = () => { syncUrl(form); markSwept(form); };
  form.addEventListener("input", update);
  form.addEventListener("change", update);
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
