"""Run configuration: a YAML file with ``model:``, ``data:`` and ``train:`` sections, validated.

    run = load_run_config("configs/protein_mlm_tiny.yaml", overrides=["train.lr=3e-4"])
    run.model  # favor.models.ModelConfig (vocab_size, task and causal filled in from the data and objective)
    run.data   # DataConfig
    run.train  # TrainConfig

Every key is checked: an unknown section or key raises `ConfigError` naming the key, the section and the
valid keys; a value of the wrong type names the key, the value and the expected type. ``--set`` overrides
(``section.key=value``, nested with more dots) are parsed with YAML typing, so ``train.lr=3e-4`` is a float
and ``data.valid=null`` is None.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from favor.data.alphabet import Alphabet
from favor.models.config import ModelConfig

__all__ = [
    "ConfigError",
    "DataConfig",
    "TrainConfig",
    "RunConfig",
    "load_run_config",
    "run_config_from_dict",
    "apply_overrides",
]

SECTIONS = ("model", "data", "train")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loading plus YAML 1.2 floats: ``3e-4`` is a float, not the string PyYAML makes of it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str) -> Any:
    """Parse YAML text safely (no Python objects), with ``1e-3``-style floats."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


class ConfigError(ValueError):
    """An invalid run configuration; the message names the file (if any), section and key."""


@dataclass
class DataConfig:
    """Where the sequences come from and how they are cut into batches."""

    # FASTA files (plain or gzip); None means the bundled sample split of the same name.
    train: str | None = None
    # None: bundled sample valid split; "none" disables validation.
    valid: str | None = None
    # single: one protein per item, cropped; concatenated: proteins joined by <eos> and cut into windows.
    mode: str = "single"
    # Tokens per item: the crop length (single) or the window (concatenated).
    max_length: int = 256
    # Token budget per batch, padding included.
    max_tokens: int = 4096
    max_batch_size: int | None = None
    # Items sorted by length together (bucketing); None sorts the whole epoch.
    buffer_size: int | None = 1024
    pad_to_multiple_of: int | None = 8
    # Characters outside the alphabet: error (names record and position), x (map to X), skip (drop record).
    unknown: str = "error"
    mask_probability: float = 0.15
    # Cap on validation sequences (the first ones of the file), to bound evaluation cost.
    valid_max_sequences: int | None = None
    num_workers: int = 0

    def __post_init__(self) -> None:
        _check_choice("data", "mode", self.mode, ("single", "concatenated"))
        _check_choice("data", "unknown", self.unknown, ("error", "x", "skip"))
        _check_min("data", "max_length", self.max_length, 3)
        _check_min("data", "max_tokens", self.max_tokens, 1)
        for name in ("max_batch_size", "buffer_size", "pad_to_multiple_of", "valid_max_sequences"):
            _check_min("data", name, getattr(self, name), 1)
        _check_min("data", "num_workers", self.num_workers, 0)
        if not 0.0 < self.mask_probability < 1.0:
            raise ConfigError(f"data.mask_probability={self.mask_probability!r}: expected a float in (0, 1)")
        if self.max_tokens < self.max_length:
            raise ConfigError(
                f"data.max_tokens={self.max_tokens} is smaller than data.max_length={self.max_length}: "
                "a batch must hold at least one full item"
            )


