"""FAVOR+ approximation error vs exact softmax attention (Performer Fig. 4) and vs input norm (Lemma 2).

Writes docs/approximation.md's tables (markdown, to stdout and ``--out``) and a log-log plot of MSE vs m with
error bars over the draws (``--plot``). Inputs: q, k with i.i.d. N(0, std^2) entries, v with N(0, 1)
entries, one head of length L and dimension d (see `favor.evaluate.approximation.gaussian_qkv`).

    python benchmarks/approximation.py            # L=4096, d=16, 15 draws: 8-14 min on 2 shared cores
    python benchmarks/approximation.py --length 512 --draws 3 --features 16 64 --norm-features 64

With --run RUN_DIR --data FASTA the q, k, v are real: those each attention layer of a trained model
(a `favor train` run folder or a model folder) computes on one protein of FASTA, the first with at least
the model's context of residues, cropped to it (`favor.evaluate.approximation.model_qkv`); every head of the
layer is measured. The input-norm table is not run in that mode.

    python benchmarks/approximation.py --run runs/protein_lm20/performer-softmax \
        --data ../shared/data/proteins/test.fasta.gz --layers 0 -1 --out docs/approximation_real.md \
        --plot docs/img/approximation_real.png
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import date
from pathlib import Path

import torch

from favor.evaluate.approximation import ErrorStats, gaussian_qkv, model_qkv, sweep

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
    """Output and matrix MSE vs m (log-log), and (when ``norm_rows``) output MSE vs the input norm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3 if norm_rows else 2, figsize=(15 if norm_rows else 10, 4.4))
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
    for ax in axes:
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    if norm_rows:
        _norm_panel(axes[2], norm_rows)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)


def _norm_panel(ax, norm_rows: list) -> None:
    largest = max(r.nb_features for _, r, _ in norm_rows)
    for name in dict.fromkeys(r.variant for _, r, _ in norm_rows):
        cells = [(sq, r) for _, r, sq in norm_rows if r.variant == name and r.nb_features == largest]
        means, stds = [r.output_mean for _, r in cells], [r.output_std for _, r in cells]
        _errorbar(ax, [sq for sq, _ in cells], means, stds, name=name)
    ax.set_xlabel("mean |q d^-1/4|^2 (input norm)")
    ax.set_ylabel(f"MSE of the attention output, m={largest}")
    ax.legend(fontsize=8)
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)


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
    parser.add_argument("--run", type=Path, default=None, help="trained model: measure on its real q, k, v")
    parser.add_argument("--data", type=Path, default=None, help="FASTA of proteins (with --run)")
    parser.add_argument("--layers", type=int, nargs="+", default=[0, -1], help="blocks measured (with --run)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.run is not None:
        real_data(args, argv)
        return

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


def _window(run: Path, data: Path) -> tuple[object, torch.Tensor, str]:
    """The model of ``run`` and the ids of the first protein in ``data`` that fills its context."""
    from favor.data import read_fasta
    from favor.folders import load_served_model

    served = load_served_model(run)
    residues = served.model.config.max_length - 2
    for record in read_fasta(data):
        if len(record.sequence) >= residues:
            ids = served.alphabet.encode(
                record.sequence[:residues], name=record.name, add_cls=True, add_eos=True, unknown="x"
            )
            return served.model, torch.tensor([ids]), record.name
    raise SystemExit(f"{data}: no protein with at least {residues} residues (the model's context)")


def real_data(args: argparse.Namespace, argv: list[str] | None) -> None:
    if args.data is None:
        raise SystemExit("--run needs --data FASTA")
    start = time.perf_counter()
    model, ids, name = _window(args.run, args.data)
    sections, plotted = [], None
    for layer in args.layers:
        q, k, v = model_qkv(model, ids, layer=layer)
        sq_norm = lambda x: (x.pow(2).sum(-1) * x.shape[-1] ** -0.5).mean().item()  # noqa: E731
        results = sweep(q, k, v, feature_counts=args.features, draws=args.draws, seed=args.seed)
        plotted = plotted or results
        sections += [
            f"Layer {layer}: {q.shape[1]} heads, mean |x|^2 = {sq_norm(q):.2f} (queries), "
            f"{sq_norm(k):.2f} (keys) for x = q d^-1/4.",
            "MSE of the attention output:\n\n" + main_table(results, args.features, kind="output"),
            "MSE of the attention matrix (row-normalized, L x L):\n\n"
            + main_table(results, args.features, kind="matrix"),
        ]
    setup = (
        f"real q, k, v of {args.run} on {name} (L={ids.shape[1]}, head_dim={q.shape[-1]}), "
        f"{args.draws} projection draws per cell, float64"
    )
    text = "\n\n".join(
        [f"Setup: {setup}. Cells: mean ± std over draws.", *sections]
        + [
            f"Run {date.today().isoformat()} on {platform.machine()} ({torch.get_num_threads()} threads), "
            f"torch {torch.__version__}; {time.perf_counter() - start:.0f} s. Command: "
            "python benchmarks/approximation.py " + " ".join(argv if argv is not None else sys.argv[1:])
        ]
    )
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    if args.plot is not None:
        plot(plotted, [], args.plot, title=f"layer {args.layers[0]}: " + setup)


if __name__ == "__main__":
    main()
