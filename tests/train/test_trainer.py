"""The training loop: exact resume, non-finite steps skipped, early stopping, run folder contents."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import shutil
import types

import pytest
import torch
from safetensors.torch import load_file

import favor.train.trainer as trainer_module
from favor.evaluate.metrics import LMStats
from favor.models import task_loss
from favor.runs.config import ConfigError, run_config_from_dict
from favor.train.distributed import DistContext
from favor.train.monitor import read_metrics
from favor.train.run import train_run
from favor.train.trainer import Trainer
from tiny_models import tiny_run


def tiny(**train) -> dict:
    """A seconds-long run on the bundled sample: dropout, redraws and accumulation all switched on."""
    return tiny_run(
        model={"dropout": 0.1},
        data={"max_tokens": 256, "valid_max_sequences": 8},
        train={
            "lr": 3e-3,
            "warmup_steps": 2,
            "max_steps": 6,
            "eval_interval": 3,
            "checkpoint_interval": 2,
            "log_interval": 1,
            "redraw_interval": 2,
            "grad_accum": 2,
            "cpu_threads": 1,
            **train,
        },
    )


def _weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model" / "model.safetensors"))


def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    summary = train_run(run_config_from_dict(tiny(schedule_steps=6)), out_dir=full, quiet=True)
    assert summary["steps"] == 6 and summary["redraws"] == 2
    train_run(run_config_from_dict(tiny(schedule_steps=6, max_steps=3)), out_dir=part, quiet=True)
    # Simulate a crash after step 3 but before its checkpoint: only step 2 survives.
    checkpoints = part / "checkpoints"
    shutil.rmtree(checkpoints / "step-00000003")
    (checkpoints / "latest").write_text("step-00000002\n")
    resumed = train_run(run_config_from_dict(tiny(schedule_steps=6)), out_dir=part, resume=part, quiet=True)
    assert resumed["steps"] == 6 and resumed["steps_this_run"] == 4
    expected, got = _weights(full), _weights(part)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    rows = [(r["step"], r["split"]) for r in read_metrics(part / "metrics.csv")]
    assert len(rows) == len(set(rows))
    assert [r for r in rows if r[1] == "train"] == [(s, "train") for s in range(1, 7)]


def test_run_folder_contents(tmp_path):
    summary = train_run(run_config_from_dict(tiny(max_steps=2)), out_dir=tmp_path, quiet=True)
    for name in ("config.yaml", "unigram.json", "metrics.csv", "loss_curve.png", "summary.json"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "model" / "config.json").is_file()
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 2
    assert summary["valid"]["n_masked"] > 0
    if importlib.util.find_spec("tensorboard") is not None:
        assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    with pytest.raises(FileExistsError, match="--resume"):
        train_run(run_config_from_dict(tiny(max_steps=2)), out_dir=tmp_path, quiet=True)


def test_non_finite_loss_skips_the_step():
    trainer = Trainer(config=run_config_from_dict(tiny(redraw_interval=0)), dist=DistContext())
    trainer.train_step()
    before = [p.detach().clone() for p in trainer.model.parameters()]
    adam_steps = [s["step"].clone() for s in trainer.optimizer.state.values()]
    handle = trainer.model.register_forward_hook(
        lambda _module, _inputs, out: dataclasses.replace(out, logits=out.logits * float("nan"))
    )
    result = trainer.train_step()
    handle.remove()
    assert result.skipped and trainer.state.skipped_steps == 1 and trainer.state.step == 2
    for a, b in zip(before, trainer.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [s["step"] for s in trainer.optimizer.state.values()] == adam_steps
    result = trainer.train_step()
    assert not result.skipped
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))


def test_skipped_steps_are_logged_and_never_saved(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = trainer_module.task_loss_sum

    def nan_on_third_call(*args, **kwargs):
        calls["n"] += 1
        loss, count = real(*args, **kwargs)
        return (loss * float("nan") if calls["n"] == 3 else loss), count

    monkeypatch.setattr(trainer_module, "task_loss_sum", nan_on_third_call)
    config = tiny(max_steps=3, grad_accum=1)
    config["data"]["valid"] = "none"
    summary = train_run(run_config_from_dict(config), out_dir=tmp_path, quiet=True)
    assert summary["skipped_steps"] == 1
    rows = {r["step"]: r for r in read_metrics(tmp_path / "metrics.csv") if r["split"] == "train"}
    assert rows[2]["skipped_steps"] == 0 and rows[3]["skipped_steps"] == 1
    assert all(torch.isfinite(t).all() for t in _weights(tmp_path).values())


def test_early_stopping_after_patience_evaluations(tmp_path, monkeypatch):
    flat = LMStats(n=10, loss_sum=20.0, correct=1, unigram_loss_sum=29.0, unigram_correct=1, n_batches=1)
    monkeypatch.setattr(trainer_module, "evaluate_lm", lambda *args, **kwargs: dataclasses.replace(flat))
    summary = train_run(
        run_config_from_dict(tiny(max_steps=50, eval_interval=1, early_stopping_patience=2, grad_accum=1)),
        out_dir=tmp_path,
        quiet=True,
    )
    assert summary["stop_reason"] == "early_stopping"
    assert summary["steps"] == 3
    assert summary["best_val_loss"] == pytest.approx(2.0)


@pytest.mark.parametrize("objective", ["mlm", "clm"])
def test_a_training_step_reports_the_models_own_loss(objective):
    """One convention: the data's labels (causal ones already shifted) go to the model as they are, and the
    loss of a one-batch step is the model's ``out.loss`` on that batch."""
    config = tiny(objective=objective, grad_accum=1, redraw_interval=0)
    config["model"]["dropout"] = 0.0
    trainer = Trainer(config=run_config_from_dict(config), dist=DistContext())
    batch = trainer.next_batch()
    if objective == "clm":
        real = batch["labels"] != -100
        assert torch.equal(batch["labels"][:, :-1][real[:, :-1]], batch["input_ids"][:, 1:][real[:, :-1]])
    with torch.no_grad():
        expected = trainer.model(
            batch["input_ids"], padding_mask=batch["padding_mask"], labels=batch["labels"]
        )
    result = trainer.train_step([batch])
    assert result.loss == pytest.approx(float(expected.loss), rel=1e-5)


