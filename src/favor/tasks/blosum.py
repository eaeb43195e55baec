"""Amino-acid similarity learned by a model, compared with BLOSUM62 (the Performer paper's analysis).

FAVOR+ never forms the attention matrix, so it is built here explicitly, one sequence at a time (short
contexts only), from each attention layer's own queries and keys (forward hooks on the attention
modules; the queries and keys come from the module's projections, rotary positions included):

    attention="favor"    ``D^-1 phi(Q) phi(K)^T`` with the layer's own random features: the matrix the
                         Performer actually applies (built with `favor.ops.feature_map`, the same key
                         stabilisation as the attention op)
    attention="softmax"  exact ``softmax(Q K^T / sqrt(d))`` of the same queries and keys

For every layer and head, each attention weight between two residues (not ``<cls>``/``<eos>``, not a
residue with itself), scaled by the sequence length (1 = uniform attention), is added to the cell of the
two residue types, giving a 20 x 20 matrix of mean weights (averaged over layers and heads, symmetrised).
Like BLOSUM62's log-odds, which divide out residue frequencies, the headline matrix is the log of the
mean weights double-centred (row and column means removed), so that a residue type every residue
attends to (a column effect) does not count as similarity; the raw matrix is reported too. Each is
correlated (Pearson and Spearman) with BLOSUM62 over the 190 pairs of different residues. The cosine
similarity of the input embeddings of the 20 residues is reported the same way, and every analysis is
repeated on a randomly initialised model of the same architecture as the control.

BLOSUM62: Henikoff & Henikoff (1992), PNAS 89:10915, the NCBI matrix (as distributed with BLAST and
Biopython's ``Bio.Align.substitution_matrices``), embedded below.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from favor.data import Alphabet, read_fasta
from favor.layers import ExactSelfAttention, FavorSelfAttention
from favor.models import SequenceModel
from favor.ops import feature_map
from favor.tasks.common import select_subset

__all__ = [
    "BLOSUM62_ORDER",
    "blosum62",
    "pearson",
    "spearman",
    "residue_attention",
    "blosum_analysis",
    "blosum_cli",
]

BLOSUM62_ORDER = "ARNDCQEGHILKMFPSTWYV"
_BLOSUM62_ROWS = """
 4 -1 -2 -2  0 -1 -1  0 -2 -1 -1 -1 -1 -2 -1  1  0 -3 -2  0
-1  5  0 -2 -3  1  0 -2  0 -3 -2  2 -1 -3 -2 -1 -1 -3 -2 -3
-2  0  6  1 -3  0  0  0  1 -3 -3  0 -2 -3 -2  1  0 -4 -2 -3
-2 -2  1  6 -3  0  2 -1 -1 -3 -4 -1 -3 -3 -1  0 -1 -4 -3 -3
 0 -3 -3 -3  9 -3 -4 -3 -3 -1 -1 -3 -1 -2 -3 -1 -1 -2 -2 -1
-1  1  0  0 -3  5  2 -2  0 -3 -2  1  0 -3 -1  0 -1 -2 -1 -2
-1  0  0  2 -4  2  5 -2  0 -3 -3  1 -2 -3 -1  0 -1 -3 -2 -2
 0 -2  0 -1 -3 -2 -2  6 -2 -4 -4 -2 -3 -3 -2  0 -2 -2 -3 -3
-2  0  1 -1 -3  0  0 -2  8 -3 -3 -1 -2 -1 -2 -1 -2 -2  2 -3
-1 -3 -3 -3 -1 -3 -3 -4 -3  4  2 -3  1  0 -3 -2 -1 -3 -1  3
-1 -2 -3 -4 -1 -2 -3 -4 -3  2  4 -2  2  0 -3 -2 -1 -2 -1  1
-1  2  0 -1 -3  1  1 -2 -1 -3 -2  5 -1 -3 -1  0 -1 -3 -2 -2
-1 -1 -2 -3 -1  0 -2 -3 -2  1  2 -1  5  0 -2 -1 -1 -1 -1  1
-2 -3 -3 -3 -2 -3 -3 -3 -1  0  0 -3  0  6 -4 -2 -2  1  3 -1
-1 -2 -2 -1 -3 -1 -1 -2 -2 -3 -3 -1 -2 -4  7 -1 -1 -4 -3 -2
 1 -1  1  0 -1  0  0  0 -1 -2 -2  0 -1 -2 -1  4  1 -3 -2 -2
 0 -1  0 -1 -1 -1 -1 -2 -2 -1 -1 -1 -1 -2 -1  1  5 -2 -2  0
