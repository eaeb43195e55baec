"""Attention maps of a model: every layer's and head's ``(L, L)`` attention matrix for given tokens.

For exact attention these are the softmax weights; for FAVOR+ the matrix the model applies implicitly,
``D^-1 Q' K'^T`` with its own (fixed) random features; for Linformer the effective matrix that multiplies
the values. They are computed from the queries and keys each block's attention actually receives in one
ordinary forward pass, so they are the maps of the model as it runs. O(L^2) per head: for inspecting a
sequence (contacts from attention), not for training.
"""

from __future__ import annotations

from typing import Any

import torch

from favor.models.model import SequenceModel

__all__ = ["attention_maps"]


def _attention_modules(model: SequenceModel) -> list[torch.nn.Module]:
    blocks = getattr(model.backbone, "blocks", None)
    if blocks is None or not all(hasattr(block, "attention") for block in blocks):
        raise ValueError(
            f"backbone {model.config.backbone!r} has no attention layers: attention maps need a "
            "performer, transformer or linformer backbone"
        )
    return [block.attention for block in blocks]


@torch.inference_mode()
def attention_maps(
    model: SequenceModel, ids: torch.Tensor, *, padding_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``(batch, layers, heads, length, length)`` float32 attention matrices of ``model`` for ``ids``.

    Args:
        model: a `SequenceModel` with attention blocks (run in eval mode here; its mode is restored).
        ids: token ids ``(batch, length)``, special tokens included as the model reads them.
        padding_mask: ``(batch, length)`` bool, True at padding (padded keys get weight 0).
    """
    modules = _attention_modules(model)
    captured: list[tuple[torch.Tensor, dict[str, Any]]] = []

    def capture(module, args, kwargs):
        captured.append((args[0], kwargs))

    hooks = [m.register_forward_pre_hook(capture, with_kwargs=True) for m in modules]
    was_training = model.training
    try:
        model.eval()
        model(ids, padding_mask=padding_mask)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    maps = []
    for module, (x, kwargs) in zip(modules, captured, strict=True):
        if kwargs.get("segment_ids") is not None:
            raise ValueError("attention maps of packed rows are not supported: give one sequence per row")
        matrix = module.attention_matrix(
            x, padding_mask=kwargs.get("padding_mask"), positions=kwargs.get("positions")
        )
        maps.append(matrix.float())
    return torch.stack(maps, dim=1)
