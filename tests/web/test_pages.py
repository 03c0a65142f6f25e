"""HTML pages and htmx fragments, in process: the playground form and its query string, the
Train button (/play), the share page and its JSON twin, the recent list per browser, the CSP
and the self-hosted front-end libraries.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from conftest import TINY, cancel_quietly, experiment_count, finished, html_tree
from fastapi.testclient import TestClient

from app.ml.config import ExperimentConfig
from app.ml.datasets import CATALOG
from app.ml.scenarios import START
from app.web import forms, pages
from app.web.forms import DEFAULTS, FIELD_NAMES

ROOT = Path(__file__).resolve().parents[2]
TINY_FORM = {"dataset.n_train": "50", "model.hidden": "16", "train.epochs": "3"}


class Scraper(HTMLParser):
    """Collects start tags, form control values, and the text of error and field elements.

    `values` is what the page's forms would submit, read as the server reads a form
    (app.web.forms.form_params): checked radios and boxes only, the layer rows' widths and
    rates joined, nothing from a <template>."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.items: list[tuple[str, str]] = []  # (name, value) as a browser would submit
        self.selected: dict[str, list[str]] = {}  # select name -> selected option values
        self._template = 0
        self.errors: dict[str, str] = {}  # field name -> inline error text
        self.field_text: dict[str, str] = {}  # field name -> all text inside its block
        self.form_errors: list[str] = []
        self._select: str | None = None
        self._field: str | None = None
        self._capture: tuple[str, str] | None = None  # ("error", field) or ("form", "")
        self.feed(html)

    @property
    def values(self) -> dict[str, str]:  # control name -> submitted text
        return forms.form_params(self.items)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "template":
            self._template += 1
        if tag == "div" and "data-field" in a:
            self._field = a["data-field"]
            self.field_text[self._field] = ""
        elif tag == "div" and "form-errors" in a.get("class", ""):
            self._capture = ("form", "")
        if tag == "input" and "name" in a and not self._template:
            if a.get("type") not in ("radio", "checkbox") or "checked" in a:
                self.items.append((a["name"], a.get("value", "on")))
        elif tag == "select":
            self._select = a.get("name")
            self.selected[self._select] = []
        elif tag == "option" and self._select and "selected" in a:
            self.selected[self._select].append(a["value"])
            self.items.append((self._select, a["value"]))
        elif tag == "p" and a.get("id", "").startswith("err-"):
            self._capture = ("error", a["id"].removeprefix("err-"))
            self.errors[self._capture[1]] = ""
        elif tag == "p" and self._capture and self._capture[0] == "form":
            self.form_errors.append("")

    def handle_endtag(self, tag):
        if tag == "template":
            self._template -= 1
        if tag == "select":
            self._select = None
        elif tag == "div":
            if self._capture and self._capture[0] == "form":
                self._capture = None
            self._field = None
        elif tag == "p" and self._capture and self._capture[0] == "error":
            self._capture = None

    def handle_data(self, data):
        if self._field:
            self.field_text[self._field] += data
        if self._capture and self._capture[0] == "error":
            self.errors[self._capture[1]] += data
        elif self._capture and self._capture[0] == "form" and self.form_errors:
            self.form_errors[-1] += data

    def find(self, tag: str, **attrs) -> list[dict]:
        attrs = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}
        return [a for t, a in self.tags
                if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def fields_by_name() -> dict[str, forms.FormField]:
    return {f.name: f for s in forms.blank_sections() for f in s.fields}


def play(client, data: dict, htmx: bool = True):
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post("/play", data=data, headers=headers, follow_redirects=False)


# -- the playground form ----------------------------------------------------------------------


def accessible_name(tree, node) -> str:
    """A form control's name as assistive technology gets it: aria-label, a <label for>, or
    the <label> around it."""
    if node.attrs.get("aria-label"):
        return node.attrs["aria-label"]
    labels = tree.find_all("label", for_=node.attrs.get("id", "-"))
    if labels:
        return labels[0].text
    parent = node.parent
    while parent is not None and parent.tag != "label":
        parent = parent.parent
    return parent.text if parent is not None else ""


def in_template(node) -> bool:
    """Inside a <template>: markup a script copies (a new layer row), not a control yet."""
    while node is not None:
        if node.tag == "template":
            return True
        node = node.parent
    return False


def test_playground_has_a_documented_control_for_every_config_field(client):
    res = client.get("/")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/html")
    page = Scraper(res.text)
    controls = {a["name"] for t, a in page.tags if t in ("input", "select") and "name" in a}
    assert controls - {"file"} == set(FIELD_NAMES)  # "file": the import form's upload
    tree = html_tree(res.text)
    for name, f in fields_by_name().items():
        assert f.help, f"{name} has no help text"
        # the help is in the page, tied to the control that submits the field
        [help_text] = tree.find_all(id=f"h-{name}")
        assert help_text.text == " ".join(f.help.split()), name
        described = [n for n in tree.find_all(name=name)
                     if f"h-{name}" in n.attrs.get("aria-describedby", "").split()
                     or f"h-{name}" in (n.parent.attrs.get("aria-describedby", "") if n.parent
                                        else "")]
        assert described or name == "dataset.name", name
        # and every control that submits it has a name of its own
        for node in tree.find_all(name=name):
            if node.attrs.get("type") != "hidden" and node.tag in ("input", "select") \
                    and not in_template(node):
                assert accessible_name(tree, node).strip(), name
        assert page.values[name] == f.default, name  # no query: the starting setup
    assert page.values["dataset.name"] == START.dataset.name
    assert len([a for t, a in page.tags if t == "input" and a.get("type") == "radio"
                and "checked" in a]) == 1
    for node in tree.find_all("input", type="radio"):  # the pictures' boxes: described as a group
        assert accessible_name(tree, node) in (node.attrs["value"].replace("_", " "),)
    group = tree.find(data_field="dataset.name")
    assert group.attrs["role"] == "radiogroup" and group.attrs["aria-describedby"] == \
        "h-dataset.name"
    assert not page.errors and not page.form_errors


def test_the_first_screen_holds_the_data_drawn(client):
    """The data of the starting setup is in the page's HTML (no script needed to see it): one
    filled mark per training point, validation hollow, with a text alternative."""
    tree = html_tree(client.get("/").text)
    card = tree.find("section", id="data")
    svg = card.find("svg", role="img")
    assert f"{START.dataset.n_train} training points" in svg.attrs["aria-label"]
    train = [n for g in card.find_all("g", class_="train") for n in g.children]
    val = [n for g in card.find_all("g", class_="val") for n in g.children]
    assert len(train) == START.dataset.n_train and len(val) > 0
    assert all(g.attrs["stroke"] != "none" and g.attrs["fill"] == "none"
               for g in card.find_all("g", class_="val"))  # hollow
    # the card refreshes itself from the form's dataset fields
    assert card.attrs["hx-get"] == "/partials/data"
    assert "dataset." in card.attrs["hx-include"]
    # every dataset has its small picture in the picker
    picks = tree.find_all("label", class_="pick")
    assert [p.find("input").attrs["value"] for p in picks] == list(CATALOG)
    assert all(p.find("svg").attrs["aria-hidden"] == "true" for p in picks)


def test_sweep_target_options_say_where_the_rate_goes(client):
    html = client.get("/?sweep.target=layer2").text
    options = dict(re.findall(r'<option value="([^"]+)"[^>]*>([^<]+)</option>', html))
    assert options["hidden"] == "every hidden layer"
    assert options["input"] == "the inputs"
    assert options["layer2"] == "hidden layer 2"
    assert options["sgd"] == "sgd"  # other selects show their values
    assert Scraper(html).selected["sweep.target"] == ["layer2"]


def test_query_parameters_prefill_the_controls(client):
    res = client.get("/?model.dropout=0.3&dataset.name=circles&model.hidden=128,32")
    assert res.status_code == 200
    page = Scraper(res.text)
    assert page.values["model.dropout"] == "0.3"
    assert page.values["model.hidden"] == "128,32"
    assert page.values["dataset.name"] == "circles"
    assert len([a for t, a in page.tags if t == "input" and a.get("name") == "dataset.name"
                and "checked" in a]) == 1  # exactly one picture picked
    defaults = fields_by_name()
    for name in set(FIELD_NAMES) - {"model.dropout", "dataset.name", "model.hidden"}:
        assert page.values[name] == defaults[name].default, name
    assert not page.errors and not page.form_errors


INVALID = [
    pytest.param("model.dropout=1.0", "model.dropout", "below 1", id="dropout-1"),
    pytest.param("train.epochs=0", "train.epochs", "greater than or equal to 1", id="epochs-0"),
    pytest.param("model.hidden=1024,1024,1024", "model.hidden", "parameters", id="budget"),
    pytest.param("model.hidden=8,8&model.dropout=0.1,0.2,0.3", "model.dropout", "3 rates",
                 id="rates-per-layer"),
    pytest.param("dataset.name=mnist", "dataset.name", "moons", id="unknown-dataset"),
    pytest.param("model.hidden=5000", "model.hidden", "1024", id="too-wide"),
    pytest.param("sweep.dropout=0,2", "sweep.dropout", "less than 1", id="sweep-rate"),
    pytest.param("model.dropout=abc", "model.dropout", "number", id="dropout-text"),
    pytest.param("model.dropout=0.1,abc&model.hidden=8,8", "model.dropout", "number",
                 id="rate-list-text"),
]


@pytest.mark.parametrize(("query", "field", "text"), INVALID)
def test_invalid_query_shows_the_error_under_its_field(client, query, field, text):
    res = client.get(f"/?{query}")
    assert res.status_code == 200
    page = Scraper(res.text)
    assert list(page.errors) == [field], (page.errors, page.form_errors)
    assert text in page.errors[field]
    assert page.form_errors == []  # nothing left over above the form
    if field == "dataset.name":  # no picture is picked
        assert "dataset.name" not in page.values
    elif field not in page.selected:  # a text or number box keeps the user's value to edit
        assert page.values[field] == dict(parse_qsl(query))[field]
    [block] = [a for t, a in page.tags if a.get("data-field") == field]
    assert "has-error" in block["class"]


def test_errors_about_no_single_field_are_shown_above_the_form(client):
    page = Scraper(client.get("/?sweep.folds=10&sweep.repeats=20").text)
    assert any("limit is 64" in e for e in page.form_errors), page.form_errors
    assert page.values["sweep.folds"] == "10" and page.values["sweep.repeats"] == "20"


# -- the Train button -------------------------------------------------------------------------


def test_play_with_htmx_answers_the_run_panel_and_canonical_url(client):
    # scrambled order, and two fields sent with the starting setup's values
    data = {"train.epochs": "3", "model.hidden": "16, 8",
            "train.batch_size": DEFAULTS["train.batch_size"],
            "model.dropout": "0.3", "dataset.name": "circles", "dataset.n_train": "50",
            "model.activation": DEFAULTS["model.activation"]}
    before = experiment_count(client)
    res = play(client, data)
    assert res.status_code == 200, res.text
    [panel] = Scraper(res.text).find("section", id="run")
    exp_id = panel["data-exp"]
    try:
        assert res.headers["hx-trigger"] == "dp:started"
        assert experiment_count(client) == before + 1
        stored = client.get(f"/api/experiments/{exp_id}").json()
        config = ExperimentConfig.model_validate(stored["config"])
        assert config.model.hidden == [16, 8] and config.model.dropout == 0.3
        assert config.dataset.name == "circles" and config.train.epochs == 3
        url = res.headers["hx-replace-url"]
        sent = {"dataset.name": "circles", "dataset.n_train": "50", "model.hidden": "16,8",
                "model.dropout": "0.3", "train.epochs": "3"}
        # form order, START's values left out
        assert parse_qsl(urlsplit(url).query) == [(k, v) for k, v in sent.items()
                                                  if v != DEFAULTS[k]]
        assert url == f"/?{forms.config_to_query(config)}"
        # the address bar's link opens the playground with the same setup
        prefilled = Scraper(client.get(url).text).values
        assert forms.validate(prefilled)[0] == config
        assert panel["data-status"] in ("queued", "running")
        view = json.loads(panel["data-view"])
        # START trains the p = 0 twin beside the run: two runs of 3 epochs
        assert config.paired and config.n_runs == 2
        assert (view["id"], view["total"], view["epochs"]) == (exp_id, 6, 3)
        assert f'/api/experiments/{exp_id}/cancel' in res.text  # the Stop button
    finally:
        cancel_quietly(client, exp_id)


def test_play_with_bad_value_retargets_the_controls_with_the_error(client):
    before = experiment_count(client)
    res = play(client, {**TINY_FORM, "model.dropout": "1.5"})
    assert res.status_code == 422
    assert res.headers["hx-retarget"] == "#controls"
    assert res.headers["hx-reswap"] == "outerHTML"
    page = Scraper(res.text)
    assert page.find("form", id="controls")
    assert list(page.errors) == ["model.dropout"]
    assert "below 1" in page.errors["model.dropout"]
    assert page.values["model.dropout"] == "1.5"
    assert page.values["train.epochs"] == "3"  # the rest of the submission is kept
    assert experiment_count(client) == before


def test_play_without_htmx_redirects_to_the_experiment_page(client):
    res = play(client, TINY_FORM, htmx=False)
    assert res.status_code == 303
    location = res.headers["location"]
    assert re.fullmatch(r"/e/[A-Za-z0-9_-]{11,}", location), location
    exp_id = location.removeprefix("/e/")
    try:
        page = client.get(location)
        assert page.status_code == 200
        assert Scraper(page.text).find("section", id="run")[0]["data-exp"] == exp_id
    finally:
        cancel_quietly(client, exp_id)


# -- the share page ---------------------------------------------------------------------------

SHARED = {"name": "fork & share", "dataset": {"name": "circles", "n_train": 40, "noise": 0.1},
          "model": {"hidden": [16, 8], "dropout": [0.1, 0.2], "activation": "tanh"},
          "train": {"epochs": 3, "lr": 0.01, "seed": 3}, "sweep": {"repeats": 2}}


@pytest.fixture(scope="module")
def shared(client) -> dict:
    res = client.post("/api/experiments", json=SHARED)
    assert res.status_code == 201, res.text
    body = finished(client, res.json()["id"])
    assert body["status"] == "done", body.get("error")
    return body


def test_experiment_page_shows_config_exports_and_a_fork_link(client, shared):
    exp_id = shared["id"]
    res = client.get(f"/e/{exp_id}")
    assert res.status_code == 200
    page = Scraper(res.text)
    for text in ("fork &amp; share", "circles", "tanh"):  # the setup is on the page
        assert text in res.text, text
    assert re.search(r"16\D{1,20}8", res.text)  # the hidden layers
    links = {a["href"] for t, a in page.tags if t == "a" and "href" in a}
    exports = {f"/api/experiments/{exp_id}/config.json", f"/api/experiments/{exp_id}/metrics.csv",
               f"/api/experiments/{exp_id}/script.py", f"/e/{exp_id}.json"}
    assert exports <= links
    for href in exports - {f"/api/experiments/{exp_id}/script.py"}:
        assert client.get(href).status_code == 200, href
    [fork] = page.find("a", id="fork")
    url = urlsplit(fork["href"])
    assert url.path == "/"
    config, errors = forms.validate(dict(parse_qsl(url.query, keep_blank_values=True)))
    assert errors == {}
    assert config.model_dump(mode="json") == shared["config"]
    # the fork opens a playground showing that setup
    values = Scraper(client.get(fork["href"]).text).values
    assert values["model.dropout"] == "0.1,0.2" and values["name"] == "fork & share"


@pytest.mark.parametrize(("sweep", "text"), [
    ({"dropout": [0, 0.25, 0.5], "folds": 3},
     "p ∈ {0, 0.25, 0.5} on every hidden layer, 3-fold cross-validation"),
    ({"low": 0.1, "high": 0.3, "grid_step": 0.1, "target": "input", "repeats": 2},
     "grid: p ∈ {0.1, 0.2, 0.3} on the inputs, 2 training seeds"),
    ({"dropout": [0.2, 0.4], "target": "layer2", "weight_decay": [0, 0.01]},
     "p ∈ {0.2, 0.4} on hidden layer 2, × weight decay ∈ {0, 0.01}"),
])
def test_the_setup_says_what_a_sweep_varies(sweep, text):
    config = ExperimentConfig.model_validate({"model": {"hidden": [8, 8]}, "sweep": sweep})
    rates = config.sweep.rates(config.train.seed)
    assert pages._sweep_text(config, rates) == text


def test_json_twin_equals_the_api(client, shared):
    twin = client.get(f"/e/{shared['id']}.json")
    assert twin.status_code == 200
    assert twin.headers["content-type"].startswith("application/json")
    assert twin.json() == client.get(f"/api/experiments/{shared['id']}").json() == shared


def test_unknown_experiment_page_is_an_escaped_404(client):
    res = client.get("/e/<img src=x onerror=alert(1)>")
    assert res.status_code == 404
    assert res.headers["content-type"].startswith("text/html")
    assert "no experiment" in res.text
    assert "<img" not in res.text and "&lt;img" in res.text


def test_recent_lists_only_this_browsers_experiments(client):
    other = TestClient(client.app)  # shares the running app; has its own cookie jar
    mine = client.post("/api/experiments", json={**TINY, "name": "mine"}).json()["id"]
    theirs = other.post("/api/experiments", json={**TINY, "name": "theirs"}).json()["id"]
    try:
        assert other.cookies["dp_client"] != client.cookies["dp_client"]
        my_list = client.get("/partials/recent")
        their_list = other.get("/partials/recent")
        assert my_list.status_code == their_list.status_code == 200
        assert f"/e/{mine}" in my_list.text and f"/e/{theirs}" not in my_list.text
        assert f"/e/{theirs}" in their_list.text and f"/e/{mine}" not in their_list.text
        fresh = TestClient(client.app).get("/partials/recent")
        assert "/e/" not in fresh.text and "Nothing yet" in fresh.text
    finally:
        cancel_quietly(client, mine, theirs)


# -- security headers and assets --------------------------------------------------------------


def csp(res) -> dict[str, list[str]]:
    policy = res.headers["content-security-policy"]
    return {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}


def test_csp_allows_only_own_scripts(client, shared):
    for path in ("/", f"/e/{shared['id']}", f"/api/experiments/{shared['id']}"):
        res = client.get(path)
        policy = csp(res)
        assert policy["script-src"] == ["'self'"], path
        assert policy["default-src"] == ["'self'"], path
        if path.startswith("/api"):
            continue
        # every script is a file from this server: inline code would be blocked by the CSP
        scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", res.text, re.S)
        assert scripts
        for attrs, body in scripts:
            src = re.search(r'\bsrc="([^"]+)"', attrs)
            assert src and src.group(1).startswith(("/static/", "/vendor/")), attrs
            assert body.strip() == ""


@pytest.mark.parametrize(("name", "marker"), [("vendor/htmx.min.js", "htmx"),
                                              ("vendor/plotly-cartesian.min.js", "Plotly")])
def test_front_end_libraries_are_served_locally(client, name, marker):
    res = client.get(client.app.state.assets.url(name))
    assert res.status_code == 200
    assert "javascript" in res.headers["content-type"]
    assert len(res.content) > 10_000
    assert marker in res.text[:200_000]
    assert client.get("/static/vendor/jquery.min.js").status_code == 404


def test_templates_load_nothing_from_other_hosts(client, shared):
    external = re.compile(r"<(script|link)\b[^>]*\b(src|href)\s*=\s*[\"']?(https?:)?//", re.I)
    templates = sorted((ROOT / "templates").rglob("*.html"))
    assert templates
    for path in templates:
        assert not external.search(path.read_text()), path
    for url in ("/", f"/e/{shared['id']}"):
        html = client.get(url).text
        assert not external.search(html), url


# -- the data card ----------------------------------------------------------------------------


def data_card(client, query: str):
    res = client.get(f"/partials/data?{query}")
    assert res.status_code == 200
    return html_tree(res.text).find("section", id="data")


@pytest.mark.parametrize(("name", "n_train"), [("circles", 60), ("moons", 61), ("noise", 30)])
def test_data_card_draws_each_training_point(client, name, n_train):
    card = data_card(client, f"dataset.name={name}&dataset.n_train={n_train}")
    train = [n for g in card.find_all("g", class_="train") for n in g.children]
    assert len(train) == n_train
    assert [g.attrs["data-class"] for g in card.find_all("g", class_="train")] == ["0", "1"]
    assert f"{name}: {n_train} training points" in card.find("svg").attrs["aria-label"]


def test_data_card_draws_sine_digits_and_projections(client):
    sine = data_card(client, "dataset.name=sine")
    assert sine.find("polyline", class_="truth").attrs["points"].count(",") == 100
    assert "noise-free" in sine.text
    digits = data_card(client, "dataset.name=digits")
    labels = [g.attrs["data-label"] for g in digits.find_all("g", class_="digit")]
    assert sorted(set(labels)) == [str(d) for d in range(10)] and len(labels) == 20
    assert all(i.attrs["href"].startswith("data:image/png;base64,")
               for i in digits.find_all("image"))
    assert "projection" not in digits.text.lower()  # the card shows images, not the PCA
    wine = data_card(client, "dataset.name=wine&dataset.n_train=100")
    assert "A projection" in wine.text and "PCA" in wine.text
    assert len(wine.find_all("g", class_="train")) == 3  # three classes, told apart by shape
    assert wine.find_all("rect", width="7.6") and wine.find_all("path")


def test_data_card_says_why_it_cannot_draw(client):
    card = data_card(client, "dataset.name=wine&dataset.n_train=5000")
    error = card.find(data_role="data-error")
    assert "dataset.n_train" in error.text and "at most" in error.text
    assert not card.find_all("svg", role="img")


def test_data_card_json_twin_is_the_preview(client):
    from app.ml.config import DatasetConfig
    from app.ml.preview import preview

    res = client.get("/partials/data.json?dataset.name=xor&dataset.n_train=50&dataset.seed=3")
    assert res.status_code == 200
    cfg = DatasetConfig.model_validate({**START.dataset.model_dump(), "name": "xor",
                                        "n_train": 50, "seed": 3})
    assert res.json() == json.loads(json.dumps(preview(cfg)))
    bad = client.get("/partials/data.json?dataset.noise=9")
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "dataset.noise"
