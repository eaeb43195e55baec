"""Contacts from attention: APC, the regression's fit on a planted signal, storage beside the model, the
supervised-head path, the command (predict, fit, evaluate) and its errors."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

import favor.models.contact_regression as cr
import favor.tasks.attention_contacts as ac
from favor.cli import main
from favor.folders import load_served_model
from favor.inference import InferenceEngine, InputError, NoContactRegression, TaskError, predict_contacts
from favor.tasks.contacts import Chain, contact_map
from tiny_models import save_tiny

RESIDUES = "ACDEFGHIKLMNPQRSTVWY"


def _globule(length: int, rng: np.random.Generator) -> np.ndarray:
    """A compact chain: 3.8 A steps in random directions, kept inside a 9 A sphere (many contacts)."""
    coords = [np.zeros(3)]
    while len(coords) < length:
        step = rng.normal(size=3)
        candidate = coords[-1] + 3.8 * step / np.linalg.norm(step)
        if np.linalg.norm(candidate) < 9.0:
            coords.append(candidate)
    return np.array(coords, dtype=np.float32)


def _chains(n: int, seed: int, length: int = 40) -> list[Chain]:
    rng = np.random.default_rng(seed)
    return [
        Chain(f"X{seed}{i}_A", "".join(rng.choice(list(RESIDUES), length)), _globule(length, rng))
        for i in range(n)
    ]


@pytest.fixture
def data_root(tmp_path):
    """A contacts/ folder in the shared data's layout: 8 train and 4 test chains of 40 residues."""
    root = tmp_path / "data"
    (root / "contacts").mkdir(parents=True)
    chains = _chains(8, 1) + _chains(4, 2)
    with gzip.open(root / "contacts" / "chains.tsv.gz", "wt", encoding="utf-8") as handle:
        handle.write("idx\tpdb_id\tchain\tsplit\tsequence\tdssp8\n")
        for idx, chain in enumerate(chains):
            split = "train" if idx < 8 else "test"
            handle.write(f"{idx}\t{chain.name[:-2]}\tA\t{split}\t{chain.sequence}\t{'C' * 40}\n")
    offsets = np.cumsum([0] + [len(c.sequence) for c in chains])
    cb = np.concatenate([c.coords for c in chains]).astype(np.float16)
    np.savez(root / "contacts" / "coords_cb.npz", offsets=offsets, cb=cb)
    return root


@pytest.fixture
def model_dir(tmp_path):
    return save_tiny(tmp_path / "model", backbone="transformer")


def test_apc_removes_the_shared_background_and_keeps_symmetry():
    rows = torch.rand(5, dtype=torch.float64) + 0.5
    background = rows[:, None] * rows[None, :]  # rank one: what every row and column shares
    torch.testing.assert_close(cr.apc(background), torch.zeros(5, 5, dtype=torch.float64))
    x = torch.rand(3, 7, 7, dtype=torch.float64)
    corrected = cr.apc(cr.symmetrize(x))
    torch.testing.assert_close(corrected, corrected.transpose(-1, -2))


def test_features_are_cut_to_the_residues_per_layer_and_head():
    maps = torch.rand(2, 3, 9, 9)
    features = cr.attention_features(maps, slice(1, 8))
    assert features.shape == (7, 7, 6)
    expected = cr.apc(cr.symmetrize(maps[1, 2, 1:8, 1:8].double())).float()
    torch.testing.assert_close(features[..., 1 * 3 + 2], expected)


