"""``favor finetune``: a pretrained model (or a comparison model) trained on one downstream task.

Models, all with the task's head (`favor.models.build_head`) and the pretrained model's context length:

    pretrained   the run's embedding + backbone weights copied into a model with the new head
    --from-scratch   the same architecture, randomly initialised
    --backbone lstm|gru|rnn|cnn|transformer|...   another backbone trained from scratch, with the same
                 d_model and the number of layers that brings its backbone closest to the pretrained
                 backbone's parameter count
    --backbone baseline   the task's non-neural baseline (`favor.tasks.baselines`), no training loop
    --probe      the pretrained embedding + backbone frozen; only the head trains
    --lora-rank R    LoRA adapters (PEFT) on the backbone's attention (or --lora-targets) plus the head;
                 merged into the weights of OUT/model, saved apart in OUT/adapter (`favor.tasks.lora`)
    --freeze-layers K    the embedding and the first K blocks frozen, the rest fine-tuned

Writes ``OUT/metrics.json`` (test and best validation metrics, data sizes, model, training summary) and,
for neural models, the fine-tuned model folder ``OUT/model`` (loadable by ``favor serve``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from favor.data import Alphabet
from favor.folders import ALPHABET_NAME, load_served_model
from favor.models import BACKBONES, ModelConfig, SequenceModel, build_backbone, save_pretrained
from favor.tasks.common import Encoded, Task, resolve_data_root
from favor.tasks.loop import TrainSettings, predict, train_model
from favor.tasks.registry import TASK_NAMES, get_task

__all__ = ["finetune", "finetune_cli", "write_json", "task_config", "similar_size_config", "build_task_model"]

METRICS_FILE = "metrics.json"
MODEL_DIR = "model"
RECURRENT_OR_CONV = ("rnn", "lstm", "gru", "cnn")


def task_config(base: ModelConfig, task: Task, **changes: Any) -> ModelConfig:
    """``base`` with the task's head (task, num_labels, multi_label) and any other ``changes``."""
    data = base.to_dict()
    data.update(task=task.model_task, num_labels=task.num_labels, multi_label=task.multi_label, **changes)
    return ModelConfig.from_dict(data)


def _backbone_params(config: ModelConfig) -> int:
    return sum(p.numel() for p in build_backbone(config).parameters())


