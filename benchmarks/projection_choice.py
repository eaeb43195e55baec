"""How much a FAVOR+ model's held-out loss depends on its fixed random features, and what choosing them buys.

A Performer trained with redrawn projections is evaluated with one fixed draw per attention module. This
script scores a model folder on the validation proteins (the fixed evaluation masks) under ``--draws``
independent projection draws at its own m, and under draws with more features per head (``--features``:
the model's weights are unchanged, only the projection buffers are redrawn at the new size). It reports
each draw's masked accuracy and perplexity, the spread, and, with ``--test``, the test-split metrics of the
draw with the lowest validation loss (chosen on validation only) and of the model as shipped.

    python benchmarks/projection_choice.py favor-protein-small \
        --valid ../shared/data/proteins/valid.fasta.gz --max-valid 600 \
        --test ../shared/data/proteins/test.fasta.gz --draws 6 --features 128 256 --threads 1

Prints a Markdown table and writes ``--out`` (JSON) with every measurement.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import time
from datetime import date
from pathlib import Path

import torch

from favor.evaluate.baseline import UNIGRAM_FILE, UnigramBaseline
from favor.evaluate.data import EVAL_MASK_SEED, build_eval_loader, load_corpus
from favor.evaluate.metrics import evaluate_lm
from favor.folders import load_served_model, resolve_model_dir
from favor.layers.favor_attention import FavorSelfAttention
from favor.models.pretrained import save_pretrained


def with_projections(model: torch.nn.Module, nb_features: int, seed: int) -> torch.nn.Module:
    """A copy of ``model`` whose every FAVOR+ module has a fresh projection of ``nb_features`` rows."""
    model = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, FavorSelfAttention):
            module.nb_features = nb_features
            module.projection = module._draw(generator, dtype=module.projection.dtype)
    if hasattr(model.config, "attention"):
        model.config.attention.nb_features = nb_features
    return model


def score(model, corpus, unigram, max_length: int) -> dict[str, float]:
    loader = build_eval_loader(
        corpus,
        objective="mlm",
        mode="single",
        max_length=max_length,
        max_tokens=8192,
        mask_probability=0.15,
        mask_seed=EVAL_MASK_SEED,
        pad_to_multiple_of=32,
    )
    start = time.perf_counter()
    stats = evaluate_lm(model, loader, unigram_log_probs=unigram, device=torch.device("cpu"))
    metrics = stats.to_dict("mlm")
    return {
        "masked_accuracy": metrics["masked_accuracy"],
        "perplexity": metrics["perplexity"],
        "loss": metrics["loss"],
        "n_masked": metrics["n_masked"],
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="a model folder or a bundled model's name (a masked protein LM)")
    parser.add_argument("--valid", required=True, help="validation FASTA")
    parser.add_argument("--max-valid", type=int, default=600, help="the first N validation proteins")
    parser.add_argument("--test", help="test FASTA: score the chosen draw and the shipped one on it")
    parser.add_argument("--draws", type=int, default=6, help="projection draws at the model's own m")
    parser.add_argument("--features", type=int, nargs="*", default=[], help="larger m to try (2 draws each)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save", type=Path, help="write the chosen model folder here (weights unchanged)")
    parser.add_argument("--out", type=Path, default=Path("runs/projection_choice.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    served = load_served_model(args.model)
    model, alphabet = served.model.eval(), served.alphabet
    own_m = model.config.attention.nb_features
    length = min(model.config.max_length, 1024)
    model_dir = resolve_model_dir(args.model)
    unigram_file = next(p for p in (model_dir / UNIGRAM_FILE, model_dir.parent / UNIGRAM_FILE) if p.is_file())
    valid = load_corpus(
        args.valid, unknown="x", max_records=args.max_valid, what="validation", alphabet=alphabet
    )
    unigram = UnigramBaseline.load(unigram_file).log_probs("mlm", alphabet)

    rows = [{"draw": "shipped", "nb_features": own_m, **score(model, valid, unigram, length)}]
    candidates = [(own_m, seed) for seed in range(1, args.draws + 1)]
    candidates += [(m, seed) for m in args.features for seed in (1, 2)]
    models = {"shipped": model}
    for m, seed in candidates:
        variant = with_projections(model, m, seed)
        name = f"m{m}-seed{seed}"
        models[name] = variant
        rows.append({"draw": name, "nb_features": m, **score(variant, valid, unigram, length)})
        print(json.dumps(rows[-1]), flush=True)

    own = [r for r in rows if r["nb_features"] == own_m]
    best = min(own, key=lambda r: r["loss"])
    result = {
        "model": args.model,
        "date": str(date.today()),
        "cpu": _cpu(),
        "valid": {"file": args.valid, "proteins": len(valid)},
        "rows": rows,
        "own_m_perplexity": {
            "median": statistics.median(r["perplexity"] for r in own),
            "min": min(r["perplexity"] for r in own),
            "max": max(r["perplexity"] for r in own),
        },
        "chosen": best["draw"],
    }
    if args.test:
        test = load_corpus(args.test, unknown="x", what="test", alphabet=alphabet)
        result["test"] = {
            name: score(models[name], test, unigram, length)
            for name in dict.fromkeys(["shipped", best["draw"]])
        }
    if args.save and best["draw"] != "shipped":
        save_pretrained(models[best["draw"]], args.save)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")

    print(f"{result['date']}, {result['cpu']}, {args.threads} thread(s), {len(valid)} validation proteins")
    print("| projection | m | valid masked accuracy | valid perplexity |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['draw']} | {r['nb_features']} | {r['masked_accuracy']:.4f} | {r['perplexity']:.3f} |")
    for name, metrics in result.get("test", {}).items():
        print(
            f"test, {name}: masked accuracy {metrics['masked_accuracy']:.4f}, "
            f"perplexity {metrics['perplexity']:.3f}"
        )


def _cpu() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    return next((line.split(":", 1)[1].strip() for line in lscpu if "Model name" in line), "?")


if __name__ == "__main__":
    main()