def test_the_fit_finds_a_planted_contact_head(model_dir, monkeypatch):
    """Attention maps in which one head is the true contact map (plus noise): the fitted regression must
    rank true contacts first and weigh that head, and beat the random predictor by far."""
    engine = InferenceEngine(load_served_model(model_dir))
    chains = {c.sequence: c for c in _chains(10, 3)}
    rng = np.random.default_rng(0)

    def planted(model, ids):
        sequence = "".join(engine.alphabet.tokens[i] for i in ids[0, 1:-1].tolist())
        contacts = torch.from_numpy(contact_map(chains[sequence].coords).astype(np.float32))
        maps = torch.from_numpy(rng.random((1, 2, 2, ids.shape[1], ids.shape[1])).astype(np.float32)) * 0.2
        maps[0, 1, 0, 1:-1, 1:-1] += contacts
        return maps

    monkeypatch.setattr(cr, "attention_maps", planted)
    fit_on, held = list(chains.values())[:6], list(chains.values())[6:]
    regression = ac.fit_contact_regression(engine, fit_on)
    assert int(np.argmax(np.abs(regression.weight.numpy()))) == 1 * 2 + 0
    scores = ac.evaluate_contacts(lambda c: predict_contacts(engine, c.sequence, regression=regression), held)
    floor = ac.evaluate_contacts(ac.random_predictor(), held)
    assert scores["p_at_l5_long"] > 0.9 and scores["p_at_l_short"] > 0.9
    assert floor["p_at_l5_long"] < 0.6
    # Calibrated: on the chains it was fitted on, the mean probability is the share of contacts.
    i, j = np.triu_indices(40, k=6)
    mean_p = np.mean([predict_contacts(engine, c.sequence, regression=regression)[i, j] for c in fit_on])
    share = np.mean([contact_map(c.coords)[i, j] for c in fit_on])
    assert mean_p == pytest.approx(share, rel=0.05)
    strong = ac.fit_contact_regression(engine, fit_on, c_grid=(0.0003,))  # calibrated under a strong L1 too
    mean_p = np.mean([predict_contacts(engine, c.sequence, regression=strong)[i, j] for c in fit_on])
    assert mean_p == pytest.approx(share, rel=0.05)


def test_regression_round_trips_and_damage_is_named(tmp_path):
    regression = cr.ContactRegression(torch.tensor([0.5, -1.0, 0.0, 2.0]), -3.0, {"C": 0.1})
    regression.save(tmp_path)
    loaded = cr.ContactRegression.load(tmp_path, n_layers=2, n_heads=2)
    torch.testing.assert_close(loaded.weight, regression.weight)
    assert loaded.bias == -3.0 and loaded.info == {"C": 0.1}
    assert not list(tmp_path.glob(".*tmp"))
    with pytest.raises(ValueError, match="2 layers x 1 heads"):
        cr.ContactRegression.load(tmp_path, n_layers=2, n_heads=1)
    (tmp_path / cr.REGRESSION_WEIGHTS).write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=cr.REGRESSION_WEIGHTS):
        cr.ContactRegression.load(tmp_path, n_layers=2, n_heads=2)
    assert cr.ContactRegression.load(tmp_path / "absent", n_layers=2, n_heads=2) is None


def test_a_contact_models_head_predicts_symmetric_probabilities(tmp_path):
    served = load_served_model(save_tiny(tmp_path / "c", task="contact", num_labels=1))
    engine = InferenceEngine(served)
    sequence = "MKTAYIAKQRQISFVKSHFSRQ"
    contacts = predict_contacts(engine, sequence)
    ids = engine.encode(sequence, where="s")
    with torch.inference_mode():
        logits = served.model(ids[None]).logits[0, 1:-1, 1:-1]
    torch.testing.assert_close(torch.from_numpy(contacts), torch.sigmoid(logits))
    np.testing.assert_allclose(contacts, contacts.T)


def test_predicting_needs_a_fitted_regression_and_a_valid_sequence(model_dir):
    engine = InferenceEngine(load_served_model(model_dir))
    with pytest.raises(NoContactRegression, match="favor contacts fit"):
        predict_contacts(engine, "MKTAYIAKQR")
    regression = cr.ContactRegression(torch.ones(4), 0.0)
    with pytest.raises(InputError, match="'J' at position 3"):
        predict_contacts(engine, "MKJAYIAKQR", regression=regression)
    lstm = InferenceEngine(load_served_model(save_tiny(model_dir.parent / "lstm", backbone="lstm")))
    with pytest.raises(TaskError, match="no attention layers"):
        predict_contacts(lstm, "MKTAYIAKQR", regression=regression)


