"""Projection redraws, activation checkpointing and bf16 autocast."""

import pytest
import torch
from torch.utils.checkpoint import checkpoint

import favor.models.base
from favor.layers import FavorSelfAttention
from favor.models import ModelConfig, SequenceModel
from tiny_models import VOCAB as V
from tiny_models import tiny_config


def config(backbone: str, **overrides) -> ModelConfig:
    return tiny_config(backbone, **{"dropout": 0.1, **overrides})


def projections(model: SequenceModel) -> list[torch.Tensor]:
    return [m.projection.clone() for m in model.modules() if isinstance(m, FavorSelfAttention)]


def test_forward_never_changes_projections_and_redraw_does():
    torch.manual_seed(0)
    model = SequenceModel(config("performer"))
    before = projections(model)
    ids = torch.randint(0, V, (2, 9))
    model.train()
    for _ in range(3):
        model(ids, labels=ids).loss.backward()
    model.eval()
    first = model(ids).logits
    assert all(torch.equal(a, b) for a, b in zip(before, projections(model), strict=True))
    assert torch.equal(model(ids).logits, first)

    assert model.redraw_projections(torch.Generator().manual_seed(1)) == 2
    after = projections(model)
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert not torch.allclose(model(ids).logits, first)
    # Same generator seed, same draw.
    model.redraw_projections(torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(after, projections(model), strict=True))


def test_projections_are_seeded_per_layer_and_saved():
    first = SequenceModel(config("performer", seed=5))
    second = SequenceModel(config("performer", seed=5))
    layers = projections(first)
    assert all(torch.equal(a, b) for a, b in zip(layers, projections(second), strict=True))
    assert not torch.equal(layers[0], layers[1])
    assert "backbone.blocks.0.attention.projection" in first.state_dict()


@pytest.mark.parametrize(
    ("backbone", "causal"),
    [("performer", False), ("performer", True), ("transformer", True), ("linformer", False), ("lstm", False)]
    + [("cnn", True)],
)
def test_activation_checkpointing_gives_the_same_gradients(backbone, causal, monkeypatch):
    calls = []

    def counting_checkpoint(*args, **kwargs):
        calls.append(kwargs["use_reentrant"])
        return checkpoint(*args, **kwargs)

    monkeypatch.setattr(favor.models.base, "checkpoint", counting_checkpoint)
    task = "clm" if causal else "mlm"
    torch.manual_seed(0)
    plain = SequenceModel(config(backbone, causal=causal, task=task))
    torch.manual_seed(0)
    checkpointed = SequenceModel(config(backbone, causal=causal, task=task, gradient_checkpointing=True))
    checkpointed.load_state_dict(plain.state_dict())
    ids = torch.randint(0, V, (2, 9), generator=torch.Generator().manual_seed(1))
    padding_mask = torch.zeros(2, 9, dtype=torch.bool)
    padding_mask[1, 7:] = True
    labels = ids.clone()
    if causal:
        # Labels aligned with the logits: a causal LM's position t predicts token t + 1.
        labels[:, :-1], labels[:, -1] = ids[:, 1:], -100
    losses = []
    for model in (plain, checkpointed):
        model.train()
        # Same dropout masks in both runs; checkpointing replays the RNG state on recomputation.
        torch.manual_seed(2)
        loss = model(ids, padding_mask=padding_mask, labels=labels).loss
        loss.backward()
        losses.append(loss)
    assert calls == [False, False], "each of the 2 blocks goes through non-reentrant checkpointing"
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.parametrize("backbone", ["performer", "transformer", "linformer", "gru", "cnn"])
def test_bf16_autocast_runs_and_gives_float32_loss(backbone):
    torch.manual_seed(0)
    model = SequenceModel(config(backbone, position="rotary" if backbone == "performer" else "learned"))
    ids = torch.randint(0, V, (2, 9))
    padding_mask = torch.zeros(2, 9, dtype=torch.bool)
    padding_mask[0, 6:] = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, padding_mask=padding_mask, labels=ids)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    with torch.no_grad():
        exact = model(ids, padding_mask=padding_mask).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(ids, padding_mask=padding_mask).logits.float()
    assert (low - exact).abs().max() < 0.25
