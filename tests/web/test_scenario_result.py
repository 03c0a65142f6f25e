"""A guided sweep scenario through the server: trained by the app's worker at a held-out seed
pair, its share page shows the claim with its margins and this experiment's own numbers judged
by it, equal to judging the API's epochs directly; a seed that makes the effect small is named.
"""

from __future__ import annotations

from types import SimpleNamespace

from conftest import finished, html_tree

from app.ml.scenarios import BY_SLUG, HELD_OUT_SEEDS
from app.ml.summary import run_summary
from app.web import views
from app.web.render import make_templates


def scenario_config(slug: str, seed: int) -> dict:
    raw = BY_SLUG[slug].experiment().model_dump(mode="json")
    raw["dataset"]["seed"] = raw["train"]["seed"] = seed
    return raw


def test_a_sweep_scenario_through_the_server_at_a_held_out_seed(client):
    scenario, seed = BY_SLUG["too-much-dropout"], HELD_OUT_SEEDS[3]
    res = client.post("/api/experiments", json=scenario_config(scenario.slug, seed))
    assert res.status_code == 201, res.text
    exp_id = res.json()["id"]
    body = finished(client, exp_id, timeout=120)
    assert body["status"] == "done"

    page = html_tree(client.get(f"/e/{exp_id}").text)
    [box] = page.find_all(**{"data-role": "scenario"})
    assert box.attrs["data-slug"] == scenario.slug
    claims = [li.text.strip() for li in box.find("ul").find_all("li")]
    assert claims == scenario.claims()
    assert "one of the held-out seeds" in box.text

    [result] = page.find_all(**{"data-role": "scenario-result"})
    summaries = [run_summary(r["epochs"], "classification") for r in body["runs"]]
    findings = scenario.judge(summaries)
    items = result.find_all("li")
    assert len(items) == len(findings) == 3
    for li, f in zip(items, findings, strict=True):
        assert f"{f.claim}. Here: {f.numbers}: {f.shown}" in " ".join(li.text.split())
        assert li.attrs["data-holds"] == "true"
    assert result.attrs["data-holds"] == "true"
    # the stored summary the page judged is the worker's: the same numbers
    assert [r["fit_epoch"] for r in body["summary"]["runs"]] == [
        s["fit_epoch"] for s in summaries]


def test_a_small_effect_is_named_as_such():
    scenario = BY_SLUG["dropout-rescue"]
    config = scenario.experiment().model_copy(
        update={"dataset": scenario.experiment().dataset.model_copy(update={"seed": 41})})
    runs = [{"index": i, "final": {"val_loss": v, "generalization_gap": g, "val_acc": 0.8},
             "best_val_loss": b, "best_epoch": 9, "epochs_trained": 400}
            for i, (v, g, b) in enumerate([(1.0, 0.9, 0.30), (0.9, 0.8, 0.31)])]
    summary = {"task": "classification", "runs": runs,
               "sweep": {"rates": [], "best_dropout": 0.5, "best_weight_decay": 0.0}}
    table = views.summary_table(summary, config)
    assert table["scenario"]["holds"] is False
    assert [f["holds"] for f in table["scenario"]["findings"]] == [False, False, True]
    html = make_templates().get_template("partials/summary.html").render(
        table=table, exp=SimpleNamespace(id="x"), fmt=lambda v, d=4: str(v))
    tree = html_tree(html)
    [result] = tree.find_all(**{"data-role": "scenario-result"})
    assert result.attrs["data-holds"] == "false"
    text = " ".join(result.text.split())
    assert "Here: p = 0.5 0.9 vs p = 0 1: 10% lower" in text
    items = [" ".join(li.text.split()) for li in result.find_all("li")]
    assert ["short of the claim's margin" in t for t in items] == [True, True, False]
    assert "At data seed 41 and training seed 0" in text
    # an experiment that is no scenario gets no verdict
    assert views.scenario_result(config.model_copy(update={"train": config.train.model_copy(
        update={"epochs": 5})}), summary) is None
