"""``favor contacts``: contact maps from a model (attention + fitted regression, or a supervised head),
fitting the regression (stored in the model folder as contact_regression.safetensors + .json), and
evaluating P@L on the contacts splits. The method: `favor.tasks.attention_contacts`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from favor.folders import load_served_model
from favor.inference import InferenceEngine, contact_regression_of, predict_contacts
from favor.tasks.attention_contacts import (
    evaluate_contacts,
    fit_contact_regression,
    load_chains,
    random_predictor,
)
from favor.tasks.common import resolve_data_root

__all__ = ["contacts_cli", "draw_contacts"]

ACTIONS = ("fit", "evaluate")


def draw_contacts(
    path: Path, predicted: np.ndarray, true: np.ndarray | None = None, *, title: str = ""
) -> None:
    """A PNG of the predicted map (and, given ``true`` contacts, the two side by side)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 1 if true is None else 2
    figure, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 4.2), squeeze=False)
    image = axes[0, 0].imshow(predicted, cmap="Blues", vmin=0, vmax=max(float(predicted.max()), 1e-6))
    axes[0, 0].set_title(f"predicted{': ' + title if title else ''}", fontsize=9)
    figure.colorbar(image, ax=axes[0, 0], fraction=0.046, label="contact probability")
    if true is not None:
        axes[0, 1].imshow(true, cmap="Greys", vmin=0, vmax=1)
        axes[0, 1].set_title("true (CB-CB < 8 A)", fontsize=9)
    for axis in axes[0]:
        axis.set_xlabel("residue")
        axis.set_ylabel("residue")
    figure.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    os.replace(tmp, path)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def _records(sequence: str | None, data: Path | None) -> list[tuple[str, str]]:
    if (sequence is None) == (data is None):
        raise ValueError("give one of --sequence SEQ or --data FASTA")
    if sequence is not None:
        return [("sequence", sequence)]
    from favor.data import read_fasta

    return [(record.name, record.sequence) for record in read_fasta(data)]


def _fit(model: str, chains: int, data_root: Path | None, quiet: bool, c: float | None) -> dict[str, Any]:
    served = load_served_model(model)
    engine = InferenceEngine(served)
    root = resolve_data_root(data_root)
    if not 2 <= chains <= 20:
        raise ValueError(f"--chains {chains}: fit on 2 to 20 training chains")
    fitting = load_chains(root, "train", limit=chains, max_residues=engine.max_residues)
    if c is not None and not c > 0:
        raise ValueError(f"--c {c}: the L1 strength must be positive")
    regression = fit_contact_regression(engine, fitting, **({} if c is None else {"c_grid": (c,)}))
    path = regression.save(served.path)
    summary = {
        "out": str(path),
        **{k: regression.info[k] for k in ("C", "pairs", "contacts", "nonzero_weights")},
    }
    if not quiet:
        print(
            f"fitted on {len(fitting)} training chains ({summary['pairs']:,} pairs, {summary['contacts']:,} "
            f"contacts): C={summary['C']}, {summary['nonzero_weights']} of {regression.weight.numel()} "
            f"attention maps used; wrote {path}"
        )
    return summary


def _evaluate(
    model: str, split: str, max_chains: int | None, data_root: Path | None, random: bool, png: Path | None
) -> dict[str, Any]:
    served = load_served_model(model)
    engine = InferenceEngine(served)
    chains = load_chains(
        resolve_data_root(data_root), split, limit=max_chains, max_residues=engine.max_residues
    )
    if random:
        predictor, name = random_predictor(), "random"
    else:
        regression = contact_regression_of(served)
        name = "supervised contact head" if served.config.task == "contact" else "attention + regression"

        def predictor(chain):
            return predict_contacts(engine, chain.sequence, regression=regression, where=chain.name)

    result = evaluate_contacts(predictor, chains)
    if png is not None:
        from favor.tasks.contacts import contact_map

        first = chains[0]
        title = f"{first.name} ({name})"
        draw_contacts(png, predictor(first), contact_map(first.coords).astype(float), title=title)
    return {"model": str(served.path), "predictor": name, "split": split, **result}