@dataclass
class TrainConfig:
    """Optimisation, schedule, evaluation, checkpointing and stopping."""

    objective: str = "mlm"
    lr: float = 1e-3
    warmup_steps: int = 100
    # Decay after warmup down to min_lr_ratio * lr at schedule_steps: cosine, linear or constant.
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    # Horizon of the decay; None means max_steps. Set it to train a long schedule in several shorter runs.
    schedule_steps: int | None = None
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    # Max global gradient norm; 0 disables clipping.
    grad_clip: float = 1.0
    # Micro-batches per optimizer step.
    grad_accum: int = 1
    bf16: bool = False
    activation_checkpointing: bool = False
    # Redraw FAVOR+ features every N optimizer steps (0: never), from a generator seeded by (seed, step).
    redraw_interval: int = 0
    eval_interval: int = 200
    # Cap on validation batches per evaluation (None: the whole validation set).
    eval_max_batches: int | None = None
    checkpoint_interval: int = 500
    # Checkpoints kept on disk (older ones are deleted after a new one is written).
    keep_checkpoints: int = 2
    # Stop after this many evaluations without a lower validation loss (0: never stop early).
    early_stopping_patience: int = 0
    max_steps: int = 1000
    max_minutes: float | None = None
    seed: int = 0
    log_interval: int = 10
    # auto: cuda if available, else cpu.
    device: str = "auto"
    # torch intra-op CPU threads (null: torch's default, one per core). Tiny models run fastest with 1, and so
    # does anything on a machine whose cores are busy with other work (threads then wait on each other).
    cpu_threads: int | None = None

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        _check_choice("train", "objective", self.objective, ("mlm", "clm"))
        _check_choice("train", "schedule", self.schedule, ("cosine", "linear", "constant"))
        for name in ("warmup_steps", "redraw_interval", "early_stopping_patience", "seed"):
            _check_min("train", name, getattr(self, name), 0)
        for name in ("grad_accum", "eval_interval", "checkpoint_interval", "keep_checkpoints"):
            _check_min("train", name, getattr(self, name), 1)
        for name in ("max_steps", "log_interval", "schedule_steps", "eval_max_batches", "cpu_threads"):
            _check_min("train", name, getattr(self, name), 1)
        for name in ("lr", "eps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"train.{name}={getattr(self, name)!r}: expected a float > 0")
        for name in ("weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name}={getattr(self, name)!r}: expected a float >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"train.min_lr_ratio={self.min_lr_ratio!r}: expected a float in [0, 1]")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"train.betas={list(self.betas)!r}: expected two floats in [0, 1)")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError(f"train.max_minutes={self.max_minutes!r}: expected a float > 0 or null")
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"train.device={self.device!r}: expected auto, cpu, cuda or cuda:N")

    @property
    def horizon(self) -> int:
        """Steps over which the learning rate decays."""
        return self.schedule_steps if self.schedule_steps is not None else self.max_steps


@dataclass
class RunConfig:
    """A validated run: the model, data and training sections."""

    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML/JSON-safe); ``run_config_from_dict(cfg.to_dict())`` gives an equal config."""
        data = dataclasses.asdict(self.data)
        train = dataclasses.asdict(self.train)
        train["betas"] = list(self.train.betas)
        return {"model": self.model.to_dict(), "data": data, "train": train}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _check_choice(section: str, key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{section}.{key}={value!r}: expected one of {', '.join(choices)}")


def _check_min(section: str, key: str, value: Any, minimum: int) -> None:
    if value is not None and value < minimum:
        raise ConfigError(f"{section}.{key}={value!r}: expected an integer >= {minimum}")


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether ``value`` (parsed YAML) fits the dataclass field type ``hint``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        args = typing.get_args(hint)
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(args)
            and all(_type_ok(v, a) for v, a in zip(value, args, strict=True))
        )
    return True


def _wants_float(hint: Any, value: Any) -> bool:
    """An int given where the field is a float (or float | None): stored as a float."""
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    return hint is float or float in typing.get_args(hint)


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _build_section(cls: type, data: Any, section: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"section {section!r}: expected a mapping of keys to values, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    for key, value in data.items():
        if key not in hints:
            raise ConfigError(f"unknown key {key!r} in section {section!r}; valid keys: {', '.join(known)}")
        if not _type_ok(value, hints[key]):
            got, expected = type(value).__name__, _type_name(hints[key])
            raise ConfigError(f"{section}.{key}={value!r}: wrong type {got}, expected {expected}")
    values = {k: (float(v) if _wants_float(hints[k], v) else v) for k, v in data.items()}
    return cls(**values)


def _build_model(data: Any, train: TrainConfig, alphabet: Alphabet) -> ModelConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"section 'model': expected a mapping of keys to values, got {data!r}")
    data = dict(data)
    causal = train.objective == "clm"
    # Filled in from the alphabet and objective; a conflicting explicit value is an error.
    derived = {"vocab_size": alphabet.vocab_size, "task": train.objective, "causal": causal}
    for key, value in derived.items():
        if key in data and data[key] != value:
            raise ConfigError(
                f"model.{key}={data[key]!r} conflicts with train.objective={train.objective!r} and the "
                f"protein alphabet, which need {key}={value!r}; remove the key to have it filled in"
            )
        data[key] = value
    if train.activation_checkpointing:
        data["gradient_checkpointing"] = True
    try:
        return ModelConfig.from_dict(data)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"section 'model': {error}") from None


def run_config_from_dict(data: Any, *, source: str = "config") -> RunConfig:
    """Validate plain data (parsed YAML) into a `RunConfig`; errors are prefixed with ``source``."""
    try:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping with sections {', '.join(SECTIONS)}, got {data!r}")
        for section in data:
            if section not in SECTIONS:
                raise ConfigError(f"unknown section {section!r}; valid sections: {', '.join(SECTIONS)}")
        dataset = _build_section(DataConfig, data.get("data"), "data")
        train = _build_section(TrainConfig, data.get("train"), "train")
        model = _build_model(data.get("model"), train, Alphabet.protein())
        width = dataset.max_length
        if dataset.pad_to_multiple_of:
            width = -(-width // dataset.pad_to_multiple_of) * dataset.pad_to_multiple_of
        if model.max_length < width:
            raise ConfigError(
                f"model.max_length={model.max_length} is smaller than the longest batch, data.max_length="
                f"{dataset.max_length} rounded up to data.pad_to_multiple_of={dataset.pad_to_multiple_of}"
            )
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    return RunConfig(model=model, data=dataset, train=train)


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (values parsed as YAML) to a copy of ``data``."""
    out = _deep_copy(data)
    for item in overrides:
        path, sep, text = item.partition("=")
        keys = path.strip().split(".")
        if not sep or len(keys) < 2 or not all(keys):
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. train.lr=3e-4")
        try:
            value = parse_yaml(text) if text.strip() else None
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({error})") from None
        node = out
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {key!r} is not a section")
            node = child
        node[keys[-1]] = value
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def read_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file; a missing file or a syntax error names the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        return parse_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None


def load_run_config(
    path: str | os.PathLike,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    values: dict[str, Any] | None = None,
) -> RunConfig:
    """Read, override and validate a run config YAML file.

    Args:
        overrides: ``section.key=value`` strings, values parsed as YAML.
        values: ``{"section.key": value}`` set after ``overrides``; None values are left out (command-line
            options that were not given). Paths become strings.
    """
    data = read_yaml(path)
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with sections {', '.join(SECTIONS)}")
    data = apply_overrides(data or {}, overrides)
    for dotted, value in (values or {}).items():
        if value is None:
            continue
        section, key = dotted.split(".", 1)
        if not isinstance(data.setdefault(section, {}), dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping")
        data[section][key] = str(value) if isinstance(value, os.PathLike) else value
    return run_config_from_dict(data, source=str(path))
