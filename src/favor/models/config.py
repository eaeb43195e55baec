"""Typed, validated model configurations.

`ModelConfig` is the single object that describes a model: which backbone (`backbone`), which task head
(`task`), sizes, and the backbone-specific sub-configs (`attention`, `linformer`, `conv`). Every field is
checked in `__post_init__`; a bad value raises `ValueError` naming the field and the value. `to_dict` /
`from_dict` round-trip through JSON-safe dictionaries (tuples become lists).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from favor.ops import KERNEL_NAMES as KERNELS
from favor.ops.projection import NORMS

BACKBONES = ("performer", "transformer", "linformer", "rnn", "lstm", "gru", "cnn")
ATTENTION_BACKBONES = ("performer", "transformer", "linformer")
RECURRENT_BACKBONES = ("rnn", "lstm", "gru")
TASKS = (
    "mlm",
    "clm",
    "sequence_classification",
    "sequence_regression",
    "token_classification",
    "token_regression",
    "contact",
)
# The encoder-decoder task (favor.models.seq2seq.Seq2SeqModel): a bidirectional encoder reads the source, a
# causal decoder with cross-attention writes the target; built by favor.models.build_model like the rest.
SEQ2SEQ_TASK = "seq2seq"
SEQ2SEQ_BACKBONES = ("performer", "transformer", "lstm")
MODEL_TASKS = (*TASKS, SEQ2SEQ_TASK)
# Tasks whose head gives one output per position: these are the ones incremental decoding can serve.
PER_POSITION_TASKS = ("mlm", "clm", "token_classification", "token_regression")
POSITIONS = ("learned", "rotary", "none")
POOLINGS = ("mean", "cls")
PAIR_HEADS = ("bilinear", "mlp")
DECODER_ATTENTIONS = ("top", "bottom")  # seq2seq lstm: the decoder layer that reads the source


def _fail(owner: str, name: str, value: Any, expected: str) -> None:
    raise ValueError(f"{owner}.{name}={value!r} is invalid: expected {expected}")


def _check_choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _fail(owner, name, value, f"one of {', '.join(choices)}")


def _check_int(owner: str, name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(owner, name, value, f"an integer >= {minimum}")


def _check_bool(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        _fail(owner, name, value, "a bool")


@dataclass
class PerformerConfig:
    """FAVOR+ attention settings (used when `ModelConfig.backbone == "performer"`)."""

    # softmax: positive features exp(Wx); softmax_hyperbolic: [exp(Wx), exp(-Wx)] (2m features, lower
    # variance); softmax_trig: [sin, cos] (FAVOR v1); relu: generalized attention relu(Wx).
    kernel: str = "softmax"
    # m, the number of random features per head; the paper uses 256 for d=64.
    nb_features: int = 256
    # Orthogonal blocks (Theorem 2: lower MSE) or IID Gaussian rows.
    orthogonal: bool = True
    # chi: row norms of fresh Gaussian rows (unbiased); sqrt_d: every row has norm sqrt(d) (regularized).
    norms: str = "chi"
    # Positions per chunk of the causal prefix sums (memory O(L(m+d) + md)).
    chunk_size: int = 64

    def __post_init__(self) -> None:
        _check_choice("PerformerConfig", "kernel", self.kernel, KERNELS)
        _check_int("PerformerConfig", "nb_features", self.nb_features, 1)
        _check_bool("PerformerConfig", "orthogonal", self.orthogonal)
        _check_choice("PerformerConfig", "norms", self.norms, NORMS)
        _check_int("PerformerConfig", "chunk_size", self.chunk_size, 1)


@dataclass
class LinformerConfig:
    """Linformer settings: keys and values of length `max_length` are projected to `proj_dim` rows."""

    proj_dim: int = 64
    # One projection matrix for keys and values (E = F) instead of two.
    share_kv: bool = False

    def __post_init__(self) -> None:
        _check_int("LinformerConfig", "proj_dim", self.proj_dim, 1)
        _check_bool("LinformerConfig", "share_kv", self.share_kv)


@dataclass
class ConvConfig:
    """ByteNet-like residual dilated convolutions (used when `ModelConfig.backbone == "cnn"`)."""

    kernel_size: int = 5
    # Block i uses dilations[i % len(dilations)]: the receptive field grows exponentially with depth.
    dilations: tuple[int, ...] = (1, 2, 4, 8)

    def __post_init__(self) -> None:
        _check_int("ConvConfig", "kernel_size", self.kernel_size, 1)
        self.dilations = tuple(self.dilations)
        if not self.dilations:
            _fail("ConvConfig", "dilations", self.dilations, "a non-empty sequence of integers >= 1")
        for d in self.dilations:
            if isinstance(d, bool) or not isinstance(d, int) or d < 1:
                _fail("ConvConfig", "dilations", self.dilations, "a non-empty sequence of integers >= 1")


@dataclass
class ModelConfig:
    """Everything needed to build a `SequenceModel`; switch architecture with `backbone` alone."""

    backbone: str = "performer"
    task: str = "mlm"
    # Token inputs use an embedding of `vocab_size` rows; set `input_dim` instead (or as well) for
    # real-valued inputs (time series), which go through a linear input projection.
    vocab_size: int | None = 33
    input_dim: int | None = None
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 1024
    dropout: float = 0.1
    # Longest sequence: size of the learned position table and of the Linformer projections.
    max_length: int = 1024
    # Causal (decoder, unidirectional) or bidirectional (encoder). For rnn/lstm/gru causal=False means
    # a bidirectional recurrent network.
    causal: bool = False
    position: str = "learned"
    attention: PerformerConfig = field(default_factory=PerformerConfig)
    linformer: LinformerConfig = field(default_factory=LinformerConfig)
    conv: ConvConfig = field(default_factory=ConvConfig)
    # Outputs of the sequence / token heads (classes, regression targets or labels).
    num_labels: int = 2
    pooling: str = "mean"
    # Sequence classification with independent labels (sigmoid + BCE) instead of one class (softmax + CE).
    multi_label: bool = False
    pair_head: str = "bilinear"
    pair_dim: int = 64
    # Share the token embedding with the LM output layer (only when both exist).
    tie_embeddings: bool = True
    gradient_checkpointing: bool = False
    # ESM's token dropout: embeddings of mask_token_id are zeroed and every embedding is scaled by
    # (1 - 0.15 * 0.8) / (1 - share of masked tokens in the row), as ESM-1b and ESM-2 were trained.
    token_dropout: bool = False
    mask_token_id: int | None = None
    # Seed of the generator that draws the initial FAVOR+ projections (layer i uses seed + i).
    seed: int = 0
    # task "seq2seq": blocks (or recurrent layers) of the decoder; None means n_layers (the encoder's).
    decoder_layers: int | None = None
    # task "seq2seq", backbone "lstm": which decoder layer reads the source through Luong attention.
    # "top": the last layer's states (the decoder's output is the attentional state); "bottom": the first
    # layer's, and its attentional state is the input of the layers above it (GNMT's layout), so the upper
    # layers carry the alignment from step to step. Both keep teacher forcing one parallel pass.
    decoder_attention: str = "top"

    def __post_init__(self) -> None:
        self.attention = _coerce(self.attention, PerformerConfig, "attention")
        self.linformer = _coerce(self.linformer, LinformerConfig, "linformer")
        self.conv = _coerce(self.conv, ConvConfig, "conv")
        own = "ModelConfig"
        _check_choice(own, "backbone", self.backbone, BACKBONES)
        _check_choice(own, "task", self.task, MODEL_TASKS)
        _check_choice(own, "position", self.position, POSITIONS)
        _check_choice(own, "pooling", self.pooling, POOLINGS)
        _check_choice(own, "pair_head", self.pair_head, PAIR_HEADS)
        _check_choice(own, "decoder_attention", self.decoder_attention, DECODER_ATTENTIONS)
        for name in ("d_model", "n_layers", "n_heads", "d_ff", "max_length", "num_labels", "pair_dim"):
            _check_int(own, name, getattr(self, name), 1)
        _check_int(own, "seed", self.seed, 0)
        for name in ("causal", "multi_label", "tie_embeddings", "gradient_checkpointing", "token_dropout"):
            _check_bool(own, name, getattr(self, name))
        if self.vocab_size is not None:
            _check_int(own, "vocab_size", self.vocab_size, 1)
        if self.input_dim is not None:
            _check_int(own, "input_dim", self.input_dim, 1)
        if self.decoder_layers is not None:
            _check_int(own, "decoder_layers", self.decoder_layers, 1)
        if self.mask_token_id is not None:
            _check_int(own, "mask_token_id", self.mask_token_id, 0)
        if self.token_dropout and (self.vocab_size is None or self.mask_token_id is None):
            _fail(own, "token_dropout", True, "False unless vocab_size and mask_token_id are set")
        if (
            self.mask_token_id is not None
            and self.vocab_size is not None
            and self.mask_token_id >= self.vocab_size
        ):
            _fail(own, "mask_token_id", self.mask_token_id, f"an id below vocab_size={self.vocab_size}")
        if self.vocab_size is None and self.input_dim is None:
            _fail(own, "vocab_size", None, "an integer when input_dim is None (the model needs an input)")
        if self.task in ("mlm", "clm") and self.vocab_size is None:
            _fail(own, "vocab_size", None, f"an integer for task {self.task!r} (the LM head predicts tokens)")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            _fail(own, "dropout", self.dropout, "a float in [0, 1)")
        if not 0.0 <= self.dropout < 1.0:
            _fail(own, "dropout", self.dropout, "a float in [0, 1)")
        self._check_combinations()

    def _check_combinations(self) -> None:
        own = "ModelConfig"
        if self.backbone in ATTENTION_BACKBONES and self.d_model % self.n_heads != 0:
            _fail(own, "d_model", self.d_model, f"a multiple of n_heads={self.n_heads}")
        if self.position == "rotary":
            if self.backbone not in ATTENTION_BACKBONES:
                _fail(own, "position", "rotary", f"'learned' or 'none' for backbone {self.backbone!r}")
            if (self.d_model // self.n_heads) % 2 != 0:
                _fail(own, "position", "rotary", f"an even head_dim, got {self.d_model // self.n_heads}")
        if self.backbone == "linformer" and self.causal:
            _fail(own, "causal", True, "False for backbone 'linformer' (it is bidirectional only)")
        if self.backbone in RECURRENT_BACKBONES and not self.causal and self.d_model % 2 != 0:
            _fail(own, "d_model", self.d_model, "an even number for a bidirectional recurrent backbone")
        if self.task == "clm" and not self.causal:
            _fail(own, "causal", False, "True for task 'clm' (a bidirectional model would see the target)")
        if self.task == "sequence_classification" and self.multi_label is False and self.num_labels < 2:
            _fail(own, "num_labels", self.num_labels, ">= 2 for single-label sequence classification")
        if self.task == SEQ2SEQ_TASK:
            self._check_seq2seq()
        elif self.decoder_layers is not None:
            _fail(own, "decoder_layers", self.decoder_layers, f"None unless task is {SEQ2SEQ_TASK!r}")
        elif self.decoder_attention != "top":
            _fail(own, "decoder_attention", self.decoder_attention, f"'top' unless task is {SEQ2SEQ_TASK!r}")

    def _check_seq2seq(self) -> None:
        own = "ModelConfig"
        if self.backbone not in SEQ2SEQ_BACKBONES:
            _fail(own, "backbone", self.backbone, f"one of {', '.join(SEQ2SEQ_BACKBONES)} for task 'seq2seq'")
        if self.vocab_size is None:
            _fail(own, "vocab_size", None, "an integer for task 'seq2seq' (sources and targets are tokens)")
        if self.input_dim is not None:
            _fail(own, "input_dim", self.input_dim, "None for task 'seq2seq' (sources are tokens)")
        if self.causal:
            _fail(
                own,
                "causal",
                True,
                "False for task 'seq2seq' (the encoder is bidirectional, the decoder always causal)",
            )
        if self.position == "rotary" and self.backbone == "lstm":
            _fail(own, "position", "rotary", "'learned' or 'none' for backbone 'lstm'")
        if self.decoder_attention == "bottom" and self.backbone != "lstm":
            _fail(own, "decoder_attention", "bottom", "'top' unless backbone is 'lstm'")
        if self.decoder_attention == "bottom" and self.n_decoder_layers < 2:
            _fail(own, "decoder_attention", "bottom", "'top' for a one-layer decoder (no layer above it)")

    @property
    def n_decoder_layers(self) -> int:
        """Decoder depth of a seq2seq model."""
        return self.n_layers if self.decoder_layers is None else self.decoder_layers

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary (nested configs become dictionaries, tuples lists)."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; unknown keys raise `ValueError` naming them."""
        if not isinstance(data, dict):
            raise ValueError(f"ModelConfig.from_dict expects a dict, got {type(data).__name__}")
        _reject_unknown(cls, data, "ModelConfig")
        return cls(**data)


def _coerce(value: Any, cls: type, name: str) -> Any:
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        _reject_unknown(cls, value, f"ModelConfig.{name}")
        return cls(**value)
    raise ValueError(f"ModelConfig.{name}={value!r} is invalid: expected a {cls.__name__} or a dict")


def _reject_unknown(cls: type, data: dict[str, Any], owner: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{owner} got unknown field(s): {', '.join(unknown)}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
