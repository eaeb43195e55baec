"""`build_model`: the model a `ModelConfig` describes -- a `SequenceModel`, or a `Seq2SeqModel` for task
"seq2seq". Everything that builds a model from a config (training, loading a folder) calls it."""

from __future__ import annotations

from favor.models.config import SEQ2SEQ_TASK, ModelConfig
from favor.models.model import SequenceModel
from favor.models.seq2seq import Seq2SeqModel

__all__ = ["build_model", "Model"]

Model = SequenceModel | Seq2SeqModel


def build_model(config: ModelConfig) -> Model:
    if config.task == SEQ2SEQ_TASK:
        return Seq2SeqModel(config)
    return SequenceModel(config)
