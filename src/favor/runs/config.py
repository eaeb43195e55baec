"""Run configuration: a YAML file with ``model:``, ``data:`` and ``train:`` sections (and an optional
``tune:`` search space), validated.

    run = load_run_config("configs/protein_mlm_tiny.yaml", overrides=["train.lr=3e-4"])
    run.model  # favor.models.ModelConfig (vocabulary or input width, task, outputs and causality filled in
               # from data.source and train.objective by the source; see favor.runs.sources)
    run.data   # DataConfig (data.source: a registered source, e.g. protein, timeseries, text, digits, g2p)
    run.train  # TrainConfig
    run.tune   # the hyper-parameter search space of favor tune (plain data; empty when absent)

Every key is checked: an unknown section or key raises `ConfigError` naming the key, the section and the
valid keys; a value of the wrong type names the key, the value and the expected type. ``--set`` overrides
(``section.key=value``, nested with more dots) are parsed with YAML typing, so ``train.lr=3e-4`` is a float
and ``data.valid=null`` is None.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from favor.models.config import RECURRENT_BACKBONES, ModelConfig
from favor.models.losses import SMOOTHABLE_TASKS, smoothable
from favor.runs.sources import all_objectives, get_source, source_names
from favor.runs.validation import (
    ConfigError,
    build_section,
    check_choice,
    check_fraction,
    check_min,
    parse_yaml,
    set_dotted,
)

__all__ = [
    "ConfigError",
    "DataConfig",
    "TrainConfig",
    "RunConfig",
    "load_run_config",
    "run_config_from_dict",
    "apply_overrides",
    "parse_yaml",
]

SECTIONS = ("model", "data", "train", "tune")


def _section_types() -> dict[str, type]:
    """The sources' own sections of the data section (``data.<source name>``), by name."""
    sources = (get_source(name) for name in source_names())
    return {source.name: source.section for source in sources if source.section is not None}


