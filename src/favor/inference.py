"""Turning request strings into token rows and running rows through the model in padded batches.

Every sequence is encoded as the training datasets encode it, ``<cls> residues <eos>``, so a sequence of n
residues is a row of n + 2 tokens and residue i (1-based) sits at row position i. Rows from many requests
are padded into one batch (True at padding, as everywhere in favor); padding never changes the outputs of
real positions, so a batched result equals the unbatched one up to float rounding.

The model runs in eval mode under `torch.inference_mode`; FAVOR+ projections are buffers that nothing here
redraws, so the same request always gets the same answer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from favor.data import UnknownResidueError
from favor.folders import ServedModel

__all__ = [
    "InputError",
    "TaskError",
    "NoContactRegression",
    "EngineLimits",
    "InferenceEngine",
    "MASK_MARKERS",
    "contact_regression_of",
    "parse_mutation",
    "predict_contacts",
    "resolve_device",
]

# Both spellings of a masked position accepted by /fill-mask.
MASK_MARKERS = ("<mask>", "_")
_MUTATION = re.compile(r"^([A-Za-z])([0-9]+)([A-Za-z])$")
# Positions are 1-based residue indices: nine digits is far beyond any protein (and any max_residues).
_MAX_POSITION_DIGITS = 9

SEQUENCE_TASKS = ("sequence_classification", "sequence_regression")
TOKEN_TASKS = ("token_classification", "token_regression")


class InputError(ValueError):
    """A request the model cannot run on (answered 422); the message names the field and the problem."""


class TaskError(ValueError):
    """A route the loaded model has no head for (answered 400)."""


class NoContactRegression(TaskError):
    """A model that could predict contacts from attention but has no fitted regression (answered 409)."""


@dataclass(frozen=True)
class EngineLimits:
    """Bounds on one request and on one forward pass."""

    # Residues per sequence; None: the model's max_length minus <cls> and <eos>.
    max_residues: int | None = None
    # Padded tokens (rows x longest row) and rows per forward pass: long rows go in smaller batches.
    max_batch_tokens: int = 4096
    max_batch_rows: int = 64


class InferenceEngine:
    """Encoding, validation and batched forward passes for one loaded model (not thread-safe: one worker)."""

    def __init__(self, served: ServedModel, *, limits: EngineLimits | None = None) -> None:
        self.served = served
        self.model = served.model.eval()
        self.alphabet = served.alphabet
        # A character model's vocabulary (it serves text generation only), or None for a protein model.
        self.vocabulary = served.vocabulary
        self.config = served.model.config
        limits = limits or EngineLimits()
        model_limit = self.config.max_length - 2
        if limits.max_residues is None:
            self.max_residues = model_limit
        elif limits.max_residues > model_limit and self.config.position == "learned":
            raise ValueError(
                f"max_residues={limits.max_residues} exceeds what the model's learned positions allow "
                f"({model_limit} = max_length {self.config.max_length} minus <cls> and <eos>)"
            )
        else:
            self.max_residues = limits.max_residues
        self.max_batch_tokens = max(limits.max_batch_tokens, self.max_residues + 2)
        self.max_batch_rows = limits.max_batch_rows
        self.device = next(self.model.parameters()).device
        self.residue_ids = None if self.alphabet is None else torch.tensor(self.alphabet.residue_ids)
        # Called after every forward pass with (rows, padded tokens, seconds): the metrics hook.
        self.on_forward: Callable[[int, int, float], None] | None = None

    @property
    def n_layers(self) -> int:
        return self.config.n_layers

    def require_task(self, route: str, tasks: tuple[str, ...], what: str) -> None:
        if self.config.task not in tasks:
            raise TaskError(
                f"{route} needs {what} (task {' or '.join(repr(t) for t in tasks)}); "
                f"this model's task is {self.config.task!r}"
            )

    def resolve_layer(self, layer: int | None) -> int:
        """A representation layer in ``0..n_layers`` (negative counts back from the last; None = last)."""
        n = self.config.n_layers
        if layer is None:
            return n
        if not -(n + 1) <= layer <= n:
            raise InputError(
                f"layer={layer} is out of range for a model with {n} layers (0..{n} or -1..-{n + 1})"
            )
        return layer % (n + 1)

    def encode(self, sequence: str, *, where: str, masks: bool = False, add_eos: bool = True) -> torch.Tensor:
        """``<cls> residues [<eos>]`` as a LongTensor; with ``masks``, ``<mask>`` and ``_`` become ``<mask>``.

        Errors name ``where`` (e.g. ``sequences[2]``), the 1-based residue position and the character.
        """
        if self.alphabet is None:
            raise TaskError(
                "this model reads text (a character vocabulary, vocab.json): it serves POST /generate only"
            )
        marked = sequence.replace(MASK_MARKERS[0], MASK_MARKERS[1]) if masks else sequence
        if not marked:
            raise InputError(f"{where}: empty sequence")
        if len(marked) > self.max_residues:
            raise InputError(
                f"{where}: {len(marked)} residues, over the limit of {self.max_residues} "
                f"(model max_length {self.config.max_length} minus <cls> and <eos>)"
            )
        mask_positions = [i for i, ch in enumerate(marked) if ch == "_"] if masks else []
        # Any residue letter stands in for a mask while encoding; the id is replaced right after.
        plain = marked.replace("_", self.alphabet.tokens[self.alphabet.residue_ids[0]]) if masks else marked
        try:
            ids = self.alphabet.encode(plain, name=where, add_cls=True, add_eos=add_eos, as_tensor=True)
        except UnknownResidueError as error:
            raise InputError(
                f"{where}: unknown residue {error.char!r} at position {error.position} (1-based); "
                f"allowed: {''.join(self.alphabet.tokens[i] for i in self.alphabet.residue_ids)}"
                + (" and <mask> or _" if masks else "")
            ) from None
        if mask_positions:
            ids[torch.tensor(mask_positions) + 1] = self.alphabet.mask_id
        return ids

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Row indices grouped longest first, each group within the token and row budgets."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        groups: list[list[int]] = []
        for i in order:
            group = groups[-1] if groups else None
            # Rows arrive longest first, so the group's padded width is its first row's length.
            if (
                group is not None
                and len(group) < self.max_batch_rows
                and (len(group) + 1) * lengths[group[0]] <= self.max_batch_tokens
            ):
                group.append(i)
            else:
                groups.append([i])
        return groups

    def forward_rows(
        self, rows: list[torch.Tensor], *, output: str, layer: int | None = None
    ) -> list[torch.Tensor]:
        """Run 1-D token rows through the model in padded batches; outputs trimmed to each row.

        ``output="hidden"``: the state of ``layer`` per row, ``(n, d_model)``. ``output="head"``: the head's
        output per row -- ``(n, V or num_labels)`` for per-position heads, ``(num_labels,)`` for sequence
        heads, ``(n, n)`` for the contact head.
        """
        results: list[torch.Tensor | None] = [None] * len(rows)
        with torch.inference_mode():
            for group in self._batches([len(r) for r in rows]):
                width = len(rows[group[0]])
                ids = torch.full((len(group), width), self.alphabet.pad_id, dtype=torch.long)
                padding_mask = torch.ones((len(group), width), dtype=torch.bool)
                for b, i in enumerate(group):
                    ids[b, : len(rows[i])] = rows[i]
                    padding_mask[b, : len(rows[i])] = False
                start = time.perf_counter()
                out = self.model(
                    ids.to(self.device),
                    padding_mask=padding_mask.to(self.device),
                    repr_layers=[layer] if output == "hidden" else None,
                )
                values = out.hidden_states[0] if output == "hidden" else out.logits
                values = values.float().cpu()
                if self.on_forward is not None:
                    self.on_forward(len(group), ids.numel(), time.perf_counter() - start)
                for b, i in enumerate(group):
                    results[i] = self._trim(values[b], len(rows[i]), output)
        return results

    def _trim(self, value: torch.Tensor, n: int, output: str) -> torch.Tensor:
        if output == "hidden" or self.config.task in ("mlm", "clm", *TOKEN_TASKS):
            return value[:n]
        if self.config.task == "contact":
            return value[:n, :n]
        return value

    def residue_log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """``(..., V)`` logits -> log-probabilities over the residue tokens only ``(..., n_residues)``."""
        return logits[..., self.residue_ids].log_softmax(dim=-1)

    def residue(self, index: int) -> str:
        """The letter of residue column ``index`` of `residue_log_probs`."""
        return self.alphabet.tokens[self.alphabet.residue_ids[index]]


def parse_mutation(text: str, sequence: str, *, where: str) -> list[tuple[int, str, str]]:
    """``"A23G"`` or ``"A23G:K45R"`` -> ``[(23, "A", "G"), ...]``, checked against ``sequence``."""
    sites, seen = [], set()
    shown = text if len(text) <= 80 else text[:77] + "..."
    for part in text.split(":"):
        match = _MUTATION.match(part.strip())
        if match is None:
            raise InputError(
                f"{where} {shown!r}: expected <wild-type><position><mutant> such as 'A23G' "
                "(several joined by ':')"
            )
        if len(match.group(2)) > _MAX_POSITION_DIGITS:
            raise InputError(
                f"{where} {shown!r}: position {match.group(2)[:12]}... is outside the sequence "
                f"(1..{len(sequence)})"
            )
        wild, position, mutant = match.group(1).upper(), int(match.group(2)), match.group(3).upper()
        if not 1 <= position <= len(sequence):
            raise InputError(
                f"{where} {shown!r}: position {position} is outside the sequence (1..{len(sequence)})"
            )
        found = sequence[position - 1].upper()
        if found != wild:
            raise InputError(
                f"{where} {shown!r}: the sequence has {found!r} at position {position}, not {wild!r}"
            )
        if position in seen:
            raise InputError(f"{where} {shown!r}: position {position} is mutated twice")
        seen.add(position)
        sites.append((position, wild, mutant))
    return sites


def contact_regression_of(served: ServedModel):
    """The `favor.models.contact_regression.ContactRegression` stored beside ``served``'s weights, or None
    (``ValueError`` naming the file when it is damaged or fitted for another shape)."""
    from favor.models.contact_regression import ContactRegression

    config = served.config
    return ContactRegression.load(served.path, n_layers=config.n_layers, n_heads=config.n_heads)


def predict_contacts(engine: InferenceEngine, sequence: str, *, regression=None, where: str = "sequence"):
    """``(L, L)`` float32 contact probabilities for ``sequence`` (residues only; symmetric, in [0, 1]).

    A model of task ``contact`` uses its supervised pair head (symmetric by construction); any other model
    with attention layers combines its attention maps with ``regression`` (`contact_regression_of` its
    folder; see `favor.models.contact_regression`). Raises `InputError` for a bad sequence (the residue and
    position named), `NoContactRegression` without a regression, and `TaskError` for a model without
    attention layers.
    """
    from favor.models.contact_regression import sequence_features

    ids = engine.encode(sequence, where=where)
    residues = slice(1, 1 + len(sequence))
    if engine.config.task == "contact":
        logits = engine.forward_rows([ids], output="head")[0][residues, residues]
        return torch.sigmoid(logits.double()).float().numpy()
    if regression is None:
        raise NoContactRegression(
            f"{engine.served.path}: no contact regression beside this model "
            "(contact_regression.safetensors); fit one with: favor contacts fit MODEL"
        )
    try:
        features = sequence_features(engine.model, ids, residues)
    except ValueError as error:
        raise TaskError(str(error)) from None
    return regression.predict(features)


def resolve_device(name: str, *, local_rank: int = 0) -> torch.device:
    """The torch device named ``name`` (auto, cpu, cuda or cuda:N): ``auto`` picks ``cuda:<local_rank>``
    when CUDA is available, else the CPU; a CUDA device on a machine without CUDA is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r} (train.device / --device): CUDA is not available on this machine"
            )
        if name == "cuda":
            return torch.device("cuda", local_rank)
    return torch.device(name)
