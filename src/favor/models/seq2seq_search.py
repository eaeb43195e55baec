"""Decoding an encoder-decoder: greedy, sampling and beam search over a `Scorer`.

A scorer gives next-token log-probabilities for a set of rows (hypotheses) and extends rows by one token:

    start() -> (R, V)                                 after <bos>, one row per source
    extend(parents (R',), tokens (R',)) -> (R', V)    row i continues row parents[i] of the last call

`IncrementalScorer` carries the model's decoding state (the encoder memory made once per source, one
self-attention state per decoder layer: O(m d) per token for FAVOR+); `FullScorer` is its plain twin, which
re-runs the teacher-forced decoder over every whole prefix (tests compare the two). A test can also pass a
scorer whose distribution it constructs itself.

Beam search (`beam_search`) keeps ``beam_width`` live hypotheses. Each step scores the 2K best extensions;
an end token among the K best finishes its hypothesis, the best others stay live. A hypothesis's score is
``sum(log p) / length ** length_penalty`` over the generated tokens (the end token included). The search
stops when K hypotheses have finished and no live one can still beat the K-th best (log-probabilities
only fall as a hypothesis grows), or after ``max_new_tokens``; with fewer than K finished, the live
hypotheses then fill the list up behind the finished ones, marked unfinished.
With ``beam_width=1`` and ``length_penalty=0`` it returns exactly the greedy sequence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

from favor.models.generation import sample_next_token
from favor.models.seq2seq import Seq2SeqModel, Seq2SeqState

__all__ = [
    "FullScorer",
    "Hypothesis",
    "IncrementalScorer",
    "Scorer",
    "beam_search",
    "make_scorer",
    "sample_search",
]

SCORER_MODES = ("incremental", "full")


class Scorer(Protocol):
    def start(self) -> torch.Tensor: ...

    def extend(self, parents: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor: ...


class IncrementalScorer:
    """Next-token log-probabilities from `Seq2SeqModel.step` (the fast path)."""

    def __init__(self, model: Seq2SeqModel, input_ids, padding_mask, *, bos_id: int) -> None:
        self.model, self.bos_id = model, bos_id
        self.state: Seq2SeqState = model.init_state(model.encode(input_ids, padding_mask=padding_mask))

    def _run(self, tokens: torch.Tensor) -> torch.Tensor:
        logits, self.state = self.model.step(tokens[:, None], self.state)
        return logits[:, -1].float().log_softmax(dim=-1)

    def start(self) -> torch.Tensor:
        rows = self.state.source.states.shape[0]
        device = self.state.source.states.device
        return self._run(torch.full((rows,), self.bos_id, dtype=torch.long, device=device))

    def extend(self, parents: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        self.state = self.state.select(parents)
        return self._run(tokens)


class FullScorer:
    """The plain twin: every call re-runs `Seq2SeqModel.decode` on the whole prefixes."""

    def __init__(self, model: Seq2SeqModel, input_ids, padding_mask, *, bos_id: int) -> None:
        self.model, self.bos_id = model, bos_id
        self.source = model.encode(input_ids, padding_mask=padding_mask)
        self.prefixes = torch.full((input_ids.shape[0], 1), bos_id, dtype=torch.long, device=input_ids.device)

    def _run(self) -> torch.Tensor:
        return self.model.decode(self.source, self.prefixes)[:, -1].float().log_softmax(dim=-1)

    def start(self) -> torch.Tensor:
        return self._run()

    def extend(self, parents: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        self.source = self.source.select(parents)
        self.prefixes = torch.cat([self.prefixes.index_select(0, parents), tokens[:, None]], dim=1)
        return self._run()


def make_scorer(
    model: Seq2SeqModel,
    input_ids: torch.Tensor,
    padding_mask: torch.Tensor | None = None,
    *,
    bos_id: int,
    mode: str = "incremental",
) -> Scorer:
    """A scorer over sources ``(B, S)``: ``mode`` "incremental" (decoding state) or "full" (its twin)."""
    if mode not in SCORER_MODES:
        raise ValueError(f"mode must be one of {', '.join(SCORER_MODES)}, got {mode!r}")
    cls = IncrementalScorer if mode == "incremental" else FullScorer
    return cls(model, input_ids, padding_mask, bos_id=bos_id)


@torch.no_grad()
def sample_search(
    scorer: Scorer,
    *,
    eos_id: int,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """One sequence per source row, without the end token: greedy (``temperature=0``) or sampled."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    log_probs = scorer.start()
    rows = log_probs.shape[0]
    outputs: list[list[int]] = [[] for _ in range(rows)]
    live = torch.arange(rows, device=log_probs.device)  # source row of each live row
    for step in range(max_new_tokens):
        tokens = sample_next_token(
            log_probs, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
        )
        going = tokens != eos_id
        for row, token in zip(live[going].tolist(), tokens[going].tolist(), strict=True):
            outputs[row].append(token)
        if not bool(going.any()) or step == max_new_tokens - 1:
            break
        parents = going.nonzero().squeeze(-1)
        live = live[parents]
        log_probs = scorer.extend(parents, tokens[parents])
    return outputs


