"""Downstream tasks: a pretrained Performer vs the same model from random init vs LSTM / CNN vs a baseline.

For every task, each model is trained with the same bounded budget (``--max-minutes`` of training per
model, at most ``--max-steps`` steps, ``--max-train`` training records, early stopping on the validation
metric) and scored on the same test examples; the non-neural baseline is fitted on the same training
records. Prints the table of test metrics (primary metric first) and writes OUT/results.json plus each
run's folder (OUT/<task>/<model>/metrics.json and the model).

    python benchmarks/downstream.py RUN_DIR                                  # all tasks, all models
    python benchmarks/downstream.py RUN_DIR --tasks ss3 contacts --models pretrained baseline
    python benchmarks/downstream.py RUN_DIR --max-minutes 3 --max-train 4000 --threads 2
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from datetime import date
from pathlib import Path

import torch

from favor.tasks.finetune import finetune, write_json
from favor.tasks.loop import TrainSettings
from favor.tasks.registry import TASK_NAMES, get_task

# name -> (backbone, from_scratch, probe)
MODELS = {
    "pretrained": (None, False, False),
    "probe": (None, False, True),
    # The pretrained model with LoRA adapters (rank 8, attention qkv and out) and the head training.
    "lora": (None, False, False),
    "scratch": (None, True, False),
    "lstm": ("lstm", True, False),
    "cnn": ("cnn", True, False),
    "baseline": ("baseline", False, False),
}
DEFAULT_MODELS = ("pretrained", "scratch", "lstm", "cnn", "baseline")
SECONDARY = {
    "ec": "accuracy",
    "localization": "accuracy",
    "go_mf": "auprc_micro",
    "ss3": None,
    "ss8": "q3",
    "contacts": "long_range_density",
    "interchain": "contact_density",
}


def run_one(args: argparse.Namespace, task: str, model: str) -> dict:
    backbone, from_scratch, probe = MODELS[model]
    settings = TrainSettings(
        lr=args.lr if args.lr is not None else (1e-3 if from_scratch else 3e-4),
        max_steps=args.max_steps,
        max_minutes=args.max_minutes,
        patience=args.patience,
        max_tokens=args.max_tokens,
        probe=probe,
        lora_rank=8 if model == "lora" else 0,
        seed=args.seed,
    )
    return finetune(
        args.run_dir,
        task=task,
        out=args.out / task / model,
        data_root=args.data_root,
        backbone=backbone,
        from_scratch=from_scratch,
        settings=settings,
        max_train=args.max_train,
        max_valid=args.max_valid,
        max_test=args.max_test,
        device=args.device,
        echo=None,
    )


def _cell(result: dict | None, key: str | None) -> str:
    if result is None or key is None:
        return "-"
    value = result["test"].get(key)
    return "-" if value is None else f"{value:.3f}"


def print_table(results: dict[str, dict[str, dict]], models: list[str]) -> None:
    print("| task | test metric | " + " | ".join(models) + " |")
    print("|---|---|" + "---|" * len(models))
    for task, by_model in results.items():
        primary = get_task(task).primary_metric
        for key in (primary, SECONDARY.get(task)):
            if key is None:
                continue
            cells = [_cell(by_model.get(m), key) for m in models]
            print(f"| {task} | {key} | " + " | ".join(cells) + " |")
    print()
    print("| task | " + " | ".join(f"{m} steps / params" for m in models) + " |")
    print("|---|" + "---|" * len(models))
    for task, by_model in results.items():
        cells = []
        for m in models:
            r = by_model.get(m)
            if r is None or "training" not in r:
                cells.append("-")
            else:
                cells.append(f"{r['training']['steps']} / {r['model']['params']:,}")
        print(f"| {task} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path, help="pretrained run folder (or model folder)")
    parser.add_argument("--tasks", nargs="+", default=list(TASK_NAMES), choices=TASK_NAMES)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=list(MODELS))
    parser.add_argument("--out", type=Path, default=Path("runs/downstream"))
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--max-minutes", type=float, default=3.0, help="training minutes per model")
    parser.add_argument("--max-steps", type=int, default=2000)
    parser.add_argument("--max-train", type=int, default=4000)
    parser.add_argument("--max-valid", type=int, default=500)
    parser.add_argument("--max-test", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--lr", type=float, default=None, help="default: 3e-4 pretrained, 1e-3 from scratch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/downstream.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    results: dict[str, dict[str, dict]] = {}
    start = time.perf_counter()
    for task in args.tasks:
        results[task] = {}
        for model in args.models:
            t0 = time.perf_counter()
            results[task][model] = run_one(args, task, model)
            primary = results[task][model]["primary_metric"]
            value = results[task][model]["test"][primary]
            print(
                f"{task:<12} {model:<10} test {primary} {value:.4f} ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {
        "date": date.today().isoformat(),
        "command": command,
        "torch": torch.__version__,
        "threads": args.threads,
        "minutes": (time.perf_counter() - start) / 60,
        "results": results,
    }
    write_json(args.out / "results.json", summary)
    print()
    print(f"command: {command}")
    print_table(results, args.models)
    return 0


if __name__ == "__main__":
    sys.exit(main())
