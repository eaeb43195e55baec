"""Evaluate a trained run folder with its source's metrics: protein runs on a FASTA file with the fixed
evaluation masks, the other sources on their own held-out part (see each module of `favor.runs.sources`).

A bare model folder (no run config beside it, e.g. converted from ESM) is scored as a masked or causal
protein LM with default data settings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from favor.folders import BUNDLED_MODELS, load_served_model, resolve_model_dir
from favor.inference import resolve_device
from favor.runs.config import load_run_config
from favor.runs.folder import CONFIG_FILE
from favor.runs.sources import get_source
from favor.runs.sources.base import torch_threads
from favor.runs.sources.protein import evaluate_protein_model

__all__ = ["evaluate_run", "format_metrics"]

SPLITS = ("valid", "test")


def evaluate_run(
    run_dir: str | os.PathLike,
    *,
    data: str | os.PathLike | None = None,
    split: str = "test",
    concatenated: bool = False,
    max_batches: int | None = None,
    max_length: int | None = None,
    device: str = "auto",
    mask_seed: int | None = None,
    threads: int | None = None,
    beam: int = 1,
    max_words: int | None = None,
) -> dict[str, Any]:
    """Metrics of the run's final model: a protein run's on ``data`` (see
    `favor.evaluate.metrics.LMStats.to_dict`), another source's on ``split`` of its own data.

    Args:
        run_dir: a folder written by ``favor train`` (config.yaml, unigram.json, model/), or a model folder
            with its config.yaml and unigram.json beside config.json (a bundled model's name, e.g.
            favor-protein-small, is one).
        data: FASTA file to evaluate on (protein runs; required), or a text file (text runs; optional).
        split: the held-out part of a timeseries, text, digits or g2p run: test or valid.
        concatenated: protein runs: score windows of concatenated proteins instead of single (start-cropped)
            proteins.
        max_batches: stop after this many batches.
        max_length: protein runs: tokens per item (default: the run's data.max_length).
        device: where the model runs: auto (cuda if available), cpu, cuda or cuda:N.
        mask_seed: protein runs: seed of the evaluation masks (None: the fixed seed models are compared on).
        threads: torch CPU threads while evaluating (default: the run's train.cpu_threads, else torch's).
        beam, max_words: g2p runs: beam width (1: greedy) and a cap on the decoded words.
    """
    if not Path(run_dir).exists() and str(run_dir) not in BUNDLED_MODELS:
        raise FileNotFoundError(f"{run_dir}: run folder not found")
    model_dir = resolve_model_dir(run_dir)
    homes = [Path(run_dir), model_dir, model_dir.parent]
    home = next((h for h in homes if (h / CONFIG_FILE).is_file()), None)
    target = resolve_device(device)
    options = {
        "concatenated": concatenated,
        "max_length": max_length,
        "mask_seed": mask_seed,
        "beam": None if beam == 1 else beam,
        "max_words": max_words,
    }
    if home is None:
        served = load_served_model(model_dir, device=target)
        if served.alphabet is None or served.model.config.task not in ("mlm", "clm"):
            raise FileNotFoundError(
                f"{run_dir}: no {CONFIG_FILE} (the run's config) in the run or beside its model"
            )
        get_source("protein").refuse_options(options)
        with torch_threads(threads):
            return evaluate_protein_model(
                served, data, device=target, max_batches=max_batches, options=options
            )
    config = load_run_config(home / CONFIG_FILE)
    source = get_source(config.data.source)
    if not source.reads_files and split not in SPLITS:
        raise ValueError(f"split={split!r}: choose {' or '.join(SPLITS)}")
    if data is not None and not source.takes_data_file:
        raise ValueError(f"--data is not for a {source.name} run: it reads its own {split} part")
    source.refuse_options(options)
    with torch_threads(threads or config.train.cpu_threads):
        metrics = source.evaluate(
            home,
            config,
            model_dir,
            split=split,
            data=data,
            device=target,
            max_batches=max_batches,
            options=options,
        )
    if source.reads_files:
        return metrics
    return {
        "source": source.name,
        "task": config.model.task,
        "split": split,
        **metrics,
        "backbone": config.model.backbone,
    }


def format_metrics(run_dir: Any, metrics: dict[str, Any]) -> list[str]:
    """Human-readable lines of `evaluate_run`'s metrics."""
    return get_source(metrics.get("source", "protein")).format_metrics(run_dir, metrics)
