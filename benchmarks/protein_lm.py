"""Same-budget architecture comparison for masked protein language modeling on the shared Swiss-Prot split.

Each backbone trains from configs/protein_mlm_small.yaml (or --config) for the same wall-clock budget on
single proteins cropped to L=1,024, then `favor evaluate` scores it on the test split with the same seeded
masks. Prints a markdown table: backbone, parameters, steps, tokens/s, test masked accuracy, perplexity and
the unigram baseline on the same masks.

With --concatenated the proteins are joined with separators and cut into windows of --window tokens (the
paper's long-context setting, default 8,192), for training and for the test score.

    python benchmarks/protein_lm.py --minutes 20 --out runs/protein_lm     # the BENCHMARKS.md table
    python benchmarks/protein_lm.py --minutes 2 --variants performer-softmax lstm   # a quick look
    python benchmarks/protein_lm.py --minutes 15 --concatenated --variants performer-softmax transformer

Needs ../shared/data/proteins (or --data-root).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "performer-softmax": ["model.backbone=performer", "model.attention.kernel=softmax"],
    "performer-relu": ["model.backbone=performer", "model.attention.kernel=relu"],
    "transformer": ["model.backbone=transformer"],
    "lstm": ["model.backbone=lstm", "model.position=none"],
    "cnn": ["model.backbone=cnn", "model.position=none"],
}


def run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "protein_mlm_small.yaml")
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data" / "proteins")
    parser.add_argument("--out", type=Path, default=Path("runs/protein_lm"))
    parser.add_argument("--minutes", type=float, default=20.0, help="training wall-clock per variant")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--test-batches", type=int, default=50, help="test batches scored per variant")
    parser.add_argument("--concatenated", action="store_true", help="concatenated proteins in windows")
    parser.add_argument("--window", type=int, default=8192, help="window length with --concatenated")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override")
    args = parser.parse_args(argv)
    train, valid, test = (args.data_root / f"{split}.fasta.gz" for split in ("train", "valid", "test"))
    for path in (train, valid, test):
        if not path.exists():
            sys.exit(f"missing {path}: pass --data-root pointing at the shared proteins folder")

    favor = [sys.executable, "-m", "favor.cli"]
    setting = []
    if args.concatenated:
        setting = [
            "data.mode=concatenated",
            f"data.max_length={args.window}",
            f"model.max_length={args.window}",
            f"data.max_tokens={args.window}",
        ]
    if args.threads is not None:
        setting.append(f"train.cpu_threads={args.threads}")
    rows = []
    for name in args.variants:
        run_dir = args.out / name
        overrides = [f"--set={o}" for o in VARIANTS[name] + setting + args.overrides]
        run(
            favor
            + [
                "train",
                str(args.config),
                "--out",
                str(run_dir),
                "--train",
                str(train),
                "--valid",
                str(valid),
                "--max-minutes",
                str(args.minutes),
                "--quiet",
                *overrides,
            ]
        )
        summary = json.loads((run_dir / "summary.json").read_text())
        metrics = json.loads(
            run(
                favor
                + [
                    "evaluate",
                    str(run_dir),
                    "--data",
                    str(test),
                    "--json",
                    "--max-batches",
                    str(args.test_batches),
                    *(["--concatenated"] if args.concatenated else []),
                ]
            )
        )
        rows.append((name, summary, metrics))
        print(
            f"{name}: {metrics['masked_accuracy']:.4f} accuracy, {metrics['perplexity']:.2f} perplexity",
            flush=True,
        )

    setting = f"concatenated windows of {args.window}" if args.concatenated else "single proteins"
    print(f"\n# {date.today()}, {args.minutes:g} min per variant, config {args.config.name}, {setting}")
    print(
        "| model | parameters | steps | tokens/s | test accuracy | test perplexity | unigram accuracy / "
        "perplexity | masked tokens |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, summary, m in rows:
        print(
            f"| {name} | {summary['params']:,} | {summary['steps']:,} | {summary['tokens_per_s']:,.0f} | "
            f"{m['masked_accuracy']:.4f} | {m['perplexity']:.2f} | {m['unigram_accuracy']:.4f} / "
            f"{m['unigram_perplexity']:.2f} | {m['n_masked']:,} |"
        )


if __name__ == "__main__":
    main()
