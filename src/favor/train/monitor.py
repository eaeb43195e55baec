"""What a run reports: ``metrics.csv`` (always), TensorBoard events (when installed), a tqdm progress bar, and
a loss-curve PNG drawn with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import csv
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

__all__ = ["METRIC_COLUMNS", "MetricsLog", "Progress", "read_metrics", "plot_loss_curves"]

METRIC_COLUMNS = (
    "step",
    "split",
    "elapsed_s",
    "loss",
    "lr",
    "grad_norm",
    "tokens_per_s",
    "tokens",
    "skipped_steps",
    "accuracy",
    "perplexity",
    "unigram_loss",
)
_INT_COLUMNS = ("step", "tokens", "skipped_steps")


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``metrics.csv``: numbers as floats (``step`` as int), empty cells as None."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            parsed: dict[str, Any] = {}
            for key, value in row.items():
                if key == "split":
                    parsed[key] = value
                elif value in ("", None):
                    parsed[key] = None
                else:
                    parsed[key] = int(float(value)) if key in _INT_COLUMNS else float(value)
            rows.append(parsed)
    return rows


class MetricsLog:
    """Append rows to ``RUN_DIR/metrics.csv`` and mirror the numbers to TensorBoard if it is importable.

    ``resume_step`` drops rows logged after that step by an interrupted run, so a resumed run's CSV has each
    step once.
    """

    def __init__(
        self, run_dir: str | os.PathLike, *, resume_step: int | None = None, tensorboard: bool = True
    ):
        self.path = Path(run_dir) / "metrics.csv"
        kept = read_metrics(self.path) if resume_step is not None else []
        kept = [r for r in kept if r["step"] <= (resume_step or 0)]
        self._handle = open(self.path, "w", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._handle, fieldnames=METRIC_COLUMNS)
        self._writer.writeheader()
        for row in kept:
            self._writer.writerow(
                {k: ("" if v is None else v) for k, v in row.items() if k in METRIC_COLUMNS}
            )
        self._handle.flush()
        self._tb = _tensorboard_writer(Path(run_dir) / "tensorboard") if tensorboard else None

    @property
    def has_tensorboard(self) -> bool:
        return self._tb is not None

    def log(self, step: int, split: str, **values: float | int | None) -> None:
        unknown = set(values) - set(METRIC_COLUMNS)
        if unknown:
            raise ValueError(f"MetricsLog.log: unknown columns {sorted(unknown)}")
        row = {"step": step, "split": split, **{k: ("" if v is None else v) for k, v in values.items()}}
        self._writer.writerow(row)
        self._handle.flush()
        if self._tb is not None:
            for key, value in values.items():
                if value is not None and key not in ("elapsed_s",) and math.isfinite(float(value)):
                    self._tb.add_scalar(f"{split}/{key}", float(value), step)

    def close(self) -> None:
        self._handle.close()
        if self._tb is not None:
            self._tb.close()


def _tensorboard_writer(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(folder))


class Progress:
    """A tqdm bar over optimizer steps, shown only on an interactive terminal and when not quiet.

    `write` prints a message above the bar (through ``echo`` when there is no bar).
    """

    def __init__(
        self, *, total: int, initial: int = 0, enabled: bool = True, echo: Callable[[str], None] = print
    ):
        self.shown = enabled and sys.stderr.isatty()
        self.echo = echo
        self._bar = tqdm(
            total=total, initial=initial, unit="step", dynamic_ncols=True, disable=not self.shown
        )

    def start_at(self, step: int) -> None:
        """Show ``step`` steps as already done (a resumed run)."""
        self._bar.n = self._bar.last_print_n = step
        self._bar.refresh()

    def write(self, message: str) -> None:
        if self.shown:
            tqdm.write(message, file=sys.stderr)
        else:
            self.echo(message)

    def update(self, steps: int, *, loss: float, tokens_per_s: float) -> None:
        self._bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
        self._bar.update(steps)

    def close(self) -> None:
        self._bar.close()


def plot_loss_curves(
    runs: dict[str, list[dict[str, Any]]], path: str | os.PathLike, *, title: str = "loss"
) -> Path:
    """One PNG: training (thin) and validation (markers) loss per run, and each run's unigram baseline
    loss on the validation targets (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, rows) in enumerate(runs.items()):
        color = colors[i % len(colors)]
        train = [(r["step"], r["loss"]) for r in rows if r["split"] == "train" and r["loss"] is not None]
        valid = [(r["step"], r["loss"]) for r in rows if r["split"] == "valid" and r["loss"] is not None]
        unigram = [r["unigram_loss"] for r in rows if r["split"] == "valid" and r["unigram_loss"] is not None]
        if train:
            ax.plot(*zip(*train, strict=True), color=color, alpha=0.6, linewidth=1, label=f"{label} train")
        if valid:
            ax.plot(*zip(*valid, strict=True), color=color, marker="o", linewidth=2, label=f"{label} valid")
        if unigram:
            ax.axhline(
                unigram[-1], color=color, linestyle="--", linewidth=1, label=f"{label} unigram baseline"
            )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats / predicted token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
