"""The data sources of a run (``data.source``), one module each, registered once (see `base`).

protein     FASTA proteins: masked or causal LM over the protein alphabet
timeseries  one real series: forecasting, many-to-many (token_regression, causal) or many-to-one
            (sequence_regression)
text        characters or bytes of an English corpus: causal LM
digits      8x8 digit images read pixel by pixel: sequence_classification
g2p         words of the CMU Pronouncing Dictionary and their phonemes: seq2seq

Every module of this package is imported on first use of the registry and its ``SOURCE`` registered (so a
new source is one new module), then every ``favor.sources`` entry point of the installed distributions (a
source shipped as a separate package: the entry point names a `DataSource` instance, or a module that
registers its source on import).
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from favor.runs.sources.base import (
    DataSource,
    RunData,
    get_source,
    register,
    resolve_path,
    source_names,
)

__all__ = [
    "DataSource",
    "RunData",
    "all_objectives",
    "get_source",
    "register",
    "resolve_path",
    "source_names",
]

_BUILT_IN_FIRST = ("protein",)  # the default source leads the lists in messages
_discovered = False


def discover() -> None:
    """Import every source module of this package and every ``favor.sources`` entry point, once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    names = [info.name for info in pkgutil.iter_modules(__path__) if info.name != "base"]
    for name in sorted(names, key=lambda n: (n not in _BUILT_IN_FIRST, n)):
        source = getattr(importlib.import_module(f"{__name__}.{name}"), "SOURCE", None)
        if isinstance(source, DataSource):
            register(source)
    for point in entry_points(group="favor.sources"):
        loaded = point.load()
        if isinstance(loaded, DataSource):
            register(loaded)


def all_objectives() -> tuple[str, ...]:
    """Every objective some registered source trains, without repeats, in registration order."""
    seen: dict[str, None] = {}
    for name in source_names():
        seen.update(dict.fromkeys(get_source(name).objectives))
    return tuple(seen)
