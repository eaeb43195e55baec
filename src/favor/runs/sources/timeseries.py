"""The ``timeseries`` source: one real series, forecast many-to-many (``token_regression``: every position
forecasts the steps after it, causally) or many-to-one (``sequence_regression``: the window's end).

The series is split chronologically (train, valid, test); only the training part's statistics normalise it.
``favor evaluate`` forecasts from every test origin and reports MAE, RMSE and MASE in the data's units,
with the naive, seasonal-naive and ARIMA baselines on the very same windows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from favor.data.arrays import IndexBatchLoader
from favor.data.timeseries import (
    ChronoSplit,
    Normalizer,
    chronological_split,
    forecast_items,
    load_series,
    seasonal_scale,
    window_origins,
)
from favor.evaluate.forecast import baseline_forecasts, forecast_metrics
from favor.evaluate.task_metrics import TaskStats, final_forecast, model_logits, score_task
from favor.folders import load_model
from favor.runs.sources.base import DataSource, RunData, index_loader, register
from favor.runs.validation import ConfigError, check_min

__all__ = ["TIMESERIES_FILE", "PreparedSeries", "TimeSeriesConfig", "TimeSeriesSource", "prepare_series"]

TIMESERIES_FILE = "timeseries.json"


@dataclass
class TimeSeriesConfig:
    """``data.timeseries``: the series and its forecast windows (the context is data.max_length)."""

    # A statsmodels dataset read offline: sunspots, co2, elnino, macrodata or nile.
    dataset: str = "sunspots"
    # A CSV file with a header row instead of a bundled dataset (then column is required).
    path: str | None = None
    # Column to forecast; None: the dataset's usual one (sunspots SUNACTIVITY, macrodata infl, ...).
    column: str | None = None
    # Steps forecast from every origin (the multi-step horizon).
    horizon: int = 1
    # Steps between the origins of consecutive training windows (validation and test use every origin).
    stride: int = 1
    # Period of the seasonal-naive baseline and of MASE's scale; None: the dataset's (1 means naive).
    season: int | None = None
    # (p, d, q) of the ARIMA baseline, fitted on the training part only.
    arima_order: tuple[int, int, int] = (2, 0, 1)

    def __post_init__(self) -> None:
        self.arima_order = tuple(self.arima_order)
        for name in ("horizon", "stride", "season"):
            check_min("data.timeseries", name, getattr(self, name), 1)
        if any(v < 0 for v in self.arima_order):
            raise ConfigError(f"data.timeseries.arima_order={list(self.arima_order)}: expected integers >= 0")


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


def prepare_series(config: Any) -> PreparedSeries:
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
    config: Any,
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

    return index_loader(len(origins), config.batch_size, make_batch, train, seed, rank, world_size)


class TimeSeriesSource(DataSource):
    name = "timeseries"
    objectives = ("token_regression", "sequence_regression")
    section = TimeSeriesConfig

    def model_fields(self, data: Any, objective: str) -> tuple[dict[str, Any], str]:
        fields = {
            "vocab_size": None,
            "input_dim": 1,
            "task": objective,
            "num_labels": data.timeseries.horizon,
        }
        # Many-to-many: every position forecasts the steps after it, so it must not see them.
        if objective == "token_regression":
            fields["causal"] = True
        return fields, "the time-series source"

    def build(
        self, data: Any, *, objective: str, seed: int, rank: int = 0, world_size: int = 1, tbptt: int = 0
    ) -> RunData:
        shard = {"rank": rank, "world_size": world_size}
        series = prepare_series(data)
        train = series_loader(series, data, "train", objective=objective, seed=seed, **shard)
        valid = series_loader(series, data, "valid", objective=objective, **shard) if data.has_valid else None
        return RunData(
            train_loader=train,
            valid_loader=valid,
            files={TIMESERIES_FILE: json.dumps(series.describe(), indent=1) + "\n"},
            value_scale=series.normalizer.std,
            mase_scale=series.mase_scale,
        )

    @torch.no_grad()
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
        model, _ = load_model(model_dir, device=device)
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

    def format_metrics(self, run_dir: Any, metrics: dict[str, Any]) -> list[str]:
        head = (
            f"{run_dir} on {metrics['dataset']} ({metrics['split']}: {metrics['n_windows']} windows, context "
            f"{metrics['context']}, horizon {metrics['horizon']}, {metrics['task']})"
        )
        rows = [("model", metrics), *metrics["baselines"].items()]
        return [head] + [
            f"  {name:<15} MAE {m['mae']:9.4f}  RMSE {m['rmse']:9.4f}  MASE {m['mase']:7.4f}"
            for name, m in rows
        ]


SOURCE = register(TimeSeriesSource())
