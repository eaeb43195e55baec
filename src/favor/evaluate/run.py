"""Evaluate a trained run folder: protein runs on a FASTA file with the fixed evaluation masks, the other
sources on their own held-out part with their task's metrics (`favor.evaluate.task_run`).

The model of a protein run (``RUN_DIR/model``) is scored on the masked (MLM) or next (CLM) tokens, and the
unigram baseline of ``RUN_DIR/unigram.json`` (the training data's residue frequencies) on the very same
targets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from favor.evaluate.baseline import UNIGRAM_FILE, UnigramBaseline
from favor.evaluate.data import EVAL_MASK_SEED, build_eval_loader, load_corpus
from favor.evaluate.metrics import evaluate_lm
from favor.folders import load_model, load_served_model

__all__ = ["evaluate_run"]


def evaluate_run(
    run_dir: str | os.PathLike,
    *,
    data: str | os.PathLike | None = None,
    split: str = "test",
    concatenated: bool = False,
    max_batches: int | None = None,
    max_length: int | None = None,
    device: str = "auto",
    mask_seed: int = EVAL_MASK_SEED,
    threads: int | None = None,
    beam: int = 1,
    max_words: int | None = None,
) -> dict[str, Any]:
    """Metrics of the run's final model on ``data`` (see `favor.evaluate.metrics.LMStats.to_dict`), or for a
    timeseries, text or digits run on ``split`` of its source (see `favor.evaluate.task_run`).

    Args:
        run_dir: a folder written by ``favor train`` (config.yaml, unigram.json, model/), or a model folder
            with its config.yaml and unigram.json beside config.json (a bundled model's name, e.g.
            favor-protein-small, is one).
        data: FASTA file to evaluate on (protein runs; required), or a text file (text runs; optional).
        split: the held-out part of a timeseries, text or digits run: test or valid.
        concatenated: score windows of concatenated proteins instead of single (start-cropped) proteins.
        max_batches: stop after this many batches.
        max_length: tokens per item (default: the run's data.max_length).
        device: where the model runs: auto (cuda if available), cpu, cuda or cuda:N.
        mask_seed: seed of the evaluation masks (keep the default to compare models).
        threads: torch CPU threads while evaluating (default: the run's train.cpu_threads, else torch's).
        beam, max_words: g2p runs: beam width (1: greedy) and a cap on the decoded words.
    """
    # Imported here: favor.train imports this package's metrics.
    from favor.folders import BUNDLED_MODELS, resolve_model_dir
    from favor.train.config import load_run_config
    from favor.train.distributed import resolve_device
    from favor.train.run import CONFIG_FILE

    if not Path(run_dir).exists() and str(run_dir) not in BUNDLED_MODELS:
        raise FileNotFoundError(f"{run_dir}: run folder not found")
    model_dir = resolve_model_dir(run_dir)
    homes = [Path(run_dir), model_dir, model_dir.parent]
    home = next((h for h in homes if (h / CONFIG_FILE).is_file()), None)
    target = resolve_device(device)
    if home is None:
        # A bare model folder (e.g. converted from ESM): a masked or causal protein LM scored with defaults.
        served = load_served_model(model_dir, device=target)
        if served.alphabet is None or served.model.config.task not in ("mlm", "clm"):
            raise FileNotFoundError(
                f"{run_dir}: no {CONFIG_FILE} (the run's config) in the run or beside its model"
            )
        return _evaluate_model_folder(
            served, data, concatenated, max_batches, max_length, target, mask_seed, threads
        )
    run_dir = home
    config = load_run_config(run_dir / CONFIG_FILE)
    if config.data.source != "protein":
        model, _ = load_model(model_dir, device=target)
        decoding = {"beam": beam, "max_words": max_words}
        return _evaluate_other(run_dir, config, model, split, data, target, max_batches, threads, decoding)
    served = load_served_model(model_dir, device=target)
    model = served.model
    if data is None:
        raise ValueError(f"{run_dir}: a protein run is evaluated on a FASTA file; give --data FASTA")
    unigram = UnigramBaseline.load(run_dir / UNIGRAM_FILE)
    objective = config.train.objective
    length = max_length if max_length is not None else config.data.max_length
    if length > model.config.max_length:
        raise ValueError(f"max_length={length} exceeds the model's max_length={model.config.max_length}")
    corpus = load_corpus(data, unknown=config.data.unknown, what="evaluation", alphabet=served.alphabet)
    loader = build_eval_loader(
        corpus,
        objective=objective,
        mode="concatenated" if concatenated else "single",
        max_length=length,
        max_tokens=config.data.max_tokens,
        mask_probability=config.data.mask_probability,
        mask_seed=mask_seed,
        pad_to_multiple_of=config.data.pad_to_multiple_of,
    )
    threads = threads if threads is not None else config.train.cpu_threads
    stats = _score(model, loader, unigram.log_probs(objective, served.alphabet), target, max_batches, threads)
    return _result(stats, objective, data, concatenated, length, model)


def _score(model, loader, unigram_log_probs, device, max_batches, threads) -> Any:
    """`evaluate_lm` with ``threads`` torch threads for the call (the caller's setting restored after)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        return evaluate_lm(
            model, loader, unigram_log_probs=unigram_log_probs, device=device, max_batches=max_batches
        )
    finally:
        torch.set_num_threads(previous)


def _result(stats, objective, data, concatenated, length, model) -> dict[str, Any]:
    return {
        **stats.to_dict(objective),
        "data": str(data),
        "mode": "concatenated" if concatenated else "single",
        "max_length": length,
        "backbone": model.config.backbone,
    }


def _evaluate_model_folder(served, data, concatenated, max_batches, max_length, device, mask_seed, threads):
    """A model folder without its run: default data settings, and the unigram of the evaluated file itself
    (an upper bound on what a training-set unigram would score, stated in the result)."""
    if data is None:
        raise ValueError(f"{served.path}: a protein model is evaluated on a FASTA file; give --data FASTA")
    model, objective = served.model, served.model.config.task
    length = max_length if max_length is not None else min(model.config.max_length, 1024)
    corpus = load_corpus(data, unknown="x", what="evaluation", alphabet=served.alphabet)
    loader = build_eval_loader(
        corpus,
        objective=objective,
        mode="concatenated" if concatenated else "single",
        max_length=length,
        max_tokens=max(8192, length),
        mask_seed=mask_seed,
    )
    unigram = UnigramBaseline.from_corpus(corpus)
    stats = _score(model, loader, unigram.log_probs(objective, served.alphabet), device, max_batches, threads)
    result = _result(stats, objective, data, concatenated, length, model)
    result["unigram_from"] = "the evaluation data (no training run beside the model)"
    return result


def _evaluate_other(
    run_dir, config, model, split, data, device, max_batches, threads, decoding
) -> dict[str, Any]:
    from favor.evaluate.task_run import evaluate_source_run

    if split not in ("valid", "test"):
        raise ValueError(f"split={split!r}: choose test or valid")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or config.train.cpu_threads or previous)
    try:
        return evaluate_source_run(
            run_dir, config, model, split=split, data=data, device=device, max_batches=max_batches, **decoding
        )
    finally:
        torch.set_num_threads(previous)
