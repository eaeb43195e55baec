"""The data sources of a run (``data.source``) and what each derives for the model.

protein     FASTA proteins (favor.data): masked or causal LM over the protein alphabet
timeseries  one real series (favor.data.timeseries): forecasting, many-to-many (token_regression, causal)
            or many-to-one (sequence_regression)
text        characters or bytes of an English corpus (favor.data.text): causal LM
digits      8x8 digit images read pixel by pixel (favor.data.digits): sequence_classification
g2p         words of the CMU Pronouncing Dictionary and their phonemes (favor.data.g2p): seq2seq

The model's vocabulary or input width, task head, number of outputs and causality follow from the source
and ``train.objective``; `derived_model_fields` lists them so the config can fill them in (and reject a
conflicting explicit value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from favor.train.validation import ConfigError, check_choice, check_min

__all__ = ["SOURCES", "SOURCE_OBJECTIVES", "TextConfig", "TimeSeriesConfig", "derived_model_fields"]

SOURCES = ("protein", "timeseries", "text", "digits", "g2p")
# The objectives (model tasks) each source can train; the first is the one to write in a config.
SOURCE_OBJECTIVES = {
    "protein": ("mlm", "clm"),
    "timeseries": ("token_regression", "sequence_regression"),
    "text": ("clm",),
    "digits": ("sequence_classification",),
    "g2p": ("seq2seq",),
}
OBJECTIVES = ("mlm", "clm", "token_regression", "sequence_regression", "sequence_classification", "seq2seq")


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
class TextConfig:
    """``data.text``: the corpus and its vocabulary (window: data.max_length characters)."""

    # A UTF-8 text file; None: the bundled corpus (Python reference documentation, 465k characters).
    corpus: str | None = None
    # ascii: newline + printable ASCII (98 tokens); bytes: UTF-8 bytes (258 tokens, nothing unknown).
    vocabulary: str = "ascii"

    def __post_init__(self) -> None:
        check_choice("data.text", "vocabulary", self.vocabulary, ("ascii", "bytes"))


def derived_model_fields(data: Any, objective: str) -> tuple[dict[str, Any], str]:
    """Model fields that ``data`` (a DataConfig) and ``objective`` decide, and a name for them in errors."""
    source = data.source
    allowed = SOURCE_OBJECTIVES[source]
    if objective not in allowed:
        raise ConfigError(
            f"train.objective={objective!r} does not fit data.source={source!r}: expected "
            f"{' or '.join(allowed)}"
        )
    if source == "protein":
        from favor.data.alphabet import Alphabet

        fields = {
            "vocab_size": Alphabet.protein().vocab_size,
            "task": objective,
            "causal": objective == "clm",
        }
        return fields, "the protein alphabet"
    if source == "text":
        from favor.data.text import CharVocabulary

        vocab = CharVocabulary(kind=data.text.vocabulary)
        return {"vocab_size": vocab.vocab_size, "input_dim": None, "task": "clm", "causal": True}, (
            f"the {vocab.kind} vocabulary"
        )
    if source == "timeseries":
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
    if source == "g2p":
        from favor.data.g2p import G2PVocabulary

        fields = {"vocab_size": G2PVocabulary().vocab_size, "input_dim": None, "task": "seq2seq"}
        return fields, "the grapheme-to-phoneme vocabulary"
    from favor.data.digits import DIGITS_CLASSES

    fields = {"vocab_size": None, "input_dim": 1, "task": objective, "num_labels": DIGITS_CLASSES}
    return fields, "the digits source"
