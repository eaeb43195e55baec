"""``favor score``: masked-marginal mutation effect scores from a masked language model.

Every check on the mutation strings is `favor.inference.parse_mutation`, the one the server's ``POST /score``
uses too, and the rows run through the same `favor.inference.InferenceEngine`, so the command and the
route agree. Strategies and DMS files: `favor.tasks.variants`. Nothing here needs FastAPI.

For a mutation ``A23G``, the wild-type sequence is run with position 23 masked and the score is
``log p(G) - log p(A)`` at that position (Meier et al. 2021, ESM-1v), probabilities over residue tokens
only. ``A23G:K45R`` (several sites of one variant) scores the sum of its sites.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from favor.folders import load_served_model
from favor.inference import InferenceEngine

__all__ = ["score_mutations", "score_cli"]


def split_mutations(text: str) -> list[str]:
    """``"A23G,K45R"`` -> ``["A23G", "K45R"]`` (whitespace around names ignored)."""
    return [part.strip() for part in text.split(",")]


def score_mutations(engine: InferenceEngine, sequence: str, mutations: list[str]) -> list[dict[str, Any]]:
    """``[{"mutation": ..., "score": ...}]`` in the order given; raises `favor.inference.InputError`
    (a ``ValueError``) naming the first bad mutation (wrong wild type, position out of range, unknown
    residue, malformed) or a bad sequence."""
    from favor.tasks.variants import score_variants

    return [
        {"mutation": s["mutation"], "score": s["score"]}
        for s in score_variants(engine, sequence, mutations, strategy="masked-marginal")
    ]


def score_cli(
    run_dir: Path,
    *,
    sequence: str | None = None,
    mutations: str | None = None,
    strategy: str = "masked-marginal",
    dms: Path | None = None,
    mutant_col: str = "mutant",
    score_col: str | None = None,
    offset: int = 1,
    out: Path | None = None,
    data: Path | None = None,
    pseudo_ppl: bool = False,
    json_: bool = False,
) -> int:
    """Score mutations with a masked LM (masked-marginal, wt-marginal, mutant-marginal or pseudo-ppl).

    favor score MODEL --sequence SEQ --mutations A4G,K7R:L9A scores variants (1-based positions; ':' joins
    the sites of one variant, whose scores add up); --dms FILE.csv --sequence SEQ --out OUT.csv scores every
    row of a deep mutational scan (and with --score-col prints the Spearman correlation); --data FASTA
    --pseudo-ppl scores whole sequences. Negative scores: the model finds the mutant less likely. Proteins
    longer than the model's context are scored in a window around the sites (stated in the output).

    Args:
        run_dir: a 'favor train' run folder, a model folder or a bundled model name (a masked LM).
        sequence (SEQ): the wild-type protein sequence.
        mutations (LIST): comma-separated variants such as A23G,K45R or A23G:K45R.
        strategy: masked-marginal, wt-marginal, mutant-marginal or pseudo-ppl (see favor.tasks.variants).
        dms (CSV): a deep mutational scan with one variant per row.
        mutant_col (NAME): the CSV column holding the variants.
        score_col (NAME): the CSV column of measured scores, for the Spearman correlation.
        offset (N): the CSV's number for the sequence's first residue.
        out (CSV): with --dms, the CSV to write (the input columns plus favor_score).
        data (FASTA): with --pseudo-ppl, sequences to score whole.
        pseudo_ppl: score whole sequences of --data by pseudo-log-likelihood.
        json_: print one JSON object instead of a table.
    """
    from favor.tasks.blosum import spearman
    from favor.tasks.variants import pseudo_log_likelihood, read_dms, score_variants

    engine = InferenceEngine(load_served_model(run_dir))
    if engine.config.task != "mlm":
        raise ValueError(
            f"{engine.served.path}: favor score needs a masked language model (task mlm), "
            f"not task {engine.config.task!r}"
        )
    if pseudo_ppl or data is not None:
        if data is None or not pseudo_ppl:
            raise ValueError("score whole sequences with both --data FASTA and --pseudo-ppl")
        from favor.data import read_fasta

        results = []
        for record in read_fasta(data):
            results.append({"name": record.name, **pseudo_log_likelihood(engine, record.sequence)})
        if json_:
            print(json.dumps({"model": str(engine.served.path), "sequences": results}))
        else:
            print("name  length  pll  pseudo_perplexity")
            for r in results:
                print(f"{r['name']}  {r['length']}  {r['pll']:.3f}  {r['pseudo_perplexity']:.3f}")
        return 0
    if sequence is None:
        raise ValueError("give --sequence SEQ (with --mutations or --dms), or --data FASTA --pseudo-ppl")
    if dms is not None:
        if out is None:
            raise ValueError("--dms needs --out OUT.csv, the scored copy to write")
        rows, names, measured = read_dms(
            dms, sequence, mutant_col=mutant_col, score_col=score_col, offset=offset
        )
        scores = score_variants(engine, sequence, names, strategy=strategy)
        _write_dms(out, rows, scores)
        summary: dict[str, Any] = {"rows": len(rows), "strategy": strategy, "out": str(out)}
        if score_col is not None:
            pairs = [(m, s["score"]) for m, s in zip(measured, scores, strict=True) if m is not None]
            summary["spearman"] = spearman(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
            summary["scored_rows"] = len(pairs)
        if json_:
            print(json.dumps(summary))
        else:
            line = f"scored {len(rows)} variants ({strategy}) into {out}"
            if "spearman" in summary:
                rho, n = summary["spearman"], summary["scored_rows"]
                line += f"; Spearman with {score_col}: {rho:.4f} over {n} rows"
            print(line)
        return 0
    if mutations is None:
        raise ValueError("give --mutations A23G,K45R (or --dms FILE.csv)")
    scores = score_variants(engine, sequence, split_mutations(mutations), strategy=strategy)
    if json_:
        payload = {"model": str(engine.served.path), "sequence_length": len(sequence), "scores": scores}
        print(json.dumps(payload))
        return 0
    width = max(len("mutation"), *(len(s["mutation"]) for s in scores))
    print(f"{'mutation':<{width}}  score  ({strategy})")
    for item in scores:
        window = f"  window {item['window'][0]}-{item['window'][1]}" if "window" in item else ""
        print(f"{item['mutation']:<{width}}  {item['score']:+.4f}{window}")
    return 0


def _write_dms(out: Path, rows: list[dict], scores: list[dict]) -> None:
    """The DMS rows with a favor_score column, written whole to a temporary file and then renamed."""
    import csv
    import os

    out = Path(out)
    fields = [*rows[0].keys(), "favor_score"]
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row, score in zip(rows, scores, strict=True):
            writer.writerow({**row, "favor_score": f"{score['score']:.6f}"})
    os.replace(tmp, out)
