"""Training and evaluation data of the non-protein sources: time series, text and digits.

Each builder returns a `favor.train.data.RunData` whose loaders yield the batch dicts the trainer consumes:
``input_ids`` (text) or ``input_values`` ``(B, L, 1)`` (timeseries, digits), ``padding_mask`` ``(B, L)``
and ``labels`` (already shifted for causal LM; NaN marks a missing regression target). The same functions
give `favor evaluate` its test batches, so training, validation and test are cut by one piece of code.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from favor.data.arrays import IndexBatchLoader
from favor.data.digits import load_digits_split
from favor.data.seeding import derive_seed
from favor.data.text import (
    VOCAB_FILE,
    CharVocabulary,
    StreamBatchLoader,
    load_text,
    split_text,
    window_batch,
)
from favor.data.timeseries import (
    ChronoSplit,
    Normalizer,
    chronological_split,
    forecast_items,
    load_series,
    seasonal_scale,
    window_origins,
)
from favor.evaluate.baseline import UnigramBaseline
from favor.train.config import DataConfig

if TYPE_CHECKING:
    from favor.train.data import RunData

__all__ = [
    "TIMESERIES_FILE",
    "PreparedSeries",
    "digits_loader",
    "prepare_series",
    "series_loader",
    "text_loader",
    "text_unigram_log_probs",
    "text_parts",
    "build_source_data",
]

TIMESERIES_FILE = "timeseries.json"


@dataclass
class PreparedSeries:
    """A series with its chronological split and the statistics of its training part."""

    values: np.ndarray
    normalized: np.ndarray
    info: dict[str, Any]
    split: ChronoSplit
    normalizer: Normalizer
    season: int
    # In-sample seasonal-naive MAE of the training part (MASE's denominator), in the series' units.
    mase_scale: float

    def describe(self) -> dict[str, Any]:
        """What a run records in ``timeseries.json``."""
        return {
            **self.info,
            "season": self.season,
            "steps": self.split.n,
            "train_end": self.split.train_end,
            "valid_end": self.split.valid_end,
            "normalizer": self.normalizer.to_dict(),
            "mase_scale": self.mase_scale,
        }


def prepare_series(config: DataConfig) -> PreparedSeries:
    ts = config.timeseries
    values, info = load_series(ts.dataset, column=ts.column, path=ts.path)
    split = chronological_split(
        len(values), valid_fraction=config.valid_fraction, test_fraction=config.test_fraction
    )
    train = values[: split.train_end]
    # Only the training part: validation and test statistics never reach the model or its inputs.
    normalizer = Normalizer.fit(train)
    season = ts.season if ts.season is not None else int(info["season"])
    return PreparedSeries(
        values=values,
        normalized=normalizer.transform(values),
        info=info,
        split=split,
        normalizer=normalizer,
        season=season,
        mase_scale=seasonal_scale(train, season),
    )


def series_loader(
    series: PreparedSeries,
    config: DataConfig,
    part: str,
    *,
    objective: str,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> IndexBatchLoader:
    """Batches of ``part``'s forecast windows (training: shuffled, every ``stride`` steps)."""
    train = part == "train"
    stride = config.timeseries.stride if train else 1
    horizon, context = config.timeseries.horizon, config.max_length
    origins = window_origins(series.split, part, context=context, horizon=horizon, stride=stride)
    items = forecast_items(
        series.normalized,
        origins,
        context=context,
        horizon=horizon,
        per_position=objective == "token_regression",
        target_bounds=series.split.bounds(part),
    )
    inputs, labels = torch.from_numpy(items["input_values"]), torch.from_numpy(items["labels"])

    def make_batch(indices: np.ndarray, _epoch: int) -> dict[str, Any]:
        index = torch.from_numpy(indices)
        return {
            "input_values": inputs[index],
            "padding_mask": torch.zeros(len(indices), context, dtype=torch.bool),
            "labels": labels[index],
            "origins": torch.from_numpy(origins[indices]),
        }

    return _index_loader(len(origins), config.batch_size, make_batch, train, seed, rank, world_size)


def _index_loader(n, batch_size, make_batch, train, seed, rank, world_size) -> IndexBatchLoader:
    return IndexBatchLoader(
        n_items=n,
        batch_size=batch_size,
        make_batch=make_batch,
        shuffle=train,
        drop_last=train and n >= batch_size * world_size,
        seed=seed,
        rank=rank,
        world_size=world_size,
    )


def text_parts(config: DataConfig) -> tuple[CharVocabulary, dict[str, np.ndarray]]:
    """The vocabulary and the token ids of the train, valid and test parts of the configured corpus."""
    vocab = CharVocabulary(kind=config.text.vocabulary)
    texts = split_text(
        load_text(config.text.corpus),
        valid_fraction=config.valid_fraction,
        test_fraction=config.test_fraction,
    )
    ids = {
        part: vocab.encode(text, unknown=config.unknown, name=f"{part} text")
        for part, text in zip(("train", "valid", "test"), texts, strict=True)
    }
    return vocab, ids


