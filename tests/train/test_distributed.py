"""DDP smoke test: the same ``favor train`` command under torchrun with two CPU (gloo) processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from favor.train.checkpoint import latest_checkpoint
from favor.train.distributed import DistContext, init_distributed
from tiny_models import tiny_run

TINY = tiny_run(
    data={"max_tokens": 256, "valid_max_sequences": 16},
    train={"max_steps": 3, "eval_interval": 2, "checkpoint_interval": 2, "log_interval": 1, "device": "cpu"},
)


def test_single_process_context_is_a_no_op(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    context = init_distributed("cpu")
    assert context == DistContext(device=torch.device("cpu"))
    assert context.all_reduce_sum([1.0, 2.0]) == [1.0, 2.0]
    context.barrier()
    assert not context.enabled and context.is_main


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")
def test_two_process_ddp_training(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "favor.cli",
        "train",
        str(config),
        "--out",
        str(run_dir),
        "--quiet",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 3
    assert summary["valid"]["n_masked"] > 0
    # Rank 0 alone printed the summary line.
    assert result.stdout.count("trained 3 steps") == 1
    folder = latest_checkpoint(run_dir)
    assert folder.name == "step-00000003"
    state = json.loads((folder / "trainer.json").read_text())
    assert state["trainer"]["world_size"] == 2
    # Both ranks' batches were counted: each step covers two shards.
    assert summary["tokens_seen"] > 0
    from safetensors.torch import load_file

    rng = load_file(str(folder / "rng.safetensors"))
    assert {"rank0.torch_cpu", "rank1.torch_cpu"} <= set(rng)
