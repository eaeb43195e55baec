"""``favor demo``: what FAVOR+ is for, in about five minutes on two CPU cores.

1. **The attention op.** One FAVOR+ call (`favor.ops.favor_attention`) against exact attention (torch's
   ``scaled_dot_product_attention``) on 1K to 16K tokens: time and the extra peak memory of the call.
   Exact attention grows with L^2, FAVOR+ with L.
2. **Training at equal wall-clock.** A tiny Performer and a same-size exact Transformer masked LM train for
   the same time on windows of 4,096 tokens of concatenated proteins from the bundled Swiss-Prot sample,
   then are scored on the bundled held-out proteins with the same masks, next to the unigram baseline:
   tokens per second, the loss reached, and peak memory.

Output folder::

    performer/, transformer/   two ordinary run folders (favor evaluate / favor train --resume work on them)
    demo.png                   the story in one figure: op time vs length, validation loss vs wall-clock
    loss_curves.png            training and validation loss of both, with the unigram baseline
    summary.json               every number above as data
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
from favor.runs.config import RunConfig, run_config_from_dict
from favor.runs.evaluate import evaluate_run
from favor.runs.folder import CONFIG_FILE
from favor.train.monitor import plot_loss_curves, read_metrics
from favor.train.run import train_run

__all__ = ["DEMO_BACKBONES", "demo_config", "run_demo", "format_table"]

DEMO_BACKBONES = ("performer", "transformer")

# The tiny model of configs/protein_mlm_tiny.yaml on long windows; only the backbone differs between runs.
WINDOW = 4096
_DEMO = {
    "model": {
        "d_model": 64,
        "n_layers": 2,
        "n_heads": 4,
        "d_ff": 256,
        "dropout": 0.0,
        "max_length": WINDOW,
        "position": "rotary",
        "attention": {"nb_features": 32},
    },
    "data": {
        "mode": "concatenated",
        "max_length": WINDOW,
        "max_tokens": 2 * WINDOW,
        "valid_max_sequences": 200,
    },
    "train": {
        "objective": "mlm",
        "lr": 3.0e-3,
        "warmup_steps": 50,
        # The run stops on time, so the step count is unknown in advance: no decay after warmup.
        "schedule": "constant",
        "redraw_interval": 100,
        "eval_interval": 20,
        "eval_max_batches": 4,
        "log_interval": 10,
        "max_steps": 1_000_000,
        "checkpoint_interval": 1_000_000,
        "seed": 0,
        "cpu_threads": 2,
    },
}
OP_LENGTHS = (1024, 2048, 4096, 8192, 16384)


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
    """The training comparison as aligned text."""
    header = ["model", "params", "steps", "tokens/s", "peak MiB", "accuracy", "perplexity", "unigram ppl"]
    lines = [header]
    for row in rows:
        peak = row.get("peak_rss_mib")
        lines.append(
            [
                row["model"],
                f"{row['params']:,}",
                f"{row['steps']:,}",
                f"{row['tokens_per_s']:,.0f}",
                "?" if peak is None else f"{peak:,.0f}",
                f"{row['masked_accuracy']:.4f}",
                f"{row['perplexity']:.3f}",
                f"{row['unigram_perplexity']:.3f}",
            ]
        )
    return _align(lines)


def _align(lines: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    ]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def _reset_peak() -> bool:
    """Reset this process's peak resident memory (Linux: writing 5 to clear_refs); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _memory_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def attention_scan(lengths=OP_LENGTHS, *, heads: int = 4, head_dim: int = 64, nb_features: int = 128):
    """Time and extra peak memory of one forward call of FAVOR+ and of exact attention at each length."""
    import torch
    import torch.nn.functional as F

    from favor.ops import favor_attention, random_projection

    generator = torch.Generator().manual_seed(0)
    projection = random_projection(nb_features, head_dim, generator=generator)
    ops = {
        "favor": lambda q, k, v: favor_attention(q, k, v, projection),
        "exact": lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
    }
    rows = []
    with torch.inference_mode():
        for length in lengths:
            q, k, v = (torch.randn(1, heads, length, head_dim, generator=generator) for _ in range(3))
            for name, op in ops.items():
                op(q[..., :256, :], k[..., :256, :], v[..., :256, :])  # warm-up
                before = _memory_mib("VmRSS")
                tracked = _reset_peak() and before is not None
                start = time.perf_counter()
                out = op(q, k, v)
                seconds = time.perf_counter() - start
                peak = _memory_mib("VmHWM") if tracked else None
                del out
                rows.append(
                    {
                        "op": name,
                        "length": length,
                        "seconds": seconds,
                        "extra_peak_mib": None if peak is None else max(0.0, peak - before),
                    }
                )
    return rows


