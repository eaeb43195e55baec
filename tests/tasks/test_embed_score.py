"""favor embed (npz layout, padding and window invariance) and favor score (errors, masked marginals)."""

import json

import numpy as np
import pytest
import torch

from favor.data import Alphabet, write_fasta
from favor.data.fasta import FastaRecord
from favor.models import load_pretrained
from favor.tasks.embed import embed_cli, embed_sequences, resolve_layers
from favor.tasks.score import score_cli

ALPHABET = Alphabet.protein()
WILD_TYPE = "MKTAYIAKQRQISFVKSHFSRQ"


def test_embed_writes_the_documented_arrays(tiny_run, tmp_path):
    fasta = tmp_path / "in.fasta"
    records = [
        FastaRecord("a", "", "MKTAY"),
        FastaRecord("b", "", "ACDEFGHIKLMNPQ"),
        FastaRecord("c", "", "W" * 100),
    ]
    write_fasta(records, fasta)
    out = tmp_path / "emb.npz"
    assert embed_cli(tiny_run, data=fasta, out=out, layers=[0, -1], per_residue=True) == 0
    with np.load(out) as data:
        assert data["names"].tolist() == ["a", "b", "c"]
        assert data["lengths"].tolist() == [5, 14, 100]
        assert data["layers"].tolist() == [0, 2]
        assert data["mean_layer2"].shape == (3, 16) and data["residue_layer0"].shape == (119, 16)
        assert data["offsets"].tolist() == [0, 5, 19, 119]
        # The mean embedding is the mean of the protein's residue rows, windows included (100 > 46).
        rows = data["residue_layer2"][19:119]
        np.testing.assert_allclose(data["mean_layer2"][2], rows.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_mean_pooling_ignores_padding(tiny_run):
    model = load_pretrained(tiny_run / "model")
    short = ("short", "MKTAYIAK")
    alone = embed_sequences(model, ALPHABET, [short], layers=[2])["mean_layer2"][0]
    # In one batch with a longer protein, the short one is padded.
    batched = embed_sequences(model, ALPHABET, [short, ("long", "ACDEFGHIKLMNPQRSTVWY" * 2)], layers=[2])
    np.testing.assert_allclose(batched["mean_layer2"][0], alone, rtol=1e-5, atol=1e-6)
    # The mean covers real residues only: not <cls>, <eos> or padding.
    ids = torch.tensor([[ALPHABET.cls_id, *ALPHABET.encode(short[1]), ALPHABET.eos_id]])
    with torch.no_grad():
        state = model(ids, repr_layers=[2]).hidden_states[0][0]
    np.testing.assert_allclose(alone, state[1:-1].mean(dim=0).numpy(), rtol=1e-5, atol=1e-6)


def test_layer_errors():
    assert resolve_layers(None, 4) == [4] and resolve_layers([-1, 4, 0], 4) == [4, 0]
    with pytest.raises(ValueError, match="--layers 7"):
        resolve_layers([7], 4)


def test_unknown_residue_in_fasta_is_named(tiny_run, tmp_path):
    fasta = tmp_path / "bad.fasta"
    fasta.write_text(">p1\nMKJT\n")
    with pytest.raises(ValueError, match=r"'p1'.*'J' at position 3"):
        embed_cli(tiny_run, data=fasta, out=tmp_path / "x.npz")


@pytest.mark.parametrize(
    ("mutations", "message"),
    [
        ("A1G", r"'A1G'.*has 'M' at position 1, not 'A'"),
        ("M1A,K99R", r"mutations\[1\] 'K99R'.*outside the sequence"),
        ("M1J", r"'M1J'.*'J' is not a residue"),
        ("M1", r"'M1'.*expected <wild-type><position><mutant>"),
        ("1MA", r"'1MA'.*expected"),
    ],
)
def test_bad_mutations_name_the_mutation(tiny_run, mutations, message):
    with pytest.raises(ValueError, match=message):
        score_cli(tiny_run, sequence=WILD_TYPE, mutations=mutations)


def test_scores_are_masked_marginals(tiny_run, capsys):
    score_cli(tiny_run, sequence=WILD_TYPE, mutations="K2R, A4G:Y5W", json_=True)
    scores = {s["mutation"]: s["score"] for s in json.loads(capsys.readouterr().out)["scores"]}
    model = load_pretrained(tiny_run / "model")
    residues = list(ALPHABET.residue_ids)

    def site(position: int, wild: str, mutant: str) -> float:
        ids = torch.tensor([[ALPHABET.cls_id, *ALPHABET.encode(WILD_TYPE), ALPHABET.eos_id]])
        ids[0, position] = ALPHABET.mask_id
        with torch.no_grad():
            log_probs = model(ids).logits[0, position, residues].log_softmax(-1)
        column = {t: i for i, t in enumerate(residues)}
        return float(
            log_probs[column[ALPHABET.token_to_id(mutant)]] - log_probs[column[ALPHABET.token_to_id(wild)]]
        )

    assert scores["K2R"] == pytest.approx(site(2, "K", "R"), abs=1e-5)
    assert scores["A4G:Y5W"] == pytest.approx(site(4, "A", "G") + site(5, "Y", "W"), abs=1e-5)


def test_score_needs_a_masked_lm(tmp_path):
    from favor.models import ModelConfig, SequenceModel, save_pretrained

    config = ModelConfig(task="clm", causal=True, vocab_size=29, d_model=16, n_layers=1, n_heads=2, d_ff=32)
    save_pretrained(SequenceModel(config), tmp_path)
    with pytest.raises(ValueError, match="needs a masked language model"):
        score_cli(tmp_path, sequence=WILD_TYPE, mutations="K2R")


def test_embed_includes_and_resumes_into_a_folder(tmp_path, capsys):
    """--include bos adds the <cls> state; --out DIR writes one file per protein and skips those written."""
    import numpy as _np

    from favor import cli
    from favor.data import read_fasta, sample_path

    model = tmp_path / "model"
    from tiny_models import save_tiny

    save_tiny(model, backbone="performer", task="mlm")
    fasta = tmp_path / "few.fasta"
    records = list(read_fasta(sample_path("test")))[:5]
    fasta.write_text("".join(f">{r.name}\n{r.sequence}\n" for r in records))
    single = tmp_path / "all.npz"
    argv = [
        "embed",
        str(model),
        "--data",
        str(fasta),
        "--include",
        "bos",
        "--include",
        "per-residue",
        "--layers",
        "0",
        "--layers",
        "-1",
    ]
    assert cli.main([*argv, "--out", str(single)]) == 0
    with _np.load(single) as stored:
        assert "mean_layer2" not in stored and stored["bos_layer2"].shape == (5, 16)
        assert stored["residue_layer0"].shape[0] == stored["lengths"].sum()
    folder = tmp_path / "per-protein"
    assert cli.main([*argv[:-4], "--include", "mean", "--out", str(folder)]) == 0
    files = sorted(folder.glob("*.npz"))
    assert len(files) == 5
    with _np.load(single) as stored, _np.load(folder / f"{records[2].name}.npz") as one:
        _np.testing.assert_allclose(one["bos_layer2"], stored["bos_layer2"][2], rtol=1e-6, atol=1e-6)
        start, stop = stored["offsets"][2], stored["offsets"][3]
        _np.testing.assert_allclose(
            one["residue_layer2"], stored["residue_layer2"][start:stop], rtol=1e-6, atol=1e-6
        )
    files[0].unlink()
    before = {f.name: f.stat().st_mtime_ns for f in files[1:]}
    capsys.readouterr()
    assert cli.main([*argv[:-4], "--include", "mean", "--out", str(folder)]) == 0
    assert "4 already there" in capsys.readouterr().out
    assert {f.name: f.stat().st_mtime_ns for f in files[1:]} == before and files[0].is_file()
    assert (
        cli.main(["embed", str(model), "--data", str(fasta), "--out", str(single), "--include", "contacts"])
        == 1
    )
