"""Forecast metrics and the classical baselines, scored on exactly the windows the model is scored on.

Every forecaster gets the same origins ``o`` (last observed step) and predicts ``values[o+1 .. o+H]``:

naive           the last observed value, repeated
seasonal_naive  the value one season earlier (``values[o + h - m * ceil(h / m)]``)
arima           ARIMA(p, d, q) fitted once on the training part; at each origin its fixed parameters filter
                ``values[: o+1]`` (no refit, nothing after the origin) and forecast H steps

MASE divides the MAE by the in-sample seasonal-naive MAE of the training part (`seasonal_scale`).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

__all__ = [
    "arima_forecast",
    "baseline_forecasts",
    "forecast_metrics",
    "naive_forecast",
    "seasonal_naive_forecast",
]


def forecast_metrics(predictions: np.ndarray, targets: np.ndarray, *, mase_scale: float) -> dict[str, float]:
    """MAE, RMSE and MASE over every forecast value ``(N, H)`` (in the data's units)."""
    errors = np.asarray(predictions, dtype=np.float64) - np.asarray(targets, dtype=np.float64)
    mae = float(np.mean(np.abs(errors)))
    return {"mae": mae, "rmse": math.sqrt(float(np.mean(errors**2))), "mase": mae / mase_scale}


def naive_forecast(values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    return np.repeat(values[origins][:, None], horizon, axis=1)


def seasonal_naive_forecast(values: np.ndarray, origins: np.ndarray, horizon: int, season: int) -> np.ndarray:
    ahead = np.arange(1, horizon + 1)  # (H,)
    back = season * np.ceil(ahead / season).astype(np.int64)  # (H,)
    steps = origins[:, None] + ahead[None, :] - back[None, :]  # (N, H), each <= origin
    return values[steps]


def arima_forecast(
    values: np.ndarray, origins: np.ndarray, horizon: int, *, train_end: int, order: tuple[int, int, int]
) -> np.ndarray:
    """ARIMA forecasts ``(N, H)`` from each origin, with parameters fitted on ``values[:train_end]`` only."""
    from statsmodels.tsa.arima.model import ARIMA

    # A constant for stationary models, a drift for once-differenced ones.
    trend = "c" if order[1] == 0 else ("t" if order[1] == 1 else "n")
    with warnings.catch_warnings():
        # Convergence and frequency warnings of tiny fits say nothing the metrics do not.
        warnings.simplefilter("ignore")
        fitted = ARIMA(values[:train_end], order=order, trend=trend).fit()
        out = np.empty((len(origins), horizon))
        for row, origin in enumerate(origins):
            out[row] = fitted.apply(values[: origin + 1]).forecast(horizon)
    return out


def baseline_forecasts(
    values: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    *,
    season: int,
    train_end: int,
    arima_order: tuple[int, int, int] | None,
) -> dict[str, np.ndarray]:
    """Every baseline's forecasts ``(N, H)`` for the given origins."""
    out = {
        "naive": naive_forecast(values, origins, horizon),
        "seasonal_naive": seasonal_naive_forecast(values, origins, horizon, season),
    }
    if arima_order is not None:
        out["arima"] = arima_forecast(values, origins, horizon, train_end=train_end, order=arima_order)
    return out
