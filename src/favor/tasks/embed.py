"""``favor embed``: per-protein (and per-residue) embeddings from chosen layers of a trained model.

Each protein is encoded as in pretraining, ``<cls> residues <eos>``; a protein longer than the model's
context (``max_length``) is cut into consecutive windows of ``max_length - 2`` residues, each wrapped in
``<cls>``/``<eos>``, and its residue states are the windows' states laid end to end. The per-protein
embedding is the mean over the protein's real residues (never ``<cls>``, ``<eos>`` or padding). Windows
run in padded batches of at most ``max_tokens`` tokens, longest first; padding never changes the states
of real positions, so a protein's embedding does not depend on its batch.

Output (``numpy.savez``)::

    names               (N,) str     FASTA record names, in file order
    lengths             (N,) int64   residues per protein
    layers              (K,) int64   the layers stored (0 = embedding output, n_layers = final)
    mean_layer{l}       (N, D) float32
    residue_layer{l}    (sum(lengths), D) float32    with --per-residue; protein i is rows
    offsets             (N + 1,) int64               offsets[i]:offsets[i + 1]
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from favor.data import Alphabet, read_fasta
from favor.folders import load_served_model
from favor.models import SequenceModel
from favor.tasks.loop import make_batches

__all__ = ["embed_sequences", "embed_cli", "resolve_layers"]


def resolve_layers(layers: list[int] | None, n_layers: int) -> list[int]:
    """Layers as indices in ``0..n_layers`` (negative counts back; None: the final layer), deduplicated."""
    if not layers:
        return [n_layers]
    resolved = []
    for layer in layers:
        if not -(n_layers + 1) <= layer <= n_layers:
            raise ValueError(
                f"--layers {layer}: out of range for a model with {n_layers} layers (0..{n_layers})"
            )
        if layer % (n_layers + 1) not in resolved:
            resolved.append(layer % (n_layers + 1))
    return resolved


def _windows(lengths: list[int], width: int) -> list[tuple[int, int, int]]:
    """``(protein, start, stop)`` residue windows of at most ``width`` residues covering every protein."""
    return [(i, s, min(s + width, n)) for i, n in enumerate(lengths) for s in range(0, n, width)]


@torch.inference_mode()
def embed_sequences(
    model: SequenceModel,
    alphabet: Alphabet,
    sequences: list[tuple[str, str]],
    *,
    layers: list[int],
    per_residue: bool = False,
    max_tokens: int = 8192,
) -> dict[str, np.ndarray]:
    """Embeddings of ``(name, sequence)`` pairs as the arrays described in the module docstring."""
    model.eval()
    device = next(model.parameters()).device
    encoded = [alphabet.encode_array(seq, name=name) for name, seq in sequences]
    lengths = [len(e) for e in encoded]
    if any(n == 0 for n in lengths):
        raise ValueError(f"protein {sequences[lengths.index(0)][0]!r} has no residues")
    width = model.config.max_length - 2
    windows = _windows(lengths, width)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    dim = model.config.d_model
    sums = {layer: np.zeros((len(sequences), dim), dtype=np.float64) for layer in layers}
    residues = (
        {layer: np.zeros((offsets[-1], dim), dtype=np.float32) for layer in layers} if per_residue else {}
    )
    for group in make_batches([w[2] - w[1] + 2 for w in windows], max_tokens=max(max_tokens, width + 2)):
        rows = max(windows[g][2] - windows[g][1] + 2 for g in group)
        ids = torch.full((len(group), rows), alphabet.pad_id, dtype=torch.long)
        padding_mask = torch.ones((len(group), rows), dtype=torch.bool)
        for b, g in enumerate(group):
            protein, start, stop = windows[g]
            ids[b, : stop - start + 2] = torch.tensor(
                [alphabet.cls_id, *encoded[protein][start:stop].tolist(), alphabet.eos_id]
            )
            padding_mask[b, : stop - start + 2] = False
        states = model(ids.to(device), padding_mask=padding_mask.to(device), repr_layers=layers).hidden_states
        for layer, state in zip(layers, states, strict=True):
            state = state.float().cpu().numpy()  # (B, T, D)
            for b, g in enumerate(group):
                protein, start, stop = windows[g]
                values = state[b, 1 : 1 + stop - start]  # real residues only
                sums[layer][protein] += values.sum(axis=0, dtype=np.float64)
                if per_residue:
                    residues[layer][offsets[protein] + start : offsets[protein] + stop] = values
    out = {
        "names": np.array([name for name, _ in sequences], dtype=str),
        "lengths": np.array(lengths, dtype=np.int64),
        "layers": np.array(layers, dtype=np.int64),
    }
    for layer in layers:
        out[f"mean_layer{layer}"] = (sums[layer] / np.array(lengths)[:, None]).astype(np.float32)
        if per_residue:
            out[f"residue_layer{layer}"] = residues[layer]
    if per_residue:
        out["offsets"] = offsets
    return out


def embed_cli(
    run_dir: Path,
    *,
    data: Path,
    out: Path,
    layers: list[int] | None = None,
    per_residue: bool = False,
    max_tokens: int = 8192,
    device: str = "cpu",
) -> int:
    """Write per-protein (mean over residues) and optionally per-residue embeddings of a FASTA file.

    The output .npz holds names, lengths, layers, mean_layer{L} (N x d_model) for each layer and, with
    --per-residue, residue_layer{L} (total residues x d_model) with offsets (N + 1). Proteins longer
    than the model's context are embedded in consecutive windows. See docs/downstream.md.

    Args:
        run_dir: a 'favor train' run folder or a model folder.
        data (FASTA): proteins to embed (plain or gzipped FASTA).
        out (FILE): the .npz file to write.
        layers (L): layer to store, repeatable (0 = embeddings, -1 or n_layers = final; default: final).
        per_residue: also store every residue's embedding.
        max_tokens (N): padded tokens per forward pass.
        device: cpu, cuda or cuda:N.
    """
    from favor.train.distributed import resolve_device

    served = load_served_model(run_dir, device=resolve_device(device))
    chosen = resolve_layers(layers, served.model.config.n_layers)
    sequences = [(r.name, r.sequence) for r in read_fasta(data)]
    if not sequences:
        raise ValueError(f"{data}: no FASTA records")
    arrays = embed_sequences(
        served.model,
        served.alphabet,
        sequences,
        layers=chosen,
        per_residue=per_residue,
        max_tokens=max_tokens,
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # np.savez appends .npz to names without it; write through a handle to keep the name asked for.
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(tmp, out)
    total = int(arrays["lengths"].sum())
    dim = served.model.config.d_model
    print(f"embedded {len(sequences)} proteins ({total:,} residues), layers {chosen}, dim {dim}")
    print(f"embeddings: {out}")
    return 0
