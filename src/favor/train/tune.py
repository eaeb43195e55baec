"""``favor tune``: hyper-parameter search with Optuna over the ``tune:`` section of a run config.

Every trial is an ordinary run (``STUDY_DIR/trial-NNNN/``) of the config with the trial's values applied.
The training loop reports the chosen validation metric to Optuna after every evaluation, and a median
pruner stops trials that fall behind the median of earlier trials at the same step. The study lives in
``STUDY_DIR/study.db`` (SQLite): running the command again continues it up to ``--trials`` finished trials
in total. Each invocation writes the results table (``trials.md``) and the best trial's config
(``best.yaml``, without the ``tune:`` section) into the study folder.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from favor.runs.config import apply_overrides, read_yaml, run_config_from_dict
from favor.runs.search_space import Param, apply_params, parse_space

__all__ = ["STUDY_FILE", "run_study", "tune_cli", "format_trials"]

STUDY_FILE = "study.db"
BEST_FILE = "best.yaml"
TABLE_FILE = "trials.md"
# Metrics where more is better; every other metric is minimised.
_MAXIMISED = ("accuracy", "masked_accuracy")


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ImportError("favor tune needs Optuna: pip install 'favor[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _finished(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return [t for t in study.trials if t.state in done]


def _objective(
    raw: dict[str, Any], space: list[Param], study_dir: Path, metric: str, echo: Callable[[str], None]
) -> Callable[[Any], float]:
    from favor.train.run import train_run

    optuna = _optuna()

    def objective(trial: Any) -> float:
        values = {p.name: p.suggest(trial) for p in space}
        config = run_config_from_dict(apply_params(raw, values), source=f"trial {trial.number}")
        if not config.data.has_valid:
            raise ValueError("favor tune scores trials on validation data; data.valid must not be none")
        run_dir = study_dir / f"trial-{trial.number:04d}"
        # A folder left by an interrupted invocation holds a trial Optuna never saw finish.
        shutil.rmtree(run_dir, ignore_errors=True)

        def report(step: int, metrics: dict[str, Any]) -> None:
            trial.report(_metric(metrics, metric), step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step}")

        echo(f"trial {trial.number}: {values}")
        summary = train_run(config, out_dir=run_dir, quiet=True, on_evaluate=report)
        for key in ("params", "steps", "train_time_s"):
            trial.set_user_attr(key, summary[key])
        value = _metric(summary["valid"] or {}, metric)
        echo(f"trial {trial.number}: {metric} {value:.4f}")
        return value

    return objective


def _metric(metrics: dict[str, Any], name: str) -> float:
    value = metrics.get(name)
    if value is None:
        available = ", ".join(k for k, v in metrics.items() if isinstance(v, float))
        raise ValueError(f"--metric {name!r} is not a validation metric of this run; available: {available}")
    return float(value)


def run_study(
    config: str | os.PathLike,
    *,
    trials: int,
    study_dir: str | os.PathLike,
    metric: str = "loss",
    direction: str | None = None,
    timeout: float | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    seed: int = 0,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or continue) the study until it holds ``trials`` finished trials or ``timeout`` seconds pass.

    Returns ``{"best": {number, value, params}, "trials": [...rows], "study_dir", "best_config"}``.
    """
    optuna = _optuna()
    raw = apply_overrides(read_yaml(config) or {}, overrides)
    base = run_config_from_dict(raw, source=str(config))
    space = parse_space(base.tune)
    if not space:
        raise ValueError(f"{config}: no tune: section (the search space); see favor.runs.search_space")
    raw = {k: v for k, v in raw.items() if k != "tune"}
    direction = direction or ("maximize" if metric in _MAXIMISED else "minimize")
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(study_dir / STUDY_FILE).resolve()}"
    name = Path(config).stem
    study = optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True)
    stored = study.user_attrs.get("metric")
    if stored is not None and stored != metric:
        raise ValueError(f"{study_dir}: this study optimises {stored!r}; continue it with --metric {stored}")
    study.set_user_attr("metric", metric)
    done = len(_finished(study))
    # A fresh sampler seed per invocation: a resumed study does not replay the first trials' draws.
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction=direction,
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed + done, n_startup_trials=min(5, max(2, trials // 3))),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )
    if trials > done:
        study.optimize(
            _objective(raw, space, study_dir, metric, echo),
            n_trials=trials - done,
            timeout=timeout,
            catch=(ValueError,),
        )
    return _write_results(study, raw, study_dir, metric)


def _write_results(study: Any, raw: dict[str, Any], study_dir: Path, metric: str) -> dict[str, Any]:
    rows = [
        {
            "number": t.number,
            "state": t.state.name.lower(),
            "value": t.value,
            "params": dict(t.params),
            "steps": t.user_attrs.get("steps", max(t.intermediate_values, default=None)),
            "train_time_s": t.user_attrs.get("train_time_s"),
        }
        for t in _finished(study)
    ]
    (study_dir / TABLE_FILE).write_text("\n".join(format_trials(rows, metric)) + "\n", encoding="utf-8")
    result: dict[str, Any] = {"study_dir": str(study_dir), "metric": metric, "trials": rows, "best": None}
    completed = [t for t in study.trials if t.value is not None and t.state.name == "COMPLETE"]
    if completed:
        best = study.best_trial
        result["best"] = {"number": best.number, "value": best.value, "params": dict(best.params)}
        best_config = run_config_from_dict(apply_params(raw, best.params), source=f"trial {best.number}")
        path = study_dir / BEST_FILE
        header = f"# Best trial {best.number} of {study_dir}: {metric} {best.value:.6g}\n"
        path.write_text(header + yaml.safe_dump(best_config.to_dict(), sort_keys=False), encoding="utf-8")
        result["best_config"] = str(path)
    return result


def format_trials(rows: list[dict[str, Any]], metric: str) -> list[str]:
    """The trials as a markdown table."""
    names = sorted({k for r in rows for k in r["params"]})
    header = ["trial", "state", metric, *names, "steps", "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        value = "" if r["value"] is None or not math.isfinite(r["value"]) else f"{r['value']:.4f}"
        params = [_cell(r["params"].get(n)) for n in names]
        seconds = "" if r["train_time_s"] is None else f"{r['train_time_s']:.1f}"
        steps = "" if r["steps"] is None else str(r["steps"])
        lines.append("| " + " | ".join([str(r["number"]), r["state"], value, *params, steps, seconds]) + " |")
    return lines


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def tune_cli(
    config: Path,
    *,
    trials: int = 10,
    study_dir: Path | None = None,
    metric: str = "loss",
    direction: str | None = None,
    timeout: float | None = None,
    set_: list[str] | None = None,
    seed: int = 0,
) -> int:
    """Search hyper-parameters with Optuna over the tune: section of a config (resumable, with pruning).

    Each trial trains the config with values drawn from the search space (e.g. tune: {train.lr: {low: 1e-4,
    high: 1e-2, log: true}, model.d_model: [32, 64]}) into STUDY_DIR/trial-NNNN/. Validation metrics are
    reported to Optuna after every evaluation and a median pruner stops trials that fall behind. Prints the
    results table and writes STUDY_DIR/{study.db, trials.md, best.yaml}. Running the command again
    continues the same study up to --trials finished trials.

    Args:
        config: run config YAML with a tune: section.
        trials (N): finished trials the study should hold (a resumed study runs only the missing ones).
        study_dir (DIR): folder of the study (default: studies/<config name>).
        metric: validation metric to optimise: loss, bits_per_char, accuracy, mae, rmse, mase, ...
        direction: minimize or maximize (default: maximize for accuracies, else minimize).
        timeout (SECONDS): stop starting new trials after this many seconds.
        set_ (SECTION.KEY=VALUE): override a config value for every trial; repeatable.
        seed: seed of the sampler.
    """
    if direction not in (None, "minimize", "maximize"):
        raise ValueError(f"--direction {direction!r}: choose minimize or maximize")
    folder = study_dir if study_dir is not None else Path("studies") / Path(config).stem
    result = run_study(
        config,
        trials=trials,
        study_dir=folder,
        metric=metric,
        direction=direction,
        timeout=timeout,
        overrides=set_ or [],
        seed=seed,
    )
    print("\n".join(format_trials(result["trials"], metric)))
    best = result["best"]
    if best is None:
        print(f"no completed trial yet in {folder}")
        return 0
    print(f"best trial {best['number']}: {metric} {best['value']:.4f} {best['params']}")
    print(f"best config: {result['best_config']}  study: {folder / STUDY_FILE}")
    return 0
