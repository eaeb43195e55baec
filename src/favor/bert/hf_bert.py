"""Load a Hugging Face BERT folder (``config.json`` + ``model.safetensors``) into `BertEncoder`.

Only safetensors are read (never pickle). Hugging Face names map one to one onto the encoder's, except that
BERT's separate query / key / value projections are concatenated into favor's fused ``qkv`` projection
(rows ``[q; k; v]``, heads contiguous inside each, matching ``SelfAttention._split_heads``). The pooler and
the ``position_ids`` buffer are not part of the encoder and are skipped.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from favor.bert.bert import BertConfig, BertEncoder

__all__ = ["convert_bert_state_dict", "load_bert_folder"]

_EMBEDDINGS = {
    "embeddings.word_embeddings.weight": "embeddings.words.weight",
    "embeddings.position_embeddings.weight": "embeddings.positions.weight",
    "embeddings.token_type_embeddings.weight": "embeddings.token_types.weight",
    "embeddings.LayerNorm.weight": "embeddings.norm.weight",
    "embeddings.LayerNorm.bias": "embeddings.norm.bias",
}
_LAYER = {
    "attention.output.dense": "attention.out",
    "attention.output.LayerNorm": "norm_attention",
    "intermediate.dense": "feed_forward.fc_in",
    "output.dense": "feed_forward.fc_out",
    "output.LayerNorm": "norm_feed_forward",
}
_LAYER_NAME = re.compile(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)")
_SKIPPED = re.compile(r"(pooler\..*|embeddings\.position_ids|cls\..*)")


def _normalize_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip a ``bert.`` prefix (task checkpoints) and rename old ``gamma``/``beta`` LayerNorm names."""
    out = {}
    for name, tensor in state.items():
        name = name.removeprefix("bert.")
        name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
        name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
        out[name] = tensor
    return out


def convert_bert_state_dict(state: dict[str, torch.Tensor], config: BertConfig) -> dict[str, torch.Tensor]:
    """Hugging Face ``BertModel`` tensors -> a `BertEncoder` state dict (exact attention).

    Raises ``ValueError`` naming every tensor it does not recognise or that is missing.
    """
    state = _normalize_names(state)
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for name, tensor in state.items():
        if name in _EMBEDDINGS:
            out[_EMBEDDINGS[name]] = tensor
            continue
        if _SKIPPED.fullmatch(name):
            continue
        match = _LAYER_NAME.fullmatch(name)
        if match is None:
            unknown.append(name)
            continue
        layer, module, kind = int(match.group(1)), match.group(2), match.group(3)
        if module in ("attention.self.query", "attention.self.key", "attention.self.value"):
            qkv.setdefault((layer, kind), {})[module.rsplit(".", 1)[1]] = tensor
        elif module in _LAYER:
            out[f"layers.{layer}.{_LAYER[module]}.{kind}"] = tensor
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(f"unrecognised BERT tensors: {', '.join(sorted(unknown))}")
    for (layer, kind), parts in sorted(qkv.items()):
        missing = [p for p in ("query", "key", "value") if p not in parts]
        if missing:
            raise ValueError(f"layer {layer}: missing attention.self.{'/'.join(missing)}.{kind}")
        # (3 D, D) weights or (3 D,) biases: rows [q; k; v]
        out[f"layers.{layer}.attention.qkv.{kind}"] = torch.cat(
            [parts["query"], parts["key"], parts["value"]], dim=0
        )
    return out


def load_bert_folder(folder: str | os.PathLike, *, dtype: torch.dtype = torch.float32) -> BertEncoder:
    """Build a `BertEncoder` (exact attention, eval mode) from a Hugging Face BERT folder."""
    folder = Path(folder)
    config_path, weights_path = folder / "config.json", folder / "model.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing (expected a Hugging Face BERT folder with safetensors)")
    config = BertConfig.from_hf(json.loads(config_path.read_text(encoding="utf-8")))
    encoder = BertEncoder(config)
    state = convert_bert_state_dict(load_file(str(weights_path)), config)
    result = encoder.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        missing, unexpected = sorted(result.missing_keys), sorted(result.unexpected_keys)
        raise ValueError(f"{weights_path}: missing {missing}, unexpected {unexpected}")
    return encoder.to(dtype).eval()
