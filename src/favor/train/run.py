"""``train_run``: one training run from a validated config into a run folder, fresh or resumed.

Run folder::

    config.yaml        the resolved config (re-used by --resume and favor evaluate)
    unigram.json       token counts of the training data (the unigram baseline; language models)
    vocab.json         the character vocabulary (text; also in model/, where favor generate reads it)
    timeseries.json    the series, its split, its training-part normaliser and MASE scale (timeseries)
    metrics.csv        train rows every log_interval steps, valid rows at every evaluation
    tensorboard/       the same numbers as TensorBoard events (when tensorboard is installed)
    checkpoints/       resumable checkpoints (see favor.train.checkpoint)
    model/             the final model (config.json + model.safetensors)
    loss_curve.png     training and validation loss with the unigram baseline
    summary.json       steps, tokens/s, losses, final validation metrics
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from favor.data.text import VOCAB_FILE
from favor.evaluate.baseline import UNIGRAM_FILE
from favor.jsonsafe import json_safe
from favor.models.pretrained import save_pretrained
from favor.runs.config import RunConfig
from favor.runs.folder import CONFIG_FILE, MODEL_DIR, SUMMARY_FILE
from favor.train.checkpoint import checkpoint_dir, latest_checkpoint
from favor.train.distributed import DistContext, init_distributed
from favor.train.monitor import MetricsLog, Progress, plot_loss_curves, read_metrics
from favor.train.trainer import StepResult, Trainer

__all__ = ["train_run", "describe_metrics", "CONFIG_FILE", "SUMMARY_FILE", "MODEL_DIR"]


# Called with (step, validation metrics) after every evaluation on rank 0; may raise to stop the run
# (favor tune prunes a trial this way).
EvalCallback = Callable[[int, dict[str, Any]], None]


def describe_metrics(metrics: dict[str, Any]) -> str:
    """One line of validation metrics, whatever the task."""
    parts = [f"valid loss {metrics['loss']:.4f}"]
    if "unigram_loss" in metrics:
        parts[0] += f" (unigram {metrics['unigram_loss']:.4f})"
    for key, label in (
        ("bits_per_char", "bits/char"),
        ("masked_accuracy", "accuracy"),
        ("accuracy", "accuracy"),
        ("perplexity", "perplexity"),
        ("mae", "MAE"),
        ("rmse", "RMSE"),
        ("mase", "MASE"),
    ):
        if metrics.get(key) is not None:
            parts.append(f"{label} {metrics[key]:.4f}")
    return ", ".join(parts)


def _prepare_dir(run_dir: Path, config: RunConfig, trainer: Trainer, *, resuming: bool) -> None:
    if not resuming and (checkpoint_dir(run_dir) / "latest").exists():
        raise FileExistsError(
            f"{run_dir}: already holds a run; continue it with --resume {run_dir} or choose another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(config.to_yaml(), encoding="utf-8")
    if trainer.unigram is not None:
        trainer.unigram.save(run_dir / UNIGRAM_FILE)
    for name, text in trainer.data.files.items():
        (run_dir / name).write_text(text, encoding="utf-8")


class _Loop:
    """The step loop of rank 0 and the other ranks (only rank 0 logs)."""

    def __init__(
        self,
        trainer: Trainer,
        run_dir: Path,
        log: MetricsLog | None,
        echo: Callable[[str], None],
        on_evaluate: EvalCallback | None = None,
    ):
        self.trainer, self.run_dir, self.log, self.echo = trainer, run_dir, log, echo
        self.on_evaluate = on_evaluate
        self.window: list[StepResult] = []
        self.last_train_loss = float("nan")
        self.last_valid: dict[str, Any] | None = None
        self.last_eval_step: int | None = None
        self.last_ckpt_step: int | None = None
        self.start = time.monotonic()
        self.elapsed_base = trainer.state.elapsed_s

    def elapsed(self) -> float:
        """Seconds since the run began, over every invocation that continued it."""
        return self.elapsed_base + time.monotonic() - self.start

    @property
    def step(self) -> int:
        return self.trainer.state.step

    def log_train(self, elapsed: float) -> None:
        done = [r for r in self.window if not r.skipped]
        seconds = sum(r.seconds for r in self.window)
        tokens = sum(r.tokens for r in self.window)
        loss = sum(r.loss for r in done) / len(done) if done else float("nan")
        self.last_train_loss = loss
        if self.log is not None:
            self.log.log(
                self.step,
                "train",
                elapsed_s=round(elapsed, 3),
                loss=loss,
                lr=self.trainer.lr,
                grad_norm=self.window[-1].grad_norm,
                tokens_per_s=tokens / seconds if seconds else None,
                tokens=self.trainer.state.tokens_seen,
                skipped_steps=self.trainer.state.skipped_steps,
            )
        self.window = []

    def evaluate(self, elapsed: float) -> None:
        metrics = self.trainer.evaluate()
        self.last_eval_step = self.step
        if metrics is None:
            return
        self.last_valid = metrics
        if self.log is not None:
            self.log.log(
                self.step,
                "valid",
                elapsed_s=round(elapsed, 3),
                loss=metrics["loss"],
                tokens=self.trainer.state.tokens_seen,
                accuracy=metrics.get("masked_accuracy", metrics.get("accuracy")),
                perplexity=metrics.get("perplexity"),
                unigram_loss=metrics.get("unigram_loss"),
            )
        self.echo(f"step {self.step}: {describe_metrics(metrics)}")
        if self.on_evaluate is not None:
            self.on_evaluate(self.step, metrics)

    def checkpoint(self) -> None:
        self.trainer.state.elapsed_s = self.elapsed()
        self.trainer.save(self.run_dir)
        self.last_ckpt_step = self.step


def _time_up(trainer: Trainer, start: float, max_minutes: float | None) -> bool:
    """Whether this invocation has used its ``max_minutes``."""
    if max_minutes is None:
        return False
    up = float(time.monotonic() - start >= 60.0 * max_minutes)
    # Rank 0's clock decides, so every rank stops at the same step.
    return trainer.dist.all_reduce_sum([up if trainer.dist.is_main else 0.0])[0] > 0


def _schedule_note(config: RunConfig) -> str | None:
    """A warning when a time limit will likely stop the run before its learning rate has decayed."""
    cfg = config.train
    if cfg.max_minutes is None or cfg.schedule == "constant":
        return None
    if cfg.schedule_steps is not None or cfg.budget_minutes is not None:
        return None
    return (
        f"note: train.max_minutes={cfg.max_minutes:g} is set, but the {cfg.schedule} learning-rate decay "
        f"spans train.max_steps={cfg.max_steps}; if time runs out first the rate never decays. Set "
        "train.budget_minutes (a decay over training time) or train.schedule_steps."
    )


def _run_loop(loop: _Loop, progress: Progress) -> str:
    trainer = loop.trainer
    cfg = trainer.config.train
    has_valid = trainer.data.valid_loader is not None
    while True:
        if loop.step >= cfg.max_steps:
            return "max_steps"
        if _time_up(trainer, loop.start, cfg.max_minutes):
            return "max_minutes"
        if trainer.budget_spent:
            return "budget_minutes"
        result = trainer.train_step()
        loop.window.append(result)
        elapsed = loop.elapsed()
        if result.skipped:
            loop.echo(f"step {loop.step}: non-finite loss or gradient, step skipped (optimizer not stepped)")
        if loop.step % cfg.log_interval == 0 or result.skipped:
            loop.log_train(elapsed)
        progress.update(1, loss=result.loss, tokens_per_s=result.tokens / max(result.seconds, 1e-9))
        if has_valid and loop.step % cfg.eval_interval == 0:
            loop.evaluate(elapsed)
            if trainer.should_stop_early:
                return "early_stopping"
        if loop.step % cfg.checkpoint_interval == 0:
            loop.checkpoint()


def train_run(
    config: RunConfig,
    *,
    out_dir: str | os.PathLike,
    resume: str | os.PathLike | None = None,
    quiet: bool = False,
    echo: Callable[[str], None] = print,
    on_evaluate: EvalCallback | None = None,
) -> dict[str, Any]:
    """Train ``config`` into ``out_dir`` (continuing the latest checkpoint of ``resume`` if given).

    Works alone or under ``torchrun``. Returns the summary (also written to ``summary.json``) on every rank.
    ``on_evaluate(step, metrics)`` is called on rank 0 after every validation.
    """
    threads = torch.get_num_threads()
    if config.train.cpu_threads is not None:
        torch.set_num_threads(config.train.cpu_threads)
    dist = init_distributed(config.train.device)
    try:
        return _train(config, Path(out_dir), resume, quiet, echo, dist, on_evaluate)
    finally:
        dist.close()
        torch.set_num_threads(threads)


def _train(
    config: RunConfig,
    run_dir: Path,
    resume: str | os.PathLike | None,
    quiet: bool,
    echo: Callable[[str], None],
    dist: DistContext,
    on_evaluate: EvalCallback | None = None,
) -> dict[str, Any]:
    main = dist.is_main and not quiet
    progress = Progress(total=config.train.max_steps, enabled=main, echo=echo)
    say = progress.write if main else (lambda _message: None)
    folder = latest_checkpoint(resume) if resume is not None else None
    trainer = Trainer(config=config, dist=dist)
    if folder is not None:
        trainer.load(folder)
        say(f"resumed from {folder} at step {trainer.state.step}")
    schedule_note = _schedule_note(config)
    if schedule_note:
        say(schedule_note)
    if dist.is_main:
        _prepare_dir(run_dir, config, trainer, resuming=folder is not None)
    dist.barrier()
    resume_step = trainer.state.step if folder is not None else None
    log = MetricsLog(run_dir, resume_step=resume_step) if dist.is_main else None
    loop = _Loop(trainer, run_dir, log, say, on_evaluate if dist.is_main else None)
    loop.last_ckpt_step = resume_step
    progress.start_at(trainer.state.step)
    before = (trainer.state.step, trainer.state.tokens_seen, trainer.state.train_time_s)
    try:
        reason = _run_loop(loop, progress)
        if loop.window:
            loop.log_train(loop.elapsed())
        if trainer.data.valid_loader is not None and loop.last_eval_step != loop.step:
            loop.evaluate(loop.elapsed())
        if loop.last_ckpt_step != loop.step:
            loop.checkpoint()
        trainer.state.elapsed_s = loop.elapsed()
    finally:
        progress.close()
        if log is not None:
            log.close()
    summary = _summary(loop, reason, before)
    if dist.is_main:
        save_pretrained(trainer.model, run_dir / MODEL_DIR)
        # The vocabulary travels with the model folder, so favor generate can decode from it alone.
        if VOCAB_FILE in trainer.data.files:
            (run_dir / MODEL_DIR / VOCAB_FILE).write_text(trainer.data.files[VOCAB_FILE], encoding="utf-8")
        plot_loss_curves(
            {config.model.backbone: read_metrics(run_dir / "metrics.csv")}, run_dir / "loss_curve.png"
        )
        (run_dir / SUMMARY_FILE).write_text(json.dumps(json_safe(summary), indent=2) + "\n", encoding="utf-8")
    dist.barrier()
    return summary


def _summary(loop: _Loop, reason: str, before: tuple[int, int, float]) -> dict[str, Any]:
    """What a run reports at the end; ``before`` is (step, tokens_seen, train_time_s) at its start."""
    trainer, config = loop.trainer, loop.trainer.config
    train_time = trainer.state.train_time_s - before[2]
    return {
        "run_dir": str(loop.run_dir),
        "objective": config.train.objective,
        "source": config.data.source,
        "backbone": config.model.backbone,
        "params": trainer.num_parameters,
        "steps": trainer.state.step,
        "steps_this_run": trainer.state.step - before[0],
        "stop_reason": reason,
        "tokens_seen": trainer.state.tokens_seen,
        # Training steps only (evaluation and checkpoint time excluded), this invocation.
        "tokens_per_s": (trainer.state.tokens_seen - before[1]) / train_time if train_time > 0 else 0.0,
        "train_time_s": round(trainer.state.train_time_s, 3),
        "elapsed_s": round(trainer.state.elapsed_s, 3),
        "skipped_steps": trainer.state.skipped_steps,
        "redraws": trainer.state.redraws,
        "final_train_loss": loop.last_train_loss,
        "best_val_loss": trainer.state.best_val_loss,
        "valid": loop.last_valid,
        "world_size": trainer.dist.world_size,
    }
