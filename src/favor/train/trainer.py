"""The training loop: AdamW steps over token-budget batches, with gradient accumulation, clipping, bf16
autocast, FAVOR+ redraws, validation, early stopping, non-finite step skipping and resumable checkpoints.

One `Trainer` per process. Under ``torchrun`` the model is wrapped in DistributedDataParallel, each rank reads
its own shard of every epoch, and only rank 0 writes logs and checkpoints (between barriers).

The loss is the model's own task loss (`favor.models.task_loss_sum`: labels aligned with the logits, causal
labels already shifted by `favor.data`), as a mean over every target of an optimizer step across
micro-batches and ranks: each micro-batch contributes ``loss_sum * world_size / n_targets_global`` so DDP's
gradient averaging gives exactly that mean. With one micro-batch on one rank it is the model's ``out.loss``.

With ``train.tbptt`` the batches are consecutive windows of parallel text streams and a recurrent model
carries its hidden state from one window to the next, detached (`favor.train.tbptt`).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from favor.data.seeding import derive_seed, generator_for
from favor.evaluate.metrics import LMStats, evaluate_lm
from favor.evaluate.task_metrics import TaskStats, evaluate_task, loss_padding_mask, model_logits
from favor.models.build import Model, build_model
from favor.models.losses import target_mask, task_loss_sum
from favor.runs.config import RunConfig
from favor.train.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from favor.train.distributed import DistContext
from favor.train.optim import budget_decay, build_optimizer, build_scheduler
from favor.train.tbptt import carry_from_tensors, carry_to_tensors, tbptt_window

__all__ = ["Trainer", "TrainerState", "StepResult"]

# Stream id of the FAVOR+ redraw generators: derive_seed(seed, _REDRAW_STREAM, step).
_REDRAW_STREAM = 7


@dataclass
class TrainerState:
    """Plain numbers that a checkpoint stores besides the tensors."""

    step: int = 0
    tokens_seen: int = 0
    predicted_tokens: int = 0
    skipped_steps: int = 0
    best_val_loss: float | None = None
    evals_without_improvement: int = 0
    elapsed_s: float = 0.0
    train_time_s: float = 0.0
    redraws: int = 0


@dataclass
class StepResult:
    loss: float
    grad_norm: float
    tokens: int
    skipped: bool
    seconds: float


class Trainer:
    """Builds data, model and optimizer from a `RunConfig` and runs optimizer steps on this process's rank."""

    def __init__(self, *, config: RunConfig, dist: DistContext) -> None:
        self.config = config
        self.dist = dist
        self.device = dist.device
        train = config.train
        torch.manual_seed(train.seed)
        self.source = config.data.source_object
        self.data = self.source.build(
            config.data,
            objective=train.objective,
            seed=train.seed,
            rank=dist.rank,
            world_size=dist.world_size,
            tbptt=train.tbptt,
        )
        self.unigram = self.data.unigram
        self.unigram_log_probs = self.data.unigram_log_probs
        self.model = build_model(config.model)
        if train.init_from is not None:
            _init_weights(self.model, train.init_from)
        self.model.to(self.device)
        self.optimizer = build_optimizer(self.model, train)
        self.scheduler = build_scheduler(self.optimizer, train)
        self.ddp: DistributedDataParallel | None = None
        if dist.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=device_ids)
        # Dropout differs between ranks; everything above is identical on every rank.
        torch.manual_seed(derive_seed(train.seed, dist.rank))
        self.state = TrainerState()
        self._iterator = None
        # The recurrent state carried between windows under train.tbptt (None: start afresh).
        self._carry = None

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def _next_batch(self) -> dict[str, Any]:
        """The next training batch, crossing epochs; never touches the global torch RNG (dropout's)."""
        while True:
            if self._iterator is None:
                self._iterator = iter(self.data.train_loader)
            # DataLoader draws a base seed from the global RNG when an epoch's iterator starts; restoring
            # it keeps dropout masks independent of where a run was interrupted and resumed.
            rng = torch.get_rng_state()
            try:
                return next(self._iterator)
            except StopIteration:
                self._iterator = None
            finally:
                torch.set_rng_state(rng)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.config.train.bf16
        )

    def next_batch(self) -> dict[str, Any]:
        """The next training batch of this rank's loader (what `train_step` would read next)."""
        return self._next_batch()

    def train_step(self, micro: list[dict[str, Any]] | None = None) -> StepResult:
        """One optimizer step over ``grad_accum`` micro-batches (or the given ``micro``-batches); a
        non-finite loss or gradient skips it."""
        start = time.perf_counter()
        train = self.config.train
        step = self.state.step
        # Redraw before the step after every redraw_interval-th one, not after it: evaluations and the saved
        # model then use the projections the weights were trained with.
        if train.redraw_interval and step > 0 and step % train.redraw_interval == 0:
            if self.model.redraw_projections(generator_for(train.seed, _REDRAW_STREAM, step)):
                self.state.redraws += 1
        if micro is None:
            micro = [self._next_batch() for _ in range(train.grad_accum)]
        n_local = sum(self._count_targets(b) for b in micro)
        tokens_local = sum(int((~b["padding_mask"]).sum()) for b in micro)
        n_global, tokens_global = self.dist.all_reduce_sum([n_local, tokens_local])
        scale = self.dist.world_size / max(n_global, 1.0)
        forward = self.ddp if self.ddp is not None else self.model
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        for i, batch in enumerate(micro):
            last = i == len(micro) - 1
            sync = contextlib.nullcontext() if self.ddp is None or last else self.ddp.no_sync()
            with sync:
                with self._autocast():
                    logits = self._logits(forward, batch)
                batch_sum, _ = self._loss_sum(logits, batch)
                (batch_sum * scale).backward()
            loss_sum += batch_sum.detach().double()
        loss = self.dist.all_reduce_sum([float(loss_sum)])[0] / max(n_global, 1.0)
        max_norm = train.grad_clip if train.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        skipped = not (math.isfinite(loss) and math.isfinite(grad_norm))
        if skipped:
            self.optimizer.zero_grad(set_to_none=True)
            self.state.skipped_steps += 1
        else:
            self.optimizer.step()
            self.state.predicted_tokens += int(n_global)
        self.scheduler.step()
        self.state.step += 1
        self.state.tokens_seen += int(tokens_global)
        seconds = time.perf_counter() - start
        self.state.train_time_s += seconds
        self._apply_budget_decay()
        return StepResult(
            loss=loss, grad_norm=grad_norm, tokens=int(tokens_global), skipped=skipped, seconds=seconds
        )

    def _apply_budget_decay(self) -> None:
        """Under ``train.budget_minutes``: scale the warmed-up rate by the decay at the training time spent.

        Every rank uses rank 0's clock, so the rates stay identical across ranks.
        """
        train = self.config.train
        if train.budget_minutes is None:
            return
        seconds = self.state.train_time_s if self.dist.is_main else 0.0
        seconds = self.dist.all_reduce_sum([seconds])[0]
        factor = budget_decay(train, seconds)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * self.scheduler.lr_lambdas[0](self.state.step) * factor

    @property
    def budget_spent(self) -> bool:
        """Whether a ``train.budget_minutes`` run has used its training time."""
        budget = self.config.train.budget_minutes
        if budget is None:
            return False
        spent = float(self.state.train_time_s >= 60.0 * budget) if self.dist.is_main else 0.0
        return self.dist.all_reduce_sum([spent])[0] > 0

    def _logits(self, forward: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        if not self.config.train.tbptt:
            return model_logits(forward, batch, self.device)
        if batch.get("reset"):
            self._carry = None
        logits, self._carry = tbptt_window(self.model, batch["input_ids"].to(self.device), self._carry)
        return logits

    def _loss_sum(self, logits: torch.Tensor, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's task loss summed over the batch's targets, and their count."""
        model = self.config.model
        return task_loss_sum(
            model.task,
            logits,
            batch["labels"].to(self.device),
            padding_mask=self._loss_padding(batch),
            multi_label=model.multi_label,
            label_smoothing=self.config.train.label_smoothing,
        )

    def _count_targets(self, batch: dict[str, Any]) -> int:
        """The targets `_loss_sum` will count, known before the forward pass (to scale the gradients)."""
        labels = batch["labels"].to(self.device)
        return int(target_mask(self.config.model.task, labels, padding_mask=self._loss_padding(batch)).sum())

    def _loss_padding(self, batch: dict[str, Any]) -> torch.Tensor | None:
        padding_mask = loss_padding_mask(batch)
        return None if padding_mask is None else padding_mask.to(self.device)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def evaluate(self) -> dict[str, Any] | None:
        """Validation metrics summed over ranks (None without validation data); updates early stopping."""
        loader = self.data.valid_loader
        if loader is None:
            return None
        loader.set_epoch(0)
        # Starting a DataLoader draws from the global RNG; keep dropout's stream independent of evaluations.
        rng = torch.get_rng_state()
        try:
            metrics = self._validation_metrics(loader)
        finally:
            torch.set_rng_state(rng)
        loss = metrics["loss"]
        best = self.state.best_val_loss
        if math.isfinite(loss) and (best is None or loss < best):
            self.state.best_val_loss = loss
            self.state.evals_without_improvement = 0
        else:
            self.state.evals_without_improvement += 1
        return metrics

    def _validation_metrics(self, loader: Any) -> dict[str, Any]:
        train, task = self.config.train, self.config.model.task
        common = {"device": self.device, "bf16": train.bf16, "max_batches": train.eval_max_batches}
        if task in ("mlm", "clm"):
            stats = evaluate_lm(self.model, loader, unigram_log_probs=self.unigram_log_probs, **common)
            stats = LMStats.from_list(self.dist.all_reduce_sum(stats.as_list()))
            metrics = stats.to_dict(train.objective)
            return self.source.validation_metrics(metrics)
        stats = evaluate_task(self.model, loader, task=task, **common)
        stats = TaskStats.from_list(self.dist.all_reduce_sum(stats.as_list()))
        return stats.to_dict(task, value_scale=self.data.value_scale, mase_scale=self.data.mase_scale)

    @property
    def should_stop_early(self) -> bool:
        patience = self.config.train.early_stopping_patience
        return bool(patience) and self.state.evals_without_improvement >= patience

    def save(self, run_dir: str | Path) -> Path | None:
        """Checkpoint the current step: every rank takes part, rank 0 writes (returns the folder there)."""
        rng_tensors, rng_meta = capture_rng_state(self.device)
        tensors = {f"rank{self.dist.rank}.{k}": v for k, v in rng_tensors.items()}
        # Each rank's own dropout generators, so every rank resumes its own stream.
        for key in ("torch_cpu", "torch_cuda"):
            if key in rng_tensors:
                for rank, state in enumerate(self.dist.gather_rng(rng_tensors[key])):
                    tensors[f"rank{rank}.{key}"] = state
        trainer = {
            **asdict(self.state),
            "loader": self.data.train_loader.state_dict(),
            "world_size": self.dist.world_size,
        }
        carry_tensors = None
        if self._carry is not None:  # TBPTT (one process): the streams' state travels with the checkpoint
            carry_tensors, trainer["carry_layout"] = carry_to_tensors(self._carry)
        self.dist.barrier()
        folder = None
        if self.dist.is_main:
            folder = save_checkpoint(
                run_dir,
                step=self.state.step,
                model=self.model,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                trainer=trainer,
                rng_tensors=tensors,
                rng_meta=rng_meta,
                keep=self.config.train.keep_checkpoints,
                carry_tensors=carry_tensors,
            )
        self.dist.barrier()
        return folder

    def load(self, folder: str | Path) -> None:
        """Restore model, optimizer, scheduler, data position, counters and this rank's RNG."""
        ckpt = load_checkpoint(folder, model=self.model)
        saved_world = ckpt.trainer.get("world_size", 1)
        if saved_world != self.dist.world_size:
            raise ValueError(
                f"{ckpt.path}: written by {saved_world} process(es), resumed with {self.dist.world_size}; "
                "the data shards would differ (resume with the same --nproc_per_node)"
            )
        self.optimizer.load_state_dict(ckpt.optimizer)
        self.scheduler.load_state_dict(ckpt.scheduler)
        loader_state = {k: v for k, v in ckpt.trainer["loader"].items() if k != "rank"}
        self.data.train_loader.load_state_dict(loader_state)
        self._iterator = None
        layout = ckpt.trainer.get("carry_layout")
        self._carry = None if layout is None else carry_from_tensors(ckpt.carry_tensors, layout, self.device)
        known = set(TrainerState.__dataclass_fields__)
        self.state = TrainerState(**{k: v for k, v in ckpt.trainer.items() if k in known})
        restore_rng_state(ckpt.rng_tensors, prefix=f"rank{self.dist.rank}.", device=self.device)


def _init_weights(model: Model, source: str) -> None:
    """Load the weights of ``source`` (a model folder, a run or checkpoint folder, or a bundled model's name,
    resolved and verified as every command does: `favor.folders.load_model`) into ``model``."""
    from favor.folders import load_model

    try:
        source_model, folder = load_model(source)
    except ValueError as error:
        raise ValueError(f"train.init_from={source!r}: {error}") from None
    ours, theirs = model.state_dict(), source_model.state_dict()
    # The same weights, not necessarily the same config: e.g. an exact model's weights into a Performer
    # (the paper's swap), whose random projections are kept as drawn for this run.
    mismatched = sorted(
        name
        for name in set(ours) | set(theirs)
        if not name.endswith(".projection")
        and (name not in ours or name not in theirs or ours[name].shape != theirs[name].shape)
    )
    if mismatched:
        a, b = model.config.to_dict(), source_model.config.to_dict()
        diff = sorted(k for k in a if a[k] != b.get(k))
        raise ValueError(
            f"train.init_from={source!r}: {folder} holds a model of other shapes "
            f"({', '.join(mismatched[:4])}); differing config keys: {', '.join(diff)}"
        )
    model.load_state_dict({k: v for k, v in theirs.items() if not k.endswith(".projection")}, strict=False)
