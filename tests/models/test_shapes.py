"""Every backbone x every task: output shapes, a finite loss and gradients."""

import pytest
import torch

from favor.models import (
    BACKBONES,
    TASKS,
    ModelConfig,
    SequenceModel,
)
from tiny_models import VOCAB as V
from tiny_models import tiny_config

B, L, N_LABELS = 2, 7, 3


def tiny(backbone: str, **overrides) -> ModelConfig:
    return tiny_config(backbone, **{"dropout": 0.1, "num_labels": N_LABELS, "pair_dim": 8, **overrides})


def labels_for(task: str, generator: torch.Generator, multi_label: bool = False) -> torch.Tensor:
    if task in ("mlm", "clm"):
        labels = torch.randint(0, V, (B, L), generator=generator)
        labels[0, 0] = -100
        return labels
    if task == "token_classification":
        return torch.randint(0, N_LABELS, (B, L), generator=generator)
    if task == "token_regression":
        return torch.randn(B, L, N_LABELS, generator=generator)
    if task == "sequence_classification":
        if multi_label:
            return torch.randint(0, 2, (B, N_LABELS), generator=generator).float()
        return torch.randint(0, N_LABELS, (B,), generator=generator)
    if task == "sequence_regression":
        return torch.randn(B, N_LABELS, generator=generator)
    return torch.randint(0, 2, (B, L, L), generator=generator).float()


def expected_shape(task: str) -> tuple[int, ...]:
    return {
        "mlm": (B, L, V),
        "clm": (B, L, V),
        "token_classification": (B, L, N_LABELS),
        "token_regression": (B, L, N_LABELS),
        "sequence_classification": (B, N_LABELS),
        "sequence_regression": (B, N_LABELS),
        "contact": (B, L, L),
    }[task]


# A causal LM needs a causal backbone, and linformer is bidirectional only.
CASES = [
    (backbone, task, causal)
    for backbone in BACKBONES
    for task in TASKS
    for causal in (False, True)
    if not (causal and backbone == "linformer") and not (task == "clm" and not causal)
]


@pytest.mark.parametrize(("backbone", "task", "causal"), CASES)
def test_every_backbone_with_every_head(backbone, task, causal):
    torch.manual_seed(0)
    model = SequenceModel(tiny(backbone, task=task, causal=causal))
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (B, L), generator=generator)
    padding_mask = torch.zeros(B, L, dtype=torch.bool)
    padding_mask[1, -2:] = True
    out = model(ids, padding_mask=padding_mask, labels=labels_for(task, generator), repr_layers=[0, -1])
    assert out.logits.shape == expected_shape(task)
    assert len(out.hidden_states) == 2
    assert all(h.shape == (B, L, 16) for h in out.hidden_states)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("backbone", ["performer", "lstm", "cnn"])
def test_multi_label_classification_uses_bce_and_ignores_minus_100(backbone):
    torch.manual_seed(0)
    model = SequenceModel(
        tiny(backbone, task="sequence_classification", multi_label=True, dropout=0.0)
    ).eval()
    ids = torch.randint(0, V, (B, L))
    labels = torch.tensor([[1.0, 0.0, -100.0], [0.0, 1.0, 1.0]])
    out = model(ids, labels=labels)
    keep = labels != -100
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out.logits[keep], labels[keep])
    torch.testing.assert_close(out.loss, expected)


def test_real_valued_inputs_use_an_input_projection():
    torch.manual_seed(0)
    config = tiny(
        "performer", task="token_regression", vocab_size=None, input_dim=5, num_labels=1, causal=True
    )
    model = SequenceModel(config)
    values = torch.randn(B, L, 5)
    out = model(input_values=values, labels=torch.randn(B, L))
    assert out.logits.shape == (B, L, 1) and torch.isfinite(out.loss)
    with pytest.raises(ValueError, match="no token embedding"):
        model(torch.zeros(B, L, dtype=torch.long))


def test_hidden_states_selection():
    model = SequenceModel(tiny("transformer", dropout=0.0)).eval()
    ids = torch.randint(0, V, (B, L))
    everything = model(ids, output_hidden_states=True).hidden_states
    assert len(everything) == 3
    chosen = model(ids, repr_layers=[2, 0]).hidden_states
    torch.testing.assert_close(chosen[0], everything[2])
    torch.testing.assert_close(chosen[1], everything[0])
    assert model(ids).hidden_states is None
    with pytest.raises(ValueError, match="repr_layers entry 3"):
        model(ids, repr_layers=[3])


def test_tied_embeddings_share_one_parameter():
    tied = SequenceModel(tiny("performer"))
    assert tied.head.decoder.weight is tied.embedding.tokens.weight
    untied = SequenceModel(tiny("performer", tie_embeddings=False))
    assert untied.head.decoder.weight is not untied.embedding.tokens.weight


def test_losses_ignore_minus_100_and_padding():
    torch.manual_seed(0)
    model = SequenceModel(tiny("gru", task="token_classification", dropout=0.0)).eval()
    ids = torch.randint(0, V, (1, L))
    labels = torch.full((1, L), -100)
    out = model(ids, labels=labels)
    assert out.loss.item() == 0.0
    labels[0, 2] = 1
    out = model(ids, labels=labels)
    expected = torch.nn.functional.cross_entropy(out.logits[0, 2:3], labels[0, 2:3])
    torch.testing.assert_close(out.loss, expected)
