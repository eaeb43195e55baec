"""``favor score``: masked-marginal mutation effect scores from a masked language model.

The scoring and every check on the mutation strings are the server's (`favor.serve.tasks.score_job` and
`favor.serve.tasks.parse_mutation`, run through `favor.serve.engine.InferenceEngine`), so the command and
``POST /score`` always agree. Neither needs FastAPI.

For a mutation ``A23G``, the wild-type sequence is run with position 23 masked and the score is
``log p(G) - log p(A)`` at that position (Meier et al. 2021, ESM-1v), probabilities over residue tokens
only. ``A23G:K45R`` (several sites of one variant) scores the sum of its sites.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from favor.folders import load_served_model
from favor.serve.engine import InferenceEngine
from favor.serve.tasks import score_job

__all__ = ["score_mutations", "score_cli"]


def split_mutations(text: str) -> list[str]:
    """``"A23G,K45R"`` -> ``["A23G", "K45R"]`` (whitespace around names ignored)."""
    return [part.strip() for part in text.split(",")]


def score_mutations(engine: InferenceEngine, sequence: str, mutations: list[str]) -> list[dict[str, Any]]:
    """``[{"mutation": ..., "score": ...}]`` in the order given; raises `favor.serve.engine.InputError`
    (a ``ValueError``) naming the first bad mutation (wrong wild type, position out of range, unknown
    residue, malformed) or a bad sequence."""
    job = score_job(engine, sequence, mutations, max_mutations=max(1, len(mutations)))
    outputs = engine.forward_rows(job.rows, output="head")
    return job.finish(outputs)["scores"]


def score_cli(run_dir: Path, *, sequence: str, mutations: str, json_: bool = False) -> int:
    """Score point mutations with a masked LM: log p(mutant) - log p(wild type), the site masked.

    Positions are 1-based; a variant with several sites joins them with ':' (A23G:K45R) and scores the
    sum. Negative scores: the model finds the mutant less likely than the wild type.

    Args:
        run_dir: a 'favor train' run folder or a model folder (a masked LM).
        sequence (SEQ): the wild-type protein sequence.
        mutations (LIST): comma-separated mutations such as A23G,K45R.
        json_: print one JSON object instead of a table.
    """
    engine = InferenceEngine(load_served_model(run_dir))
    if engine.config.task != "mlm":
        raise ValueError(
            f"{engine.served.path}: favor score needs a masked language model (task mlm), "
            f"not task {engine.config.task!r}"
        )
    names = split_mutations(mutations)
    scores = score_mutations(engine, sequence, names)
    if json_:
        print(
            json.dumps({"model": str(engine.served.path), "sequence_length": len(sequence), "scores": scores})
        )
        return 0
    width = max(len("mutation"), *(len(s["mutation"]) for s in scores))
    print(f"{'mutation':<{width}}  score")
    for item in scores:
        print(f"{item['mutation']:<{width}}  {item['score']:+.4f}")
    return 0