def similar_size_config(base: ModelConfig, task: Task, backbone: str) -> ModelConfig:
    """A ``backbone`` model with ``base``'s width whose depth best matches ``base``'s backbone size.

    Recurrent and convolutional backbones get no position embedding (they see order by construction)
    and are bidirectional, as the task heads need; convolutional blocks use the ByteNet bottleneck
    ``d_ff = d_model // 2``. Backbone size is linear in depth, so two sizes give every depth's.
    """
    changes: dict[str, Any] = {"backbone": backbone}
    if backbone in RECURRENT_OR_CONV:
        changes.update(position="none", causal=False, d_model=base.d_model + base.d_model % 2)
    if backbone == "cnn":
        changes["d_ff"] = max(1, base.d_model // 2)
    one = _backbone_params(task_config(base, task, n_layers=1, **changes))
    per_layer = _backbone_params(task_config(base, task, n_layers=2, **changes)) - one
    n_layers = 1 + round((_backbone_params(base) - one) / per_layer)
    return task_config(base, task, n_layers=max(1, n_layers), **changes)


def build_task_model(
    pretrained: SequenceModel, task: Task, *, backbone: str | None, from_scratch: bool, seed: int
) -> tuple[SequenceModel, dict[str, Any]]:
    """The model to fine-tune and a description of it (init, backbone, parameter count)."""
    base = pretrained.config
    backbone = backbone or base.backbone
    if backbone not in BACKBONES:
        raise ValueError(f"--backbone {backbone!r}: choose one of {', '.join(BACKBONES)} or baseline")
    torch.manual_seed(seed)
    if backbone == base.backbone:
        model = SequenceModel(task_config(base, task))
    else:
        model = SequenceModel(similar_size_config(base, task, backbone))
    init = "scratch" if from_scratch or backbone != base.backbone else "pretrained"
    if init == "pretrained":
        source = {
            k: v for k, v in pretrained.state_dict().items() if k.startswith(("embedding.", "backbone."))
        }
        missing, unexpected = model.load_state_dict(source, strict=False)
        not_head = [k for k in missing if not k.startswith("head.")]
        if not_head or unexpected:
            raise ValueError(f"pretrained weights do not fit: missing {not_head}, unexpected {unexpected}")
    info = {
        "init": init,
        "backbone": model.config.backbone,
        "n_layers": model.config.n_layers,
        "d_model": model.config.d_model,
        "params": sum(p.numel() for p in model.parameters()),
        "backbone_params": sum(p.numel() for p in model.backbone.parameters()),
    }
    return model, info


def _load_splits(
    task: Task, root: Path, *, max_train: int | None, max_valid: int | None, max_test: int | None, seed: int
):
    return (
        task.load(root, "train", limit=max_train, seed=seed),
        task.load(root, "valid", limit=max_valid, seed=seed),
        task.load(root, "test", limit=max_test, seed=seed),
    )


def write_json(path: Path, data: dict[str, Any]) -> None:
    def finite(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [finite(v) for v in value]
        if isinstance(value, (float, np.floating)):
            return float(value) if np.isfinite(value) else None
        if isinstance(value, np.integer):
            return int(value)
        return value

    path.write_text(json.dumps(finite(data), indent=2) + "\n", encoding="utf-8")


def finetune(
    run_dir: str | os.PathLike,
    *,
    task: str,
    out: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    backbone: str | None = None,
    from_scratch: bool = False,
    settings: TrainSettings | None = None,
    max_train: int | None = None,
    max_valid: int | None = 1000,
    max_test: int | None = None,
    device: str = "cpu",
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune (or fit the baseline) on ``task`` and write ``OUT/metrics.json``; returns the metrics."""
    settings = settings or TrainSettings()
    the_task = get_task(task)
    root = resolve_data_root(data_root)
    served = load_served_model(run_dir, device="cpu")
    alphabet, context = served.alphabet, served.model.config.max_length
    started = time.perf_counter()
    train, valid, test = _load_splits(
        the_task, root, max_train=max_train, max_valid=max_valid, max_test=max_test, seed=settings.seed
    )
    if not train or not valid or not test:
        raise ValueError(
            f"task {task!r}: empty split under {root} "
            f"(train {len(train)}, valid {len(valid)}, test {len(test)})"
        )
    valid_examples = the_task.encode_all(valid, alphabet=alphabet, max_tokens=context)
    test_examples = the_task.encode_all(test, alphabet=alphabet, max_tokens=context)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "task": task,
        "description": the_task.description,
        "primary_metric": the_task.primary_metric,
        "pretrained": str(served.path),
        "data": {
            "root": str(root),
            "train": len(train),
            "valid": len(valid),
            "test": len(test),
            "context": context,
        },
    }
    if backbone == "baseline":
        baseline = the_task.make_baseline(alphabet)
        baseline.fit(the_task.encode_all(train, alphabet=alphabet, max_tokens=context), valid_examples)
        result["model"] = {"init": "none", "backbone": "baseline", "name": baseline.name}
        result["model"]["description"] = baseline.description
        result["valid"] = the_task.metrics(baseline.predict(valid_examples), valid_examples)
        result["test"] = the_task.metrics(baseline.predict(test_examples), test_examples)
    else:
        if settings.probe and (from_scratch or backbone not in (None, served.model.config.backbone)):
            raise ValueError(
                "--probe freezes the pretrained backbone: "
                "it cannot go with --from-scratch or another --backbone"
            )
        model, info = build_task_model(
            served.model, the_task, backbone=backbone, from_scratch=from_scratch, seed=settings.seed
        )
        result["model"] = {**info, "probe": settings.probe}
        _parameter_efficient(model, settings, result["model"], probe=settings.probe)
        model.to(_device(device))
        trained = _train_and_test(
            model, the_task, train, valid_examples, test_examples, alphabet=alphabet, context=context,
            settings=settings, echo=echo,
        )  # fmt: skip
        result.update(trained)
        if settings.lora_rank:
            from favor.tasks.lora import merge_lora, save_adapter

            save_adapter(model.cpu(), out / "adapter", base=str(served.path))
            merge_lora(model)
        save_pretrained(model.cpu(), out / MODEL_DIR)
        (out / MODEL_DIR / ALPHABET_NAME).write_text(json.dumps(alphabet.to_dict()) + "\n", encoding="utf-8")
    result["seconds"] = time.perf_counter() - started
    write_json(out / METRICS_FILE, result)
    return result


def _parameter_efficient(model: SequenceModel, settings: TrainSettings, info: dict, *, probe: bool) -> None:
    """Apply --lora-rank / --freeze-layers, recording what trains in ``info``."""
    from favor.tasks.lora import add_lora, freeze_layers, trainable_parameters

    if (settings.lora_rank or settings.freeze_layers) and probe:
        raise ValueError("--probe already freezes the whole backbone: drop --lora-rank / --freeze-layers")
    if settings.freeze_layers:
        freeze_layers(model, settings.freeze_layers)
        info["freeze_layers"] = settings.freeze_layers
    if settings.lora_rank:
        add_lora(model, rank=settings.lora_rank, targets=tuple(settings.lora_targets))
        info["lora"] = model.lora_settings
    info["trainable_parameters"] = (
        trainable_parameters(model) if not probe else sum(p.numel() for p in model.head.parameters())
    )
    info["parameters"] = sum(p.numel() for p in model.parameters())


def _train_and_test(
    model: SequenceModel,
    task: Task,
    train: list[Any],
    valid_examples: list[Encoded],
    test_examples: list[Encoded],
    *,
    alphabet: Alphabet,
    context: int,
    settings: TrainSettings,
    echo: Callable[[str], None] | None,
) -> dict[str, Any]:
    """Train ``model`` (early stopping restores the best weights), then score it on the test examples."""
    summary = train_model(
        model, task, train_records=train, valid_examples=valid_examples, alphabet=alphabet,
        context=context, settings=settings, echo=echo,
    )  # fmt: skip
    best = next(h for h in summary["history"] if h["step"] == summary["best_step"])
    scores = predict(model, test_examples, task=task, pad_id=alphabet.pad_id)
    return {
        "training": {**settings.to_dict(), **summary},
        "valid": {k: v for k, v in best.items() if k not in ("step", "train_loss", "minutes")},
        "test": task.metrics(scores, test_examples),
    }


def _device(name: str) -> torch.device:
    from favor.inference import resolve_device

    return resolve_device(name)


def finetune_cli(
    run_dir: Path,
    *,
    task: str,
    out: Path,
    data_root: Path | None = None,
    from_scratch: bool = False,
    backbone: str | None = None,
    probe: bool = False,
    lora_rank: int = 0,
    lora_targets: list[str] | None = None,
    freeze_layers: int = 0,
    max_steps: int = 1000,
    max_minutes: float | None = None,
    max_train: int | None = None,
    max_valid: int | None = 1000,
    max_test: int | None = None,
    lr: float | None = None,
    max_tokens: int = 4096,
    patience: int = 5,
    seed: int = 0,
    device: str = "auto",
    threads: int | None = None,
    quiet: bool = False,
) -> int:
    """Fine-tune a pretrained model on a downstream task (or train a comparison model / baseline).

    Tasks: ec, localization (accuracy, macro-F1), go_mf (Fmax, AUPRC), ss3, ss8 (Q3/Q8), contacts
    (top-L/5 long-range precision), interchain (top-min(La,Lb)/5 inter-chain precision). Writes
    OUT/metrics.json and OUT/model. See docs/downstream.md.

    Args:
        run_dir: the pretrained model: a 'favor train' run folder or a model folder.
        task: ec, localization, go_mf, ss3, ss8, contacts or interchain.
        out (DIR): folder for metrics.json and the fine-tuned model.
        data_root (DIR): the shared data folder (default: $FAVOR_SHARED_DATA, else ../shared/data).
        from_scratch: same architecture, randomly initialised (no pretrained weights).
        backbone: train this backbone from scratch at a similar size (lstm, gru, rnn, cnn, transformer,
            performer, linformer), or 'baseline' for the task's non-neural baseline.
        probe: freeze the pretrained embedding and backbone; train only the task head.
        lora_rank (R): train LoRA adapters of rank R (PEFT) and the head, the pretrained weights frozen;
            the adapters are merged into OUT/model and saved apart in OUT/adapter.
        lora_targets (NAME): layers of each block that get adapters: qkv, out, fc_in, fc_out; repeatable
            (default: qkv and out).
        freeze_layers (K): freeze the embedding and the first K backbone blocks.
        max_steps (N): optimizer steps (the learning-rate schedule spans them).
        max_minutes (M): stop training after this many minutes.
        max_train (N): train on a seeded random subset of N training records.
        max_valid (N): validate on a seeded subset of N validation records (early stopping); a number
            above the split size uses all of them.
        max_test (N): test on a seeded subset of N test records (default: all).
        lr: peak learning rate (default: 3e-4 for pretrained weights, 1e-3 from scratch).
        max_tokens (N): padded tokens per training batch.
        patience (N): validation passes without improvement before early stopping.
        seed: seed of subsets, windows, batch order and head initialisation.
        device: cpu, cuda, cuda:N or auto.
        threads (N): torch CPU threads.
        quiet: no progress lines.
    """
    if task not in TASK_NAMES:
        raise ValueError(f"--task {task!r}: choose one of {', '.join(TASK_NAMES)}")
    if max_steps < 1:
        raise ValueError(f"--max-steps {max_steps}: need at least 1 step")
    if threads is not None:
        torch.set_num_threads(threads)
    scratch = from_scratch or backbone not in (None, "baseline", _pretrained_backbone(run_dir))
    settings = TrainSettings(
        lr=lr if lr is not None else (1e-3 if scratch else 3e-4),
        max_steps=max_steps,
        max_minutes=max_minutes,
        patience=patience,
        max_tokens=max_tokens,
        probe=probe,
        lora_rank=lora_rank,
        lora_targets=tuple(lora_targets or ("qkv", "out")),
        freeze_layers=freeze_layers,
        seed=seed,
    )
    result = finetune(
        run_dir, task=task, out=out, data_root=data_root, backbone=backbone, from_scratch=from_scratch,
        settings=settings, max_train=max_train, max_valid=max_valid, max_test=max_test, device=device,
        echo=None if quiet else print,
    )  # fmt: skip
    test = result["test"]
    shown = ", ".join(f"{k} {v:.4f}" for k, v in test.items() if isinstance(v, float))
    print(f"{task} ({result['model']['backbone']}, {result['model']['init']}): test {shown}")
    print(f"metrics: {Path(out) / METRICS_FILE}")
    return 0


def _pretrained_backbone(run_dir: Path) -> str:
    from favor.folders import resolve_model_dir
    from favor.models import load_config

    return load_config(resolve_model_dir(run_dir)).backbone
