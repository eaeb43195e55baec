"""Models: backbones behind one interface, task heads, save/load and generation.

ModelConfig(backbone=..., task=..., ...)    one validated config; `backbone` switches architecture
SequenceModel(config)                       embedding + backbone + head; forward / init_state / step
Seq2SeqModel(config)                        task "seq2seq": encoder + causal decoder with cross-attention
build_model(config)                         whichever of the two the config describes
save_pretrained(model, folder), load_pretrained(folder)
generate(model, prompt_ids, max_new_tokens=...)
task_loss(task, logits, labels), task_loss_sum(...)   the one loss; labels aligned with the logits
"""

from favor.models.base import Backbone
from favor.models.build import build_model
from favor.models.config import (
    BACKBONES,
    SEQ2SEQ_TASK,
    TASKS,
    ConvConfig,
    LinformerConfig,
    ModelConfig,
    PerformerConfig,
)
from favor.models.factory import build_backbone, build_head
from favor.models.generation import generate, sample_next_token
from favor.models.losses import IGNORE_INDEX, target_mask, task_loss, task_loss_sum
from favor.models.model import SequenceModel
from favor.models.outputs import DecodingState, ModelOutput
from favor.models.pretrained import load_config, load_pretrained, save_pretrained
from favor.models.seq2seq import Seq2SeqModel

__all__ = [
    "BACKBONES",
    "IGNORE_INDEX",
    "TASKS",
    "Backbone",
    "ConvConfig",
    "DecodingState",
    "LinformerConfig",
    "ModelConfig",
    "ModelOutput",
    "SEQ2SEQ_TASK",
    "Seq2SeqModel",
    "PerformerConfig",
    "SequenceModel",
    "build_backbone",
    "build_head",
    "build_model",
    "generate",
    "load_config",
    "load_pretrained",
    "sample_next_token",
    "save_pretrained",
    "target_mask",
    "task_loss",
    "task_loss_sum",
]
