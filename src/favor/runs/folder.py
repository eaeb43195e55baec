"""The files of a run folder written by ``favor train``, beside what `favor.folders` reads of its model.

RUN_DIR/config.yaml      the validated run config (`favor.runs.config`)
RUN_DIR/summary.json     what the last invocation trained and measured
RUN_DIR/model/           the final model (config.json + model.safetensors, `favor.folders`)
RUN_DIR/checkpoints/     resumable checkpoints (`favor.train.checkpoint`)
"""

from __future__ import annotations

__all__ = ["CONFIG_FILE", "MODEL_DIR", "SUMMARY_FILE"]

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
MODEL_DIR = "model"