def text_loader(
    tokens: np.ndarray, config: DataConfig, *, train: bool, seed: int = 0, rank: int = 0, world_size: int = 1
) -> IndexBatchLoader:
    """Windows of ``data.max_length`` characters: training windows start at a random offset inside each
    window-sized slot (drawn per epoch), evaluation windows tile the text without overlap."""
    window = config.max_length
    if len(tokens) < 2:
        raise ValueError(
            "the text part is too short for one window; change data.valid_fraction/test_fraction"
        )
    if train:
        n = max(1, (len(tokens) - window - 1) // window + 1)
        limit = max(0, len(tokens) - window - 1)

        def starts(indices: np.ndarray, epoch: int) -> np.ndarray:
            jitter = np.random.default_rng(derive_seed(seed, epoch)).integers(0, window, size=n)
            return np.minimum(indices * window + jitter[indices], limit)
    else:
        n = -(-(len(tokens) - 1) // window)

        def starts(indices: np.ndarray, _epoch: int) -> np.ndarray:
            return indices * window

    def make_batch(indices: np.ndarray, epoch: int) -> dict[str, Any]:
        return window_batch(tokens, starts(indices, epoch), window=window)

    return _index_loader(n, config.batch_size, make_batch, train, seed, rank, world_size)


def text_unigram_log_probs(counts: list[int], vocab: CharVocabulary) -> torch.Tensor:
    """Add-one smoothed float64 log-probabilities over the vocabulary's symbols (``-inf`` at specials)."""
    counts_t = torch.tensor(counts, dtype=torch.float64)
    allowed = torch.zeros(vocab.vocab_size, dtype=torch.bool)
    allowed[list(vocab.symbol_ids)] = True
    smoothed = torch.where(allowed, counts_t + 1.0, torch.zeros_like(counts_t))
    return (smoothed / smoothed.sum()).log()


def digits_loader(
    config: DataConfig, part: str, *, seed: int = 0, rank: int = 0, world_size: int = 1
) -> IndexBatchLoader:
    values, labels = load_digits_split(
        part, valid_fraction=config.valid_fraction, test_fraction=config.test_fraction
    )
    inputs, targets = torch.from_numpy(values), torch.from_numpy(labels)

    def make_batch(indices: np.ndarray, _epoch: int) -> dict[str, Any]:
        index = torch.from_numpy(indices)
        return {
            "input_values": inputs[index],
            "padding_mask": torch.zeros(len(indices), values.shape[1], dtype=torch.bool),
            "labels": targets[index],
        }

    return _index_loader(len(values), config.batch_size, make_batch, part == "train", seed, rank, world_size)


def build_source_data(
    config: DataConfig, *, objective: str, seed: int, rank: int, world_size: int, tbptt: int = 0
) -> RunData:
    """`RunData` of a timeseries, text, digits or g2p run."""
    from favor.train.data import RunData

    shard = {"rank": rank, "world_size": world_size}
    if config.source == "g2p":
        from favor.train.g2p_source import build_g2p_data

        return build_g2p_data(config, seed=seed, **shard)
    if config.source == "timeseries":
        series = prepare_series(config)
        train = series_loader(series, config, "train", objective=objective, seed=seed, **shard)
        valid = (
            series_loader(series, config, "valid", objective=objective, **shard) if config.has_valid else None
        )
        files = {TIMESERIES_FILE: json.dumps(series.describe(), indent=1) + "\n"}
        return RunData(
            train_loader=train,
            valid_loader=valid,
            files=files,
            value_scale=series.normalizer.std,
            mase_scale=series.mase_scale,
        )
    if config.source == "text":
        vocab, ids = text_parts(config)
        if tbptt:
            if world_size > 1:
                raise ValueError("train.tbptt runs in one process (its streams are not sharded over ranks)")
            batch = max(1, config.max_tokens // tbptt)
            train = StreamBatchLoader(ids["train"], batch_size=batch, window=tbptt, seed=seed)
        else:
            train = text_loader(ids["train"], config, train=True, seed=seed, **shard)
        valid = text_loader(ids["valid"], config, train=False, **shard) if config.has_valid else None
        counts = np.bincount(ids["train"], minlength=vocab.vocab_size).tolist()
        return RunData(
            train_loader=train,
            valid_loader=valid,
            unigram=UnigramBaseline(tokens=list(vocab.tokens), counts=[int(c) for c in counts]),
            unigram_log_probs=text_unigram_log_probs(counts, vocab),
            tokenizer=vocab,
            files={VOCAB_FILE: json.dumps(vocab.to_dict()) + "\n"},
        )
    train = digits_loader(config, "train", seed=seed, **shard)
    valid = digits_loader(config, "valid", **shard) if config.has_valid else None
    return RunData(train_loader=train, valid_loader=valid)


def bits(nats: float) -> float:
    """Nats per character to bits per character."""
    return nats / math.log(2) if math.isfinite(nats) else float("nan")
