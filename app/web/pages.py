"""HTML pages and htmx fragments: the playground, an experiment's share page, the recent list.

Pages and partials are rendered with app.web.render; an htmx request for a page gets the
fragment, anything else the whole page, so every URL also works without JavaScript. Fragments
live in templates/partials/ and are named after the element id they replace.
"""

from __future__ import annotations

import json
import random
import threading
from contextlib import asynccontextmanager

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError

from app import rooms
from app.ml.config import ExperimentConfig, describe_errors
from app.ml.datasets import CATALOG
from app.ml.preview import preview
from app.ml.scenarios import SCENARIOS
from app.store import ExperimentRow, Store
from app.web import api, datacard, experiments, forms, texts, views
from app.web.compare import compare_item
from app.web.deps import (
    AddressDep,
    AddressLimitsDep,
    BusDep,
    ClientDep,
    ExecutorDep,
    ExperimentDep,
    LimiterDep,
    SettingsDep,
    StoreDep,
)
from app.web.errors import AppError, NotFound, TooBusy
from app.web.render import render
from app.web.rooms import controls_context, room_for_play


@asynccontextmanager
async def _warm_pictures(app):
    """At start-up, build the dataset pictures off the request path (the real tables load
    scikit-learn once, ~1.5 s), so the first visitor does not wait for them."""
    threading.Thread(target=datacard.warm, name="dataset-pictures", daemon=True).start()
    yield


router = APIRouter(include_in_schema=False, lifespan=_warm_pictures)


def run_context(row: ExperimentRow, store: Store) -> dict:
    """What partials/run.html (and the share page around it) needs: the panel's data-view
    (app.web.views.run_view), the status bar, the thinned network of run 0, the summary, and
    the panel's words (app.web.texts: a paired run's verdict, a text per chart)."""
    config = experiments.config_of(row)
    rates = config.sweep.rates(config.train.seed) if config.sweep else None
    summary = _summary(row)["summary"]
    insight = experiments.insight_kind(config)
    return {"exp": row, "config": config, "task": config.task,
            "view": views.run_view(row, config),
            "insight": insight, "chart_texts": texts.chart_texts(config, summary, insight),
            "verdict": texts.paired_verdict(config, summary),
            "thinned": views.thinned_view(row, config, 0, random.Random()),
            "summary": summary, "table": views.summary_table(summary, config),
            "rates_text": views.rates_text(config),
            "sweep_text": _sweep_text(config, rates), "query": forms.config_to_query(config)}


def _sweep_text(config, rates: list[float] | None) -> str:
    """One line describing a sweep: which rates (and how chosen), weight decay grid, folds,
    seeds (training, data, or both)."""
    s = config.sweep
    if s is None:
        return ""
    parts = []
    if rates:
        how = "grid: " if s.grid_step else "random: " if s.random_samples else ""
        where = forms.option_text("sweep.target", s.target)
        parts.append(f"{how}p ∈ {{{', '.join(f'{r:g}' for r in rates)}}} on {where}")
    if s.weight_decay:
        parts.append(f"× weight decay ∈ {{{', '.join(f'{w:g}' for w in s.weight_decay)}}}")
    if s.folds > 1:
        parts.append(f"{s.folds}-fold cross-validation")
    if s.repeats > 1:
        what = {"train": "training seeds", "data": "data seeds",
                "both": "seeds (data and training)"}[s.repeat_seeds]
        parts.append(f"{s.repeats} {what}")
    return ", ".join(parts)


@router.get("/", response_class=HTMLResponse)
def playground(request: Request, settings: SettingsDep):
    """The playground; its controls take the config from the query string (over START), and
    the data card draws that setup's data in the page itself."""
    params = forms.form_params(request.query_params.multi_items())
    errors: dict[str, str] = {}
    if params:
        _, errors = forms.validate(params)
    hide = {h.strip() for h in params.get("hide", "").split(",") if h.strip()}
    return render(request, "playground.html", {
        "sections": forms.filled_sections(params, errors),
        "form_errors": forms.unplaced_errors(errors),
        "catalog": CATALOG, "data": datacard.card(params),
        # presenter mode: large type; `hide` names control groups to hide (only controls:
        # every chart and curve always stays)
        "present": params.get("present") == "1",
        "hidden_sections": hide & {s.key or "label" for s in forms.blank_sections()},
    })


