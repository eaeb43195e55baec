"""Fine-tuning end to end on the synthetic data root with a tiny model: a few steps per task family."""

import json
import time

import pytest
import torch

from favor.models import build_backbone, load_config, load_pretrained
from favor.tasks import get_task
from favor.tasks.finetune import build_task_model, finetune, finetune_cli, similar_size_config
from favor.tasks.loop import TrainSettings, _EarlyStopping, _schedule_position, make_batches

STEPS = TrainSettings(max_steps=3, eval_interval=3, lr=1e-3, max_tokens=256)


@pytest.mark.parametrize(
    ("task", "keys"),
    [
        ("ec", {"accuracy", "macro_f1"}),
        ("go_mf", {"fmax", "auprc_micro", "auprc_macro"}),
        ("ss3", {"q3"}),
        ("contacts", {"precision_at_l5_long", "long_range_density"}),
        ("interchain", {"precision_at_k", "precision_at_10", "contact_density"}),
    ],
)
def test_finetune_writes_metrics_and_model(tiny_run, synthetic_root, tmp_path, task, keys):
    result = finetune(tiny_run, task=task, out=tmp_path, data_root=synthetic_root, settings=STEPS)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert keys <= set(saved["test"]) and keys <= set(saved["valid"])
    assert saved["model"]["init"] == "pretrained" and saved["training"]["steps"] == 3
    assert saved["primary_metric"] == get_task(task).primary_metric
    assert result["test"] == pytest.approx(saved["test"], nan_ok=True)
    model = load_pretrained(tmp_path / "model")
    assert model.config.task == get_task(task).model_task
    assert (tmp_path / "model" / "alphabet.json").is_file()


def test_pretrained_weights_are_copied_and_scratch_is_not(tiny_run):
    pretrained = load_pretrained(tiny_run / "model")
    task = get_task("ss3")
    copied, info = build_task_model(pretrained, task, backbone=None, from_scratch=False, seed=1)
    fresh, fresh_info = build_task_model(pretrained, task, backbone=None, from_scratch=True, seed=1)
    weight = "backbone.blocks.0.attention.qkv.weight"
    assert info["init"] == "pretrained" and fresh_info["init"] == "scratch"
    assert torch.equal(copied.state_dict()[weight], pretrained.state_dict()[weight])
    assert not torch.equal(fresh.state_dict()[weight], pretrained.state_dict()[weight])
    assert copied.config.num_labels == 3 and copied.config.max_length == pretrained.config.max_length


def test_other_backbones_have_a_similar_size(tiny_run):
    base = load_config(tiny_run / "model")
    target = sum(p.numel() for p in build_backbone(base).parameters())
    for backbone in ("lstm", "cnn"):
        config = similar_size_config(base, get_task("ec"), backbone)
        size = sum(p.numel() for p in build_backbone(config).parameters())
        assert config.backbone == backbone and config.position == "none" and not config.causal
        assert 0.5 < size / target < 1.5


def test_probe_trains_only_the_head(tiny_run, synthetic_root, tmp_path):
    settings = TrainSettings(max_steps=3, eval_interval=3, lr=1e-2, max_tokens=256, probe=True)
    finetune(tiny_run, task="ec", out=tmp_path, data_root=synthetic_root, settings=settings)
    before, after = (
        load_pretrained(tiny_run / "model").state_dict(),
        load_pretrained(tmp_path / "model").state_dict(),
    )
    backbone = [k for k in after if k.startswith(("backbone.", "embedding."))]
    assert backbone and all(torch.equal(before[k], after[k]) for k in backbone)


def test_lstm_and_baseline_runs(tiny_run, synthetic_root, tmp_path):
    lstm = finetune(
        tiny_run, task="ss8", out=tmp_path / "lstm", data_root=synthetic_root, backbone="lstm", settings=STEPS
    )
    assert lstm["model"]["backbone"] == "lstm" and lstm["model"]["init"] == "scratch"
    baseline = finetune(
        tiny_run, task="contacts", out=tmp_path / "b", data_root=synthetic_root, backbone="baseline"
    )
    assert baseline["model"]["name"] == "separation_prior" and "precision_at_l5_long" in baseline["test"]
    assert not (tmp_path / "b" / "model").exists()


