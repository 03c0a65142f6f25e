"""The workshop's pages, in process: guided scenarios, importing a config, renaming and deleting
one's own experiments, and presenter mode of the playground.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from conftest import LONG, TINY, cancel_quietly, finished, html_tree, roomy_client, start_running
from fastapi.testclient import TestClient

from app.ml.config import ExperimentConfig
from app.ml.scenarios import SCENARIOS
from app.web import forms

ROOT = Path(__file__).resolve().parents[2]
OWNER_ONLY = "only the browser that started this experiment"
IMPORTED = {"name": "imported", "dataset": {"name": "circles", "n_train": 120, "noise": 0.1},
            "model": {"hidden": [32, 16], "activation": "tanh", "dropout": 0.3},
            "train": {"epochs": 40, "lr": 0.003, "batch_size": 16},
            "sweep": {"dropout": [0.0, 0.2, 0.5], "repeats": 2}}


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    """A dedicated app with one worker (so a freed worker is observable) and room to queue."""
    with roomy_client(tmp_path_factory.mktemp("workshop")) as c:
        yield c


def new_browser(app_client: TestClient) -> TestClient:
    """Another browser on the same running app (its own cookies, so its own client id)."""
    return TestClient(app_client.app)


def config_of_query(query: str) -> ExperimentConfig:
    config, errors = forms.validate(dict(parse_qsl(query, keep_blank_values=True)))
    assert config is not None, errors
    return config


def as_json(config: dict | ExperimentConfig) -> dict:
    if isinstance(config, dict):
        config = ExperimentConfig.model_validate(config)
    return config.model_dump(mode="json")


# -- guided scenarios ----------------------------------------------------------------------------

def test_scenarios_page_lists_every_scenario_with_links_to_its_setup(app_client):
    res = app_client.get("/scenarios")
    assert res.status_code == 200
    tree = html_tree(res.text)
    items = tree.find_all("li", class_="scenario")
    assert [li.attrs["id"] for li in items] == [s.slug for s in SCENARIOS]
    for li, s in zip(items, SCENARIOS, strict=True):
        text = li.text
        assert li.find("h2").text == s.title
        assert " ".join(s.text.split()) in text, s.slug
        assert " ".join(s.look_for.split()) in text, s.slug
        (link,) = [a for a in li.find_all("a") if a.text == "Open in the playground"]
        href = urlsplit(link.attrs["href"])
        assert href.path == "/"
        assert config_of_query(href.query) == ExperimentConfig.model_validate(s.config), s.slug
        page = app_client.get(link.attrs["href"])  # the playground opens with no error
        assert page.status_code == 200
        assert not html_tree(page.text).find_all(class_="has-error"), s.slug


def test_run_it_now_starts_the_scenario_as_written(app_client):
    tree = html_tree(app_client.get("/scenarios").text)
    started = []
    try:
        for li, s in zip(tree.find_all("li", class_="scenario"), SCENARIOS, strict=True):
            form = li.find("form", action="/play")
            assert form.attrs["method"] == "post"
            assert form.find("button").text == "Run it now"
            fields = {i.attrs["name"]: i.attrs["value"] for i in form.find_all("input")}
            # no HX-Request: a plain form post, as without JavaScript
            res = app_client.post("/play", data=fields, follow_redirects=False)
            assert res.status_code == 303, (s.slug, res.text)
            match = re.fullmatch(r"/e/([\w-]+)", res.headers["location"])
            assert match, res.headers["location"]
            started.append(match.group(1))
            body = app_client.get(res.headers["location"] + ".json").json()
            assert body["config"] == as_json(s.config), s.slug
            assert app_client.get(res.headers["location"]).status_code == 200
    finally:
        cancel_quietly(app_client, *started)


# -- import a config -----------------------------------------------------------------------------

def imported_config(res) -> ExperimentConfig:
    assert res.status_code == 303, res.text
    location = urlsplit(res.headers["location"])
    assert location.path == "/"
    return config_of_query(location.query)


def test_import_from_the_textarea_opens_the_playground_with_it(app_client):
    text = json.dumps(IMPORTED)
    # multipart, with the file input left empty: what a browser sends for this form
    res = app_client.post("/import", data={"config": text},
                          files={"file": ("", b"", "application/octet-stream")},
                          follow_redirects=False)
    assert imported_config(res) == ExperimentConfig.model_validate(IMPORTED)

    page = html_tree(app_client.get(res.headers["location"]).text)
    controls = page.find("form", id="controls")
    assert controls.find("input", name="model.dropout").attrs["value"] == "0.3"
    assert controls.find("input", name="sweep.dropout").attrs["value"] == "0,0.2,0.5"
    assert not controls.find_all(class_="has-error")


def test_import_from_an_uploaded_file(app_client):
    exported = TINY | {"model": {"hidden": [8], "dropout": [0.1]}}
    res = app_client.post("/import", data={"config": ""},
                          files={"file": ("config.json", json.dumps(exported).encode(),
                                          "application/json")}, follow_redirects=False)
    assert imported_config(res) == ExperimentConfig.model_validate(exported)

    # an exported config.json imports back to the same setup
    exp_id = app_client.post("/api/experiments", json=IMPORTED).json()["id"]
    cancel_quietly(app_client, exp_id)
    exported = app_client.get(f"/api/experiments/{exp_id}/config.json").content
    res = app_client.post("/import", files={"file": ("config-x.json", exported,
                                                     "application/json")},
                          follow_redirects=False)
    assert imported_config(res) == ExperimentConfig.model_validate(IMPORTED)


@pytest.mark.parametrize(("text", "field"), [
    ('{"model": {"dropout": 1.5}', "body"),  # not JSON (a brace missing)
    ('{"model": {"dropout": 1.5}}', "model.dropout"),
    ('{"train": {"epochs": 0}}', "train.epochs"),
    ('{"model": {"dropuot": 0.2}}', "model.dropuot"),
])
def test_an_invalid_import_names_the_field_and_keeps_the_text(app_client, text, field):
    res = app_client.post("/import", data={"config": text}, follow_redirects=False)
    assert res.status_code == 422
    box = html_tree(res.text).find("details", class_="import")
    assert "open" in box.attrs
    (error,) = box.find(class_="form-errors").find_all("p")
    assert error.text.startswith(f"{field}: "), error.text
    textarea = box.find("textarea", name="config")
    assert textarea.content == [text]  # kept verbatim, to fix and resubmit


def test_an_imported_text_cannot_break_out_of_the_textarea(app_client):
    text = '{"name": "</textarea><script>alert(1)</script>", "model": {"dropout": 3}}'
    res = app_client.post("/import", data={"config": text})
    assert res.status_code == 422
    assert "<script>alert(1)" not in res.text
    assert html_tree(res.text).find("textarea", name="config").content == [text]


# -- rename and delete (the owner only) ---------------------------------------------------------

def test_the_owner_renames_and_others_cannot(app_client):
    owner, other = new_browser(app_client), new_browser(app_client)
    exp_id = owner.post("/api/experiments", json=TINY).json()["id"]
    finished(owner, exp_id)

    res = owner.patch(f"/api/experiments/{exp_id}", json={"name": "  wide net, p=0.5 "})
    assert res.status_code == 200
    assert res.json() == {"id": exp_id, "name": "wide net, p=0.5"}
    assert owner.get(f"/api/experiments/{exp_id}").json()["name"] == "wide net, p=0.5"

    res = owner.post(f"/e/{exp_id}/rename", data={"name": "<i>mine</i>"}, follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"] == f"/e/{exp_id}"
    page = owner.get(f"/e/{exp_id}")
    assert html_tree(page.text).find("h1", class_="exp-title").text == "<i>mine</i>"
    assert "<i>mine</i>" not in page.text  # escaped

    for res in (other.patch(f"/api/experiments/{exp_id}", json={"name": "hijacked"}),
                other.delete(f"/api/experiments/{exp_id}")):
        assert res.status_code == 403
        assert OWNER_ONLY in res.json()["detail"]
    for url in (f"/e/{exp_id}/rename", f"/e/{exp_id}/delete"):
        res = other.post(url, data={"name": "hijacked"}, follow_redirects=False)
        assert res.status_code == 403
        assert OWNER_ONLY in html_tree(res.text).text
    body = other.get(f"/api/experiments/{exp_id}").json()
    assert body["name"] == "<i>mine</i>" and body["status"] == "done"

    too_long = owner.patch(f"/api/experiments/{exp_id}", json={"name": "x" * 81})
    assert too_long.status_code == 422


def test_only_the_owner_sees_rename_and_delete_on_the_share_page(app_client):
    owner, other = new_browser(app_client), new_browser(app_client)
    exp_id = owner.post("/api/experiments", json=TINY).json()["id"]
    finished(owner, exp_id)
    mine = html_tree(owner.get(f"/e/{exp_id}").text)
    actions = mine.find("details", class_="owner-actions")
    assert actions.find("form", action=f"/e/{exp_id}/rename").find("input", name="name")
    assert actions.find("form", action=f"/e/{exp_id}/delete").attrs["data-confirm"]
    theirs = html_tree(other.get(f"/e/{exp_id}").text)
    assert not theirs.find_all(class_="owner-actions")
    assert not theirs.find_all("form", action=f"/e/{exp_id}/delete")
    assert not theirs.find_all("form", action=f"/e/{exp_id}/rename")
    assert theirs.find("a", id="fork")  # anyone can still fork it


def gone_everywhere(browser: TestClient, exp_id: str) -> None:
    for url in (f"/api/experiments/{exp_id}", f"/e/{exp_id}", f"/e/{exp_id}.json",
                f"/api/experiments/{exp_id}/events", f"/api/experiments/{exp_id}/config.json",
                f"/api/experiments/{exp_id}/metrics.csv", f"/e/{exp_id}/summary"):
        assert browser.get(url).status_code == 404, url
    assert exp_id not in browser.get("/partials/recent").text


def test_the_owner_deletes_and_it_is_gone_everywhere(app_client):
    owner = new_browser(app_client)
    first = owner.post("/api/experiments", json=TINY).json()["id"]
    second = owner.post("/api/experiments", json=TINY).json()["id"]
    finished(owner, first)
    finished(owner, second)
    assert first in owner.get("/partials/recent").text

    res = owner.delete(f"/api/experiments/{first}")
    assert res.status_code == 204 and res.content == b""
    gone_everywhere(owner, first)
    assert owner.delete(f"/api/experiments/{first}").status_code == 404
    assert app_client.app.state.store.events_after(first) == []  # its epochs went too

    res = owner.post(f"/e/{second}/delete", follow_redirects=False)  # the share page's button
    assert res.status_code == 303 and res.headers["location"] == "/"
    gone_everywhere(owner, second)


def test_deleting_a_running_experiment_stops_it(app_client):
    owner = new_browser(app_client)
    exp_id = start_running(owner, LONG)  # minutes of work on the only worker
    assert owner.delete(f"/api/experiments/{exp_id}").status_code == 204
    gone_everywhere(owner, exp_id)
    # The worker was freed: the next experiment runs at once and ends within seconds.
    after = owner.post("/api/experiments", json=TINY).json()["id"]
    assert finished(owner, after, timeout=30)["status"] == "done"
    store = app_client.app.state.store
    assert store.get(exp_id) is None and store.events_after(exp_id) == []  # nothing came back


# -- presenter mode ------------------------------------------------------------------------------

def visible_layout(tree) -> dict:
    """What presenter mode must never take away: the run panel, the recent list, every chart."""
    return {
        "ids": sorted(n.attrs["id"] for n in tree.iter()
                      if n.attrs.get("id") in ("run", "recent") and not n.hidden()),
        "charts": sorted(n.attrs["data-chart"] for n in tree.iter()
                         if "data-chart" in n.attrs and not n.hidden()),
    }


def test_presenter_mode_hides_only_the_named_control_groups(app_client):
    normal = html_tree(app_client.get("/?train.epochs=7").text)
    assert "present" not in normal.find("body").classes()
    res = app_client.get("/?present=1&hide=sweep,train&train.epochs=7")
    assert res.status_code == 200
    tree = html_tree(res.text)
    assert {"present", "page-playground"} <= tree.find("body").classes()
    hidden = {f.attrs["data-section"] or "label": f.hidden() for f in tree.find_all("fieldset")}
    assert hidden == {"dataset": False, "model": False, "train": True, "sweep": True,
                      "label": False}
    # hidden, not disabled: the hidden settings still go with the form
    train = tree.find("fieldset", data_section="train")
    assert "disabled" not in train.attrs
    assert train.find("input", name="train.epochs").attrs["value"] == "7"
    assert tree.find("button", id="train-button").hidden() is False
    assert visible_layout(tree) == visible_layout(normal)
    assert visible_layout(tree)["ids"] == ["recent", "run"]


@pytest.mark.parametrize("hide", ["run,recent,charts,loss,board",
                                  "dataset,model,train,sweep,label"])
def test_hiding_never_hides_curves(app_client, hide):
    normal = html_tree(app_client.get("/").text)
    tree = html_tree(app_client.get(f"/?present=1&hide={hide}").text)
    assert visible_layout(tree) == visible_layout(normal)
    assert visible_layout(tree)["ids"] == ["recent", "run"]
    for node in tree.iter():
        if node.hidden() and node.tag != "small":  # (field notes are hidden until needed)
            assert node.tag == "fieldset" or node.parent.hidden(), (node.tag, node.attrs)


def test_presenter_mode_css_enlarges_and_never_hides():
    css = (ROOT / "static" / "style.css").read_text()
    rules = re.findall(r"([^{}]*\.present[^{}]*)\{([^}]*)\}", css)
    assert rules  # presenter mode has its own styles
    for selector, body in rules:
        declarations = body.replace(" ", "")
        assert "display:none" not in declarations, selector
        assert "visibility:hidden" not in declarations, selector