@dataclass(frozen=True)
class Hypothesis:
    """A decoded target: tokens without the end token, summed log-probability, normalised score."""

    tokens: list[int]
    log_prob: float
    score: float
    finished: bool


def _score(log_prob: float, length: int, length_penalty: float) -> float:
    return log_prob / max(length, 1) ** length_penalty


@torch.no_grad()
def beam_search(
    scorer: Scorer,
    *,
    beam_width: int,
    eos_id: int,
    max_new_tokens: int,
    length_penalty: float = 0.0,
) -> list[Hypothesis]:
    """The best hypotheses of one source (the scorer's single row), best first (at most ``beam_width``)."""
    if beam_width < 1:
        raise ValueError(f"beam_width must be >= 1, got {beam_width}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not math.isfinite(length_penalty) or length_penalty < 0:
        raise ValueError(f"length_penalty must be a finite float >= 0, got {length_penalty}")
    log_probs = scorer.start()
    if log_probs.shape[0] != 1:
        raise ValueError(f"beam_search decodes one source at a time, got {log_probs.shape[0]} rows")
    live_tokens: list[list[int]] = [[]]
    live_scores = torch.zeros(1, dtype=torch.float64)
    finished: list[Hypothesis] = []
    vocab = log_probs.shape[-1]
    for step in range(max_new_tokens):
        totals = (live_scores[:, None] + log_probs.double().cpu()).flatten()  # (R * V,)
        best = totals.topk(min(2 * beam_width, totals.numel()))
        parents, tokens, scores = [], [], []
        for rank, (total, flat) in enumerate(zip(best.values.tolist(), best.indices.tolist(), strict=True)):
            parent, token = divmod(flat, vocab)
            if token == eos_id:
                if rank < beam_width and math.isfinite(total):
                    length = len(live_tokens[parent]) + 1
                    finished.append(
                        Hypothesis(live_tokens[parent], total, _score(total, length, length_penalty), True)
                    )
            elif len(parents) < beam_width and math.isfinite(total):
                parents.append(parent)
                tokens.append(token)
                scores.append(total)
        live_tokens = [live_tokens[p] + [t] for p, t in zip(parents, tokens, strict=True)]
        live_scores = torch.tensor(scores, dtype=torch.float64)
        if not parents or _settled(finished, live_scores, beam_width, max_new_tokens, length_penalty):
            break
        if step < max_new_tokens - 1:
            device = log_probs.device
            log_probs = scorer.extend(
                torch.tensor(parents, device=device), torch.tensor(tokens, device=device)
            )
    if len(finished) < beam_width:
        # Out of steps: live hypotheses compete unfinished.
        for tokens_, total in zip(live_tokens, live_scores.tolist(), strict=True):
            finished.append(Hypothesis(tokens_, total, _score(total, len(tokens_), length_penalty), False))
    # Finished hypotheses first (by score), then unfinished ones filling up the list.
    return sorted(finished, key=lambda h: (h.finished, h.score), reverse=True)[:beam_width]


def _settled(
    finished: list[Hypothesis],
    live: torch.Tensor,
    beam_width: int,
    max_new_tokens: int,
    length_penalty: float,
) -> bool:
    """Whether no live hypothesis can still enter the ``beam_width`` best finished ones."""
    if len(finished) < beam_width:
        return False
    kth = sorted((h.score for h in finished), reverse=True)[beam_width - 1]
    # A log-probability only falls as tokens are added; the longest allowed length divides it the least.
    bound = float(live.max()) / max(max_new_tokens, 1) ** length_penalty
    return bound <= kth