def contacts_cli(
    action: str,
    model: str | None = None,
    *,
    sequence: str | None = None,
    data: Path | None = None,
    json_: bool = False,
    out: Path | None = None,
    png: Path | None = None,
    chains: int = 20,
    c: float | None = None,
    split: str = "test",
    max_chains: int | None = None,
    random: bool = False,
    data_root: Path | None = None,
) -> int:
    """Contact maps from a protein model: attention maps combined by a fitted regression (ESM-style).

    favor contacts MODEL --sequence SEQ [--json] [--out FILE.npz] [--png FILE.png] predicts an L x L map of
    contact probabilities (or --data FASTA, one map per record). favor contacts fit MODEL [--chains N]
    fits the L1 logistic regression over the model's symmetrized, APC-corrected attention maps on N <= 20
    training chains of the shared contacts data and stores it beside the model. favor contacts evaluate
    MODEL [--split test] [--max-chains N] [--random] reports P@L, P@L/2 and P@L/5 at short, medium and long
    separation. A model fine-tuned with --task contacts predicts with its supervised head instead.

    Args:
        action (MODEL|fit|evaluate): the model to predict with, or fit / evaluate followed by the model.
        model (MODEL): with fit or evaluate: a model folder, run folder or bundled model name.
        sequence (SEQ): the protein sequence.
        data (FASTA): proteins to predict, one map each.
        json_: print {"contacts": L x L, "length": L} (one JSON line per record with --data).
        out (NPZ): write the maps (key "contacts", or one key per record name with --data).
        png (PNG): draw the map (with --sequence or a one-record --data); with evaluate, the first chain's
            predicted map beside its true one.
        chains (N): fit: training chains to fit on (2-20).
        c (C): fit: this L1 strength (scikit-learn's C; smaller is sparser) instead of choosing one of
            0.0003-1 by held-out log-loss.
        split: evaluate: train, valid or test chains.
        max_chains (N): evaluate: a seeded subset of this many chains (default: all of the split).
        random: evaluate the random predictor instead of the model (the floor to beat).
        data_root (DIR): the shared data folder (default: $FAVOR_SHARED_DATA or ../shared/data).
    """
    if action in ACTIONS:
        if model is None:
            raise ValueError(f"favor contacts {action} MODEL: give the model")
        if action == "fit":
            summary = _fit(model, chains, data_root, quiet=json_, c=c)
        else:
            summary = _evaluate(model, split, max_chains, data_root, random, png)
            if not json_:
                _print_table(summary)
        if json_:
            print(json.dumps(summary))
        return 0
    if model is not None:
        raise ValueError(
            f"favor contacts {action} {model}: the first argument is a model or one of {ACTIONS}"
        )
    engine = InferenceEngine(load_served_model(action))
    regression = contact_regression_of(engine.served)
    records = _records(sequence, data)
    if png is not None and len(records) != 1:
        raise ValueError(f"--png draws one map; --data has {len(records)} records")
    maps = {}
    for name, seq in records:
        where = "--sequence" if sequence is not None else f"{data}: record {name!r}"
        contacts = predict_contacts(engine, seq, regression=regression, where=where)
        maps[name] = contacts
        if json_:
            line: dict[str, Any] = {"contacts": np.round(contacts, 5).tolist(), "length": len(seq)}
            print(json.dumps(line if sequence is not None else {"name": name, **line}))
    if out is not None:
        _write_npz(out, {"contacts": maps["sequence"]} if sequence is not None else maps)
    if png is not None:
        name, contacts = next(iter(maps.items()))
        draw_contacts(png, contacts, title=name)
    if not json_:
        for name, contacts in maps.items():
            n = len(contacts)
            i, j = np.triu_indices(n, k=6)
            top = np.argsort(-contacts[i, j])[: max(1, n // 5)]
            pairs = ", ".join(f"{i[t] + 1}-{j[t] + 1}:{contacts[i[t], j[t]]:.2f}" for t in top[:10])
            print(f"{name}: {n} residues; top pairs (separation >= 6): {pairs}")
        if out is not None:
            print(f"wrote {out}")
    return 0


def _print_table(summary: dict[str, Any]) -> None:
    print(f"{summary['predictor']} on {summary['chains']} {summary['split']} chains ({summary['model']})")
    print("range    P@L     P@L/2   P@L/5")
    for key in ("short", "medium", "long"):
        row = [summary.get(f"p_at_{top}_{key}", float("nan")) for top in ("l", "l2", "l5")]
        print(f"{key:<8} " + "  ".join(f"{v:.4f}" for v in row))
    print(f"long-range contact density (random's precision): {summary['long_range_density']:.4f}")
