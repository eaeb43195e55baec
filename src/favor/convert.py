"""ESM checkpoints in favor, both ways: a Hugging Face ``EsmForMaskedLM`` folder <-> a favor model folder.

    favor convert from-esm HF_DIR --out OUT [--attention exact|performer] [--nb-features M] [--kernel K]
    favor convert to-hf MODEL --out HF_DIR

**From ESM.** Reads ``config.json`` and ``model.safetensors`` (or its shards) of any ``EsmForMaskedLM`` with
rotary positions (ESM-2), without ``transformers``, and writes a favor model folder that
`favor.models.load_pretrained` loads as a `SequenceModel`: ESM's 33-token vocabulary in ESM's order
(``alphabet.json``, so every favor command tokenizes as ESM does), token dropout, pre-LayerNorm blocks with
attention biases, the final LayerNorm and ESM's LM head (dense, GELU, LayerNorm, decoder tied to the
embeddings, with bias). The two models differ in one convention: ESM rotates channel ``i`` with channel
``i + head_dim / 2``, favor rotates ``2i`` with ``2i + 1``. The conversion permutes the rows of the query and
key projections inside each head so that favor's rotation of the permuted channels is ESM's rotation:
dot products (what attention sees) are unchanged, so the logits are the same. With ``--attention
performer`` the same weights drive FAVOR+ attention (the paper's backward compatibility: fine-tune briefly
to recover, see docs/esm.md). A ``pytorch_model.bin`` is refused: unpickling it could run code. ESM-1b-style
learned absolute positions are refused too (favor's learned positions do not use ESM's padding offset).

**To Hugging Face.** Writes ``config.json`` + ``model.safetensors`` (+ ``vocab.txt``) that
``transformers.EsmForMaskedLM.from_pretrained`` loads with the same logits, for any favor masked LM of this
layout (transformer or performer backbone, rotary positions, tied LM head). A performer is written as its
exact twin: the same weights with softmax attention, and the result says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from favor.data.alphabet import Alphabet
from favor.folders import ALPHABET_NAME, load_served_model
from favor.models import ModelConfig, SequenceModel, save_pretrained

__all__ = ["ConversionError", "from_esm", "to_hf", "esm_config", "rotary_permutation"]

_LAYER_NORM_EPS = 1e-5  # torch's nn.LayerNorm default, which favor's blocks use
_ROTARY_BASE = 10000.0


class ConversionError(ValueError):
    """A folder that cannot be converted; the message names the file and what is wrong."""


def rotary_permutation(head_dim: int) -> torch.Tensor:
    """Favor channel ``c`` of a head is ESM channel ``perm[c]``: ``2i -> i``, ``2i+1 -> i + d/2``."""
    half = head_dim // 2
    perm = torch.empty(head_dim, dtype=torch.long)
    perm[0::2] = torch.arange(half)
    perm[1::2] = torch.arange(half) + half
    return perm


def _permute_heads(t: torch.Tensor, n_heads: int, perm: torch.Tensor) -> torch.Tensor:
    """Reorder the rows (output channels) of a projection weight ``(H*d, ...)`` or bias per head."""
    shape = t.shape
    return t.reshape(n_heads, len(perm), *shape[1:])[:, perm].reshape(shape)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConversionError(f"{path}: cannot read it as JSON ({error})") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: expected a JSON object")
    return data


def _read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
        files = [folder / name for name in shards]
    elif (folder / "pytorch_model.bin").is_file():
        raise ConversionError(
            f"{folder / 'pytorch_model.bin'}: a pickled checkpoint; favor never unpickles (loading a pickle "
            "can run arbitrary code). Convert it to safetensors first, e.g. with transformers: "
            "EsmForMaskedLM.from_pretrained(DIR).save_pretrained(OUT, safe_serialization=True)"
        )
    else:
        raise ConversionError(f"{folder}: no model.safetensors (or model.safetensors.index.json) in it")
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            tensors.update(load_file(str(file)))
        except Exception as error:
            raise ConversionError(f"{file}: corrupt or truncated safetensors file ({error})") from None
    return tensors


def _esm_model_config(hf: dict[str, Any], path: Path, alphabet: Alphabet, **attention: Any) -> ModelConfig:
    """The favor `ModelConfig` of an ESM config.json, refusing what favor does not reproduce exactly."""
    if hf.get("model_type") not in (None, "esm"):
        raise ConversionError(f"{path}: model_type={hf.get('model_type')!r}, expected 'esm'")
    position = hf.get("position_embedding_type", "absolute")
    if position != "rotary":
        raise ConversionError(
            f"{path}: position_embedding_type={position!r}; favor converts ESM-2-style rotary models only "
            "(ESM-1b's learned positions are offset by its padding index; favor's learned positions are not)"
        )
    problems = []
    if hf.get("emb_layer_norm_before"):
        problems.append("emb_layer_norm_before=true")
    if not math.isclose(float(hf.get("layer_norm_eps", _LAYER_NORM_EPS)), _LAYER_NORM_EPS):
        problems.append(f"layer_norm_eps={hf.get('layer_norm_eps')} (favor's blocks use 1e-5)")
    if hf.get("hidden_act", "gelu") != "gelu":
        problems.append(f"hidden_act={hf.get('hidden_act')!r}")
    if hf.get("is_decoder") or hf.get("is_folding_model"):
        problems.append("a decoder or folding model")
    if hf.get("vocab_size") != len(alphabet):
        problems.append(f"vocab_size={hf.get('vocab_size')} (the vocabulary has {len(alphabet)} tokens)")
    if problems:
        raise ConversionError(f"{path}: not an ESM-2 masked LM favor can reproduce: {'; '.join(problems)}")
    for key, want in (("mask_token_id", alphabet.mask_id), ("pad_token_id", alphabet.pad_id)):
        if hf.get(key, want) != want:
            raise ConversionError(f"{path}: {key}={hf.get(key)}, but ESM's vocabulary has it at {want}")
    try:
        return ModelConfig(
            backbone=attention.pop("backbone"),
            task="mlm",
            vocab_size=hf["vocab_size"],
            d_model=hf["hidden_size"],
            n_layers=hf["num_hidden_layers"],
            n_heads=hf["num_attention_heads"],
            d_ff=hf["intermediate_size"],
            dropout=0.0,
            max_length=attention.pop("max_length") or hf.get("max_position_embeddings", 1026),
            position="rotary",
            token_dropout=bool(hf.get("token_dropout", False)),
            mask_token_id=alphabet.mask_id,
            tie_embeddings=True,
            **attention,
        )
    except KeyError as error:
        raise ConversionError(f"{path}: missing key {error.args[0]!r}") from None
    except ValueError as error:
        raise ConversionError(f"{path}: {error}") from None


def _esm_to_favor_state(
    hf: dict[str, torch.Tensor], config: ModelConfig, path: Path
) -> dict[str, torch.Tensor]:
    prefix = "esm." if any(k.startswith("esm.") for k in hf) else ""
    if "lm_head.dense.weight" not in hf:
        raise ConversionError(f"{path}: no lm_head.* tensors; favor converts EsmForMaskedLM checkpoints")
    perm = rotary_permutation(config.head_dim)

    def get(name: str) -> torch.Tensor:
        key = prefix + name if not name.startswith("lm_head.") else name
        if key not in hf and "LayerNorm." in key:
            # Some writers (transformers 5) store LayerNorm parameters under their legacy names.
            key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
                "LayerNorm.bias", "LayerNorm.beta"
            )
        if key not in hf:
            raise ConversionError(f"{path}: missing tensor {key!r}")
        return hf[key]

    state = {"embedding.tokens.weight": get("embeddings.word_embeddings.weight")}
    for i in range(config.n_layers):
        src, dst = f"encoder.layer.{i}.", f"backbone.blocks.{i}."
        for part in ("weight", "bias"):
            q = _permute_heads(get(f"{src}attention.self.query.{part}"), config.n_heads, perm)
            k = _permute_heads(get(f"{src}attention.self.key.{part}"), config.n_heads, perm)
            v = get(f"{src}attention.self.value.{part}")
            state[f"{dst}attention.qkv.{part}"] = torch.cat([q, k, v])
            state[f"{dst}attention.out.{part}"] = get(f"{src}attention.output.dense.{part}")
            state[f"{dst}norm_attention.{part}"] = get(f"{src}attention.LayerNorm.{part}")
            state[f"{dst}norm_feed_forward.{part}"] = get(f"{src}LayerNorm.{part}")
            state[f"{dst}feed_forward.fc_in.{part}"] = get(f"{src}intermediate.dense.{part}")
            state[f"{dst}feed_forward.fc_out.{part}"] = get(f"{src}output.dense.{part}")
    for part in ("weight", "bias"):
        state[f"backbone.final_norm.{part}"] = get(f"encoder.emb_layer_norm_after.{part}")
        state[f"head.dense.{part}"] = get(f"lm_head.dense.{part}")
        state[f"head.norm.{part}"] = get(f"lm_head.layer_norm.{part}")
    state["head.decoder.bias"] = get("lm_head.bias")
    decoder = hf.get("lm_head.decoder.weight")
    if decoder is not None and not torch.equal(decoder, state["embedding.tokens.weight"]):
        raise ConversionError(
            f"{path}: lm_head.decoder.weight differs from the word embeddings (untied head)"
        )
    return state


def _alphabet(vocab: Path) -> Alphabet:
    """ESM's vocabulary (no vocab.txt, or ESM's), or favor's own protein alphabet (a favor model that went
    through to_hf); any other vocabulary is refused."""
    if not vocab.is_file():
        return Alphabet.esm()
    tokens = tuple(line.strip() for line in vocab.read_text(encoding="utf-8").splitlines() if line.strip())
    for alphabet in (Alphabet.esm(), Alphabet.protein()):
        if tokens == alphabet.tokens:
            return alphabet
    raise ConversionError(
        f"{vocab}: neither ESM's 33-token vocabulary nor favor's protein alphabet, in order"
    )


def from_esm(
    hf_dir: str | Path,
    out: str | Path,
    *,
    attention: str = "exact",
    nb_features: int = 256,
    kernel: str = "softmax",
    max_length: int | None = None,
    seed: int = 0,
) -> Path:
    """Convert the Hugging Face ESM folder ``hf_dir`` into the favor model folder ``out`` (returned).

    Args:
        attention: "exact" (softmax attention: the same model) or "performer" (FAVOR+ with the same weights).
        nb_features, kernel: FAVOR+ features per head and kernel (performer only).
        max_length: the longest input in tokens (default: the checkpoint's max_position_embeddings); rotary
            positions have no table, so a longer limit is only a limit.
        seed: seed of the FAVOR+ projections.
    """
    hf_dir, out = Path(hf_dir), Path(out)
    if attention not in ("exact", "performer"):
        raise ConversionError(f"--attention {attention!r}: choose exact or performer")
    config_path = hf_dir / "config.json"
    if not config_path.is_file():
        raise ConversionError(f"{hf_dir}: no config.json (expected a Hugging Face ESM folder)")
    hf_config = _read_json(config_path)
    options: dict[str, Any] = {"backbone": "transformer" if attention == "exact" else "performer"}
    options["max_length"] = max_length
    if attention == "performer":
        options["attention"] = {"nb_features": nb_features, "kernel": kernel}
        options["seed"] = seed
    alphabet = _alphabet(hf_dir / "vocab.txt")
    config = _esm_model_config(hf_config, config_path, alphabet, **options)
    weights_state = _esm_to_favor_state(_read_hf_weights(hf_dir), config, hf_dir)
    model = SequenceModel(config)
    expected = model.state_dict()
    dtype = weights_state["embedding.tokens.weight"].dtype
    for name, tensor in weights_state.items():
        if name not in expected:
            raise ConversionError(f"{hf_dir}: internal mapping produced an unknown tensor {name}")
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ConversionError(
                f"{hf_dir}: {name} has shape {tuple(tensor.shape)}, "
                f"config.json implies {tuple(expected[name].shape)}"
            )
    model.to(dtype)
    missing = model.load_state_dict(weights_state, strict=False).missing_keys
    # Left out on purpose: the tied decoder weight and FAVOR+ projections (drawn from the seed).
    left = [k for k in missing if k != "head.decoder.weight" and not k.endswith(".projection")]
    if left:
        raise ConversionError(f"{hf_dir}: no source for {', '.join(left)}")
    save_pretrained(model.eval(), out)
    (out / ALPHABET_NAME).write_text(json.dumps(alphabet.to_dict(), indent=2) + "\n", encoding="utf-8")
    note = {"converted_from": str(hf_dir.resolve()), "attention": attention, "source_config": hf_config}
    (out / "conversion.json").write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")
    return out


def esm_config(config: ModelConfig, alphabet: Alphabet) -> dict[str, Any]:
    """The Hugging Face ``EsmConfig`` (as JSON data) of a favor masked LM of ESM layout."""
    return {
        "architectures": ["EsmForMaskedLM"],
        "model_type": "esm",
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "intermediate_size": config.d_ff,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "max_position_embeddings": config.max_length,
        "position_embedding_type": "rotary",
        "layer_norm_eps": _LAYER_NORM_EPS,
        "emb_layer_norm_before": False,
        "token_dropout": config.token_dropout,
        "mask_token_id": alphabet.mask_id,
        "pad_token_id": alphabet.pad_id,
        "is_decoder": False,
        "tie_word_embeddings": True,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
    }


def to_hf(model: str | Path, out: str | Path) -> dict[str, Any]:
    """Write favor masked LM ``model`` (a folder, run or bundled name) as a Hugging Face ESM folder ``out``.

    Returns ``{"out": ..., "exact_twin": bool}``: True when a FAVOR+ model was written with exact attention.
    """
    served = load_served_model(model)
    config, alphabet = served.config, served.alphabet
    where = served.path / "config.json"
    problems = []
    if config.task != "mlm" or config.causal:
        problems.append(f"task {config.task!r} (ESM is a bidirectional masked LM)")
    if config.backbone not in ("transformer", "performer"):
        problems.append(f"backbone {config.backbone!r}")
    if config.position != "rotary":
        problems.append(f"position {config.position!r} (ESM-2 uses rotary positions)")
    if not config.tie_embeddings:
        problems.append("an untied LM head")
    if alphabet is None:
        problems.append("no protein alphabet")
    if problems:
        raise ConversionError(f"{where}: cannot be written as an EsmForMaskedLM: {'; '.join(problems)}")
    state = served.model.state_dict()
    inverse = torch.argsort(rotary_permutation(config.head_dim))
    d = config.d_model
    hf: dict[str, torch.Tensor] = {"esm.embeddings.word_embeddings.weight": state["embedding.tokens.weight"]}
    for i in range(config.n_layers):
        src, dst = f"backbone.blocks.{i}.", f"esm.encoder.layer.{i}."
        for part in ("weight", "bias"):
            qkv = state[f"{src}attention.qkv.{part}"]
            hf[f"{dst}attention.self.query.{part}"] = _permute_heads(qkv[:d], config.n_heads, inverse)
            hf[f"{dst}attention.self.key.{part}"] = _permute_heads(qkv[d : 2 * d], config.n_heads, inverse)
            hf[f"{dst}attention.self.value.{part}"] = qkv[2 * d :]
            hf[f"{dst}attention.output.dense.{part}"] = state[f"{src}attention.out.{part}"]
            hf[f"{dst}attention.LayerNorm.{part}"] = state[f"{src}norm_attention.{part}"]
            hf[f"{dst}LayerNorm.{part}"] = state[f"{src}norm_feed_forward.{part}"]
            hf[f"{dst}intermediate.dense.{part}"] = state[f"{src}feed_forward.fc_in.{part}"]
            hf[f"{dst}output.dense.{part}"] = state[f"{src}feed_forward.fc_out.{part}"]
    for part in ("weight", "bias"):
        hf[f"esm.encoder.emb_layer_norm_after.{part}"] = state[f"backbone.final_norm.{part}"]
        hf[f"lm_head.dense.{part}"] = state[f"head.dense.{part}"]
        hf[f"lm_head.layer_norm.{part}"] = state[f"head.norm.{part}"]
    hf["lm_head.bias"] = state["head.decoder.bias"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().contiguous().clone() for k, v in hf.items()},
        str(out / "model.safetensors"),
        {"format": "pt"},
    )
    (out / "config.json").write_text(
        json.dumps(esm_config(config, alphabet), indent=2) + "\n", encoding="utf-8"
    )
    (out / "vocab.txt").write_text("\n".join(alphabet.tokens) + "\n", encoding="utf-8")
    return {"out": str(out), "exact_twin": config.backbone == "performer"}


def convert_cli(
    direction: str,
    source: Path,
    *,
    out: Path,
    attention: str = "exact",
    nb_features: int = 256,
    kernel: str = "softmax",
    max_length: int | None = None,
) -> int:
    """Convert ESM checkpoints: from-esm HF_DIR -> a favor model; to-hf MODEL -> a Hugging Face ESM folder.

    favor convert from-esm HF_DIR --out OUT reads a local Hugging Face EsmForMaskedLM folder (config.json +
    model.safetensors; ESM-2 rotary models) and writes a favor model folder every favor command takes
    (embed, score, evaluate, finetune, serve, export). favor convert to-hf MODEL --out HF_DIR writes a favor
    masked LM of ESM layout for transformers.EsmForMaskedLM.from_pretrained (a FAVOR+ model as its exact
    twin). See docs/esm.md.

    Args:
        direction (DIRECTION): from-esm or to-hf.
        source (PATH): the Hugging Face folder (from-esm) or the favor model, run or bundled name (to-hf).
        out (DIR): the folder to write.
        attention: from-esm: exact (the same model) or performer (FAVOR+ attention with the same weights).
        nb_features (M): from-esm with performer: random features per head.
        kernel: from-esm with performer: softmax, softmax_hyperbolic or relu.
        max_length (N): from-esm: the longest input in tokens (default: the checkpoint's; rotary positions
            have no table, so e.g. 32770 lets the model read 32,768 residues).
    """
    if direction == "from-esm":
        folder = from_esm(
            source, out, attention=attention, nb_features=nb_features, kernel=kernel, max_length=max_length
        )
        config = load_served_model(folder).config
        print(
            f"wrote {folder}: {config.backbone} masked LM, {config.n_layers} layers, d_model "
            f"{config.d_model}, {config.n_heads} heads, ESM's 33-token vocabulary, up to "
            f"{config.max_length - 2} residues"
        )
        return 0
    if direction == "to-hf":
        result = to_hf(source, out)
        note = (
            " (FAVOR+ model written as its exact twin: softmax attention, same weights)"
            if result["exact_twin"]
            else ""
        )
        print(f"wrote {result['out']}: loads with transformers.EsmForMaskedLM.from_pretrained{note}")
        return 0
    raise ValueError(f"favor convert: direction {direction!r}; choose from-esm or to-hf")