-3 -3 -4 -4 -2 -2 -3 -2 -2 -3 -2 -3 -1  1 -4 -3 -2 11  2 -3
-2 -2 -2 -3 -2 -1 -2 -3  2 -1 -1 -2 -1  3 -3 -2 -2  2  7 -1
 0 -3 -3 -3 -1 -2 -2 -3 -3  3  1 -2  1 -1 -2 -2  0 -3 -1  4
"""


def blosum62(order: str = BLOSUM62_ORDER) -> np.ndarray:
    """The 20 x 20 BLOSUM62 scores with rows and columns in ``order``."""
    table = np.array([[int(v) for v in line.split()] for line in _BLOSUM62_ROWS.strip().splitlines()])
    index = [BLOSUM62_ORDER.index(letter) for letter in order]
    return table[np.ix_(index, index)]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, tied values sharing their average rank."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(inverse, weights=ranks) / counts)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return pearson(_ranks(np.asarray(a)), _ranks(np.asarray(b)))


def mantel_p_value(matrix: np.ndarray, *, permutations: int = 999, seed: int = 0) -> float:
    """One-sided Mantel test of the off-diagonal Spearman correlation with BLOSUM62.

    The residue labels of ``matrix`` are permuted (rows and columns together); the p-value is the share
    of permutations, the observed labelling included, whose correlation is at least the observed one.
    """
    reference = blosum62()
    off = np.triu_indices(20, k=1)
    target = _ranks(reference[off])
    observed = pearson(_ranks(matrix[off]), target)
    rng = np.random.default_rng(seed)
    hits = 1
    for _ in range(permutations):
        order = rng.permutation(20)
        hits += pearson(_ranks(matrix[np.ix_(order, order)][off]), target) >= observed
    return hits / (permutations + 1)


def correlation_with_blosum(matrix: np.ndarray, *, permutations: int = 999) -> dict[str, float]:
    """Pearson/Spearman of a symmetric 20 x 20 matrix (BLOSUM62 order) with BLOSUM62: off-diagonal pairs
    (190) and all pairs with the diagonal (210), and the Mantel p-value of the off-diagonal Spearman."""
    reference = blosum62()
    off = np.triu_indices(20, k=1)
    every = np.triu_indices(20)
    result = {
        "pearson": pearson(matrix[off], reference[off]),
        "spearman": spearman(matrix[off], reference[off]),
        "pearson_with_diagonal": pearson(matrix[every], reference[every]),
        "spearman_with_diagonal": spearman(matrix[every], reference[every]),
    }
    if permutations:
        result["mantel_p"] = mantel_p_value(matrix, permutations=permutations)
    return result


def _attention_matrix(module: torch.nn.Module, x: torch.Tensor, mode: str) -> torch.Tensor:
    """``(heads, T, T)`` attention weights of one sequence ``x`` ``(1, T, d_model)`` for ``module``."""
    q, k, _ = module._split_heads(x)  # (1, H, T, d) each
    causal = torch.ones(q.shape[2], q.shape[2], dtype=torch.bool).tril() if module.causal else None
    if isinstance(module, FavorSelfAttention) and mode == "favor":
        queries = feature_map(q, module.projection, kernel=module.kernel)
        keys = feature_map(k, module.projection, kernel=module.kernel)
        key_features = keys.base
        if keys.log_scale is not None:
            shift = keys.log_scale - keys.log_scale.amax(dim=-1, keepdim=True)  # (1, H, T)
            key_features = key_features * shift.exp().unsqueeze(-1)
        scores = queries.base @ key_features.transpose(-2, -1)  # (1, H, T, T)
        if causal is not None:
            scores = scores.masked_fill(~causal, 0.0)
        denominator = scores.sum(-1, keepdim=True)
        floor = torch.finfo(scores.dtype).tiny ** 0.5
        sign = torch.where(denominator < 0, -1.0, 1.0).to(scores.dtype)
        return (scores / (sign * denominator.abs().clamp_min(floor)))[0]
    if not isinstance(module, (FavorSelfAttention, ExactSelfAttention)):
        raise ValueError(
            f"{type(module).__name__}: no per-token attention matrix (use a performer or transformer)"
        )
    logits = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (1, H, T, T)
    if causal is not None:
        logits = logits.masked_fill(~causal, float("-inf"))
    return logits.softmax(dim=-1)[0]


@torch.inference_mode()
def residue_attention(
    model: SequenceModel, alphabet: Alphabet, sequences: list[str], *, mode: str = "favor"
) -> np.ndarray:
    """``(n_layers, heads, 20, 20)`` mean length-scaled attention between residue types (BLOSUM62 order)."""
    if mode not in ("favor", "softmax"):
        raise ValueError(f"attention={mode!r}: choose favor or softmax")
    blocks = getattr(model.backbone, "blocks", None)
    if blocks is None or not hasattr(blocks[0], "attention"):
        raise ValueError(f"backbone {model.config.backbone!r} has no attention layers to analyse")
    model.eval()
    type_of = np.full(alphabet.vocab_size, -1)
    for i, letter in enumerate(BLOSUM62_ORDER):
        type_of[alphabet.token_to_id(letter)] = i
    captured: list[torch.Tensor] = []
    hooks = [b.attention.register_forward_hook(lambda m, args, out: captured.append(args[0])) for b in blocks]
    n_heads = blocks[0].attention.n_heads
    sums = torch.zeros(len(blocks), n_heads, 20, 20, dtype=torch.float64)
    counts = torch.zeros(20, 20, dtype=torch.float64)
    device = next(model.parameters()).device
    try:
        for sequence in sequences:
            residues = alphabet.encode(
                sequence[: model.config.max_length - 2], add_cls=True, add_eos=True, unknown="x"
            )
            ids = torch.tensor([residues], device=device)
            captured.clear()
            model(ids)
            types = torch.from_numpy(type_of[residues[1:-1]])
            onehot = torch.nn.functional.one_hot(types.clamp_min(0), 20).double() * (types >= 0).unsqueeze(1)
            off_diagonal = 1.0 - torch.eye(len(types), dtype=torch.float64)
            counts += onehot.T @ off_diagonal @ onehot
            for layer, (block, x) in enumerate(zip(blocks, captured, strict=True)):
                weights = _attention_matrix(block.attention, x, mode).double().cpu()  # (H, T, T)
                relative = weights[:, 1:-1, 1:-1] * len(residues) * off_diagonal  # (H, n, n)
                sums[layer] += onehot.T @ relative @ onehot
    finally:
        for hook in hooks:
            hook.remove()
    return (sums / counts.clamp_min(1.0)).numpy()


def _embedding_similarity(model: SequenceModel, alphabet: Alphabet) -> np.ndarray:
    rows = model.embedding.tokens.weight.detach().double().cpu()
    ids = [alphabet.token_to_id(letter) for letter in BLOSUM62_ORDER]
    vectors = torch.nn.functional.normalize(rows[ids], dim=-1)
    return (vectors @ vectors.T).numpy()


def log_odds(matrix: np.ndarray) -> np.ndarray:
    """``log(matrix)`` with its row and column means removed (the grand mean added back)."""
    logs = np.log(np.maximum(matrix, 1e-12))
    return logs - logs.mean(axis=0, keepdims=True) - logs.mean(axis=1, keepdims=True) + logs.mean()


def blosum_analysis(
    model: SequenceModel, alphabet: Alphabet, sequences: list[str], *, mode: str
) -> dict[str, Any]:
    """Correlations of the attention-derived and embedding-derived matrices with BLOSUM62."""
    per_head = residue_attention(model, alphabet, sequences, mode=mode)
    mean = per_head.mean(axis=(0, 1))
    symmetric = (mean + mean.T) / 2
    heads = []
    for layer in range(per_head.shape[0]):
        for head in range(per_head.shape[1]):
            m = per_head[layer, head]
            heads.append(
                {
                    "layer": layer + 1,
                    "head": head,
                    **correlation_with_blosum(log_odds((m + m.T) / 2), permutations=0),
                }
            )
    return {
        "attention": correlation_with_blosum(log_odds(symmetric)),
        "attention_raw": correlation_with_blosum(symmetric),
        "embedding": correlation_with_blosum(_embedding_similarity(model, alphabet)),
        "per_head": heads,
        "matrix": log_odds(symmetric).tolist(),
        "matrix_raw": symmetric.tolist(),
    }


def _plot(path: Path, matrix: np.ndarray, result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference = blosum62()
    off = np.triu_indices(20, k=1)
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for axis, values, title in (
        (axes[0], matrix, f"log attention ({result['attention_mode']}), double-centred"),
        (axes[1], reference, "BLOSUM62"),
    ):
        image = axis.imshow(values, cmap="viridis")
        axis.set_xticks(range(20), list(BLOSUM62_ORDER))
        axis.set_yticks(range(20), list(BLOSUM62_ORDER))
        axis.set_title(title)
        figure.colorbar(image, ax=axis, fraction=0.046)
    stats = result["pretrained"]["attention"]
    axes[2].scatter(reference[off], matrix[off], s=10)
    axes[2].set_xlabel("BLOSUM62 score")
    axes[2].set_ylabel("log attention, double-centred")
    axes[2].set_title(f"190 pairs: Spearman {stats['spearman']:.2f}, Pearson {stats['pearson']:.2f}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def blosum_cli(
    run_dir: Path,
    *,
    data: Path,
    out: Path,
    max_sequences: int = 200,
    attention: str = "favor",
    seed: int = 0,
    device: str = "cpu",
) -> int:
    """Correlate the residue-type similarity in a model's attention (and embeddings) with BLOSUM62.

    Builds each layer's attention matrix explicitly on up to --max-sequences proteins (cut to the model's
    context), averages the attention between residue types over layers and heads, and reports Pearson
    and Spearman correlations with BLOSUM62 over the 190 pairs of different residues, with the same
    analysis on a randomly initialised copy of the architecture as control. Writes OUT/blosum.json and
    OUT/blosum.png. See docs/downstream.md.

    Args:
        run_dir: a 'favor train' run folder or a model folder (performer or transformer backbone).
        data (FASTA): proteins to aggregate over.
        out (DIR): folder for blosum.json and blosum.png.
        max_sequences (N): proteins used (a seeded random subset when the file holds more).
        attention: favor (the FAVOR+ matrix the model applies) or softmax (exact softmax of its q, k).
        seed: seed of the subset and of the random-init control.
        device: cpu, cuda or cuda:N.
    """
    from favor.folders import load_served_model
    from favor.inference import resolve_device

    served = load_served_model(run_dir, device=resolve_device(device))
    records = list(read_fasta(data))
    if not records:
        raise ValueError(f"{data}: no FASTA records")
    sequences = [records[i].sequence for i in select_subset(len(records), max_sequences, seed)]
    torch.manual_seed(seed)
    control = SequenceModel(served.model.config).to(next(served.model.parameters()).device)
    result: dict[str, Any] = {
        "model": str(served.path),
        "attention_mode": attention,
        "n_sequences": len(sequences),
        "n_residues": sum(min(len(s), served.model.config.max_length - 2) for s in sequences),
        "letters": BLOSUM62_ORDER,
        "pretrained": blosum_analysis(served.model, served.alphabet, sequences, mode=attention),
        "random_init": blosum_analysis(control, served.alphabet, sequences, mode=attention),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "blosum.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    _plot(out / "blosum.png", np.array(result["pretrained"]["matrix"]), result)
    print("Spearman / Pearson with BLOSUM62 over the 190 pairs of different residues (Mantel p, one-sided):")
    for name in ("pretrained", "random_init"):
        cells = [
            f"{label} {result[name][key]['spearman']:+.3f} / {result[name][key]['pearson']:+.3f}"
            f" (p {result[name][key]['mantel_p']:.3f})"
            for key, label in (
                ("attention", "attention"),
                ("attention_raw", "raw"),
                ("embedding", "embedding"),
            )
        ]
        print(f"  {name:<12} " + "   ".join(cells))
    print(f"results: {out / 'blosum.json'}  figure: {out / 'blosum.png'}")
    return 0
