"""Export a model folder to ONNX and check the exported graph against PyTorch with onnxruntime.

    report = export_onnx("runs/mlm", "mlm.onnx")          # or: favor export runs/mlm mlm.onnx
    report.max_abs_diff                                    # {"logits": 1.2e-06, "last_hidden_state": ...}

The graph takes ``input_ids`` (batch, length) int64 and ``padding_mask`` (batch, length) bool (True at
padding) and returns ``logits`` (the head's output: (batch, length, vocab) for language models) and
``last_hidden_state`` (batch, length, d_model). Batch and length are dynamic axes (length up to the model's
``max_length``). The FAVOR+ projections are exported as constants: the graph computes exactly what the
saved model computes, with plain MatMul / Exp / ReduceMax / Div operators.

Uses the `torch.export`-based exporter (``torch.onnx.export(..., dynamo=True)``, which needs onnxscript);
install the ``export`` extra. Causal Performers do not export (see docs/export.md): their chunked prefix
scan loops over chunks in Python, and ``cummax`` has no ONNX lowering.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from favor.folders import ModelLoadError, load_served_model
from favor.models import SequenceModel

__all__ = [
    "ExportError",
    "ExportReport",
    "OnnxEncoder",
    "export_onnx",
    "check_onnx",
    "export_cli",
]

INPUT_NAMES = ("input_ids", "padding_mask")
OUTPUT_NAMES = ("logits", "last_hidden_state")
DEFAULT_OPSET = 18


class ExportError(RuntimeError):
    """A model that cannot be exported, or an export whose outputs differ from PyTorch's."""


@dataclass
class ExportReport:
    """What `export_onnx` wrote and how closely onnxruntime reproduces PyTorch."""

    path: Path
    opset: int
    seconds: float
    # Largest |onnxruntime - torch| per output over the check batches (empty when not checked).
    max_abs_diff: dict[str, float] = field(default_factory=dict)

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values(), default=0.0)


