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
    mean_layer{l}       (N, D) float32                                    with --include mean (default)
    bos_layer{l}        (N, D) float32   the <cls> state (of the first window), with --include bos
    residue_layer{l}    (sum(lengths), D) float32    with --include per-residue; protein i is rows
    offsets             (N + 1,) int64               offsets[i]:offsets[i + 1]
    contacts            (sum(lengths^2),) float32    with --include contacts: protein i's L x L contact
    contact_offsets     (N + 1,) int64               probabilities, flattened row-major, are
                                                     contacts[contact_offsets[i]:contact_offsets[i + 1]]

Contacts come from `favor.inference.predict_contacts` (the attention maps and the regression that
``favor contacts fit`` stored beside the model, or a contact model's head), for proteins that fit the
model's context; every protein is checked before anything is computed.

With ``--out DIR`` (a folder) instead of a ``.npz`` file, every protein gets its own ``DIR/<name>.npz``
holding the same arrays for that protein alone (``residue_layer{l}`` is ``(length, D)``, ``contacts`` is
``(length, length)``), as ESM's ``extract.py`` writes one file per sequence; proteins whose file exists are
skipped, so an interrupted run continues where it stopped. Files are written whole and then renamed, so
none is ever half-written.
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

__all__ = ["embed_sequences", "embed_cli", "resolve_layers", "INCLUDE"]

INCLUDE = ("mean", "per-residue", "bos", "contacts")


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
    bos: bool = False,
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
    firsts = {layer: np.zeros((len(sequences), dim), dtype=np.float32) for layer in layers}
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
                if start == 0:
                    firsts[layer][protein] = state[b, 0]
                if per_residue:
                    residues[layer][offsets[protein] + start : offsets[protein] + stop] = values
    out = {
        "names": np.array([name for name, _ in sequences], dtype=str),
        "lengths": np.array(lengths, dtype=np.int64),
        "layers": np.array(layers, dtype=np.int64),
    }
    for layer in layers:
        out[f"mean_layer{layer}"] = (sums[layer] / np.array(lengths)[:, None]).astype(np.float32)
        if bos:
            out[f"bos_layer{layer}"] = firsts[layer]
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
    include: list[str] | None = None,
    per_residue: bool = False,
    max_tokens: int = 8192,
    device: str = "cpu",
) -> int:
    """Write per-protein (mean over residues), <cls> and per-residue embeddings of a FASTA file.

    --out FILE.npz holds names, lengths, layers and, per layer, mean_layer{L} (N x d_model), bos_layer{L}
    and residue_layer{L} (total residues x d_model, with offsets) as --include asks. --out DIR writes one
    DIR/<name>.npz per protein and skips proteins already written (an interrupted run continues). Proteins
    longer than the model's context are embedded in consecutive windows. See docs/downstream.md.

    Args:
        run_dir: a 'favor train' run folder, a model folder or a bundled model name.
        data (FASTA): proteins to embed (plain or gzipped FASTA).
        out (PATH): the .npz file to write, or a folder for one .npz per protein.
        layers (L): layer to store, repeatable (0 = embeddings, -1 or n_layers = final; default: final).
        include (WHAT): mean, per-residue, bos (the <cls> state) or contacts (L x L maps, see favor
            contacts); repeatable (default: mean).
        per_residue: the same as --include per-residue (kept for earlier scripts).
        max_tokens (N): padded tokens per forward pass.
        device: cpu, cuda or cuda:N.
    """
    from favor.inference import resolve_device

    wanted = set(include or ["mean"]) | ({"per-residue"} if per_residue else set())
    unknown = sorted(wanted - set(INCLUDE))
    if unknown:
        raise ValueError(f"--include {', '.join(unknown)}: choose from {', '.join(INCLUDE)}")
    served = load_served_model(run_dir, device=resolve_device(device))
    chosen = resolve_layers(layers, served.model.config.n_layers)
    sequences = [(r.name, r.sequence) for r in read_fasta(data)]
    if not sequences:
        raise ValueError(f"{data}: no FASTA records")
    options = {
        "layers": chosen,
        "per_residue": "per-residue" in wanted,
        "bos": "bos" in wanted,
        "max_tokens": max_tokens,
    }
    out = Path(out)
    dim = served.model.config.d_model
    contacts = _ContactMaps(served, sequences, data) if "contacts" in wanted else None
    if out.suffix != ".npz":
        return _embed_to_folder(served, sequences, out, wanted, options, contacts)
    arrays = embed_sequences(served.model, served.alphabet, sequences, **options)
    if contacts is not None:
        maps = [contacts(name, sequence).ravel() for name, sequence in sequences]
        arrays["contacts"] = np.concatenate(maps).astype(np.float32)
        arrays["contact_offsets"] = np.concatenate([[0], np.cumsum([len(m) for m in maps])]).astype(np.int64)
    if "mean" not in wanted:
        arrays = {k: v for k, v in arrays.items() if not k.startswith("mean_layer")}
    out.parent.mkdir(parents=True, exist_ok=True)
    _save(out, arrays)
    total = int(arrays["lengths"].sum())
    print(f"embedded {len(sequences)} proteins ({total:,} residues), layers {chosen}, dim {dim}")
    print(f"embeddings: {out}")
    return 0


