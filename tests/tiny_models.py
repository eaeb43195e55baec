"""The tiny model config the model tests share: one base, and each test file says what it changes.

Importable from any test module (pytest's ``pythonpath`` includes ``tests/``).
"""

from __future__ import annotations

from favor.models import ConvConfig, LinformerConfig, ModelConfig, PerformerConfig

VOCAB = 13


def tiny_config(backbone: str = "performer", **overrides) -> ModelConfig:
    """Two layers of width 16 over a 13-token vocabulary; ``overrides`` replace any field."""
    fields = dict(
        backbone=backbone,
        vocab_size=VOCAB,
        d_model=16,
        n_layers=2,
        n_heads=2,
        d_ff=24,
        dropout=0.0,
        max_length=32,
        attention=PerformerConfig(nb_features=8, chunk_size=4),
        linformer=LinformerConfig(proj_dim=6),
        conv=ConvConfig(kernel_size=3, dilations=(1, 2)),
    )
    fields.update(overrides)
    return ModelConfig(**fields)


def tiny_run(*, model: dict | None = None, data: dict | None = None, train: dict | None = None) -> dict:
    """A run config (as a ``favor train`` YAML would hold it) for a seconds-long run on the bundled sample:
    a one-layer Performer of width 16 over 64 tokens; ``model``, ``data`` and ``train`` add or replace keys.
    """
    return {
        "model": {
            "backbone": "performer",
            "d_model": 16,
            "n_layers": 1,
            "n_heads": 2,
            "d_ff": 32,
            "max_length": 64,
            "attention": {"nb_features": 8},
            **(model or {}),
        },
        "data": {"max_length": 64, **(data or {})},
        "train": {**(train or {})},
    }


SERVED = dict(vocab_size=29, d_model=16, n_layers=2, n_heads=2, d_ff=32, max_length=48, dropout=0.0)


def save_tiny(folder, **overrides):
    """Save a tiny random protein model (29-token alphabet, 46 residues) the serve tests load."""
    import torch

    from favor.models import SequenceModel, save_pretrained

    torch.manual_seed(0)
    config = ModelConfig(**{**SERVED, "attention": {"nb_features": 8}, **overrides})
    save_pretrained(SequenceModel(config), folder)
    return folder
