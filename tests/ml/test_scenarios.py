"""Every guided scenario's claim shows in its curves with the default seed."""

import pytest

from app.ml.config import ExperimentConfig
from app.ml.scenarios import SCENARIOS
from app.ml.train import train


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.slug)
def test_scenario_claim_holds(scenario):
    config = ExperimentConfig.model_validate(scenario.config)
    runs = [r.epochs for r in train(config).runs]
    assert len(runs[0]) == config.train.epochs
    assert scenario.claim(runs), f"{scenario.slug}: {scenario.look_for}"


def test_scenarios_teach_the_right_meaning_of_p():
    for s in SCENARIOS:
        text = (s.text + s.look_for).lower()
        assert "keep probability" not in text or "1 - p" in text
    assert any("one unit in ten" in s.text for s in SCENARIOS)  # p=0.9 drops 9 in 10


def test_scenario_slugs_are_unique_and_configs_valid():
    assert len({s.slug for s in SCENARIOS}) == len(SCENARIOS)
    for s in SCENARIOS:
        ExperimentConfig.model_validate(s.config)
