"""ONNX export of encoders: onnxruntime matches PyTorch on new batch sizes and lengths, padding included."""

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from favor.export import ExportError, export_onnx  # noqa: E402
from favor.models import ModelConfig, SequenceModel, load_pretrained, save_pretrained  # noqa: E402

TINY = dict(vocab_size=29, d_model=16, n_layers=2, n_heads=2, d_ff=32, max_length=40, dropout=0.0)


def save_tiny(folder, **overrides):
    torch.manual_seed(0)
    config = ModelConfig(**{**TINY, "attention": {"nb_features": 8}, **overrides})
    save_pretrained(SequenceModel(config), folder)
    return folder


@pytest.mark.parametrize("backbone", ["performer", "transformer"])
def test_bidirectional_encoder_exports_with_dynamic_axes(tmp_path, backbone):
    folder = save_tiny(tmp_path / "model", backbone=backbone, task="mlm")
    report = export_onnx(folder, tmp_path / "out" / "model.onnx")
    print(f"{backbone}: max |onnxruntime - torch| = {report.max_abs_diff}")
    assert set(report.max_abs_diff) == {"logits", "last_hidden_state"}
    assert report.worst < 1e-4

    # Independently of the built-in check: a batch of 3 with ragged padding, length 23.
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    model = load_pretrained(folder)
    ids = torch.randint(4, 29, (3, 23), generator=torch.Generator().manual_seed(3))
    padding_mask = torch.zeros(3, 23, dtype=torch.bool)
    padding_mask[1, 15:] = True
    padding_mask[2, 4:] = True
    logits, hidden = session.run(None, {"input_ids": ids.numpy(), "padding_mask": padding_mask.numpy()})
    with torch.no_grad():
        expected = model(ids, padding_mask=padding_mask, repr_layers=[-1])
    real = ~padding_mask.numpy()
    np.testing.assert_allclose(logits[real], expected.logits.numpy()[real], atol=1e-4, rtol=0)
    np.testing.assert_allclose(hidden[real], expected.hidden_states[0].numpy()[real], atol=1e-4, rtol=0)


def test_causal_performer_refuses_with_a_reason(tmp_path):
    folder = save_tiny(tmp_path / "clm", backbone="performer", task="clm", causal=True)
    with pytest.raises(ExportError, match="causal Performer models do not export"):
        export_onnx(folder, tmp_path / "clm.onnx")


def test_broken_model_folder_is_an_export_error(tmp_path):
    with pytest.raises(ExportError, match="no model found"):
        export_onnx(tmp_path, tmp_path / "x.onnx")


def test_export_cli_fits_the_favor_command_framework(monkeypatch):
    cli = pytest.importorskip("favor.cli")
    from favor.export import export_cli

    monkeypatch.setitem(cli.COMMANDS, "export-check", export_cli)
    args = cli.build_parser().parse_args(["export-check", "runs/x", "out.onnx", "--no-check"])
    assert (str(args.run_dir), str(args.out), args.opset, args.no_check) == ("runs/x", "out.onnx", 18, True)