@dataclass
class DataConfig:
    """Where the sequences come from and how they are cut into batches."""

    # A registered source (favor.runs.sources): protein (FASTA), timeseries, text, digits or g2p.
    source: str = "protein"
    # FASTA files (plain or gzip); None means the bundled sample split of the same name. "none" as valid
    # disables validation (every source).
    train: str | None = None
    valid: str | None = None
    # single: one protein per item, cropped; concatenated: proteins joined by <eos> and cut into windows;
    # packed: several whole (cropped) proteins per row of max_length, kept apart by segment_ids (performer
    # and transformer backbones; validation scores one protein per row, as single does).
    mode: str = "single"
    # Tokens per item: the crop length (single) or the window (concatenated); for the other sources the
    # window of characters (text), the context in time steps (timeseries) or 64 pixels (digits).
    max_length: int = 256
    # Token budget per batch, padding included (the other sources: max_tokens // max_length items).
    max_tokens: int = 4096
    max_batch_size: int | None = None
    # Items sorted by length together (bucketing); None sorts the whole epoch.
    buffer_size: int | None = 1024
    pad_to_multiple_of: int | None = 8
    # Characters outside the alphabet: error (names record and position), x (map to X), skip (drop record);
    # for text: error or unk (map to <unk>).
    unknown: str = "error"
    mask_probability: float = 0.15
    # Cap on validation sequences (the first ones of the file), to bound evaluation cost.
    valid_max_sequences: int | None = None
    num_workers: int = 0
    # Shares of the data held out for validation and test (timeseries and text: the end of the series or
    # text, by time or position; digits: a stratified shuffle).
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    # The sources' own sections (data.timeseries, data.text, ...), read as attributes (data.text.corpus):
    # every registered source's section with its defaults, the run's source's as configured.
    sections: dict[str, Any] = field(default_factory=dict, repr=False, metadata={"internal": True})

    def __getattr__(self, name: str) -> Any:
        sections = self.__dict__.get("sections")
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __post_init__(self) -> None:
        check_choice("data", "source", self.source, source_names())
        check_choice("data", "mode", self.mode, ("single", "concatenated", "packed"))
        check_choice("data", "unknown", self.unknown, self.source_object.unknown_choices)
        check_min("data", "max_length", self.max_length, 3)
        check_min("data", "max_tokens", self.max_tokens, 1)
        for name in ("max_batch_size", "buffer_size", "pad_to_multiple_of", "valid_max_sequences"):
            check_min("data", name, getattr(self, name), 1)
        check_min("data", "num_workers", self.num_workers, 0)
        if not 0.0 < self.mask_probability < 1.0:
            raise ConfigError(f"data.mask_probability={self.mask_probability!r}: expected a float in (0, 1)")
        if self.max_tokens < self.max_length:
            raise ConfigError(
                f"data.max_tokens={self.max_tokens} is smaller than data.max_length={self.max_length}: "
                "a batch must hold at least one full item"
            )
        check_fraction("data", "valid_fraction", self.valid_fraction)
        check_fraction("data", "test_fraction", self.test_fraction)
        self._check_source()

    def _check_source(self) -> None:
        kinds = _section_types()
        for key, kind in kinds.items():
            self.sections.setdefault(key, kind())
        for key, value in self.sections.items():
            if key not in kinds:
                raise ConfigError(f"data.{key}: no registered source reads a section of that name")
            if not isinstance(value, kinds[key]):
                raise ConfigError(f"data.{key}: expected a {kinds[key].__name__}, got {value!r}")
            if self.source != key and value != kinds[key]():
                raise ConfigError(f"data.{key} is set but data.source={self.source!r}; it is read by {key}")
        source = self.source_object
        if not source.reads_files and (
            self.train is not None or (self.valid is not None and self.valid.strip().lower() != "none")
        ):
            readers = "; ".join(
                f"{get_source(n).reads_files} files for data.source={n}"
                for n in source_names()
                if get_source(n).reads_files
            )
            raise ConfigError(
                f"data.train / data.valid name files ({readers}); "
                f"data.source={self.source!r} "
                "takes its data from its own section (data.valid=none still disables validation)"
            )
        source.check(self)

    @property
    def source_object(self) -> Any:
        """The registered `DataSource` named by ``source``."""
        return get_source(self.source)

    @property
    def batch_size(self) -> int:
        """Items per batch of the fixed-length sources."""
        return max(1, self.max_tokens // self.max_length)

    @property
    def has_valid(self) -> bool:
        return self.valid is None or self.valid.strip().lower() != "none"


@dataclass
class TrainConfig:
    """Optimisation, schedule, evaluation, checkpointing and stopping."""

    # mlm or clm (protein, text); token_regression or sequence_regression (timeseries: many-to-many or
    # many-to-one forecasting); sequence_classification (digits). It is the model's task.
    objective: str = "mlm"
    lr: float = 1e-3
    warmup_steps: int = 100
    # Decay after warmup down to min_lr_ratio * lr at schedule_steps: cosine, linear or constant.
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    # Horizon of the decay; None means max_steps. Set it to train a long schedule in several shorter runs,
    # or when max_minutes will stop the run before max_steps (the run then prints a note saying so).
    schedule_steps: int | None = None
    # Training-time budget in minutes (evaluation and checkpoints excluded, summed over resumed invocations):
    # the decay spans it and the run stops when it is spent. Use it for CPU runs sized by time; it replaces
    # schedule_steps (max_minutes still caps one invocation, e.g. one session of a longer budget).
    budget_minutes: float | None = None
    # Initial weights: a model folder (config.json + model.safetensors) or a run folder (its model/ or its
    # latest checkpoint) of the same architecture. The optimizer and schedule start afresh (a warm restart).
    init_from: str | None = None
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    # Max global gradient norm; 0 disables clipping.
    grad_clip: float = 1.0
    # Label smoothing epsilon of the training loss (objectives scored by one class id: mlm, clm, seq2seq,
    # single-label sequence_classification); the logged training loss includes it, validation and favor
    # evaluate do not.
    label_smoothing: float = 0.0
    # Micro-batches per optimizer step.
    grad_accum: int = 1
    # Truncated backpropagation through time (0: off): recurrent backbones on the text source read
    # data.max_tokens // tbptt parallel streams tbptt characters at a time, carrying their hidden state
    # (detached) from one window to the next.
    tbptt: int = 0
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
        check_choice("train", "objective", self.objective, all_objectives())
        check_choice("train", "schedule", self.schedule, ("cosine", "linear", "constant"))
        for name in ("warmup_steps", "redraw_interval", "early_stopping_patience", "seed", "tbptt"):
            check_min("train", name, getattr(self, name), 0)
        for name in ("grad_accum", "eval_interval", "checkpoint_interval", "keep_checkpoints"):
            check_min("train", name, getattr(self, name), 1)
        for name in ("max_steps", "log_interval", "schedule_steps", "eval_max_batches", "cpu_threads"):
            check_min("train", name, getattr(self, name), 1)
        for name in ("lr", "eps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"train.{name}={getattr(self, name)!r}: expected a float > 0")
        for name in ("weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name}={getattr(self, name)!r}: expected a float >= 0")
        if isinstance(self.label_smoothing, bool) or not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"train.label_smoothing={self.label_smoothing!r}: expected a float in [0, 1)")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"train.min_lr_ratio={self.min_lr_ratio!r}: expected a float in [0, 1]")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"train.betas={list(self.betas)!r}: expected two floats in [0, 1)")
        if self.budget_minutes is not None:
            if isinstance(self.budget_minutes, bool) or self.budget_minutes <= 0:
                raise ConfigError(
                    f"train.budget_minutes={self.budget_minutes!r}: expected a float > 0 or null"
                )
            if self.schedule_steps is not None:
                raise ConfigError(
                    "train.budget_minutes and train.schedule_steps both set the decay's horizon; set one"
                )
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
    """A validated run: the model, data and training sections, and the search space of ``favor tune``."""

    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Dotted key -> {low, high, log?, step?} or a list of choices (see favor.runs.search_space).
    tune: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML/JSON-safe); ``run_config_from_dict(cfg.to_dict())`` gives an equal config."""
        data = dataclasses.asdict(self.data)
        # A source's own section appears only with that source (it must hold defaults otherwise).
        sections = data.pop("sections")
        if self.data.source in sections:
            own = sections[self.data.source]
            data[self.data.source] = {k: list(v) if isinstance(v, tuple) else v for k, v in own.items()}
        train = dataclasses.asdict(self.train)
        train["betas"] = list(self.train.betas)
        out = {"model": self.model.to_dict(), "data": data, "train": train}
        if self.tune:
            out["tune"] = _deep_copy(self.tune)
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _build_data(data: Any) -> DataConfig:
    """The data section: its own keys, and the sources' sections (``data.text``, ...) built by their type."""
    if not isinstance(data, dict):
        return build_section(DataConfig, data, "data")
    data, kinds = dict(data), _section_types()
    sections = {
        key: build_section(kinds[key], data.pop(key), f"data.{key}") for key in list(data) if key in kinds
    }
    return build_section(DataConfig, data, "data", internal={"sections": sections})


