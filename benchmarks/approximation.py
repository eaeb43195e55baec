"""FAVOR+ approximation error vs exact softmax attention (Performer Fig. 4) and vs input norm (Lemma 2).

Writes docs/approximation.md's tables (markdown, to stdout and ``--out``) and a log-log plot of MSE vs m with
error bars over the draws (``--plot``). Inputs: q, k with i.i.d. N(0, std^2) entries, v with N(0, 1)
entries, one head of length L and dimension d (see `favor.evaluate.approximation.gaussian_qkv`).

    python benchmarks/approximation.py            # L=4096, d=16, 15 draws: 8-14 min on 2 shared cores
    python benchmarks/approximation.py --length 512 --draws 3 --features 16 64 --norm-features 64
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import date
from pathlib import Path

import torch

from favor.evaluate.approximation import ErrorStats, gaussian_qkv, sweep

ROOT = Path(__file__).resolve().parent.parent
NORM_VARIANTS = ("positive-orthogonal", "hyperbolic-orthogonal", "trig-orthogonal")


def _cell(mean: float, std: float) -> str:
    return f"{mean:.2e} ± {std:.1e}"


def main_table(results: list[ErrorStats], features: list[int], *, kind: str) -> str:
    """Rows: variants; columns: m; cells: mean ± std over draws of the ``kind`` ("output" or "matrix") MSE."""
    header = "| variant | " + " | ".join(f"m={m}" for m in features) + " |"
    lines = [header, "|---" * (len(features) + 1) + "|"]
    for name in dict.fromkeys(r.variant for r in results):
        cells = []
        for m in features:
            (r,) = (r for r in results if r.variant == name and r.nb_features == m)
            stats = (r.output_mean, r.output_std) if kind == "output" else (r.matrix_mean, r.matrix_std)
            cells.append(_cell(*stats))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def norm_table(rows: list[tuple[float, ErrorStats]]) -> str:
    """Rows: (std, variant, m); output and matrix MSE."""
    lines = [
        "| std of q, k | mean of abs(x)^2 | variant | m | output MSE | matrix MSE |",
        "|---|---|---|---|---|---|",
    ]
    for std, r, sq_norm in rows:
        lines.append(
            f"| {std:g} | {sq_norm:.2f} | {r.variant} | {r.nb_features} | "
            f"{_cell(r.output_mean, r.output_std)} | {_cell(r.matrix_mean, r.matrix_std)} |"
        )
    return "\n".join(lines)


COLORS = {"positive": "tab:blue", "hyperbolic": "tab:green", "trig": "tab:red"}


def _errorbar(ax, xs, means, stds, *, name: str) -> None:
    # Error bars are one std over draws, the lower one clipped so the log axis stays valid.
    lower = [min(s, 0.95 * m) for m, s in zip(means, stds, strict=True)]
    family = name.split("-")[0]
    style = "--" if name.endswith("iid") else "-"
    ax.errorbar(
        xs, means, yerr=[lower, stds], marker="o", capsize=3, ls=style, color=COLORS[family], label=name
    )


def plot(results: list[ErrorStats], norm_rows: list, path: Path, *, title: str) -> None:
    """Output and matrix MSE vs m (log-log), and output MSE vs the input norm (Lemma 2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for ax, kind in zip(axes[:2], ("output", "matrix"), strict=True):
        for name in dict.fromkeys(r.variant for r in results):
            rs = sorted((r for r in results if r.variant == name), key=lambda r: r.nb_features)
            means = [r.output_mean if kind == "output" else r.matrix_mean for r in rs]
            stds = [r.output_std if kind == "output" else r.matrix_std for r in rs]
            _errorbar(ax, [r.nb_features for r in rs], means, stds, name=name)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("m (features)")
        ax.set_ylabel(f"MSE of the attention {kind}")
    axes[0].legend(fontsize=8)
    ax = axes[2]
    largest = max(r.nb_features for _, r, _ in norm_rows)
    for name in dict.fromkeys(r.variant for _, r, _ in norm_rows):
        cells = [(sq, r) for _, r, sq in norm_rows if r.variant == name and r.nb_features == largest]
        means, stds = [r.output_mean for _, r in cells], [r.output_std for _, r in cells]
        _errorbar(ax, [sq for sq, _ in cells], means, stds, name=name)
    ax.set_xlabel("mean |q d^-1/4|^2 (input norm)")
    ax.set_ylabel(f"MSE of the attention output, m={largest}")
    ax.legend(fontsize=8)
    for ax in axes:
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--head-dim", type=int, default=16)
    parser.add_argument("--features", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512])
    parser.add_argument("--draws", type=int, default=15)
    # |q d^-1/4|^2 = std^2 sqrt(d) on average: std = d^-1/4 puts the scaled inputs at unit norm.
    parser.add_argument("--std", type=float, default=0.5, help="std of q, k entries in the main table")
    parser.add_argument("--norm-stds", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0, 1.25])
    parser.add_argument("--norm-features", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--norm-draws", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the markdown tables here")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "approximation.png")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    q, k, v = gaussian_qkv(args.length, args.head_dim, std=args.std, seed=args.seed)
    results = sweep(q, k, v, feature_counts=args.features, draws=args.draws, seed=args.seed)
    main_seconds = time.perf_counter() - start

    norm_rows = []
    for std in args.norm_stds:
        q, k, v = gaussian_qkv(args.length, args.head_dim, std=std, seed=args.seed)
        sq_norm = (q.pow(2).sum(-1) * args.head_dim**-0.5).mean().item()
        for r in sweep(
            q, k, v, feature_counts=args.norm_features, variants=NORM_VARIANTS, draws=args.norm_draws
        ):
            norm_rows.append((std, r, sq_norm))
    total = time.perf_counter() - start

    setup = (
        f"L={args.length}, d={args.head_dim}, q and k entries N(0, {args.std}^2), v entries N(0, 1), "
        f"{args.draws} projection draws per cell, float64"
    )
    text = "\n\n".join(
        [
            f"Setup: {setup}. Cells: mean ± std over draws.",
            "MSE of the attention output:\n\n" + main_table(results, args.features, kind="output"),
            "MSE of the attention matrix (row-normalized, L x L):\n\n"
            + main_table(results, args.features, kind="matrix"),
            f"Input norm (Lemma 2), {args.norm_draws} draws, x = q d^-1/4:\n\n" + norm_table(norm_rows),
            f"Run {date.today().isoformat()} on {platform.machine()} ({torch.get_num_threads()} threads), "
            f"Python {sys.version.split()[0]}, torch {torch.__version__}; main table {main_seconds:.0f} s, "
            f"total {total:.0f} s. Command: python benchmarks/approximation.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
        ]
    )
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    if args.plot is not None:
        plot(results, norm_rows, args.plot, title=setup)


if __name__ == "__main__":
    main()
