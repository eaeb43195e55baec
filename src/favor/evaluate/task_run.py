"""Evaluate a run of the time-series, text or digits source on its held-out part, with its task's metrics.

timeseries  MAE, RMSE, MASE of the forecasts made at every test origin (data units), and the same metrics
            of the naive, seasonal-naive and ARIMA baselines on the very same windows
text        bits per character, perplexity and next-character accuracy, and the unigram baseline's
digits      accuracy and cross-entropy, and the majority-class baseline's accuracy
g2p         phoneme and word error rates of decoded pronunciations (greedy or beam search), decoding speed

The data is cut by the code that cut it for training (`favor.train.sources`), from the run's config.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from favor.data.text import VOCAB_FILE, CharVocabulary, load_text
from favor.evaluate.baseline import UNIGRAM_FILE, UnigramBaseline
from favor.evaluate.forecast import baseline_forecasts, forecast_metrics
from favor.evaluate.metrics import evaluate_lm
from favor.evaluate.task_metrics import TaskStats, evaluate_task, final_forecast, model_logits, score_task
from favor.models.model import SequenceModel

__all__ = ["evaluate_source_run"]


def evaluate_source_run(
    run_dir: Path,
    config: Any,
    model: SequenceModel,
    *,
    split: str = "test",
    data: str | os.PathLike | None = None,
    device: torch.device,
    max_batches: int | None = None,
    beam: int = 1,
    max_words: int | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` (the run's final model) on ``split`` of its source (or a text file ``data``).

    ``beam`` and ``max_words`` are for g2p runs: the beam width (1: greedy) and a cap on the words decoded
    (evenly spaced over the part in alphabetical order: word i * n // max_words for i < max_words).
    """
    source = config.data.source
    if data is not None and source != "text":
        raise ValueError(
            f"--data is for protein FASTA or text files; a {source} run reads its own {split} part"
        )
    if source != "g2p" and (beam != 1 or max_words is not None):
        raise ValueError(f"--beam and --max-words are for g2p runs, not a {source} run")
    if source == "g2p":
        metrics = _evaluate_g2p(config, model, split=split, beam=beam, max_words=max_words)
    elif source == "timeseries":
        metrics = _evaluate_series(config, model, split=split, device=device, max_batches=max_batches)
    elif source == "text":
        metrics = _evaluate_text(
            run_dir, config, model, split=split, data=data, device=device, max_batches=max_batches
        )
    else:
        metrics = _evaluate_digits(config, model, split=split, device=device, max_batches=max_batches)
    return {
        "source": source,
        "task": config.model.task,
        "split": split,
        **metrics,
        "backbone": config.model.backbone,
    }


@torch.no_grad()
def _evaluate_series(config: Any, model: SequenceModel, *, split: str, device, max_batches) -> dict[str, Any]:
    from favor.train.sources import prepare_series, series_loader

    series = prepare_series(config.data)
    task, horizon = config.model.task, config.data.timeseries.horizon
    loader = series_loader(series, config.data, split, objective=task)
    stats, origins, forecasts = TaskStats(), [], []
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        logits = model_logits(model, batch, device).float().cpu()
        stats.add(score_task(task, logits, batch["labels"]))
        forecast, _ = final_forecast(task, logits, batch["labels"])
        forecasts.append(series.normalizer.inverse(forecast.double().numpy()))
        origins.append(batch["origins"].numpy())
    origins_a, predictions = np.concatenate(origins), np.concatenate(forecasts)
    # Targets straight from the raw series: the metrics never pass through the normaliser.
    targets = series.values[origins_a[:, None] + np.arange(1, horizon + 1)[None, :]]
    baselines = baseline_forecasts(
        series.values,
        origins_a,
        horizon,
        season=series.season,
        train_end=series.split.train_end,
        arima_order=config.data.timeseries.arima_order,
    )
    return {
        **forecast_metrics(predictions, targets, mase_scale=series.mase_scale),
        "loss": stats.to_dict(task)["loss"],
        "dataset": series.info["name"],
        "column": series.info["column"],
        "context": config.data.max_length,
        "horizon": horizon,
        "season": series.season,
        "n_windows": len(origins_a),
        "first_origin": int(origins_a[0]),
        "baselines": {
            name: forecast_metrics(pred, targets, mase_scale=series.mase_scale)
            for name, pred in baselines.items()
        },
    }


