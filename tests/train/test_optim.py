"""Learning-rate schedule shape and weight-decay parameter groups."""

from __future__ import annotations

import math

import pytest
import torch

from favor.models import SequenceModel
from favor.runs.config import TrainConfig
from favor.train.optim import WarmupDecay, build_optimizer, build_scheduler, parameter_groups
from tiny_models import tiny_config


def test_warmup_is_linear_and_reaches_the_peak():
    schedule = WarmupDecay(warmup_steps=10, total_steps=100, decay="cosine", min_ratio=0.1)
    warm = [schedule(s) for s in range(11)]
    assert all(b > a for a, b in zip(warm, warm[1:], strict=False))
    diffs = [b - a for a, b in zip(warm[:10], warm[1:11], strict=True)]
    assert max(diffs) - min(diffs) < 1e-12
    assert warm[0] > 0
    assert schedule(10) == pytest.approx(1.0)


@pytest.mark.parametrize("decay", ["cosine", "linear"])
def test_decay_is_monotone_down_to_the_floor(decay):
    schedule = WarmupDecay(warmup_steps=5, total_steps=50, decay=decay, min_ratio=0.2)
    values = [schedule(s) for s in range(5, 80)]
    assert all(b <= a + 1e-12 for a, b in zip(values, values[1:], strict=False))
    assert schedule(50) == pytest.approx(0.2)
    assert schedule(79) == pytest.approx(0.2)
    midpoint = schedule(5 + 45 // 2)
    if decay == "cosine":
        assert midpoint == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * 22 / 45)))
    else:
        assert midpoint == pytest.approx(0.2 + 0.8 * (1 - 22 / 45))


def test_constant_stays_at_the_peak():
    schedule = WarmupDecay(warmup_steps=3, total_steps=10, decay="constant")
    assert [schedule(s) for s in (3, 10, 1000)] == [1.0, 1.0, 1.0]


def _tiny_model() -> SequenceModel:
    config = tiny_config(vocab_size=29, n_layers=1, d_ff=32, dropout=0.1, attention={"nb_features": 8})
    return SequenceModel(config)


def test_scheduler_follows_the_schedule_per_step():
    model = _tiny_model()
    config = TrainConfig(lr=1e-3, warmup_steps=4, max_steps=20, schedule="linear", min_lr_ratio=0.0)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    schedule = WarmupDecay(warmup_steps=4, total_steps=20, decay="linear", min_ratio=0.0)
    for step in range(25):
        for group in optimizer.param_groups:
            assert group["lr"] == pytest.approx(1e-3 * schedule(step))
        optimizer.step()
        scheduler.step()


def test_schedule_steps_sets_the_horizon_not_max_steps():
    config = TrainConfig(max_steps=10, schedule_steps=100, warmup_steps=0)
    optimizer = build_optimizer(_tiny_model(), config)
    scheduler = build_scheduler(optimizer, config)
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] > 0.5 * config.lr


def test_no_weight_decay_on_norms_biases_and_embeddings():
    model = _tiny_model()
    decay, no_decay = parameter_groups(model)
    assert set(decay).isdisjoint(no_decay)
    named = dict(model.named_parameters())
    assert set(decay) | set(no_decay) == set(named)
    for name in no_decay:
        module_name = name.rsplit(".", 1)[0]
        module = model.get_submodule(module_name)
        assert named[name].dim() < 2 or isinstance(module, torch.nn.Embedding) or "positions" in name
    assert any("embedding.tokens" in n for n in no_decay)
    assert any("positions" in n for n in no_decay)
    assert all(named[n].dim() == 2 for n in decay)
    assert any("feed_forward" in n for n in decay)
    optimizer = build_optimizer(model, TrainConfig(weight_decay=0.05))
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]
    # The tied LM decoder weight is the token embedding: optimised once, without decay.
    ids = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids))