def test_cli_errors_are_clear(tiny_run, synthetic_root, tmp_path):
    with pytest.raises(ValueError, match="--task 'foo'"):
        finetune_cli(tiny_run, task="foo", out=tmp_path)
    with pytest.raises(FileNotFoundError, match="--data-root"):
        finetune_cli(tiny_run, task="ec", out=tmp_path, data_root=tmp_path / "absent", quiet=True)
    with pytest.raises(ValueError, match="--backbone 'xlstm'"):
        finetune(
            tiny_run, task="ec", out=tmp_path, data_root=synthetic_root, backbone="xlstm", settings=STEPS
        )


def test_cli_prints_test_metrics(tiny_run, synthetic_root, tmp_path, capsys):
    finetune_cli(
        tiny_run, task="localization", out=tmp_path, data_root=synthetic_root, max_steps=2, quiet=True
    )
    assert "localization (performer, pretrained): test accuracy" in capsys.readouterr().out


def test_token_budget_batches():
    batches = make_batches([10, 50, 20, 40], max_tokens=100, max_pairs=None)
    assert batches == [[1, 3], [2, 0]]
    assert make_batches([30, 30], max_tokens=100, max_pairs=1000) == [[0], [1]]


def test_schedule_follows_the_time_budget_when_it_runs_out_first():
    settings = TrainSettings(max_steps=1000, max_minutes=1.0)
    # Half the time used after 10 steps: the schedule is half way.
    assert _schedule_position(10, time.perf_counter() - 30, settings) >= 499
    assert _schedule_position(10, time.perf_counter() - 30, TrainSettings(max_steps=1000)) == 10


def test_early_stopping_keeps_the_best_weights():
    model = torch.nn.Linear(2, 1)
    stopping = _EarlyStopping(patience=2)
    assert not stopping.update(0.5, 1, model)
    best = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    assert not stopping.update(float("nan"), 2, model)
    assert stopping.update(0.4, 3, model)
    assert stopping.best[1] == 1 and torch.equal(stopping.best[2]["weight"], best)


def test_lora_trains_adapters_and_head_then_merges(tiny_run, synthetic_root, tmp_path):
    """--lora-rank: only adapters and the head train; OUT/model is the merged model (plain linear layers,
    backbone weights changed only by the folded-in low-rank updates), OUT/adapter holds the adapters."""
    pytest.importorskip("peft")
    from safetensors.torch import load_file

    settings = TrainSettings(max_steps=4, eval_interval=4, lr=3e-2, max_tokens=256, lora_rank=2)
    result = finetune(tiny_run, task="ec", out=tmp_path, data_root=synthetic_root, settings=settings)
    info = result["model"]
    assert info["lora"]["rank"] == 2 and info["trainable_parameters"] < info["parameters"] / 2
    adapter = load_file(str(tmp_path / "adapter" / "adapter.safetensors"))
    assert any("lora_A" in k for k in adapter) and any(k.startswith("head.") for k in adapter)
    assert json.loads((tmp_path / "adapter" / "adapter.json").read_text())["base_model"].endswith("model")
    before = load_pretrained(tiny_run / "model").state_dict()
    merged = load_pretrained(tmp_path / "model")
    after = merged.state_dict()
    assert not any("lora" in k for k in after)
    qkv = "backbone.blocks.0.attention.qkv.weight"
    delta = after[qkv] - before[qkv]
    assert delta.abs().max() > 0 and torch.linalg.matrix_rank(delta) <= 2  # a rank-2 update, folded in
    ffn = "backbone.blocks.0.feed_forward.fc_in.weight"
    assert torch.equal(after[ffn], before[ffn])  # not a target: untouched


def test_lora_merge_keeps_the_outputs():
    pytest.importorskip("peft")
    from favor.models import SequenceModel
    from favor.tasks.lora import add_lora, merge_lora
    from tiny_models import tiny_config

    torch.manual_seed(0)
    model = SequenceModel(tiny_config("transformer", task="sequence_classification", num_labels=3)).eval()
    ids = torch.randint(0, 13, (2, 9))
    plain = model(ids).logits
    add_lora(model, rank=2, targets=("qkv", "fc_out"))
    torch.testing.assert_close(model(ids).logits, plain)  # B starts at zero
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
    adapted = model(ids).logits
    assert (adapted - plain).abs().max() > 1e-3
    merge_lora(model)
    torch.testing.assert_close(model(ids).logits, adapted, rtol=1e-5, atol=1e-5)
    assert type(model.backbone.blocks[0].attention.qkv) is torch.nn.Linear