class _ContactMaps:
    """Contact maps for ``--include contacts``: the model and every protein are checked up front (a
    regression or a contact head; each protein within the context), so a bad one stops the run before any
    output is written."""

    def __init__(self, served, sequences: list[tuple[str, str]], data: Path) -> None:
        from favor.inference import (
            InferenceEngine,
            NoContactRegression,
            contact_regression_of,
        )

        self.engine = InferenceEngine(served)
        self.regression = None if served.config.task == "contact" else contact_regression_of(served)
        if served.config.task != "contact" and self.regression is None:
            raise NoContactRegression(
                f"--include contacts: {served.path} has no contact regression; "
                "fit one with: favor contacts fit MODEL"
            )
        self.data = data
        for name, sequence in sequences:
            self.engine.encode(sequence, where=self._where(name))

    def _where(self, name: str) -> str:
        return f"{self.data}: record {name!r} (--include contacts)"

    def __call__(self, name: str, sequence: str) -> np.ndarray:
        from favor.inference import predict_contacts

        return predict_contacts(self.engine, sequence, regression=self.regression, where=self._where(name))


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # np.savez appends .npz to names without it; write through a handle to keep the name asked for.
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(tmp, path)


def _file_name(name: str) -> str:
    """A record name as a file name: characters other than letters, digits, ``._-`` become ``_``."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "_"


def _embed_to_folder(served, sequences, folder: Path, wanted: set[str], options: dict, contacts=None) -> int:
    """One ``<name>.npz`` per protein; proteins with a file already are skipped (resume)."""
    folder.mkdir(parents=True, exist_ok=True)
    todo = [(n, s) for n, s in sequences if not (folder / f"{_file_name(n)}.npz").is_file()]
    names = [_file_name(n) for n, _ in sequences]
    if len(set(names)) != len(names):
        raise ValueError(
            "two records map to the same file name in --out DIR; rename them or use --out FILE.npz"
        )
    done = len(sequences) - len(todo)
    batch = 64
    for i in range(0, len(todo), batch):
        chunk = todo[i : i + batch]
        arrays = embed_sequences(served.model, served.alphabet, chunk, **options)
        for j, (name, _) in enumerate(chunk):
            one = {"name": np.array(name), "length": arrays["lengths"][j], "layers": arrays["layers"]}
            for layer in options["layers"]:
                if "mean" in wanted:
                    one[f"mean_layer{layer}"] = arrays[f"mean_layer{layer}"][j]
                if "bos" in wanted:
                    one[f"bos_layer{layer}"] = arrays[f"bos_layer{layer}"][j]
                if "per-residue" in wanted:
                    start, stop = arrays["offsets"][j], arrays["offsets"][j + 1]
                    one[f"residue_layer{layer}"] = arrays[f"residue_layer{layer}"][start:stop]
            if contacts is not None:
                one["contacts"] = contacts(name, chunk[j][1])
            _save(folder / f"{_file_name(name)}.npz", one)
    print(f"embedded {len(todo)} proteins into {folder} ({done} already there, skipped)")
    return 0
