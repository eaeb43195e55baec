"""Autoregressive generation with per-backbone decoding state (see `SequenceModel.step`).

The prompt is consumed in one `step` call, then one token per step: a causal Performer costs O(m d) per
head and token whatever the context length; RNN/LSTM/GRU carry their hidden states; the Transformer keeps a
KV cache; the CNN keeps a window of past convolution inputs.
"""

from __future__ import annotations

import torch

from favor.models.model import SequenceModel

__all__ = ["generate", "sample_next_token"]


def sample_next_token(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample one token per row of ``logits`` ``(B, V)``; ``temperature=0`` is greedy. Returns ``(B,)``."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    logits = logits.float()
    # Below float32's smallest normal number the temperature itself rounds to 0: that is greedy too.
    if temperature < torch.finfo(logits.dtype).tiny:
        return logits.argmax(dim=-1)
    # Shift the best logit to 0 before dividing: a tiny temperature then sends the others to -inf (greedy in
    # the limit) instead of overflowing to inf - inf = NaN.
    logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p (the top token always stays).
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)


@torch.no_grad()
def generate(
    model: SequenceModel,
    prompt_ids: torch.Tensor,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
) -> torch.Tensor:
    """Continue ``prompt_ids`` ``(B, P)`` (no padding, P >= 1) by up to ``max_new_tokens`` sampled tokens.

    Returns ``(B, P + n)``. Generation stops early once every row has produced ``eos_id``; rows that
    finished earlier are filled with ``eos_id``. ``generator`` (a CPU `torch.Generator`) makes sampling
    reproducible. Runs in eval mode and restores the model's mode afterwards.
    """
    if prompt_ids.dim() != 2 or prompt_ids.shape[1] < 1:
        raise ValueError(f"prompt_ids must be (batch, length >= 1), got shape {tuple(prompt_ids.shape)}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if model.config.task != "clm":
        raise ValueError(f"generate needs a causal LM (task='clm'), got task {model.config.task!r}")
    was_training = model.training
    model.eval()
    try:
        tokens = prompt_ids
        finished = torch.zeros(prompt_ids.shape[0], dtype=torch.bool, device=prompt_ids.device)
        logits, state = model.step(prompt_ids, None)
        for _ in range(max_new_tokens):
            next_token = sample_next_token(
                logits[:, -1], temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
            )
            if eos_id is not None:
                next_token = next_token.masked_fill(finished, eos_id)
                finished = finished | (next_token == eos_id)
            tokens = torch.cat([tokens, next_token[:, None]], dim=1)
            if eos_id is not None and bool(finished.all()):
                break
            logits, state = model.step(next_token[:, None], state)
    finally:
        model.train(was_training)
    return tokens