def test_train_label_smoothing_smooths_the_training_loss_only():
    config = tiny(grad_accum=1, redraw_interval=0, label_smoothing=0.3)
    config["model"]["dropout"] = 0.0
    trainer = Trainer(config=run_config_from_dict(config), dist=DistContext())
    batch = trainer.next_batch()
    with torch.no_grad():
        logits = trainer.model(batch["input_ids"], padding_mask=batch["padding_mask"]).logits
    smoothed = task_loss(
        "mlm", logits, batch["labels"], padding_mask=batch["padding_mask"], label_smoothing=0.3
    )
    plain = task_loss("mlm", logits, batch["labels"], padding_mask=batch["padding_mask"])
    assert float(smoothed) != pytest.approx(float(plain), rel=1e-3)
    assert trainer.train_step([batch]).loss == pytest.approx(float(smoothed), rel=1e-5)
    # Validation scores the plain cross-entropy: the same weights validate alike with and without smoothing.
    plain_config = tiny(grad_accum=1, redraw_interval=0)
    plain_config["model"]["dropout"] = 0.0
    plain_trainer = Trainer(config=run_config_from_dict(plain_config), dist=DistContext())
    plain_trainer.model.load_state_dict(trainer.model.state_dict())
    assert trainer.evaluate()["loss"] == pytest.approx(plain_trainer.evaluate()["loss"], rel=1e-6)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"train": {"label_smoothing": 1.0}}, r"train.label_smoothing=1.0: expected a float in \[0, 1\)"),
        ({"train": {"label_smoothing": True}}, r"train.label_smoothing=True"),
    ],
)
def test_train_label_smoothing_out_of_range_is_refused(overrides, match):
    config = tiny()
    config["train"].update(overrides["train"])
    with pytest.raises(ConfigError, match=match):
        run_config_from_dict(config)


def test_a_time_limited_run_warns_when_the_schedule_spans_max_steps(tmp_path):
    messages: list[str] = []
    config = run_config_from_dict(tiny(max_steps=2, max_minutes=5.0))
    train_run(config, out_dir=tmp_path / "a", echo=messages.append)
    assert any("train.schedule_steps" in m and "max_steps=2" in m for m in messages)
    messages.clear()
    config = run_config_from_dict(tiny(max_steps=2, max_minutes=5.0, schedule_steps=2))
    train_run(config, out_dir=tmp_path / "b", echo=messages.append)
    assert not any("train.schedule_steps" in m for m in messages)


def tiny_tbptt(**train) -> dict:
    """A recurrent model reading parallel text streams in windows, carrying its state between them."""
    return {
        "model": {"backbone": "lstm", "d_model": 8, "n_layers": 1, "max_length": 16, "dropout": 0.1},
        "data": {"source": "text", "max_length": 16, "max_tokens": 64, "valid": "none"},
        "train": {
            "objective": "clm",
            "tbptt": 16,
            "lr": 3e-3,
            "warmup_steps": 2,
            "max_steps": 6,
            "schedule_steps": 6,
            "checkpoint_interval": 2,
            "log_interval": 1,
            "cpu_threads": 1,
            **train,
        },
    }


