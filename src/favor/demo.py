"""``favor demo``: a tiny Performer (FAVOR+) masked LM against a same-size exact-attention Transformer.

Both models train for the same wall-clock budget on the bundled Swiss-Prot sample (600 proteins), then are
scored on the bundled held-out test proteins with the same evaluation masks, next to the unigram baseline
(residue frequencies of the training data). Output folder::

    performer/, transformer/   two ordinary run folders (favor evaluate / favor train --resume work on them)
    loss_curves.png            training and validation loss of both, with the unigram baseline
    summary.json               the comparison table as data
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from favor.data.bundled import sample_path
from favor.evaluate.run import evaluate_run
from favor.train.config import RunConfig, run_config_from_dict
from favor.train.monitor import plot_loss_curves, read_metrics
from favor.train.run import CONFIG_FILE, train_run

__all__ = ["DEMO_BACKBONES", "demo_config", "run_demo", "format_table"]

DEMO_BACKBONES = ("performer", "transformer")

# The tiny model of configs/protein_mlm_tiny.yaml; only the backbone differs between the two runs.
_DEMO = {
    "model": {
        "d_model": 64,
        "n_layers": 2,
        "n_heads": 4,
        "d_ff": 256,
        "dropout": 0.0,
        "max_length": 128,
        "attention": {"nb_features": 32},
    },
    "data": {"mode": "single", "max_length": 128, "max_tokens": 4096},
    "train": {
        "objective": "mlm",
        "lr": 3.0e-3,
        "warmup_steps": 50,
        # The run stops on time, so the step count is unknown in advance: no decay after warmup.
        "schedule": "constant",
        "redraw_interval": 100,
        "eval_interval": 50,
        "log_interval": 10,
        "max_steps": 1_000_000,
        "checkpoint_interval": 1_000_000,
        "seed": 0,
        "cpu_threads": 1,
    },
}


def demo_config(backbone: str, *, minutes: float) -> RunConfig:
    """The demo run config for ``backbone`` with a training budget of ``minutes``."""
    data = json.loads(json.dumps(_DEMO))
    data["model"]["backbone"] = backbone
    data["train"]["max_minutes"] = minutes
    return run_config_from_dict(data, source=f"favor demo ({backbone})")


def _fresh(run_dir: Path) -> None:
    """Remove an earlier demo run in ``run_dir`` (only a folder that a favor run wrote)."""
    if run_dir.exists():
        if not (run_dir / CONFIG_FILE).is_file():
            raise FileExistsError(f"{run_dir}: exists and is not a favor run folder; choose another --out")
        shutil.rmtree(run_dir)


def format_table(rows: list[dict[str, Any]]) -> str:
    """The comparison table as aligned text."""
    header = ["model", "params", "steps", "tokens/s", "accuracy", "perplexity", "unigram acc", "unigram ppl"]
    lines = [header]
    for row in rows:
        lines.append(
            [
                row["model"],
                f"{row['params']:,}",
                f"{row['steps']:,}",
                f"{row['tokens_per_s']:,.0f}",
                f"{row['masked_accuracy']:.4f}",
                f"{row['perplexity']:.3f}",
                f"{row['unigram_accuracy']:.4f}",
                f"{row['unigram_perplexity']:.3f}",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    ]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def run_demo(
    *,
    out_dir: str | os.PathLike = "favor-demo",
    minutes: float = 2.0,
    quiet: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train both demo models for ``minutes`` each, evaluate them on the bundled test split, compare."""
    if not minutes > 0:
        raise ValueError(f"--minutes must be > 0, got {minutes}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    test = sample_path("test")
    start = time.monotonic()
    rows, curves = [], {}
    for backbone in DEMO_BACKBONES:
        run_dir = out / backbone
        _fresh(run_dir)
        if not quiet:
            echo(f"training a tiny {backbone} masked LM for {minutes:g} min on the bundled sample ...")
        summary = train_run(demo_config(backbone, minutes=minutes), out_dir=run_dir, quiet=quiet, echo=echo)
        metrics = evaluate_run(run_dir, data=test, device="cpu")
        curves[backbone] = read_metrics(run_dir / "metrics.csv")
        rows.append(
            {
                "model": backbone,
                "params": summary["params"],
                "steps": summary["steps"],
                "tokens_per_s": summary["tokens_per_s"],
                "train_time_s": summary["train_time_s"],
                "best_val_loss": summary["best_val_loss"],
                **{k: metrics[k] for k in ("masked_accuracy", "perplexity", "loss", "n_masked")},
                **{k: metrics[k] for k in ("unigram_accuracy", "unigram_perplexity", "unigram_loss")},
                "beats_unigram": bool(metrics["loss"] < metrics["unigram_loss"]),
            }
        )
    plot = plot_loss_curves(
        curves, out / "loss_curves.png", title="favor demo: masked LM on the bundled sample"
    )
    result = {
        "test_data": str(test),
        "minutes_per_model": minutes,
        "wall_time_s": round(time.monotonic() - start, 1),
        "models": rows,
        "plot": str(plot),
    }
    clean = json.loads(json.dumps(result), parse_constant=lambda _name: None)
    (out / "summary.json").write_text(json.dumps(clean, indent=2) + "\n", encoding="utf-8")
    echo("")
    echo(f"held-out test proteins ({rows[0]['n_masked']:,} masked residues, same masks for both models):")
    echo(format_table(rows))
    echo(f"\nloss curves: {plot}\nsummary: {out / 'summary.json'}  (total {result['wall_time_s']:.0f} s)")
    if not any(math.isfinite(r["loss"]) and r["beats_unigram"] for r in rows):
        echo("note: with this budget neither model beat the unigram baseline yet; try --minutes 5")
    return result
