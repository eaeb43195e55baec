"""Time series for forecasting: real series shipped offline, chronological splits, train-only normalisation
and forecast windows.

    values, info = load_series("sunspots")             # float64 (T,), yearly, season 11
    split = chronological_split(len(values), valid_fraction=0.15, test_fraction=0.15)
    norm = Normalizer.fit(values[: split.train_end])   # statistics of the training part only
    origins = window_origins(split, "test", context=40, horizon=5)
    items = forecast_items(norm.transform(values), origins, context=40, horizon=5, per_position=True)

A window is addressed by its *origin* ``o``, the last observed step: its context is ``values[o-C+1 .. o]``
and its targets ``values[o+1 .. o+H]``. The three parts are contiguous in time (train, then valid, then
test); every target of a window lies in one part, so no target is shared by two parts. Training windows lie
wholly inside the training part (context and every target); validation and test windows may read the past
(earlier parts) as context, as a forecaster would. Per-position labels (``per_position=True``, many-to-many:
position t forecasts steps t+1..t+H) are NaN, i.e. missing, where a target falls outside the window's part.

The series come from statsmodels' bundled datasets (read from the installed wheel, no network).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SERIES",
    "ChronoSplit",
    "Normalizer",
    "chronological_split",
    "forecast_items",
    "load_series",
    "seasonal_scale",
    "window_origins",
]

# name -> (statsmodels dataset, default column, frequency, season used by seasonal naive and MASE)
SERIES: dict[str, tuple[str, str, str, int]] = {
    "sunspots": ("sunspots", "SUNACTIVITY", "yearly", 11),
    "co2": ("co2", "co2", "weekly", 52),
    "elnino": ("elnino", "sea_surface_temperature", "monthly", 12),
    "macrodata": ("macrodata", "infl", "quarterly", 4),
    "nile": ("nile", "volume", "yearly", 1),
}
PARTS = ("train", "valid", "test")


def load_series(name: str, *, column: str | None = None, path: str | os.PathLike | None = None):
    """A univariate float64 series ``(T,)`` and a dict describing it (name, column, frequency, season).

    ``path`` reads a CSV file with a header row instead (``column`` required); otherwise ``name`` is one
    of `SERIES`. Missing values (co2 has 59) are filled by linear interpolation in time.
    """
    if path is not None:
        return _load_csv(Path(path), column)
    if name not in SERIES:
        raise ValueError(f"time series {name!r}: choose one of {', '.join(SERIES)} (or give a CSV path)")
    module_name, default_column, frequency, season = SERIES[name]
    column = column or default_column
    import statsmodels.datasets as datasets

    frame = getattr(datasets, module_name).load_pandas().data
    if name == "elnino":
        if column != default_column:
            raise ValueError(f"time series elnino has one column, {default_column!r}; got {column!r}")
        # One row per year, one column per month: read row by row into one monthly series.
        values = frame.drop(columns="YEAR").to_numpy(dtype=np.float64).reshape(-1)
    else:
        if column not in frame.columns:
            raise ValueError(f"time series {name}: no column {column!r}; columns: {', '.join(frame.columns)}")
        values = frame[column].to_numpy(dtype=np.float64)
    info = {"name": name, "column": column, "frequency": frequency, "season": season}
    return _interpolate(values, name), info


def _load_csv(path: Path, column: str | None) -> tuple[np.ndarray, dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: time series CSV file not found")
    if column is None:
        raise ValueError(f"{path}: name the column to forecast (data.timeseries.column)")
    table = np.genfromtxt(path, delimiter=",", names=True, dtype=np.float64, encoding="utf-8")
    if table.dtype.names is None or column not in table.dtype.names:
        raise ValueError(f"{path}: no column {column!r}; columns: {', '.join(table.dtype.names or ())}")
    info = {"name": str(path), "column": column, "frequency": "unknown", "season": 1}
    return _interpolate(np.asarray(table[column], dtype=np.float64), str(path)), info


def _interpolate(values: np.ndarray, name: str) -> np.ndarray:
    missing = np.isnan(values)
    if missing.all():
        raise ValueError(f"time series {name}: every value is missing")
    if missing.any():
        steps = np.arange(len(values))
        values = values.copy()
        values[missing] = np.interp(steps[missing], steps[~missing], values[~missing])
    return values


@dataclass(frozen=True)
class ChronoSplit:
    """Contiguous parts: train ``[0, train_end)``, valid ``[train_end, valid_end)``, test from valid_end."""

    n: int
    train_end: int
    valid_end: int

    def bounds(self, part: str) -> tuple[int, int]:
        """``(start, end)`` of the steps whose values are ``part``'s targets."""
        if part not in PARTS:
            raise ValueError(f"part {part!r}: choose one of {', '.join(PARTS)}")
        return {"train": (0, self.train_end), "valid": (self.train_end, self.valid_end)}.get(
            part, (self.valid_end, self.n)
        )


