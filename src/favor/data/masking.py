"""Labels for the two pretraining objectives: masked (MLM) and causal (next-token) language modeling.

Both are aligned with the logits, the one convention of `favor.models.losses`: ``labels[..., t]`` is what
position t must predict, -100 (`IGNORE_INDEX`, defined there) where nothing is. For causal LM that is the
next token, so ``causal_lm_labels`` shifts here, once; the model and the losses never shift.

``mask_tokens`` follows BERT: each real residue is selected independently with ``probability`` (a
Bernoulli draw, so the rate is 15% in expectation, not exactly per sequence); of the selected positions
80% become ``<mask>``, 10% a random *standard* residue and 10% stay unchanged. Special tokens
(``<pad> <mask> <cls> <eos>``) and positions flagged in ``special_mask`` are never selected.

A short sequence can end up with no selected position (probability ``0.85**n`` for n residues, 20%
at n = 10); nothing forces one. Its labels are then all -100 and it adds nothing to the loss. A
batch in which *no* position is selected has no target: `favor.models.task_loss` is then 0 (its sum over
``max(1, n_targets)``), never NaN; pass ``ensure_one=True`` to select one residue of every sequence that
has none (this slightly raises the rate on short sequences).

All random draws come from ``generator`` and their number depends only on the tensor shape, so the
same seed gives the same masks on every machine (evaluation masks are seeded this way so that every
model sees the same masked positions).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from favor.data.alphabet import Alphabet
from favor.models.losses import IGNORE_INDEX

__all__ = ["IGNORE_INDEX", "MaskedTokens", "mask_tokens", "causal_lm_labels"]


class MaskedTokens(NamedTuple):
    """Output of ``mask_tokens``: the corrupted inputs and the labels (-100 where not selected)."""

    input_ids: torch.Tensor
    labels: torch.Tensor


def _check_tokens(tokens: torch.Tensor, where: str) -> None:
    if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.long:
        got = tokens.dtype if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise TypeError(f"{where}: tokens must be a LongTensor, got {got}")
    if tokens.dim() not in (1, 2):
        raise ValueError(f"{where}: tokens must have shape (L,) or (B, L), got {tuple(tokens.shape)}")


def mask_tokens(
    tokens: torch.Tensor,
    alphabet: Alphabet,
    *,
    probability: float = 0.15,
    mask_fraction: float = 0.8,
    random_fraction: float = 0.1,
    generator: torch.Generator | None = None,
    special_mask: torch.Tensor | None = None,
    ensure_one: bool = False,
) -> MaskedTokens:
    """Corrupt tokens for masked language modeling.

    Args:
        tokens: LongTensor (B, L) or (L,) of token ids; not modified.
        alphabet: gives the mask id, the special ids and the standard residues for replacements.
        probability: chance that each real residue is selected.
        mask_fraction: share of selected positions replaced by ``<mask>``.
        random_fraction: share replaced by a random standard residue (the rest stay unchanged).
        generator: source of randomness; seed it for reproducible masks.
        special_mask: BoolTensor like ``tokens``, True where a position must never be selected
            (e.g. padding given as a mask); special token ids are excluded in any case.
        ensure_one: select one random residue in every sequence where the draw selected none.

    Returns:
        ``MaskedTokens(input_ids, labels)``, both shaped like ``tokens``; labels hold the original id
        at selected positions and -100 elsewhere.
    """
    _check_tokens(tokens, "mask_tokens")
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"mask_tokens: probability must be in [0, 1], got {probability}")
    if mask_fraction < 0 or random_fraction < 0 or mask_fraction + random_fraction > 1.0:
        raise ValueError(
            "mask_tokens: mask_fraction and random_fraction must be >= 0 and sum to <= 1, "
            f"got {mask_fraction} and {random_fraction}"
        )
    residue_ids = torch.tensor(alphabet.residue_ids, dtype=torch.long, device=tokens.device)
    eligible = torch.isin(tokens, residue_ids)
    if special_mask is not None:
        if special_mask.shape != tokens.shape:
            raise ValueError(
                f"mask_tokens: special_mask shape {tuple(special_mask.shape)} != tokens shape "
                f"{tuple(tokens.shape)}"
            )
        eligible &= ~special_mask.to(torch.bool)
    # Three draws of the full shape, always, so the generator advances by the same amount.
    # Draw where the generator lives (CPU by default), then move next to the tokens.
    draw = {"generator": generator, "device": generator.device if generator is not None else tokens.device}
    u_select = torch.rand(tokens.shape, **draw).to(tokens.device)
    u_action = torch.rand(tokens.shape, **draw).to(tokens.device)
    standard = torch.tensor(alphabet.standard_ids, dtype=torch.long, device=tokens.device)
    random_ids = standard[torch.randint(len(standard), tokens.shape, **draw).to(tokens.device)]

    selected = eligible & (u_select < probability)
    if ensure_one:
        selected = _ensure_one(selected, eligible, u_select)
    to_mask = selected & (u_action < mask_fraction)
    to_random = selected & (u_action >= mask_fraction) & (u_action < mask_fraction + random_fraction)

    input_ids = tokens.clone()
    input_ids[to_mask] = alphabet.mask_id
    input_ids[to_random] = random_ids[to_random]
    labels = torch.where(selected, tokens, torch.full_like(tokens, IGNORE_INDEX))
    return MaskedTokens(input_ids=input_ids, labels=labels)


def _ensure_one(selected: torch.Tensor, eligible: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Add the eligible position with the smallest draw to each row that has eligible but no selected."""
    # (B, L) view even for 1-D input.
    sel2, elig2, score2 = (t.reshape(-1, t.shape[-1]) for t in (selected, eligible, scores))
    needs = elig2.any(dim=-1) & ~sel2.any(dim=-1)
    if not needs.any():
        return selected
    masked_scores = torch.where(elig2, score2, torch.full_like(score2, 2.0))
    # (B,) column of the best eligible position per row.
    best = masked_scores.argmin(dim=-1)
    out = sel2.clone()
    rows = torch.nonzero(needs).squeeze(-1)
    out[rows, best[rows]] = True
    return out.reshape(selected.shape)


def causal_lm_labels(
    tokens: torch.Tensor,
    alphabet: Alphabet,
    *,
    padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Next-token labels: ``labels[..., t] = tokens[..., t + 1]``, already shifted.

    The logits a causal model produces at position t are scored against ``labels[..., t]``: pass these
    to ``model(..., labels=...)``, which does not shift again. The last position and every position whose
    target is padding (``<pad>`` id, or True in ``padding_mask``) get -100. Positions that are padding
    themselves get -100 as well.

    Args:
        tokens: LongTensor (B, L) or (L,).
        alphabet: gives the padding id.
        padding_mask: optional BoolTensor like ``tokens``, True at padding.

    Returns:
        LongTensor shaped like ``tokens``.
    """
    _check_tokens(tokens, "causal_lm_labels")
    is_pad = tokens == alphabet.pad_id
    if padding_mask is not None:
        if padding_mask.shape != tokens.shape:
            raise ValueError(
                f"causal_lm_labels: padding_mask shape {tuple(padding_mask.shape)} != tokens shape "
                f"{tuple(tokens.shape)}"
            )
        is_pad = is_pad | padding_mask.to(torch.bool)
    labels = torch.full_like(tokens, IGNORE_INDEX)
    labels[..., :-1] = tokens[..., 1:]
    ignore = torch.zeros_like(is_pad)
    ignore[..., :-1] = is_pad[..., 1:]
    ignore |= is_pad
    labels[ignore] = IGNORE_INDEX
    return labels
