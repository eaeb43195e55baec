"""What a data source is (`DataSource`), what it gives a run (`RunData`), and the registry of sources.

A source is one object, registered once under its name (``data.source`` in a run config). It says which
objectives (model tasks) it trains, which config section of its own it reads (``data.<name>``), which model
fields it decides (vocabulary size or input width, task, outputs, causality), how it cuts its data into
this rank's training and validation loaders, and how a finished run is evaluated on its held-out part.
The run config, the trainer and ``favor evaluate`` ask the registry, never a string comparison:

    source = get_source(config.data.source)
    data = source.build(config.data, objective="mlm", seed=0)
    metrics = source.evaluate(run_dir, config, model, ...)

Adding a source is one module under ``favor.runs.sources`` that defines a `DataSource` subclass and names
an instance ``SOURCE`` (the package imports its modules and registers each ``SOURCE``); a source shipped
outside favor is a ``favor.sources`` entry point naming such an instance.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from favor.data.arrays import IndexBatchLoader
from favor.data.bundled import sample_path
from favor.runs.validation import ConfigError

if TYPE_CHECKING:
    from favor.data.corpus import ProteinCorpus
    from favor.evaluate.baseline import UnigramBaseline

__all__ = [
    "DataSource",
    "RunData",
    "get_source",
    "index_loader",
    "register",
    "resolve_path",
    "source_names",
    "torch_threads",
]


@dataclass
class RunData:
    """What a run trains and validates on.

    train_loader: iterable of batch dicts with ``state_dict`` / ``load_state_dict`` (resumable).
    valid_loader: iterable of batch dicts with ``set_epoch``, or None.
    train_corpus: the training proteins (protein source only).
    unigram, unigram_log_probs: the unigram baseline of language models (protein, text).
    tokenizer: the alphabet or vocabulary of token inputs.
    files: ``{name: text}`` written into the run folder (``vocab.json``, ``timeseries.json``).
    value_scale: multiplies errors of normalised regression targets back into the data's units.
    mase_scale: the denominator of MASE (time series), in the data's units.
    """

    train_loader: Any
    valid_loader: Any | None
    train_corpus: ProteinCorpus | None = None
    unigram: UnigramBaseline | None = None
    unigram_log_probs: torch.Tensor | None = None
    tokenizer: Any = None
    files: dict[str, str] = field(default_factory=dict)
    value_scale: float = 1.0
    mase_scale: float | None = None


class DataSource:
    """One kind of data a run trains on. Subclasses set the class attributes and implement `build`,
    `model_fields` and `evaluate`; the rest have defaults that fit most sources.

    name: the value of ``data.source``.
    objectives: the ``train.objective`` values it trains; the first is the one a config usually names.
    section: the dataclass of its own config section ``data.<name>`` (None: it has none).
    reads_files: the kind of file ``data.train`` / ``data.valid`` name (protein: "FASTA"), or None: the
        source takes its data from its own section and only accepts ``data.valid: none``.
    takes_data_file: whether ``favor evaluate --data FILE`` scores a file of the user's (protein: FASTA,
        text: a text file) instead of the source's own held-out part.
    unknown_choices: the values of ``data.unknown`` it understands.
    pads_batches: whether batches are padded up to ``data.pad_to_multiple_of`` (variable-length items).
    packs: whether ``data.mode: packed`` applies (rows of several sequences kept apart by segment ids).
    streams: whether ``train.tbptt`` applies (consecutive windows of parallel streams).
    evaluate_options: the options of ``favor evaluate`` meant for this source (``concatenated``,
        ``max_length``, ``mask_seed`` for proteins; ``beam``, ``max_words`` for g2p); given for another
        source, they are refused before any work.
    """

    name: ClassVar[str]
    objectives: ClassVar[tuple[str, ...]]
    section: ClassVar[type | None] = None
    reads_files: ClassVar[str | None] = None
    takes_data_file: ClassVar[bool] = False
    unknown_choices: ClassVar[tuple[str, ...]] = ("error", "x", "skip")
    pads_batches: ClassVar[bool] = False
    packs: ClassVar[bool] = False
    streams: ClassVar[bool] = False
    evaluate_options: ClassVar[tuple[str, ...]] = ()

    def check(self, data: Any) -> None:
        """Source-specific checks of a DataConfig (called after the common ones); raise `ConfigError`."""

    def model_fields(self, data: Any, objective: str) -> tuple[dict[str, Any], str]:
        """Model fields that ``data`` and ``objective`` decide, and a name for them in errors."""
        raise NotImplementedError

    def build(
        self, data: Any, *, objective: str, seed: int, rank: int = 0, world_size: int = 1, tbptt: int = 0
    ) -> RunData:
        """This rank's training loader and validation loader."""
        raise NotImplementedError

    def validation_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Validation metrics of a run, with the source's own units added (text: bits per character)."""
        return metrics

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
        """Metrics of the run's final model (in ``model_dir``) on ``split`` of its data, or on ``data``
        (the caller has set the torch threads).

        ``options`` holds the command's source-specific options, each None when not given; the caller
        has refused those outside ``evaluate_options`` (`refuse_options`).
        """
        raise NotImplementedError

    def format_metrics(self, run_dir: Any, metrics: dict[str, Any]) -> list[str]:
        """Human-readable lines of `evaluate`'s metrics."""
        raise NotImplementedError

    def refuse_options(self, options: dict[str, Any]) -> None:
        """Raise if an option outside ``evaluate_options`` (one meant for another source) was given."""
        given = sorted(
            key
            for key, value in options.items()
            if value not in (None, False) and key not in self.evaluate_options
        )
        if given:
            flags = ", ".join("--" + key.replace("_", "-") for key in given)
            raise ValueError(f"{flags}: not an option of a {self.name} run")


_REGISTRY: dict[str, DataSource] = {}


def register(source: DataSource) -> DataSource:
    """Add ``source`` to the registry under ``source.name``; a second source of that name is an error."""
    if source.name in _REGISTRY and type(_REGISTRY[source.name]) is not type(source):
        raise ValueError(f"data source {source.name!r} is registered twice")
    _REGISTRY[source.name] = source
    return source


def _load_all() -> None:
    from favor.runs.sources import discover

    discover()


def source_names() -> tuple[str, ...]:
    """The registered sources, in registration order."""
    _load_all()
    return tuple(_REGISTRY)


def get_source(name: str) -> DataSource:
    """The source registered as ``name``; an unknown name is a `ConfigError` listing the known ones."""
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"data.source={name!r}: expected one of {', '.join(_REGISTRY)}") from None


def resolve_path(value: str | None, split: str) -> str | None:
    """A configured path; None means the bundled sample split, ``"none"`` no file at all."""
    if value is None:
        return str(sample_path(split))
    if value.strip().lower() == "none":
        return None
    return value


def index_loader(n, batch_size, make_batch, train, seed, rank, world_size) -> IndexBatchLoader:
    """Batches of item indices of a fixed-length source: training shuffled, with equal shards per rank."""
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


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Torch CPU threads set to ``count`` (None: unchanged) for a block, the caller's setting restored."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count or previous)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