def chronological_split(n: int, *, valid_fraction: float, test_fraction: float) -> ChronoSplit:
    """Cut ``n`` steps by time: the last ``test_fraction`` is test, the ``valid_fraction`` before it valid."""
    n_test = round(n * test_fraction)
    n_valid = round(n * valid_fraction)
    if n - n_test - n_valid < 2:
        raise ValueError(f"a series of {n} steps leaves no training part for these split fractions")
    return ChronoSplit(n=n, train_end=n - n_test - n_valid, valid_end=n - n_test)


@dataclass(frozen=True)
class Normalizer:
    """``(x - mean) / std``, its statistics fitted on the training part only."""

    mean: float
    std: float

    @classmethod
    def fit(cls, train_values: np.ndarray) -> Normalizer:
        std = float(np.std(train_values))
        # A constant training part: scale by 1 rather than divide by zero.
        return cls(mean=float(np.mean(train_values)), std=std if std > 0 else 1.0)

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return values * self.std + self.mean

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std}


def window_origins(
    split: ChronoSplit, part: str, *, context: int, horizon: int, stride: int = 1
) -> np.ndarray:
    """Origins ``o`` (last observed step) of ``part``'s windows, every ``stride`` steps.

    Every target ``o+1 .. o+H`` lies in ``part``; the context ``o-C+1 .. o`` starts at step 0 or later
    (and, for training, ends inside the training part, since its targets do).
    """
    start, end = split.bounds(part)
    first = max(context - 1, start - 1)
    last = end - horizon - 1
    if last < first:
        raise ValueError(
            f"the {part} part (steps {start}..{end - 1}) is too short for one window of context {context} "
            f"and horizon {horizon}; shorten them or change the split fractions"
        )
    return np.arange(first, last + 1, stride, dtype=np.int64)


def forecast_items(
    values: np.ndarray,
    origins: np.ndarray,
    *,
    context: int,
    horizon: int,
    per_position: bool,
    target_bounds: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """Model inputs and labels of the windows at ``origins``.

    Returns ``input_values`` float32 ``(N, C, 1)`` and ``labels``: ``(N, H)`` (many-to-one) or, with
    ``per_position``, ``(N, C, H)`` where ``labels[n, t]`` are the H steps after context position t. Labels
    whose step falls outside ``target_bounds`` (``[start, end)``, default: anywhere in the series) are NaN.
    """
    offsets = np.arange(-context + 1, 1)  # (C,)
    steps = origins[:, None] + offsets[None, :]  # (N, C)
    inputs = values[steps][..., None].astype(np.float32)  # (N, C, 1)
    ahead = np.arange(1, horizon + 1)  # (H,)
    start, end = target_bounds if target_bounds is not None else (0, len(values))
    if per_position:
        target_steps = steps[:, :, None] + ahead[None, None, :]  # (N, C, H)
    else:
        target_steps = origins[:, None] + ahead[None, :]  # (N, H)
    inside = (target_steps >= start) & (target_steps < end)
    labels = np.where(inside, values[np.clip(target_steps, 0, len(values) - 1)], np.nan)
    return {"input_values": inputs, "labels": labels.astype(np.float32), "origins": origins}


def seasonal_scale(train_values: np.ndarray, season: int) -> float:
    """In-sample MAE of the seasonal-naive forecast (naive when ``season == 1``) on the training part: the
    denominator of MASE."""
    if len(train_values) <= season:
        raise ValueError(
            f"the training part ({len(train_values)} steps) is not longer than the season {season}"
        )
    scale = float(np.mean(np.abs(train_values[season:] - train_values[:-season])))
    return scale if scale > 0 else 1.0