def test_the_command_fits_predicts_and_evaluates(model_dir, data_root, tmp_path, capsys):
    assert main(["contacts", "fit", str(model_dir), "--chains", "8", "--data-root", str(data_root)]) == 0
    info = json.loads((model_dir / cr.REGRESSION_META).read_text())
    assert info["n_layers"] == 2 and info["n_heads"] == 2 and len(info["chains"]) == 8
    capsys.readouterr()
    sequence = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEV"
    out, png = tmp_path / "map.npz", tmp_path / "map.png"
    assert main(["contacts", str(model_dir), "--sequence", sequence, "--json", "--out", str(out),
                 "--png", str(png)]) == 0  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    contacts = np.array(printed["contacts"])
    assert printed["length"] == len(sequence) and contacts.shape == (len(sequence),) * 2
    assert np.allclose(contacts, contacts.T) and contacts.min() >= 0 and contacts.max() <= 1
    with np.load(out) as saved:
        np.testing.assert_allclose(saved["contacts"], contacts, atol=1e-5)
    assert png.stat().st_size > 1000
    pair = tmp_path / "pair.png"
    args = [
        "contacts",
        "evaluate",
        str(model_dir),
        "--data-root",
        str(data_root),
        "--json",
        "--png",
        str(pair),
    ]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["chains"] == 4 and report["split"] == "test" and pair.stat().st_size > 1000
    for key in ("p_at_l_short", "p_at_l2_medium", "p_at_l5_long"):
        assert 0 <= report[key] <= 1
    assert main(["contacts", "evaluate", str(model_dir), "--data-root", str(data_root), "--random"]) == 0
    assert "random on 4 test chains" in capsys.readouterr().out


def test_the_command_names_bad_input(model_dir, capsys):
    cr.ContactRegression(torch.ones(4), 0.0).save(model_dir)
    assert main(["contacts", str(model_dir), "--sequence", "MKTAYIAKQRX1"]) == 1
    assert "'1' at position 12" in capsys.readouterr().err
    assert main(["contacts", str(model_dir)]) == 1
    assert "--sequence SEQ or --data FASTA" in capsys.readouterr().err
    assert main(["contacts", "fit"]) == 1
    assert "give the model" in capsys.readouterr().err
    assert main(["contacts", str(model_dir), "--sequence", "M" * 47]) == 1
    assert "over the limit of 46" in capsys.readouterr().err


def test_embed_include_contacts_writes_the_maps_or_nothing(model_dir, tmp_path, capsys):
    fasta = tmp_path / "p.fasta"
    fasta.write_text(">a\nMKTAYIAKQRQISFV\n>b\nACDEFGHIKLMNPQRSTVWYAC\n")
    out = tmp_path / "emb.npz"
    assert (
        main(["embed", str(model_dir), "--data", str(fasta), "--out", str(out), "--include", "contacts"]) == 1
    )
    assert "favor contacts fit" in capsys.readouterr().err and not out.exists()
    regression = cr.ContactRegression(torch.linspace(-1, 1, 4), -1.0)
    regression.save(model_dir)
    assert (
        main(["embed", str(model_dir), "--data", str(fasta), "--out", str(out), "--include", "contacts"]) == 0
    )
    engine = InferenceEngine(load_served_model(model_dir))
    with np.load(out) as saved:
        offsets = saved["contact_offsets"]
        for i, sequence in enumerate(["MKTAYIAKQRQISFV", "ACDEFGHIKLMNPQRSTVWYAC"]):
            n = len(sequence)
            got = saved["contacts"][offsets[i] : offsets[i + 1]].reshape(n, n)
            np.testing.assert_allclose(
                got, predict_contacts(engine, sequence, regression=regression), atol=1e-6
            )
    folder = tmp_path / "per"
    assert (
        main(["embed", str(model_dir), "--data", str(fasta), "--out", str(folder), "--include", "contacts"])
        == 0
    )
    with np.load(folder / "b.npz") as saved:
        assert saved["contacts"].shape == (22, 22)
    fasta.write_text(">a\nMKTAYIAKQR\n>long\n" + "M" * 47 + "\n")
    again = tmp_path / "again.npz"
    assert (
        main(["embed", str(model_dir), "--data", str(fasta), "--out", str(again), "--include", "contacts"])
        == 1
    )
    assert "record 'long'" in capsys.readouterr().err and not again.exists()
