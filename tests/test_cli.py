"""The ``favor`` command line: registry, train/evaluate/generate/demo smoke tests, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from favor import cli
from favor.data import sample_path
from tiny_models import tiny_run

TINY = tiny_run(
    data={"max_tokens": 512, "valid_max_sequences": 8},
    train={"max_steps": 3, "eval_interval": 2, "checkpoint_interval": 2, "cpu_threads": 1},
)


@pytest.fixture
def tiny_yaml(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_no_arguments_lists_the_subcommands(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in ("train", "evaluate", "generate", "demo"):
        assert name in out


@pytest.mark.parametrize("name", ["train", "evaluate", "generate", "demo"])
def test_subcommand_help_comes_from_the_docstring(name, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([name, "--help"])
    assert info.value.code == 0
    summary = cli.COMMANDS[name].__doc__.strip().splitlines()[0]
    assert " ".join(summary.split()[:4]) in " ".join(capsys.readouterr().out.split())


def test_registry_rejects_a_duplicate_name():
    with pytest.raises(ValueError, match="registered twice"):
        cli.command(name="train")(lambda: 0)


def test_train_then_evaluate_json(tmp_path, tiny_yaml, capsys):
    run_dir = tmp_path / "run"
    assert (
        cli.main(["train", str(tiny_yaml), "--out", str(run_dir), "--quiet", "--set", "train.lr=2e-3"]) == 0
    )
    assert "trained 3 steps" in capsys.readouterr().out
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["lr"] == pytest.approx(2e-3)
    argv = ["evaluate", str(run_dir), "--data", str(sample_path("test")), "--json", "--max-batches", "2"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.strip()
    metrics = json.loads(out)
    assert len(out.splitlines()) == 1
    assert {"masked_accuracy", "perplexity", "n_masked", "unigram_accuracy"} <= set(metrics)
    assert metrics["objective"] == "mlm" and metrics["perplexity"] >= 1
    # Continue the same run to step 5 (the config comes from the run folder).
    assert cli.main(["train", "--resume", str(run_dir), "--max-steps", "5", "--quiet"]) == 0
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 5


def test_generate_from_a_causal_run(tmp_path, tiny_yaml, capsys):
    run_dir = tmp_path / "clm"
    argv = ["train", str(tiny_yaml), "--out", str(run_dir), "--quiet", "--set", "train.objective=clm"]
    assert cli.main([*argv, "--max-steps", "1", "--valid", "none"]) == 0
    capsys.readouterr()
    argv = ["generate", str(run_dir), "--prompt", "MKT", "--max-new-tokens", "8", "--seed", "1", "--json"]
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["sequence"].startswith("MKT") and result["tokens_per_second"] > 0
    assert 1 <= result["new_tokens"] <= 8
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["generated"] == result["generated"]


def _error(argv, capsys) -> str:
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def test_errors_are_one_clear_line(tmp_path, tiny_yaml, capsys):
    assert "missing.yaml: config file not found" in _error(
        ["train", str(tmp_path / "missing.yaml"), "--out", "x"], capsys
    )
    line = _error(["train", str(tiny_yaml), "--out", str(tmp_path / "r"), "--set", "train.lrr=1"], capsys)
    assert "unknown key 'lrr' in section 'train'" in line
    bad = tmp_path / "bad.fasta"
    bad.write_text(">p\nMKZJ\n")
    line = _error(["train", str(tiny_yaml), "--out", str(tmp_path / "r"), "--train", str(bad)], capsys)
    assert "bad.fasta" in line and "'J'" in line and "position 4" in line
    assert "--out RUN_DIR is required" in _error(["train", str(tiny_yaml)], capsys)
    assert "no model here" in _error(["generate", str(tmp_path), "--prompt", "M"], capsys)


def test_corrupt_checkpoint_on_resume_names_the_file(tmp_path, tiny_yaml, capsys):
    run_dir = tmp_path / "run"
    assert cli.main(["train", str(tiny_yaml), "--out", str(run_dir), "--quiet", "--valid", "none"]) == 0
    capsys.readouterr()
    weights = run_dir / "checkpoints" / "step-00000003" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    line = _error(["train", "--resume", str(run_dir), "--max-steps", "4"], capsys)
    assert "model.safetensors" in line and "truncated" in line


def test_generate_refuses_a_masked_lm(tmp_path, tiny_yaml, capsys):
    run_dir = tmp_path / "mlm"
    assert (
        cli.main(
            ["train", str(tiny_yaml), "--out", str(run_dir), "--quiet", "--max-steps", "1", "--valid", "none"]
        )
        == 0
    )
    capsys.readouterr()
    assert "needs a causal LM" in _error(["generate", str(run_dir), "--prompt", "MK"], capsys)


def test_debug_mode_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("FAVOR_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        cli.main(["train", str(tmp_path / "missing.yaml"), "--out", "x"])


def test_console_script_error_exits_non_zero_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "favor.cli", "evaluate", str(tmp_path / "none"), "--data", "x.fasta"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("favor evaluate: error:")


def test_demo_runs_end_to_end_on_a_tiny_budget(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--minutes", "0.05", "--max-length", "2048", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "performer" in text and "transformer" in text and "unigram" in text and "exact / FAVOR+" in text
    summary = json.loads((out / "summary.json").read_text())
    assert [m["model"] for m in summary["models"]] == ["performer", "transformer"]
    first, second = summary["models"]
    assert first["n_masked"] == second["n_masked"] > 0
    assert first["unigram_accuracy"] == second["unigram_accuracy"]
    assert first["params"] == second["params"]
    assert (out / "loss_curves.png").stat().st_size > 0 and (out / "demo.png").stat().st_size > 0
    assert [(r["op"], r["length"]) for r in summary["attention"]] == [
        ("favor", 1024), ("exact", 1024), ("favor", 2048), ("exact", 2048)
    ]  # fmt: skip
    assert all(r["seconds"] > 0 for r in summary["attention"]) and summary["window"] == 4096
    # A second demo into the same folder replaces the earlier runs.
    assert cli.main(["demo", "--out", str(out), "--minutes", "0.02", "--max-length", "1024", "--quiet"]) == 0


@pytest.mark.parametrize(
    ("module", "argv", "extra"),
    [
        ("statsmodels", ["train", "configs/timeseries_tiny.yaml", "--max-steps", "1"], "timeseries"),
        ("optuna", ["tune", "configs/charlm_tiny.yaml", "--trials", "1"], "tune"),
    ],
)
def test_a_missing_optional_dependency_names_its_extra(module, argv, extra, tmp_path, monkeypatch, capsys):
    root = Path(__file__).resolve().parents[1]
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails as if it were not installed
    for name in [m for m in sys.modules if m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.chdir(root)
    args = (
        [*argv, "--out", str(tmp_path / "run")]
        if argv[0] == "train"
        else [*argv, "--study-dir", str(tmp_path)]
    )
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert f"pip install 'favor[{extra}]'" in err and module in err.lower()