def _plot(scan: list[dict], curves: dict[str, list[dict]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, label in (("favor", "FAVOR+ (favor_attention)"), ("exact", "exact (SDPA)")):
        points = [r for r in scan if r["op"] == name]
        left.plot([r["length"] for r in points], [r["seconds"] for r in points], marker="o", label=label)
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xlabel("tokens")
    left.set_ylabel("seconds per call (forward, 4 heads x 64)")
    left.set_title("Attention: linear vs quadratic in length")
    left.legend()
    for name, rows in curves.items():
        valid = [r for r in rows if r["split"] == "valid" and r.get("loss") is not None]
        right.plot([r["elapsed_s"] for r in valid], [r["loss"] for r in valid], marker=".", label=name)
    right.set_xlabel("wall-clock seconds of training")
    right.set_ylabel(f"validation loss ({WINDOW:,}-token windows)")
    right.set_title("Masked protein LM at equal time")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_demo(
    *,
    out_dir: str | os.PathLike = "favor-demo",
    minutes: float = 2.0,
    quiet: bool = False,
    echo: Callable[[str], None] = print,
    op_lengths: tuple[int, ...] = OP_LENGTHS,
) -> dict[str, Any]:
    """Scan the attention op, train both demo models for ``minutes`` each, evaluate them, compare."""
    if not minutes > 0:
        raise ValueError(f"--minutes must be > 0, got {minutes}")
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    test = sample_path("test")
    start = time.monotonic()
    threads = torch.get_num_threads()
    if not quiet:
        echo(f"timing one attention call at {', '.join(f'{n:,}' for n in op_lengths)} tokens ...")
    scan = attention_scan(op_lengths)
    echo(_scan_table(scan))
    rows, curves = [], {}
    for backbone in DEMO_BACKBONES:
        run_dir = out / backbone
        _fresh(run_dir)
        if not quiet:
            echo(
                f"\ntraining a tiny {backbone} masked LM for {minutes:g} min on {WINDOW:,}-token windows ..."
            )
        _reset_peak()
        summary = train_run(demo_config(backbone, minutes=minutes), out_dir=run_dir, quiet=quiet, echo=echo)
        peak = _memory_mib("VmHWM")
        metrics = evaluate_run(run_dir, data=test, device="cpu", concatenated=True)
        curves[backbone] = read_metrics(run_dir / "metrics.csv")
        rows.append(
            {
                "model": backbone,
                "params": summary["params"],
                "steps": summary["steps"],
                "tokens_per_s": summary["tokens_per_s"],
                "train_time_s": summary["train_time_s"],
                "best_val_loss": summary["best_val_loss"],
                "peak_rss_mib": peak,
                **{k: metrics[k] for k in ("masked_accuracy", "perplexity", "loss", "n_masked")},
                **{k: metrics[k] for k in ("unigram_accuracy", "unigram_perplexity", "unigram_loss")},
                "beats_unigram": bool(metrics["loss"] < metrics["unigram_loss"]),
            }
        )
    torch.set_num_threads(threads)
    figure = _plot(scan, curves, out / "demo.png")
    plot = plot_loss_curves(
        curves, out / "loss_curves.png", title="favor demo: masked LM, concatenated proteins"
    )
    speedup = rows[0]["tokens_per_s"] / rows[1]["tokens_per_s"] if rows[1]["tokens_per_s"] else None
    longest = max(op_lengths)
    op_ratio = _ratio(scan, longest)
    result = {
        "test_data": str(test),
        "window": WINDOW,
        "minutes_per_model": minutes,
        "wall_time_s": round(time.monotonic() - start, 1),
        "attention": scan,
        "attention_exact_over_favor_at_longest": op_ratio,
        "models": rows,
        "performer_tokens_per_s_over_transformer": speedup,
        "figure": str(figure),
        "plot": str(plot),
    }
    clean = json.loads(json.dumps(result), parse_constant=lambda _name: None)
    (out / "summary.json").write_text(json.dumps(clean, indent=2) + "\n", encoding="utf-8")
    echo("")
    echo(f"held-out test proteins ({rows[0]['n_masked']:,} masked residues, same masks for both models):")
    echo(format_table(rows))
    if speedup is not None and op_ratio is not None:
        echo(
            f"\nthe Performer trained {speedup:.1f}x as many tokens per second as the exact Transformer on "
            f"{WINDOW:,}-token windows; at {longest:,} tokens one exact attention call took {op_ratio:.1f}x "
            "as long as FAVOR+"
        )
    echo(f"\nfigure: {figure}\nloss curves: {plot}")
    echo(f"summary: {out / 'summary.json'}  (total {result['wall_time_s']:.0f} s)")
    if not any(math.isfinite(r["loss"]) and r["beats_unigram"] for r in rows):
        echo("note: with this budget neither model beat the unigram baseline yet; try --minutes 5")
    return result


def _ratio(scan: list[dict], length: int) -> float | None:
    cells = {r["op"]: r["seconds"] for r in scan if r["length"] == length}
    return cells["exact"] / cells["favor"] if cells.get("favor") else None


def _scan_table(scan: list[dict]) -> str:
    lines = [["tokens", "FAVOR+ s", "exact s", "exact / FAVOR+", "FAVOR+ MiB", "exact MiB"]]
    for length in sorted({r["length"] for r in scan}):
        cells = {r["op"]: r for r in scan if r["length"] == length}
        f, e = cells["favor"], cells["exact"]
        mib = lambda r: "?" if r["extra_peak_mib"] is None else f"{r['extra_peak_mib']:,.0f}"  # noqa: E731
        lines.append(
            [
                f"{length:,}",
                f"{f['seconds']:.3f}",
                f"{e['seconds']:.3f}",
                f"{e['seconds'] / f['seconds']:.1f}x",
                mib(f),
                mib(e),
            ]
        )
    return _align(lines)