@router.get("/partials/data", response_class=HTMLResponse)
def data_card(request: Request):
    """The data card for the form's dataset fields (dotted keys, over START's dataset)."""
    return render(request, "partials/data.html",
                  {"data": datacard.card(dict(request.query_params))})


@router.get("/partials/data.json")
def data_twin(request: Request) -> JSONResponse:
    """The data card's JSON twin: app.ml.preview's numbers for the dataset fields, or a 422
    naming the field."""
    cfg, error = datacard.dataset_config(dict(request.query_params))
    if cfg is None:
        field, _, message = error.partition(": ")
        return JSONResponse({"detail": [{"field": field, "message": message}]}, 422)
    return JSONResponse(preview(cfg))


@router.post("/play", response_class=HTMLResponse)
async def play(request: Request, store: StoreDep, executor: ExecutorDep, client: ClientDep,
               limiter: LimiterDep, address: AddressDep, address_limits: AddressLimitsDep):
    """The form's Train button: start the experiment, answer the live run panel."""
    params = forms.form_params((k, v) for k, v in (await request.form()).multi_items()
                               if isinstance(v, str))
    config, errors = forms.validate(params)
    room = author = None
    try:
        if config is not None and params.get("room"):
            room_row, state, author = room_for_play(store, params["room"], client, request)
            room = room_row.code
            config = rooms.apply_challenge(config, state)
    except ValidationError as e:
        config, errors = None, {err["field"]: err["message"] for err in describe_errors(e)}
    except AppError as e:  # closed, paused, not joined
        return render(request, "partials/run.html", {"busy": e.message}, status=e.status)
    if config is None:
        room_row = store.get_room(params["room"].strip().upper()) if params.get("room") else None
        context = {"sections": forms.filled_sections(params, errors),
                   "room_code": params.get("room")}
        if room_row is not None:  # a refused run in a room keeps the room's rules on show
            context = controls_context(room_row, params, errors)
        return render(request, "partials/controls.html", {
            **context, "form_errors": forms.unplaced_errors(errors),
        }, status=422, headers={"HX-Retarget": "#controls", "HX-Reswap": "outerHTML"})
    try:
        exp_id = experiments.start(config, store, executor, client, limiter, room, author,
                                   address, address_limits.create)
    except TooBusy as e:
        return render(request, "partials/run.html", {"busy": e.message}, status=429,
                      headers=e.headers)
    row = store.get(exp_id)
    query = forms.config_to_query(config)
    url = f"/rooms/{room}" if room else (f"/?{query}" if query else "/")
    headers = {"HX-Trigger": "dp:started", "HX-Replace-Url": url}
    if not request.headers.get("HX-Request"):
        return RedirectResponse(f"/e/{exp_id}", status_code=303)
    # fresh: the page of one's own run, just started, paces its drawing (partials/run.html)
    return render(request, "partials/run.html", {
        **run_context(row, store), "owner": True, "fresh": True,
        "queue": experiments.queue_info(row, executor)}, headers=headers)


@router.get("/e/{exp_id}.json")
def experiment_twin(row: ExperimentDep, store: StoreDep, executor: ExecutorDep) -> JSONResponse:
    """The share page's JSON twin (same as GET /api/experiments/<id>)."""
    return JSONResponse(experiments.experiment_json(row, store, executor))


@router.get("/e/{exp_id}", response_class=HTMLResponse)
def experiment_page(request: Request, row: ExperimentDep, store: StoreDep, client: ClientDep,
                    executor: ExecutorDep):
    """An experiment's permanent page: config, curves (live or complete), summary, actions
    (Stop, rename and delete for its owner only)."""
    return render(request, "experiment.html", {
        **run_context(row, store), "owner": api.may_change(request, row, client, store),
        "queue": experiments.queue_info(row, executor)})


