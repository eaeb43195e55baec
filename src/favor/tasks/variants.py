"""Variant-effect scores from a masked language model, by the strategies of Meier et al. 2021 (ESM-1v).

For a variant with sites ``M`` (``A4G:K7R``: two sites), wild type ``x`` and mutant ``x'``, with
probabilities over the residue tokens only:

    masked-marginal   sum_i [log p(x'_i | x with site i masked) - log p(x_i | x with site i masked)]
                      (one forward row per distinct site, shared by all variants; ESM's predict.py)
    wt-marginal       sum_i [log p(x'_i | x) - log p(x_i | x)]           (one forward pass, nothing masked)
    mutant-marginal   sum_i [log p(x'_i | x') - log p(x_i | x')]         (one forward pass per variant)
    pseudo-ppl        PLL(x') - PLL(x), PLL(s) = sum_j log p(s_j | s with j masked)   (one row per position)

Proteins longer than the model's context are scored in a window of the model's length around each
variant's sites (the window is stated in each result); a variant whose sites do not fit one window is
refused. `pseudo_log_likelihood` scores whole sequences (``favor score --data FASTA --pseudo-ppl``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from favor.inference import InferenceEngine, InputError, parse_mutation

__all__ = ["STRATEGIES", "Variant", "parse_variants", "score_variants", "pseudo_log_likelihood"]

STRATEGIES = ("masked-marginal", "wt-marginal", "mutant-marginal", "pseudo-ppl")


@dataclass(frozen=True)
class Variant:
    name: str
    sites: tuple[tuple[int, str, str], ...]  # (1-based position, wild type, mutant)


def parse_variants(sequence: str, mutations: list[str], *, where: str = "mutations") -> list[Variant]:
    """Checked variants (wild type, range, duplicate sites, residue letters); errors name the entry."""
    return [
        Variant(name=m, sites=tuple(parse_mutation(m, sequence, where=f"{where}[{i}]")))
        for i, m in enumerate(mutations)
    ]


def _window(engine: InferenceEngine, length: int, variant: Variant) -> tuple[int, int]:
    """0-based [start, stop) of the residues scored for ``variant``: all of them if they fit the model."""
    room = engine.max_residues
    if length <= room:
        return 0, length
    first, last = min(p for p, _, _ in variant.sites) - 1, max(p for p, _, _ in variant.sites) - 1
    if last - first + 1 > room:
        raise InputError(
            f"{variant.name!r}: its sites span {last - first + 1} residues, more than the model's "
            f"{room}-residue context; score its sites separately"
        )
    middle = (first + last) // 2
    start = min(max(0, middle - room // 2), length - room)
    return start, start + room


class _Scorer:
    def __init__(self, engine: InferenceEngine, sequence: str) -> None:
        if engine.config.task != "mlm":
            raise InputError(f"variant scores need a masked language model, not task {engine.config.task!r}")
        self.engine, self.sequence = engine, sequence.upper()
        alphabet = engine.alphabet
        self.column = {tid: j for j, tid in enumerate(alphabet.residue_ids)}
        self.mask_id = alphabet.mask_id

    def letter_column(self, letter: str) -> int:
        return self.column[self.engine.alphabet.token_to_id(letter)]

    def encode(self, residues: str) -> torch.Tensor:
        return self.engine.encode(residues, where="sequence")

    def log_probs(self, rows: list[torch.Tensor]) -> list[torch.Tensor]:
        """Residue log-probabilities ``(n + 2, n_residues)`` of each row (special positions included)."""
        return [self.engine.residue_log_probs(out) for out in self.engine.forward_rows(rows, output="head")]

    def pll(self, residues: str) -> float:
        """Pseudo-log-likelihood: each residue masked in turn, log p of the true residue summed."""
        row = self.encode(residues)
        rows = []
        for j in range(1, len(row) - 1):
            masked = row.clone()
            masked[j] = self.mask_id
            rows.append(masked)
        total = 0.0
        for j, lp in enumerate(self.log_probs(rows), start=1):
            total += float(lp[j, self.letter_column(residues[j - 1])])
        return total


def _mutate(residues: str, sites, start: int) -> str:
    letters = list(residues)
    for position, _, mutant in sites:
        letters[position - 1 - start] = mutant
    return "".join(letters)


def score_variants(
    engine: InferenceEngine, sequence: str, mutations: list[str], *, strategy: str = "masked-marginal"
) -> list[dict[str, Any]]:
    """``[{"mutation", "score", "strategy"[, "window"]}]`` in the order given (``window``: the 1-based first
    and last residue scored, for proteins longer than the model's context)."""
    if strategy not in STRATEGIES:
        raise InputError(f"strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    variants = parse_variants(sequence, mutations)
    scorer = _Scorer(engine, sequence)
    letters = {engine.alphabet.tokens[t] for t in engine.alphabet.residue_ids}
    for i, variant in enumerate(variants):
        for _, _, mutant in variant.sites:
            if mutant not in letters:
                raise InputError(
                    f"mutations[{i}] {variant.name!r}: {mutant!r} is not a residue of the model's alphabet"
                )
    windows = [_window(engine, len(sequence), v) for v in variants]
    scores = _SCORERS[strategy](scorer, variants, windows)
    results = []
    for variant, window, score in zip(variants, windows, scores, strict=True):
        item = {"mutation": variant.name, "score": score, "strategy": strategy}
        if window != (0, len(sequence)):
            item["window"] = [window[0] + 1, window[1]]
        results.append(item)
    return results


def _masked_marginal(scorer: _Scorer, variants, windows) -> list[float]:
    # One masked row per distinct (window, site): variants that share a site share its row.
    needed: dict[tuple[int, int, int], torch.Tensor] = {}
    for variant, (start, stop) in zip(variants, windows, strict=True):
        base = scorer.encode(scorer.sequence[start:stop])
        for position, _, _ in variant.sites:
            key = (start, stop, position)
            if key not in needed:
                row = base.clone()
                row[position - start] = scorer.mask_id  # +1 for <cls>, -1 for 1-based
                needed[key] = row
    keys = list(needed)
    log_probs = dict(zip(keys, scorer.log_probs([needed[k] for k in keys]), strict=True))
    scores = []
    for variant, (start, stop) in zip(variants, windows, strict=True):
        total = 0.0
        for position, wild, mutant in variant.sites:
            lp = log_probs[(start, stop, position)][position - start]
            total += float(lp[scorer.letter_column(mutant)] - lp[scorer.letter_column(wild)])
        scores.append(total)
    return scores


def _unmasked_marginal(scorer: _Scorer, variants, windows, *, on_mutant: bool) -> list[float]:
    rows, index = [], {}
    for i, (variant, (start, stop)) in enumerate(zip(variants, windows, strict=True)):
        residues = scorer.sequence[start:stop]
        if on_mutant:
            residues = _mutate(residues, variant.sites, start)
            key = ("mutant", i)
        else:
            key = ("wild", start, stop)
        if key not in index:
            index[key] = len(rows)
            rows.append(scorer.encode(residues))
    log_probs = scorer.log_probs(rows)
    scores = []
    for i, (variant, (start, stop)) in enumerate(zip(variants, windows, strict=True)):
        lp = log_probs[index[("mutant", i) if on_mutant else ("wild", start, stop)]]
        scores.append(
            sum(
                float(lp[p - start, scorer.letter_column(m)] - lp[p - start, scorer.letter_column(w)])
                for p, w, m in variant.sites
            )
        )
    return scores


def _pseudo_ppl(scorer: _Scorer, variants, windows) -> list[float]:
    wild: dict[tuple[int, int], float] = {}
    scores = []
    for variant, (start, stop) in zip(variants, windows, strict=True):
        residues = scorer.sequence[start:stop]
        if (start, stop) not in wild:
            wild[(start, stop)] = scorer.pll(residues)
        scores.append(scorer.pll(_mutate(residues, variant.sites, start)) - wild[(start, stop)])
    return scores


_SCORERS = {
    "masked-marginal": _masked_marginal,
    "wt-marginal": lambda s, v, w: _unmasked_marginal(s, v, w, on_mutant=False),
    "mutant-marginal": lambda s, v, w: _unmasked_marginal(s, v, w, on_mutant=True),
    "pseudo-ppl": _pseudo_ppl,
}


def pseudo_log_likelihood(engine: InferenceEngine, sequence: str) -> dict[str, Any]:
    """``{"pll", "pseudo_perplexity", "length"[, "windows"]}`` of a whole sequence; longer ones are scored
    in consecutive windows of the model's context (each residue masked once, within its window)."""
    scorer = _Scorer(engine, sequence)
    room = engine.max_residues
    total, windows = 0.0, 0
    for start in range(0, len(sequence), room):
        total += scorer.pll(scorer.sequence[start : start + room])
        windows += 1
    result = {
        "pll": total,
        "pseudo_perplexity": math.exp(-total / max(1, len(sequence))),
        "length": len(sequence),
    }
    if windows > 1:
        result["windows"] = windows
    return result


def read_dms(
    path, sequence: str, *, mutant_col: str = "mutant", score_col: str | None = None, offset: int = 1
):
    """Rows of a deep mutational scan CSV: ``(rows, mutations, measured)``.

    ``mutations`` are renumbered to the 1-based positions of ``sequence`` (``offset`` is the number the CSV
    gives the sequence's first residue) and checked against it; ``measured`` holds the float of
    ``score_col`` per row (None when empty or NaN). Errors name the file, the line and the field.
    """
    import csv
    import re
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: DMS file not found")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for col in (mutant_col, score_col):
            if col is not None and col not in header:
                raise ValueError(f"{path}: no column {col!r}; columns: {', '.join(header)}")
        rows, mutations, measured = [], [], []
        site = re.compile(r"^([A-Za-z])(-?[0-9]{1,9})([A-Za-z])$")
        for line, row in enumerate(reader, start=2):
            if None in row or any(v is None for v in row.values()):
                raise ValueError(f"{path}: line {line}: {len(header)} fields expected")
            text = (row[mutant_col] or "").strip()
            parts = []
            for part in text.split(":"):
                match = site.match(part.strip())
                if match is None:
                    raise ValueError(
                        f"{path}: line {line}, {mutant_col} {text!r}: expected e.g. A23G (':' joins sites)"
                    )
                position = int(match.group(2)) - offset + 1
                parts.append(f"{match.group(1)}{position}{match.group(3)}")
            renumbered = ":".join(parts)
            try:
                parse_mutation(renumbered, sequence, where=f"{path}: line {line}, {mutant_col}")
            except InputError as error:
                raise ValueError(f"{error} (positions renumbered with --offset {offset})") from None
            value = None
            if score_col is not None:
                raw = (row[score_col] or "").strip()
                try:
                    value = float(raw) if raw else None
                except ValueError:
                    raise ValueError(f"{path}: line {line}, {score_col} {raw!r}: not a number") from None
                if value is not None and not math.isfinite(value):
                    value = None
            rows.append(row)
            mutations.append(renumbered)
            measured.append(value)
    if not rows:
        raise ValueError(f"{path}: no data rows")
    return rows, mutations, measured
