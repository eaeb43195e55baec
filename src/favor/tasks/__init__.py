"""Downstream tasks for pretrained protein language models: fine-tuning, probes, baselines and analyses.

    get_task("ec" | "localization" | "go_mf" | "ss3" | "ss8" | "contacts" | "interchain")
    finetune(run_dir, task="ss3", out="runs/ss3")          # favor finetune
    embed_sequences(...) / embed_cli(...)                   # favor embed
    score_cli(...)                                          # favor score (masked-marginal mutation scores)
    blosum_cli(...)                                         # favor blosum (attention vs BLOSUM62)

Every task reads the shared data folder (``--data-root``, ``$FAVOR_SHARED_DATA`` or ``../shared/data``);
see ``docs/downstream.md`` for the data, the metrics and the baselines.
"""

from favor.tasks.common import DATA_ROOT_ENV, Baseline, Encoded, Task, resolve_data_root
from favor.tasks.registry import TASK_NAMES, get_task

__all__ = ["DATA_ROOT_ENV", "TASK_NAMES", "Baseline", "Encoded", "Task", "get_task", "resolve_data_root"]
