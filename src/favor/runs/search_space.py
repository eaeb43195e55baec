"""The ``tune:`` section of a run config: a hyper-parameter search space for ``favor tune``.

Each key is the dotted path of a config value, each value either a list of choices or a range::

    tune:
      train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}   # float range (log scale)
      model.n_layers: {low: 1, high: 3}                   # integer range (both bounds integers)
      model.d_model: [32, 64]                             # categorical
      model.backbone: [performer, lstm]

A trial's values are applied like ``--set`` overrides, so every sampled config is validated as usual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from favor.runs.validation import ConfigError, set_dotted

__all__ = ["Param", "parse_space", "apply_params"]

_SECTIONS = ("model", "data", "train")
_RANGE_KEYS = ("low", "high", "log", "step")


@dataclass(frozen=True)
class Param:
    """One searched value: ``choices``, or a ``low``..``high`` range (integers when both bounds are)."""

    name: str
    choices: tuple[Any, ...] | None = None
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None

    @property
    def is_int(self) -> bool:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high))

    def suggest(self, trial: Any) -> Any:
        """Draw this value from an ``optuna.Trial``."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.is_int:
            return trial.suggest_int(self.name, self.low, self.high, log=self.log, step=self.step or 1)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log, step=self.step)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _parse_one(name: str, spec: Any) -> Param:
    where = f"tune.{name}"
    parts = name.split(".")
    if len(parts) < 2 or parts[0] not in _SECTIONS or not all(parts):
        raise ConfigError(f"{where}: expected a dotted key into {', '.join(_SECTIONS)}, e.g. train.lr")
    if isinstance(spec, list):
        if not spec or not all(_scalar(v) for v in spec):
            raise ConfigError(f"{where}={spec!r}: expected a non-empty list of plain values (choices)")
        return Param(name=name, choices=tuple(spec))
    if not isinstance(spec, dict):
        raise ConfigError(
            f"{where}={spec!r}: expected a list of choices or a mapping {{low, high, log, step}}"
        )
    unknown = sorted(set(spec) - set(_RANGE_KEYS))
    if unknown or "low" not in spec or "high" not in spec:
        raise ConfigError(
            f"{where}: a range needs low and high (optional log, step); got keys {sorted(spec)}"
        )
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    for key, value in (("low", low), ("high", high), ("step", step)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"{where}.{key}={value!r}: expected a number")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log={log!r}: expected true or false")
    if not low < high:
        raise ConfigError(f"{where}: low={low!r} must be smaller than high={high!r}")
    if log and (low <= 0 or step is not None):
        raise ConfigError(f"{where}: a log range needs low > 0 and no step")
    return Param(name=name, low=low, high=high, log=log, step=step)


def parse_space(data: Any) -> list[Param]:
    """Validate a ``tune:`` mapping into parameters (raises `ConfigError` naming the key)."""
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ConfigError(
            f"section 'tune': expected a mapping of dotted keys to ranges or choices, got {data!r}"
        )
    return [_parse_one(str(name), spec) for name, spec in data.items()]


def apply_params(config: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of plain config data with ``{dotted key: value}`` set (sections created as needed)."""
    from favor.runs.config import apply_overrides

    out = apply_overrides(config, [])
    for name, value in values.items():
        set_dotted(out, name.split("."), value, what=f"tune.{name}")
    return out
