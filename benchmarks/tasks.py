"""One table per task beyond proteins: every backbone trained on the tiny config for the same wall-clock
budget, then scored on the held-out test part with the task's own metrics, next to the baselines.

Tasks (configs/): time-series forecasting of yearly sunspots (timeseries_tiny.yaml: MAE, RMSE, MASE vs
naive, seasonal-naive and ARIMA on the same test windows), character LM on the bundled English corpus
(charlm_tiny.yaml: bits per character vs the unigram baseline; plus an LSTM trained with truncated BPTT),
and pixel-by-pixel digit classification (digits_tiny.yaml: accuracy vs the majority class). Only
``model.backbone`` changes between the rows of a table (and ``train.tbptt`` for the TBPTT row); every run
trains for the same wall-clock budget at a constant learning rate after warmup.

    python benchmarks/tasks.py                                # the docs/tasks.md tables (~15 minutes)
    python benchmarks/tasks.py --tasks charlm --backbones performer lstm --minutes 0.2

Runs single-threaded (torch.set_num_threads(1)); the run folders stay in --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from datetime import date
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
TASKS = {
    "timeseries": ("timeseries_tiny.yaml", ("mae", "rmse", "mase")),
    "charlm": ("charlm_tiny.yaml", ("bits_per_char", "accuracy")),
    "digits": ("digits_tiny.yaml", ("accuracy", "loss")),
}
BACKBONES = ("performer", "transformer", "lstm", "gru", "cnn")
# Extra rows: (label, task, backbone, overrides).
VARIANTS = (("lstm + tbptt 64", "charlm", "lstm", ("train.tbptt=64",)),)


def run_one(
    task: str, backbone: str, overrides: tuple[str, ...], *, minutes: float, out: Path
) -> dict[str, Any]:
    from favor.runs.config import load_run_config
    from favor.runs.evaluate import evaluate_run
    from favor.train.run import train_run

    config_name, _ = TASKS[task]
    # A wall-clock budget, so the step count is unknown in advance: constant learning rate after warmup
    # (as favor demo does), the same for every backbone.
    sets = [
        f"model.backbone={backbone}",
        f"train.max_minutes={minutes}",
        "train.max_steps=1000000",
        "train.schedule=constant",
        "train.checkpoint_interval=1000000",
        "train.cpu_threads=1",
        *overrides,
    ]
    config = load_run_config(REPO / "configs" / config_name, overrides=sets)
    run_dir = out / task / "-".join([backbone, *(o.split("=")[-1] for o in overrides)])
    shutil.rmtree(run_dir, ignore_errors=True)
    summary = train_run(config, out_dir=run_dir, quiet=True)
    metrics = evaluate_run(run_dir, device="cpu", threads=1)
    return {"summary": summary, "metrics": metrics, "run_dir": str(run_dir)}


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def table(task: str, rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Markdown table of one task: a row per backbone, then the baselines."""
    keys = TASKS[task][1]
    head = ["backbone", "params", "steps", "train s", *keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, result in rows:
        s, m = result["summary"], result["metrics"]
        cells = [
            label,
            f"{s['params']:,}",
            str(s["steps"]),
            f"{s['train_time_s']:.0f}",
            *(_fmt(m[k]) for k in keys),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    metrics = rows[0][1]["metrics"]
    baselines: dict[str, dict[str, Any]] = {}
    if task == "timeseries":
        baselines = {name.replace("_", "-"): b for name, b in metrics["baselines"].items()}
    elif task == "charlm":
        baselines = {
            "unigram": {
                "bits_per_char": metrics["unigram_bits_per_char"],
                "accuracy": metrics["unigram_accuracy"],
            }
        }
    else:
        baselines = {"majority class": {"accuracy": metrics["majority_accuracy"], "loss": ""}}
    for name, values in baselines.items():
        lines.append(
            "| " + " | ".join([f"*{name}*", "", "", "", *(_fmt(values.get(k, "")) for k in keys)]) + " |"
        )
    return lines


def sample(run_dir: str, *, prompt: str = "The ", tokens: int = 100) -> str:
    from favor.data.text import CharVocabulary
    from favor.models.generation import generate
    from favor.models.pretrained import load_pretrained

    vocab = CharVocabulary.load(Path(run_dir) / "vocab.json")
    model = load_pretrained(Path(run_dir) / "model")
    ids = torch.tensor([vocab.encode(prompt).tolist()])
    out = generate(
        model, ids, max_new_tokens=tokens, temperature=0.8, generator=torch.Generator().manual_seed(0)
    )
    return prompt + vocab.decode(out[0, ids.shape[1] :])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    parser.add_argument("--minutes", type=float, default=0.75, help="training budget per run")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-tasks"))
    parser.add_argument("--json", type=Path, default=None, help="also write every result to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.monotonic()
    results: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for task in args.tasks:
        jobs = [(b, b, ()) for b in args.backbones]
        jobs += [(label, b, o) for label, t, b, o in VARIANTS if t == task and b in args.backbones]
        for label, backbone, overrides in jobs:
            result = run_one(task, backbone, overrides, minutes=args.minutes, out=args.out)
            results.setdefault(task, []).append((label, result))
            print(
                f"{task} {label}: {json.dumps({k: result['metrics'].get(k) for k in TASKS[task][1]})}",
                flush=True,
            )
    print(
        f"\n{date.today()}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        "1 thread, "
        f"{args.minutes} min per run, {(time.monotonic() - start) / 60:.1f} min in all\n"
    )
    for task, rows in results.items():
        print(f"### {task}\n")
        print("\n".join(table(task, rows)) + "\n")
        if task == "charlm":
            for label, result in rows:
                print(f"- {label}: `{sample(result['run_dir'])!r}`")
            print()
    if args.json is not None:
        args.json.write_text(json.dumps({t: dict(r) for t, r in results.items()}, indent=1, default=str))


if __name__ == "__main__":
    main()
