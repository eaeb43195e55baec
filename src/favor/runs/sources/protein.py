"""The ``protein`` source: FASTA proteins for masked or causal language models over the protein alphabet.

Training: a resumable `ProteinBatchLoader` over a token-budget sampler sharded by rank (each rank gets
disjoint batches), single proteins cropped to ``data.max_length``, concatenated windows or packed rows.
Validation and ``favor evaluate`` use the fixed evaluation masks of `favor.evaluate.data`, so the losses of
different runs are comparable, and score the unigram baseline of the training residue frequencies
(``unigram.json``) on the very same targets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from favor.data.alphabet import Alphabet
from favor.data.batching import TokenBudgetBatchSampler
from favor.data.loader import ProteinBatchLoader
from favor.evaluate.baseline import UNIGRAM_FILE, UnigramBaseline
from favor.evaluate.data import EVAL_MASK_SEED, build_dataset, build_eval_loader, load_corpus, padded_length
from favor.evaluate.metrics import evaluate_lm
from favor.folders import ServedModel, load_served_model
from favor.runs.sources.base import DataSource, RunData, register, resolve_path

__all__ = ["ProteinSource", "evaluate_protein_model"]


class ProteinSource(DataSource):
    takes_data_file = True
    name = "protein"
    objectives = ("mlm", "clm")
    reads_files = "FASTA"
    pads_batches = True
    packs = True
    evaluate_options = ("concatenated", "max_length", "mask_seed")

    def model_fields(self, data: Any, objective: str) -> tuple[dict[str, Any], str]:
        fields = {
            "vocab_size": Alphabet.protein().vocab_size,
            "task": objective,
            "causal": objective == "clm",
        }
        return fields, "the protein alphabet"

    def build(
        self, data: Any, *, objective: str, seed: int, rank: int = 0, world_size: int = 1, tbptt: int = 0
    ) -> RunData:
        train_path = resolve_path(data.train, "train")
        if train_path is None:
            raise ValueError("data.train: a training FASTA file is required")
        corpus = load_corpus(train_path, unknown=data.unknown, what="training")
        dataset = build_dataset(corpus, mode=data.mode, max_length=data.max_length, train=True, seed=seed)
        multiple = data.pad_to_multiple_of
        sampler = TokenBudgetBatchSampler(
            dataset.item_lengths(),
            max_tokens=max(data.max_tokens, padded_length(data.max_length, multiple)),
            max_batch_size=data.max_batch_size,
            buffer_size=data.buffer_size,
            pad_to_multiple_of=multiple,
            shuffle=True,
            seed=seed,
            rank=rank,
            world_size=world_size,
        )
        if len(sampler) == 0:
            raise ValueError(
                f"{train_path}: too few batches ({len(sampler.global_batches(0))}) for {world_size} ranks; "
                "lower data.max_tokens or use fewer processes"
            )
        loader = ProteinBatchLoader(
            dataset,
            batch_sampler=sampler,
            objective=objective,
            probability=data.mask_probability,
            mask_seed=seed,
            pad_to_multiple_of=multiple,
            num_workers=data.num_workers,
        )
        valid_loader = None
        valid_path = resolve_path(data.valid, "valid")
        if valid_path is not None:
            valid = load_corpus(
                valid_path, unknown=data.unknown, max_records=data.valid_max_sequences, what="validation"
            )
            valid_loader = build_eval_loader(
                valid,
                objective=objective,
                mode=data.mode,
                max_length=data.max_length,
                max_tokens=data.max_tokens,
                mask_probability=data.mask_probability,
                pad_to_multiple_of=multiple,
                rank=rank,
                world_size=world_size,
            )
        unigram = UnigramBaseline.from_corpus(corpus)
        return RunData(
            train_loader=loader,
            valid_loader=valid_loader,
            train_corpus=corpus,
            unigram=unigram,
            unigram_log_probs=unigram.log_probs(objective, corpus.alphabet),
            tokenizer=corpus.alphabet,
        )

    def evaluate(
        self,
        run_dir: Path,
        config: Any,
        model_dir: Path,
        *,
        split: str,
        data: str | os.PathLike | None,
        device: torch.device,
        max_batches: int | None,
        options: dict[str, Any],
    ) -> dict[str, Any]:
        if data is None:
            raise ValueError(f"{run_dir}: a protein run is evaluated on a FASTA file; give --data FASTA")
        served = load_served_model(model_dir, device=device)
        model = served.model
        unigram = UnigramBaseline.load(run_dir / UNIGRAM_FILE)
        objective = config.train.objective
        length = _option(options, "max_length", config.data.max_length)
        if length > model.config.max_length:
            raise ValueError(f"max_length={length} exceeds the model's max_length={model.config.max_length}")
        concatenated = bool(options.get("concatenated"))
        corpus = load_corpus(data, unknown=config.data.unknown, what="evaluation", alphabet=served.alphabet)
        loader = build_eval_loader(
            corpus,
            objective=objective,
            mode="concatenated" if concatenated else "single",
            max_length=length,
            max_tokens=config.data.max_tokens,
            mask_probability=config.data.mask_probability,
            mask_seed=_mask_seed(options),
            pad_to_multiple_of=config.data.pad_to_multiple_of,
        )
        log_probs = unigram.log_probs(objective, served.alphabet)
        stats = evaluate_lm(
            model, loader, unigram_log_probs=log_probs, device=device, max_batches=max_batches
        )
        return _result(stats, objective, data, concatenated, length, model)

    def format_metrics(self, run_dir: Any, metrics: dict[str, Any]) -> list[str]:
        what = "masked" if metrics["objective"] == "mlm" else "next-token"
        unigram = (
            f"accuracy {metrics['unigram_accuracy']:.4f}  perplexity {metrics['unigram_perplexity']:.3f}"
        )
        return [
            f"{run_dir} on {metrics['data']} ({metrics['objective']}, {metrics['n_masked']:,} {what} tokens)",
            f"  model    accuracy {metrics['masked_accuracy']:.4f}  perplexity {metrics['perplexity']:.3f}",
            f"  unigram  {unigram}",
        ]


def evaluate_protein_model(
    served: ServedModel,
    data: str | os.PathLike | None,
    *,
    device: torch.device,
    max_batches: int | None = None,
    options: dict[str, Any],
) -> dict[str, Any]:
    """A model folder without its run (e.g. converted from ESM): default data settings, and the unigram of
    the evaluated file itself (an upper bound on what a training-set unigram would score, stated in the
    result)."""
    if data is None:
        raise ValueError(f"{served.path}: a protein model is evaluated on a FASTA file; give --data FASTA")
    model, objective = served.model, served.model.config.task
    length = _option(options, "max_length", min(model.config.max_length, 1024))
    concatenated = bool(options.get("concatenated"))
    corpus = load_corpus(data, unknown="x", what="evaluation", alphabet=served.alphabet)
    loader = build_eval_loader(
        corpus,
        objective=objective,
        mode="concatenated" if concatenated else "single",
        max_length=length,
        max_tokens=max(8192, length),
        mask_seed=_mask_seed(options),
    )
    unigram = UnigramBaseline.from_corpus(corpus)
    log_probs = unigram.log_probs(objective, served.alphabet)
    stats = evaluate_lm(model, loader, unigram_log_probs=log_probs, device=device, max_batches=max_batches)
    result = _result(stats, objective, data, concatenated, length, model)
    result["unigram_from"] = "the evaluation data (no training run beside the model)"
    return result


def _option(options: dict[str, Any], key: str, default: Any) -> Any:
    value = options.get(key)
    return default if value is None else value


def _mask_seed(options: dict[str, Any]) -> int:
    return _option(options, "mask_seed", EVAL_MASK_SEED)


def _result(stats, objective, data, concatenated, length, model) -> dict[str, Any]:
    return {
        **stats.to_dict(objective),
        "data": str(data),
        "mode": "concatenated" if concatenated else "single",
        "max_length": length,
        "backbone": model.config.backbone,
    }


SOURCE = register(ProteinSource())