class OnnxEncoder(nn.Module):
    """``(input_ids, padding_mask) -> (logits, last_hidden_state)``: the signature of the ONNX graph."""

    def __init__(self, model: SequenceModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, padding_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(input_ids, padding_mask=padding_mask, repr_layers=[-1])
        return out.logits, out.hidden_states[0]


def _check_exportable(model: SequenceModel) -> None:
    config = model.config
    if config.backbone == "performer" and config.causal:
        raise ExportError(
            "causal Performer models do not export to ONNX: the chunked causal prefix scan loops over "
            "chunks in Python (the length cannot stay dynamic) and aten.cummax has no ONNX lowering; "
            "export a bidirectional Performer, or serve causal models with favor serve (docs/export.md)"
        )
    if config.backbone in ("rnn", "lstm", "gru"):
        raise ExportError(
            f"backbone {config.backbone!r} does not export to ONNX (torch.export cannot trace the packed "
            "variable-length recurrence); see docs/export.md"
        )


def _example(model: SequenceModel, batch: int, length: int, generator: torch.Generator):
    """Random residue ids ``(batch, length)`` with the last row padded after about half its length."""
    vocab = model.config.vocab_size
    ids = torch.randint(min(4, vocab - 1), vocab, (batch, length), generator=generator)
    padding_mask = torch.zeros(batch, length, dtype=torch.bool)
    if batch > 1 and length > 1:
        padding_mask[-1, length // 2 + 1 :] = True
        ids[-1, length // 2 + 1 :] = 0
    return ids, padding_mask


def export_onnx(
    model_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    atol: float = 1e-4,
    dynamic: bool = True,
) -> ExportReport:
    """Export the model of ``model_dir`` to ``out_path`` (one self-contained .onnx file).

    Args:
        model_dir: a model folder, a training run directory or a checkpoint (see `favor.folders`).
        out_path: the .onnx file to write (parent folders are created).
        opset: ONNX opset version.
        check: run onnxruntime on fresh inputs (other batch sizes and lengths than the export example,
            one row padded) and compare with PyTorch; raises `ExportError` when any output differs by
            more than ``atol``.
        atol: tolerance of the check.
        dynamic: dynamic batch and length axes (False: fixed to the example shape, batch 2, length 16).

    Returns:
        an `ExportReport` (path, opset, seconds, max abs difference per output).
    """
    try:
        served = load_served_model(model_dir)
    except ModelLoadError as error:
        raise ExportError(str(error)) from None
    model = served.model.float().eval()
    _check_exportable(model)
    encoder = OnnxEncoder(model).eval()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    length = min(16, model.config.max_length)
    example = _example(model, 2, length, torch.Generator().manual_seed(0))
    dynamic_shapes = None
    if dynamic:
        batch_dim = torch.export.Dim("batch", min=1)
        length_dim = torch.export.Dim("length", min=1, max=model.config.max_length)
        dynamic_shapes = ({0: batch_dim, 1: length_dim}, {0: batch_dim, 1: length_dim})
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                encoder,
                example,
                str(out_path),
                dynamo=True,
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                external_data=False,
                verbose=False,
            )
    except ImportError as error:
        raise ExportError(
            f"ONNX export needs onnx and onnxscript ({error}): pip install 'favor[export]'"
        ) from None
    except Exception as error:
        summary = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise ExportError(
            f"{served.path}: torch.onnx.export failed for backbone {model.config.backbone!r} ({summary})"
        ) from error
    report = ExportReport(path=out_path, opset=opset, seconds=time.perf_counter() - start)
    if check:
        shapes = [(3, max(1, length - 5)), (1, 1), (2, model.config.max_length)] if dynamic else [(2, length)]
        report.max_abs_diff = check_onnx(encoder, out_path, shapes=shapes)
        if report.worst > atol:
            raise ExportError(
                f"{out_path}: onnxruntime outputs differ from PyTorch by {report.worst:.3g} > {atol}"
            )
    return report


def check_onnx(
    encoder: OnnxEncoder, onnx_path: str | os.PathLike, *, shapes: list[tuple[int, int]], seed: int = 1
) -> dict[str, float]:
    """Largest |onnxruntime - torch| per output over random inputs of the given (batch, length) shapes."""
    try:
        import onnxruntime
    except ImportError as error:
        raise ExportError(
            f"checking the export needs onnxruntime ({error}): pip install 'favor[export]'"
        ) from None
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    worst = dict.fromkeys(OUTPUT_NAMES, 0.0)
    for batch, length in shapes:
        ids, padding_mask = _example(encoder.model, batch, length, generator)
        got = session.run(
            list(OUTPUT_NAMES), {"input_ids": ids.numpy(), "padding_mask": padding_mask.numpy()}
        )
        with torch.inference_mode():
            expected = encoder(ids, padding_mask)
        for name, ort_out, torch_out in zip(OUTPUT_NAMES, got, expected, strict=True):
            diff = (torch.from_numpy(ort_out) - torch_out.float()).abs()
            # Padded positions carry no meaning (attention there is arbitrary): compare real ones only.
            if diff.dim() >= 2 and diff.shape[:2] == padding_mask.shape:
                diff = diff[~padding_mask]
            worst[name] = max(worst[name], float(diff.max()) if diff.numel() else 0.0)
    return worst


def export_cli(
    run_dir: Path, out: Path, *, opset: int = DEFAULT_OPSET, atol: float = 1e-4, no_check: bool = False
) -> int:
    """Export an encoder to ONNX and check it against PyTorch with onnxruntime.

    Bidirectional Performers, Transformers, Linformers and CNNs export; causal Performers and recurrent
    backbones do not (docs/export.md). Prints the file written and the largest output difference.

    Args:
        run_dir: model folder, training run directory or checkpoint folder (as for favor serve).
        out: the .onnx file to write.
        opset: ONNX opset version.
        atol: largest accepted |onnxruntime - torch| over real positions.
        no_check: skip the onnxruntime comparison.
    """
    report = export_onnx(run_dir, out, opset=opset, check=not no_check, atol=atol)
    diffs = ", ".join(f"{k} {v:.2e}" for k, v in report.max_abs_diff.items()) or "not checked"
    print(f"wrote {report.path} (opset {report.opset}, {report.seconds:.1f} s)")
    print(f"max |onnxruntime - torch| over real positions: {diffs}")
    return 0