def _evaluate_text(
    run_dir: Path, config: Any, model, *, split: str, data, device, max_batches
) -> dict[str, Any]:
    from favor.train.sources import text_loader, text_parts, text_unigram_log_probs

    vocab = CharVocabulary.load(run_dir / VOCAB_FILE)
    if data is not None:
        tokens = vocab.encode(load_text(data), unknown=config.data.unknown, name=str(data))
    else:
        _, parts = text_parts(config.data)
        tokens = parts[split]
    unigram = UnigramBaseline.load(run_dir / UNIGRAM_FILE)
    loader = text_loader(tokens, config.data, train=False)
    stats = evaluate_lm(
        model,
        loader,
        unigram_log_probs=text_unigram_log_probs(unigram.counts, vocab),
        device=device,
        max_batches=max_batches,
    )
    metrics = stats.to_dict("clm")
    return {
        "bits_per_char": metrics["loss"] / math.log(2),
        "perplexity": metrics["perplexity"],
        "accuracy": metrics["masked_accuracy"],
        "loss": metrics["loss"],
        "n_chars": metrics["n_masked"],
        "unigram_bits_per_char": metrics["unigram_loss"] / math.log(2),
        "unigram_accuracy": metrics["unigram_accuracy"],
        "vocabulary": vocab.kind,
        "data": str(data) if data is not None else f"{config.data.text.corpus or 'bundled corpus'} ({split})",
    }


def _evaluate_digits(config: Any, model, *, split: str, device, max_batches) -> dict[str, Any]:
    from favor.train.sources import digits_loader

    stats = evaluate_task(
        model,
        digits_loader(config.data, split),
        task="sequence_classification",
        device=device,
        max_batches=max_batches,
    )
    metrics = stats.to_dict("sequence_classification")
    return {
        "accuracy": metrics["accuracy"],
        "loss": metrics["loss"],
        "n_sequences": metrics["n_sequences"],
        "majority_accuracy": _majority_accuracy(config.data, split),
    }


def _evaluate_g2p(config: Any, model, *, split: str, beam: int, max_words: int | None) -> dict[str, Any]:
    from favor.data.g2p import G2PVocabulary
    from favor.evaluate.g2p import score_g2p, transcribe
    from favor.train.g2p_source import g2p_words

    words = g2p_words(config.data, split)
    total = len(words)
    if max_words is not None:
        if max_words < 1:
            raise ValueError(f"--max-words must be >= 1, got {max_words}")
        words = [words[i * total // max_words] for i in range(min(max_words, total))]
    result = transcribe(model, G2PVocabulary(), [w for w, _ in words], beam=beam)
    scores = score_g2p(result.phonemes, [prons for _, prons in words])
    return {
        **scores.to_dict(),
        "n_words_in_split": total,
        "beam": beam,
        "convention": "closest pronunciation: a word is right if it matches any of its pronunciations; "
        "PER = edits to the closest one / its length, summed over words",
        "decode_seconds": result.seconds,
        "tokens_per_second": result.tokens_per_second,
    }


def _majority_accuracy(data: Any, split: str) -> float:
    """Accuracy of always predicting the most frequent training class."""
    from favor.data.digits import load_digits_split

    fractions = {"valid_fraction": data.valid_fraction, "test_fraction": data.test_fraction}
    _, train = load_digits_split("train", **fractions)
    _, labels = load_digits_split(split, **fractions)
    return float(np.mean(labels == np.bincount(train).argmax()))


def format_metrics(run_dir: Any, metrics: dict[str, Any]) -> list[str]:
    """Human-readable lines of `evaluate_source_run`'s metrics."""
    source, split = metrics["source"], metrics["split"]
    if source == "timeseries":
        head = (
            f"{run_dir} on {metrics['dataset']} ({split}: {metrics['n_windows']} windows, context "
            f"{metrics['context']}, horizon {metrics['horizon']}, {metrics['task']})"
        )
        rows = [("model", metrics), *metrics["baselines"].items()]
        return [head] + [
            f"  {name:<15} MAE {m['mae']:9.4f}  RMSE {m['rmse']:9.4f}  MASE {m['mase']:7.4f}"
            for name, m in rows
        ]
    if source == "text":
        return [
            f"{run_dir} on {metrics['data']} ({metrics['n_chars']:,} characters)",
            f"  model    bits/char {metrics['bits_per_char']:.4f}  accuracy {metrics['accuracy']:.4f}",
            f"  unigram  bits/char {metrics['unigram_bits_per_char']:.4f}  "
            f"accuracy {metrics['unigram_accuracy']:.4f}",
        ]
    if source == "g2p":
        decoding = "greedy" if metrics["beam"] == 1 else f"beam {metrics['beam']}"
        return [
            f"{run_dir} on CMUdict ({split}: {metrics['n_words']:,} of {metrics['n_words_in_split']:,} "
            f"words, {decoding})",
            f"  PER {metrics['phoneme_error_rate']:.4f}  WER {metrics['word_error_rate']:.4f}  "
            f"{metrics['tokens_per_second']:.0f} tokens/s",
        ]
    return [
        f"{run_dir} on digits ({split}: {metrics['n_sequences']} sequences)",
        f"  model     accuracy {metrics['accuracy']:.4f}  loss {metrics['loss']:.4f}",
        f"  majority  accuracy {metrics['majority_accuracy']:.4f}",
    ]
