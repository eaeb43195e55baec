"""Every shipped YAML config validates against the code and builds its model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from favor.demo import DEMO_BACKBONES, demo_config
from favor.models import SequenceModel
from favor.runs.config import SECTIONS, load_run_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
PROTEIN_CONFIGS = [p for p in CONFIGS if p.name.startswith("protein_")]


def test_the_protein_configs_are_shipped():
    names = {p.name for p in PROTEIN_CONFIGS}
    assert {"protein_mlm_tiny.yaml", "protein_clm_tiny.yaml", "protein_mlm_long.yaml"} <= names


@pytest.mark.parametrize("path", PROTEIN_CONFIGS, ids=lambda p: p.name)
def test_config_loads_and_builds_its_model(path):
    raw = yaml.safe_load(path.read_text())
    assert set(raw) <= set(SECTIONS)
    run = load_run_config(path)
    # Every key written in the file reached the validated config (nothing silently dropped).
    values = run.to_dict()
    for section, entries in raw.items():
        for key, value in (entries or {}).items():
            if isinstance(value, dict):
                for sub, sub_value in value.items():
                    assert values[section][key][sub] == sub_value, f"{section}.{key}.{sub}"
            else:
                expected = list(value) if isinstance(value, (list, tuple)) else value
                assert values[section][key] == expected, f"{section}.{key}"
    assert run.model.task == run.train.objective
    model = SequenceModel(run.model)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_long_config_is_paper_shaped():
    run = load_run_config(Path(CONFIGS[0]).parent / "protein_mlm_long.yaml")
    assert run.data.mode == "concatenated" and run.data.max_length == 8192
    assert (run.model.n_layers, run.model.d_model, run.model.n_heads) == (6, 512, 8)
    assert run.model.attention.nb_features == 256 and run.model.backbone == "performer"


def test_demo_uses_the_tiny_model_on_long_windows():
    tiny = load_run_config(Path(CONFIGS[0]).parent / "protein_mlm_tiny.yaml")
    for backbone in DEMO_BACKBONES:
        demo = demo_config(backbone, minutes=1.0)
        assert demo.model.backbone == backbone
        same = ("d_model", "n_layers", "n_heads", "d_ff")
        assert [getattr(demo.model, k) for k in same] == [getattr(tiny.model, k) for k in same]
        assert (demo.data.mode, demo.data.max_length) == ("concatenated", 4096)
