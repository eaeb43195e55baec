"""Training: the loop, optimizer and schedule, checkpoints, distributed setup (run configs
live in `favor.runs`, re-exported here).

    from favor.train import load_run_config, train_run
    config = load_run_config("configs/protein_mlm_tiny.yaml", overrides=["train.max_steps=100"])
    summary = train_run(config, out_dir="runs/tiny")  # continue later: train_run(..., resume="runs/tiny")

The same call under ``torchrun --nproc_per_node=N`` trains with DistributedDataParallel.
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
from favor.runs.folder import CONFIG_FILE, MODEL_DIR, SUMMARY_FILE
from favor.train.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from favor.train.distributed import DistContext, init_distributed
from favor.train.optim import WarmupDecay, build_optimizer, build_scheduler, parameter_groups
from favor.train.run import train_run
from favor.train.trainer import Trainer, TrainerState

__all__ = [
    "CONFIG_FILE",
    "MODEL_DIR",
    "SUMMARY_FILE",
    "CheckpointError",
    "ConfigError",
    "DataConfig",
    "DistContext",
    "RunConfig",
    "TrainConfig",
    "Trainer",
    "TrainerState",
    "WarmupDecay",
    "apply_overrides",
    "build_optimizer",
    "build_scheduler",
    "init_distributed",
    "latest_checkpoint",
    "load_checkpoint",
    "load_run_config",
    "parameter_groups",
    "run_config_from_dict",
    "save_checkpoint",
    "train_run",
]
