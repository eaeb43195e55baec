"""The shipped text, time-series and classification configs validate, fill in their model, switch backbone."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from favor.models import SequenceModel
from favor.runs.config import load_run_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TASK_CONFIGS = {
    "timeseries_tiny.yaml": ("timeseries", "token_regression"),
    "charlm_tiny.yaml": ("text", "clm"),
    "digits_tiny.yaml": ("digits", "sequence_classification"),
}


@pytest.mark.parametrize("name", list(TASK_CONFIGS))
@pytest.mark.parametrize("backbone", ["performer", "transformer", "lstm", "gru", "cnn"])
def test_task_config_builds_every_backbone(name, backbone):
    raw = yaml.safe_load((CONFIGS / name).read_text())
    run = load_run_config(CONFIGS / name, overrides=[f"model.backbone={backbone}"])
    assert (run.data.source, run.model.task) == TASK_CONFIGS[name]
    values = run.to_dict()
    for section in ("data", "train"):
        for key, value in raw[section].items():
            if not isinstance(value, dict):
                assert values[section][key] == value, f"{section}.{key}"
    model = SequenceModel(run.model)
    assert sum(p.numel() for p in model.parameters()) > 0