def _build_model(data: Any, train: TrainConfig, dataset: DataConfig) -> ModelConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"section 'model': expected a mapping of keys to values, got {data!r}")
    data = dict(data)
    # Filled in from the data source and objective; a conflicting explicit value is an error.
    source = dataset.source_object
    if train.objective not in source.objectives:
        raise ConfigError(
            f"train.objective={train.objective!r} does not fit data.source={source.name!r}: expected "
            f"{' or '.join(source.objectives)}"
        )
    derived, what = source.model_fields(dataset, train.objective)
    for key, value in derived.items():
        if key in data and data[key] != value:
            raise ConfigError(
                f"model.{key}={data[key]!r} conflicts with train.objective={train.objective!r} and {what}, "
                f"which need {key}={value!r}; remove the key to have it filled in"
            )
        data[key] = value
    if train.activation_checkpointing:
        data["gradient_checkpointing"] = True
    try:
        model = ModelConfig.from_dict(data)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"section 'model': {error}") from None
    if train.label_smoothing and (not smoothable(model.task) or model.multi_label):
        raise ConfigError(
            f"train.label_smoothing={train.label_smoothing!r} needs an objective scored by one class id "
            f"({', '.join(SMOOTHABLE_TASKS)}, not multi-label); got model.task={model.task!r}"
            + (" with multi_label" if model.multi_label else "")
        )
    return model


def _check_lengths(model: ModelConfig, dataset: DataConfig, train: TrainConfig) -> None:
    width = dataset.max_length
    source = dataset.source_object
    # Variable-length batches are padded up to a multiple; the other sources' items all have one length.
    if source.pads_batches and dataset.pad_to_multiple_of:
        width = -(-width // dataset.pad_to_multiple_of) * dataset.pad_to_multiple_of
    if model.max_length < width:
        raise ConfigError(
            f"model.max_length={model.max_length} is smaller than the longest batch, data.max_length="
            f"{dataset.max_length} rounded up to data.pad_to_multiple_of={dataset.pad_to_multiple_of}"
        )
    if dataset.mode == "packed" and (not source.packs or model.backbone not in ("performer", "transformer")):
        packers = " or ".join(n for n in source_names() if get_source(n).packs)
        raise ConfigError(
            f"data.mode=packed needs data.source={packers} and a performer or transformer backbone "
            f"(they keep the sequences of a row apart); got {dataset.source} and {model.backbone}"
        )
    if train.tbptt:
        if not source.streams or model.backbone not in RECURRENT_BACKBONES:
            streamers = " or ".join(n for n in source_names() if get_source(n).streams)
            raise ConfigError(
                f"train.tbptt={train.tbptt} needs data.source={streamers} and a recurrent backbone "
                f"({', '.join(RECURRENT_BACKBONES)}), got {dataset.source} and {model.backbone}"
            )
        if train.tbptt > model.max_length:
            raise ConfigError(f"train.tbptt={train.tbptt} is larger than model.max_length={model.max_length}")


def run_config_from_dict(data: Any, *, source: str = "config") -> RunConfig:
    """Validate plain data (parsed YAML) into a `RunConfig`; errors are prefixed with ``source``."""
    from favor.runs.search_space import parse_space

    try:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping with sections {', '.join(SECTIONS)}, got {data!r}")
        for section in data:
            if section not in SECTIONS:
                raise ConfigError(f"unknown section {section!r}; valid sections: {', '.join(SECTIONS)}")
        dataset = _build_data(data.get("data"))
        train = build_section(TrainConfig, data.get("train"), "train")
        model = _build_model(data.get("model"), train, dataset)
        _check_lengths(model, dataset, train)
        tune = data.get("tune") or {}
        parse_space(tune)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    return RunConfig(model=model, data=dataset, train=train, tune=_deep_copy(tune))


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
        set_dotted(out, keys, value, what=f"--set {item!r}")
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
