"""Runs: the run config (``config.yaml``), the registered data sources, and evaluating a finished run.

    from favor.runs import evaluate_run, get_source, load_run_config
    config = load_run_config("configs/protein_mlm_tiny.yaml", overrides=["train.lr=3e-4"])
    data = get_source(config.data.source).build(config.data, objective=config.train.objective, seed=0)
    metrics = evaluate_run("runs/tiny", data="test.fasta")   # masked_accuracy, perplexity, n_masked, ...

This layer sits below training (`favor.train` builds its data here) and above the metrics
(`favor.evaluate`), so training and evaluating a run share one config and one cut of the data.
"""

from favor.runs.config import (
    ConfigError,
    DataConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    load_run_config,
    run_config_from_dict,
)
from favor.runs.evaluate import evaluate_run, format_metrics
from favor.runs.folder import CONFIG_FILE, MODEL_DIR, SUMMARY_FILE
from favor.runs.sources import DataSource, RunData, get_source, register, source_names

__all__ = [
    "CONFIG_FILE",
    "MODEL_DIR",
    "SUMMARY_FILE",
    "ConfigError",
    "DataConfig",
    "DataSource",
    "RunConfig",
    "RunData",
    "TrainConfig",
    "apply_overrides",
    "evaluate_run",
    "format_metrics",
    "get_source",
    "load_run_config",
    "register",
    "run_config_from_dict",
    "source_names",
]