def test_a_resumed_tbptt_run_continues_its_carried_state(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    train_run(run_config_from_dict(tiny_tbptt()), out_dir=full, quiet=True)
    train_run(run_config_from_dict(tiny_tbptt(max_steps=4)), out_dir=part, quiet=True)
    saved = part / "checkpoints" / "step-00000004"
    assert (saved / "carry.safetensors").is_file()
    assert json.loads((saved / "trainer.json").read_text())["trainer"]["carry_layout"] == [2]
    resumed = train_run(run_config_from_dict(tiny_tbptt()), out_dir=part, resume=part, quiet=True)
    assert resumed["steps"] == 6 and resumed["steps_this_run"] == 2
    expected, got = _weights(full), _weights(part)
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_a_budget_run_anneals_over_training_time_and_stops_when_spent(tmp_path, monkeypatch):
    """train.budget_minutes: the decay follows training time (a fake clock here), not steps, and a resumed
    run continues the same decay."""
    clock = {"now": 0.0}

    def fake_counter():
        clock["now"] += 1.0  # each step reads the clock at its start and end: 1 s of training per step
        return clock["now"]

    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(perf_counter=fake_counter))
    budget = {"budget_minutes": 10 / 60, "max_steps": 1000, "warmup_steps": 0, "min_lr_ratio": 0.1}
    summary = train_run(
        run_config_from_dict(tiny(**budget, grad_accum=1)), out_dir=tmp_path / "a", quiet=True
    )
    assert summary["stop_reason"] == "budget_minutes" and summary["steps"] == 10
    lrs = [r["lr"] for r in read_metrics(tmp_path / "a" / "metrics.csv") if r["split"] == "train"]
    assert lrs == sorted(lrs, reverse=True)
    assert lrs[-1] == pytest.approx(3e-3 * 0.1)  # min_lr_ratio reached at the end of the budget
    assert lrs[4] == pytest.approx(3e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    clock["now"] = 0.0
    part = tmp_path / "b"
    train_run(
        run_config_from_dict(tiny(**{**budget, "max_steps": 4}, grad_accum=1)), out_dir=part, quiet=True
    )
    resumed = train_run(
        run_config_from_dict(tiny(**budget, grad_accum=1)), out_dir=part, resume=part, quiet=True
    )
    assert resumed["steps"] == 10
    assert [r["lr"] for r in read_metrics(part / "metrics.csv") if r["split"] == "train"] == pytest.approx(
        lrs
    )


def test_budget_and_schedule_steps_conflict():
    with pytest.raises(ConfigError, match="budget_minutes and train.schedule_steps"):
        run_config_from_dict(tiny(budget_minutes=1.0, schedule_steps=5))


def test_init_from_starts_from_another_runs_weights(tmp_path):
    train_run(run_config_from_dict(tiny(max_steps=2)), out_dir=tmp_path / "a", quiet=True)
    config = run_config_from_dict(tiny(max_steps=2, init_from=str(tmp_path / "a")))
    trainer = Trainer(config=config, dist=DistContext())
    for name, tensor in _weights(tmp_path / "a").items():
        assert torch.equal(trainer.model.state_dict()[name], tensor), name
    assert trainer.state.step == 0
    other = tiny_run(model={"d_model": 32}, train={"init_from": str(tmp_path / "a")})
    with pytest.raises(ValueError, match="d_model"):
        Trainer(config=run_config_from_dict(other), dist=DistContext())


def test_a_packed_run_trains_and_validates_on_single_proteins(tmp_path):
    run = tiny(max_steps=3, grad_accum=1)
    run["data"].update(mode="packed", max_length=512, max_tokens=1024)
    run["model"].update(position="rotary", max_length=512)
    summary = train_run(run_config_from_dict(run), out_dir=tmp_path, quiet=True)
    assert summary["steps"] == 3 and summary["valid"]["n_masked"] > 0
    trainer = Trainer(config=run_config_from_dict(run), dist=DistContext())
    batches = [trainer._next_batch() for _ in range(4)]
    assert max(int(b["segment_ids"].max()) for b in batches) > 0  # several proteins in a row
    run["model"]["backbone"] = "lstm"
    run["model"].pop("position")
    with pytest.raises(ConfigError, match="data.mode=packed"):
        run_config_from_dict(run)


def test_init_from_takes_a_bundled_models_name_and_refuses_a_tampered_checkpoint(tmp_path):
    """train.init_from resolves as every command does: the shipped model by name, and a checkpoint whose
    weights no longer match its manifest is refused rather than trained from."""
    from favor.folders import bundled_model_dir
    from favor.models.pretrained import load_pretrained

    shipped = bundled_model_dir("favor-protein-small")
    reference = load_pretrained(shipped)
    model = type(reference)(dataclasses.replace(reference.config, seed=reference.config.seed + 1))
    assert not torch.equal(model.embedding.tokens.weight, reference.embedding.tokens.weight)
    trainer_module._init_weights(model, "favor-protein-small")
    assert torch.equal(model.embedding.tokens.weight, reference.embedding.tokens.weight)

    train_run(run_config_from_dict(tiny(max_steps=2)), out_dir=tmp_path / "a", quiet=True)
    checkpoint = tmp_path / "a" / "checkpoints"
    step = (checkpoint / "latest").read_text(encoding="utf-8").strip()
    weights = checkpoint / step / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    config = run_config_from_dict(tiny(max_steps=2, init_from=str(checkpoint / step)))
    with pytest.raises(ValueError, match="init_from.*model.safetensors"):
        Trainer(config=config, dist=DistContext())