@router.post("/e/{exp_id}/rename")
async def rename_page(request: Request, row: ExperimentDep, store: StoreDep, client: ClientDep):
    """The share page's rename form (owner only)."""
    form = await request.form()
    api.rename_experiment(request, row, store, client,
                          api.Rename(name=str(form.get("name", ""))[:80]))
    return RedirectResponse(f"/e/{row.id}", status_code=303)


@router.post("/e/{exp_id}/delete")
def delete_page(request: Request, row: ExperimentDep, store: StoreDep, executor: ExecutorDep,
                bus: BusDep, client: ClientDep):
    """The share page's delete button (owner only)."""
    api.delete_experiment(request, row, store, executor, bus, client)
    return RedirectResponse("/", status_code=303)


@router.post("/import", response_class=HTMLResponse)
async def import_config(request: Request):
    """Start from a pasted or uploaded config JSON: opens the playground with it."""
    form = await request.form()
    upload = form.get("file")
    text = str(form.get("config") or "")
    if upload is not None and not isinstance(upload, str):
        text = (await upload.read(64 * 1024)).decode("utf-8", "replace") or text
    try:
        config = ExperimentConfig.model_validate_json(text)
    except ValidationError as e:
        problems = [f"{d['field']}: {d['message']}" for d in describe_errors(e)]
        return render(request, "playground.html", {
            "sections": forms.blank_sections(), "form_errors": [], "catalog": CATALOG,
            "data": datacard.card({}), "import_errors": problems, "import_text": text},
            status=422)
    query = forms.config_to_query(config)
    return RedirectResponse(f"/?{query}" if query else "/", status_code=303)


@router.get("/e/{exp_id}/summary", response_class=HTMLResponse)
def experiment_summary(request: Request, row: ExperimentDep, store: StoreDep):
    """The final metrics table, drawn from what is stored; with it, out of band, the words
    that change when training ends (the verdict, each chart's text)."""
    return render(request, "partials/summary.html", {**run_context(row, store), "oob": True})


@router.get("/e/{exp_id}/statusbar", response_class=HTMLResponse)
def experiment_statusbar(request: Request, row: ExperimentDep, store: StoreDep,
                         client: ClientDep, executor: ExecutorDep):
    """The status bar (status, place in the queue, progress, Stop for its owner, share link),
    drawn from what is stored."""
    return render(request, "partials/statusbar.html", {
        "exp": row, "owner": api.may_change(request, row, client, store),
        "queue": experiments.queue_info(row, executor)})


@router.get("/e/{exp_id}/thinned", response_class=HTMLResponse)
def experiment_thinned(request: Request, row: ExperimentDep, run: int = 0):
    """One thinned network: a fresh random dropout mask at the rates run `run` trained at."""
    config = experiments.config_of(row)
    if not 0 <= run < config.n_runs:
        raise NotFound(f"experiment {row.id} has no run {run}")
    return render(request, "partials/thinned.html",
                  {"thinned": views.thinned_view(row, config, run, random.Random())})


@router.get("/e/{exp_id}/sweep.json")
def experiment_sweep(row: ExperimentDep) -> JSONResponse:
    """The sweep chart's points per metric, from the stored summary ({"ready": false} until
    training ends)."""
    config = experiments.config_of(row)
    if config.n_runs == 1:
        raise NotFound(f"experiment {row.id} is a single run, not a sweep")
    return JSONResponse(views.sweep_points(config, _summary(row)["summary"]))


def _summary(row: ExperimentRow) -> dict:
    return {"summary": json.loads(row.summary) if row.summary else None}


