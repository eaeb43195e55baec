"""A training process killed with SIGKILL loses nothing past its last checkpoint, half-writes none."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from favor.models import load_pretrained
from favor.train.checkpoint import latest_checkpoint, load_checkpoint
from tiny_models import tiny_run

STEPS = 150


def _config(path: Path) -> Path:
    config = tiny_run(
        model={"dropout": 0.1},
        data={"max_tokens": 256, "valid": "none"},
        train={
            "lr": 3e-3,
            "warmup_steps": 2,
            "max_steps": STEPS,
            "schedule_steps": STEPS,
            "checkpoint_interval": 5,
            "log_interval": 5,
            "redraw_interval": 7,
            "cpu_threads": 1,
        },
    )
    path.write_text(yaml.safe_dump(config))
    return path


def _train(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "favor.cli", "train", str(config), "--out", str(out), "--quiet", *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err


def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path):
    config = _config(tmp_path / "tiny.yaml")
    killed_dir, full_dir = tmp_path / "killed", tmp_path / "full"

    process = _train(config, killed_dir)
    pointer = killed_dir / "checkpoints" / "latest"
    deadline = time.monotonic() + 120
    # Kill as soon as a couple of checkpoints exist: the run is then somewhere between two of them.
    while time.monotonic() < deadline and process.poll() is None:
        if pointer.exists() and pointer.read_text().strip() >= "step-00000010":
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed; raise STEPS"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    # Whatever `latest` names is complete: its manifest verifies and its model loads.
    survivor = latest_checkpoint(killed_dir)
    step = load_checkpoint(survivor, model=load_pretrained(survivor / "model")).trainer["step"]
    assert 10 <= step < STEPS

    _finish(_train(config, killed_dir, "--resume", str(killed_dir)))
    _finish(_train(config, full_dir))
    expected = load_file(str(full_dir / "model" / "model.safetensors"))
    resumed = load_file(str(killed_dir / "model" / "model.safetensors"))
    assert expected.keys() == resumed.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensor, resumed[name]), name
