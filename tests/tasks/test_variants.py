"""Variant-effect strategies against their definitions computed here one forward pass at a time, on a tiny
random masked LM; multi-site variants, long proteins in windows, and DMS files with their errors."""

import csv
import json

import pytest
import torch

from favor import cli
from favor.folders import load_served_model
from favor.inference import InferenceEngine, InputError
from favor.tasks.variants import pseudo_log_likelihood, read_dms, score_variants
from tiny_models import save_tiny

SEQ = "MKTAYIAKQRQISFVKSHFSRQ"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("mlm"), backbone="performer", task="mlm", max_length=16)


@pytest.fixture(scope="module")
def engine(model_dir):
    return InferenceEngine(load_served_model(model_dir))


def _log_probs(engine, residues, masked=()):
    """Residue log-probabilities at every position of <cls> residues <eos>, positions in ``masked`` masked."""
    alphabet = engine.alphabet
    ids = torch.tensor(alphabet.encode(residues, add_cls=True, add_eos=True))
    for p in masked:
        ids[p] = alphabet.mask_id
    with torch.no_grad():
        logits = engine.model(ids[None]).logits[0]
    return logits[:, list(alphabet.residue_ids)].log_softmax(-1)


def _col(engine, letter):
    return list(engine.alphabet.residue_ids).index(engine.alphabet.token_to_id(letter))


def _mutate(residues, sites):
    letters = list(residues)
    for p, _, m in sites:
        letters[p - 1] = m
    return "".join(letters)


def _pll(engine, residues):
    return sum(
        float(_log_probs(engine, residues, [j])[j, _col(engine, residues[j - 1])])
        for j in range(1, len(residues) + 1)
    )


SHORT = SEQ[:12]  # fits the 14-residue context
VARIANTS = {"K2R": [(2, "K", "R")], "A4G:Y5W": [(4, "A", "G"), (5, "Y", "W")]}


def _brute(engine, strategy, sites):
    if strategy == "masked-marginal":
        return sum(
            float(
                _log_probs(engine, SHORT, [p])[p, _col(engine, m)]
                - _log_probs(engine, SHORT, [p])[p, _col(engine, w)]
            )
            for p, w, m in sites
        )
    if strategy == "wt-marginal":
        lp = _log_probs(engine, SHORT)
        return sum(float(lp[p, _col(engine, m)] - lp[p, _col(engine, w)]) for p, w, m in sites)
    if strategy == "mutant-marginal":
        lp = _log_probs(engine, _mutate(SHORT, sites))
        return sum(float(lp[p, _col(engine, m)] - lp[p, _col(engine, w)]) for p, w, m in sites)
    return _pll(engine, _mutate(SHORT, sites)) - _pll(engine, SHORT)


@pytest.mark.parametrize("strategy", ["masked-marginal", "wt-marginal", "mutant-marginal", "pseudo-ppl"])
def test_each_strategy_equals_its_definition(engine, strategy):
    results = score_variants(engine, SHORT, list(VARIANTS), strategy=strategy)
    for result, (name, sites) in zip(results, VARIANTS.items(), strict=True):
        assert result["mutation"] == name and "window" not in result
        assert result["score"] == pytest.approx(_brute(engine, strategy, sites), abs=1e-5)
    assert results[0]["score"] != pytest.approx(results[1]["score"])


def test_strategies_differ(engine):
    scores = {
        s: score_variants(engine, SHORT, ["K2R"], strategy=s)[0]["score"]
        for s in ("wt-marginal", "mutant-marginal")
    }
    assert scores["wt-marginal"] != pytest.approx(scores["mutant-marginal"])


def test_long_proteins_are_scored_in_a_window_around_the_sites(engine):
    long = SEQ * 3  # 66 residues, the model reads 14
    result = score_variants(engine, long, ["F36A"], strategy="masked-marginal")[0]
    start, stop = result["window"]
    assert stop - start + 1 == 14 and start <= 36 <= stop
    window = long[start - 1 : stop]
    lp = _log_probs(engine, window, [36 - start + 1])
    want = float(lp[36 - start + 1, _col(engine, "A")] - lp[36 - start + 1, _col(engine, "F")])
    assert result["score"] == pytest.approx(want, abs=1e-5)
    with pytest.raises(InputError, match="span 19 residues"):
        score_variants(engine, long, ["M1A:F19A"])


def test_whole_sequence_pseudo_log_likelihood(engine):
    result = pseudo_log_likelihood(engine, SHORT)
    assert result["pll"] == pytest.approx(_pll(engine, SHORT), abs=1e-4)
    assert result["pseudo_perplexity"] > 1


@pytest.mark.parametrize(
    ("bad", "message"),
    [("K2R:K2A", "mutated twice"), ("A2R", "has 'K' at position 2"), ("K99R", "outside the sequence")],
)
def test_bad_variants_name_the_entry(engine, bad, message):
    with pytest.raises(InputError, match=message):
        score_variants(engine, SHORT, ["K2R", bad])


def _write_csv(path, rows):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows(rows)


def test_dms_file_scores_every_row_and_reports_spearman(tmp_path, model_dir, capsys):
    dms = tmp_path / "dms.csv"
    # Positions numbered from 101: --offset 101 maps 102 to the sequence's second residue.
    _write_csv(
        dms,
        [["mutant", "DMS_score"], ["K102R", "0.5"], ["A104G:Y105W", "-1.2"], ["T103S", ""], ["M101L", "0.1"]],
    )
    out = tmp_path / "scored.csv"
    argv = ["score", str(model_dir), "--dms", str(dms), "--sequence", SHORT, "--score-col", "DMS_score"]
    assert cli.main([*argv, "--offset", "101", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["rows"] == 4 and summary["scored_rows"] == 3 and -1 <= summary["spearman"] <= 1
    with out.open() as handle:
        written = list(csv.DictReader(handle))
    engine = InferenceEngine(load_served_model(model_dir))
    direct = score_variants(engine, SHORT, ["K2R", "A4G:Y5W", "T3S", "M1L"])
    assert [float(r["favor_score"]) for r in written] == pytest.approx([d["score"] for d in direct], abs=1e-5)


def test_dms_errors_name_the_line_and_field(tmp_path, engine):
    dms = tmp_path / "bad.csv"
    _write_csv(dms, [["mutant", "score"], ["K2R", "1"], ["Q2R", "1"]])
    with pytest.raises(ValueError, match=r"line 3, mutant.*has 'K' at position 2"):
        read_dms(dms, SHORT, score_col="score")
    _write_csv(dms, [["mutant", "score"], ["K2R", "high"]])
    with pytest.raises(ValueError, match=r"line 2, score 'high': not a number"):
        read_dms(dms, SHORT, score_col="score")
    with pytest.raises(ValueError, match="no column 'variant'"):
        read_dms(dms, SHORT, mutant_col="variant")
    _write_csv(dms, [["mutant", "score"], ["K2R"]])
    with pytest.raises(ValueError, match="line 2: 2 fields expected"):
        read_dms(dms, SHORT)


def test_pseudo_ppl_of_a_fasta_file(tmp_path, model_dir, capsys):
    fasta = tmp_path / "two.fasta"
    fasta.write_text(f">a\n{SHORT}\n>b\n{SEQ * 2}\n")
    assert cli.main(["score", str(model_dir), "--data", str(fasta), "--pseudo-ppl", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["sequences"]
    assert [r["name"] for r in result] == ["a", "b"] and result[1]["windows"] == 4
    engine = InferenceEngine(load_served_model(model_dir))
    assert result[0]["pll"] == pytest.approx(_pll(engine, SHORT), abs=1e-4)
