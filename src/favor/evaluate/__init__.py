"""Evaluation: language-model and task metrics with baselines on the same targets, evaluation data.

Evaluating a finished run folder with its source's metrics is `favor.runs.evaluate_run`:

    from favor.runs import evaluate_run
    metrics = evaluate_run("runs/tiny", data="test.fasta")   # masked_accuracy, perplexity, n_masked, ...
"""

from favor.evaluate.baseline import UNIGRAM_FILE, UnigramBaseline
from favor.evaluate.data import EVAL_MASK_SEED, build_dataset, build_eval_loader, load_corpus
from favor.evaluate.metrics import LMStats, evaluate_lm, score_logits, token_cross_entropy

__all__ = [
    "EVAL_MASK_SEED",
    "UNIGRAM_FILE",
    "LMStats",
    "UnigramBaseline",
    "build_dataset",
    "build_eval_loader",
    "evaluate_lm",
    "load_corpus",
    "score_logits",
    "token_cross_entropy",
]