@router.get("/scenarios", response_class=HTMLResponse)
def scenarios(request: Request):
    """Guided scenarios: one-click setups with an explanation and what to look for."""
    items = []
    for s in SCENARIOS:
        config = ExperimentConfig.model_validate(s.config)
        items.append({"s": s, "query": forms.config_to_query(config),
                      "params": forms.config_to_params(config)})
    return render(request, "scenarios.html", {"items": items})


MAX_COMPARE = 8


@router.get("/compare", response_class=HTMLResponse)
def compare(request: Request, store: StoreDep):
    """Several experiments overlaid, with a table of the settings that differ."""
    raw = request.query_params.getlist("id") + request.query_params.get("ids", "").split(",")
    ids = list(dict.fromkeys(i.strip() for i in raw if i.strip()))[:MAX_COMPARE]
    rows = [row for row in (store.get(i) if len(i) <= 32 else None for i in ids) if row]
    missing = [i for i in ids if i not in {r.id for r in rows}]
    configs = [experiments.config_of(r) for r in rows]
    items = [compare_item(r, c, _summary(r)["summary"], n)
             for n, (r, c) in enumerate(zip(rows, configs))]
    titles = dict.fromkeys(it["data"]["charts"]["score"]["title"] for it in items)
    return render(request, "compare.html", {
        "items": items, "score_title": " / ".join(titles),
        "diff": config_diff([c.model_dump(mode="json") for c in configs]),
        "missing": missing, "max": MAX_COMPARE,
    })


def config_diff(configs: list[dict]) -> list[tuple[str, list[str]]]:
    """[(dotted key, [value per config])] for the keys whose values are not all equal; keys a
    config does not use (see _in_use) count as absent."""
    flat = [_flatten(_in_use(c)) for c in configs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    rows = []
    for key in keys:
        values = [forms.to_text(f.get(key)) for f in flat]
        if len(set(values)) > 1:
            rows.append((key, values))
    return rows


def _in_use(config: dict) -> dict:
    """A config (as JSON) without the fields that change nothing: momentum unless the
    optimizer is SGD; the noise of a dataset that has none to set (and label noise of a
    regression); `baseline` when there is no p = 0 twin to train; and of a sweep its unset
    sources, the bounds unless it is a grid or random search, the target unless it sweeps
    rates, one fold, one repeat, and which seeds repeats change when there is one repeat."""
    out = {**config, "train": dict(config["train"]), "dataset": dict(config["dataset"])}
    if out["train"].get("optimizer") != "sgd":
        out["train"].pop("momentum", None)
    data = out["dataset"]
    info = CATALOG.get(data.get("name"))
    if info is not None and not (info.synthetic and data.get("name") != "noise"):
        data.pop("noise", None)
    if info is not None and info.task != "classification":
        data.pop("label_noise", None)
    if "baseline" in out and not ExperimentConfig.model_validate(config).paired:
        out.pop("baseline")
    sweep = config.get("sweep")
    if sweep:
        sweep = {k: v for k, v in sweep.items() if v is not None}
        if not (sweep.get("grid_step") or sweep.get("random_samples")):
            sweep.pop("low", None)
            sweep.pop("high", None)
        if not (sweep.get("dropout") or sweep.get("grid_step") or sweep.get("random_samples")):
            sweep.pop("target", None)
        for name in ("folds", "repeats"):
            if sweep.get(name) == 1:
                sweep.pop(name)
        if "repeats" not in sweep:
            sweep.pop("repeat_seeds", None)
        out["sweep"] = sweep
    return out


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


@router.get("/partials/recent", response_class=HTMLResponse)
def recent(request: Request, store: StoreDep, client: ClientDep, settings: SettingsDep):
    """The experiments this browser started, newest first."""
    rows = store.recent(client, settings.recent_limit)
    items = []
    for row in rows:
        config = experiments.config_of(row)
        items.append({"row": row, "config": config, "rates": views.rates_text(config),
                      "summary": json.loads(row.summary) if row.summary else None})
    return render(request, "partials/recent.html", {"items": items})


@router.get("/favicon.ico")
def favicon() -> Response:
    return RedirectResponse("/static/favicon.svg")
