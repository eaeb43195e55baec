"""Time-series data: chronological splits, windows, train-only normalisation, no leakage, baselines."""

from __future__ import annotations

import numpy as np
import pytest

from favor.data.timeseries import (
    Normalizer,
    chronological_split,
    forecast_items,
    load_series,
    seasonal_scale,
    window_origins,
)
from favor.evaluate.forecast import (
    arima_forecast,
    baseline_forecasts,
    forecast_metrics,
    naive_forecast,
    seasonal_naive_forecast,
)
from favor.runs.config import run_config_from_dict
from favor.runs.sources.timeseries import prepare_series, series_loader


def test_split_is_chronological_and_contiguous():
    split = chronological_split(100, valid_fraction=0.15, test_fraction=0.2)
    assert (split.train_end, split.valid_end, split.n) == (65, 80, 100)
    assert split.bounds("train") == (0, 65) and split.bounds("valid") == (65, 80)
    assert split.bounds("test") == (80, 100)
    with pytest.raises(ValueError, match="no training part"):
        chronological_split(10, valid_fraction=0.5, test_fraction=0.45)


@pytest.mark.parametrize("horizon", [1, 3])
def test_targets_of_each_part_stay_in_that_part(horizon):
    split = chronological_split(120, valid_fraction=0.2, test_fraction=0.2)
    seen = {}
    for part in ("train", "valid", "test"):
        origins = window_origins(split, part, context=10, horizon=horizon)
        start, end = split.bounds(part)
        targets = origins[:, None] + np.arange(1, horizon + 1)
        assert targets.min() >= start and targets.max() < end
        assert (origins - 9).min() >= 0
        seen[part] = set(targets.ravel().tolist())
        # Every step of the part is a target of some window (beyond the first context).
        assert max(seen[part]) == end - 1
    assert not seen["train"] & seen["valid"] and not seen["valid"] & seen["test"]
    # Training windows read nothing after the training part: context and targets.
    train = window_origins(split, "train", context=10, horizon=horizon)
    assert train.max() + horizon < split.train_end


def test_window_shapes_and_values():
    values = np.arange(50, dtype=np.float64)
    origins = np.array([9, 20])
    many = forecast_items(values, origins, context=10, horizon=3, per_position=True)
    assert many["input_values"].shape == (2, 10, 1) and many["labels"].shape == (2, 10, 3)
    assert many["input_values"][0, :, 0].tolist() == list(range(0, 10))
    # Position t forecasts the three steps after it.
    assert many["labels"][0, 4].tolist() == [5, 6, 7]
    assert many["labels"][1, -1].tolist() == [21, 22, 23]
    one = forecast_items(values, origins, context=10, horizon=3, per_position=False)
    assert one["labels"].shape == (2, 3) and one["labels"][1].tolist() == [21, 22, 23]
    bounded = forecast_items(
        values, origins, context=10, horizon=3, per_position=True, target_bounds=(15, 50)
    )
    # Targets before the part are missing (NaN), never shared with the earlier part.
    assert np.isnan(bounded["labels"][1, 0]).all() and bounded["labels"][1, -1].tolist() == [21, 22, 23]


def _series_config(**timeseries) -> dict:
    return {
        "model": {"backbone": "lstm", "d_model": 8, "n_layers": 1, "max_length": 12},
        "data": {
            "source": "timeseries",
            "max_length": 12,
            "max_tokens": 96,
            "valid_fraction": 0.2,
            "test_fraction": 0.2,
            "timeseries": {"horizon": 2, **timeseries},
        },
        "train": {"objective": "token_regression"},
    }


def test_normalisation_uses_the_training_part_only(tmp_path):
    # The test part has a mean 1,000 times larger: it must not reach the statistics or the training batches.
    values = np.round(np.concatenate([np.sin(np.arange(60)), 1000.0 + np.sin(np.arange(40))]), 6)
    path = tmp_path / "series.csv"
    path.write_text("value\n" + "\n".join(f"{v:.6f}" for v in values) + "\n")
    config = run_config_from_dict(_series_config(path=str(path), column="value")).data
    series = prepare_series(config)
    assert series.split.train_end == 60
    train = values[:60]
    expected = Normalizer(mean=float(train.mean()), std=float(train.std()))
    assert series.normalizer.mean == pytest.approx(expected.mean) and series.normalizer.std == pytest.approx(
        expected.std
    )
    assert series.mase_scale == pytest.approx(np.mean(np.abs(np.diff(train))))
    loader = series_loader(series, config, "train", objective="token_regression", seed=0)
    for _ in range(2):
        for batch in loader:
            # Normalised training data stays near unit scale: no value of the shifted test part.
            assert batch["input_values"].abs().max() < 5 and np.nanmax(np.abs(batch["labels"].numpy())) < 5
            assert int(batch["origins"].max()) + 2 < 60


def test_bundled_series_load_offline():
    pytest.importorskip("statsmodels")
    for name, length in (("sunspots", 309), ("co2", 2284), ("elnino", 732), ("macrodata", 203)):
        values, info = load_series(name)
        assert values.shape == (length,) and np.isfinite(values).all(), name
        assert info["season"] >= 1
    with pytest.raises(ValueError, match="choose one of"):
        load_series("nope")


def test_baselines_on_the_same_windows():
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    origins = np.array([3, 4])
    assert naive_forecast(values, origins, 2).tolist() == [[4, 4], [5, 5]]
    # Season 3: step o+h is forecast by the value one season before it.
    assert seasonal_naive_forecast(values, origins, 4, 3).tolist() == [[2, 3, 4, 2], [3, 4, 5, 3]]
    metrics = forecast_metrics(np.array([[1.0, 3.0]]), np.array([[2.0, 2.0]]), mase_scale=0.5)
    assert metrics == {"mae": 1.0, "rmse": 1.0, "mase": 2.0}
    assert seasonal_scale(values, 1) == 1.0


def test_arima_sees_nothing_after_its_origin():
    pytest.importorskip("statsmodels")
    rng = np.random.default_rng(0)
    values = np.cumsum(rng.normal(size=80)) * 0.1 + np.sin(np.arange(80))
    origins = np.array([59, 65])
    forecasts = arima_forecast(values, origins, 3, train_end=50, order=(1, 0, 0))
    changed = values.copy()
    changed[66:] += 100.0
    assert np.allclose(arima_forecast(changed, origins, 3, train_end=50, order=(1, 0, 0)), forecasts)
    every = baseline_forecasts(values, origins, 3, season=1, train_end=50, arima_order=(1, 0, 0))
    assert set(every) == {"naive", "seasonal_naive", "arima"}
    assert all(f.shape == (2, 3) for f in every.values())
