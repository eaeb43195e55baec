"""ESM conversion both ways against Hugging Face's EsmForMaskedLM (random init, no download): logits and every
layer's hidden states agree within 1e-5 on real proteins batched with padding; favor -> HF -> favor is
bit-identical; what cannot be reproduced is refused with a message naming the file."""

import json
import shutil

import pytest
import torch

transformers = pytest.importorskip("transformers")

from favor.convert import ConversionError, from_esm, to_hf  # noqa: E402
from favor.data import Alphabet  # noqa: E402
from favor.folders import load_served_model  # noqa: E402
from favor.models import load_pretrained  # noqa: E402

PROTEINS = [
    "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLVGIGGKLSDGHRHDVRAPDYDDWSTPSELGHAGLNGDILVWNPVLEDAFELSSMGIRVDADTLKHQLALTGDEDRLELEWHQALLRGEMPQTIGGGIGQSRLTMLLLQLPHIGQVQAGVWPAACR",
    "MSQQKQQSWKPPNVPKCSPPQRSNPCLAPYSTPCGAPHSEGCHSSSQRPEVQKPRRARQK",
    "GSHMASMTGGQQMGRGS",
]
SHAPES = {
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
    "esm2_t6_8M": dict(hidden_size=320, num_hidden_layers=6, num_attention_heads=20, intermediate_size=1280),
}


def _hf_folder(tmp_path, shape, token_dropout=True):
    config = transformers.EsmConfig(
        vocab_size=33, pad_token_id=1, mask_token_id=32, position_embedding_type="rotary",
        max_position_embeddings=1026, emb_layer_norm_before=False, token_dropout=token_dropout,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-5, **SHAPES[shape],
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.EsmForMaskedLM(config).eval()
    with torch.no_grad():  # random init leaves LayerNorms and biases at 1 / 0: perturb them so all are tested
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    folder = tmp_path / f"hf-{shape}"
    model.save_pretrained(folder, safe_serialization=True)
    return model, folder


def _batch(masked_position=None):
    alphabet = Alphabet.esm()
    rows = [alphabet.encode(p, add_cls=True, add_eos=True) for p in PROTEINS]
    if masked_position is not None:
        rows[1][masked_position] = alphabet.mask_id
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), alphabet.pad_id)
    padding = torch.ones(len(rows), width, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        padding[i, : len(row)] = False
    return ids, padding


@pytest.mark.parametrize("shape", ["tiny", "esm2_t6_8M"])
def test_exact_conversion_matches_hugging_face(tmp_path, shape):
    hf_model, folder = _hf_folder(tmp_path, shape)
    out = from_esm(folder, tmp_path / "favor")
    model = load_pretrained(out)
    ids, padding = _batch(masked_position=5)  # a <mask>: token dropout rescales that row
    with torch.no_grad():
        theirs = hf_model(input_ids=ids, attention_mask=(~padding).long(), output_hidden_states=True)
        ours = model(ids, padding_mask=padding, output_hidden_states=True)
    real = ~padding
    torch.testing.assert_close(ours.logits[real], theirs.logits[real], rtol=1e-5, atol=1e-5)
    # HF's hidden states: the embeddings, then each layer's output (the last one after the final LayerNorm).
    assert len(ours.hidden_states) == len(theirs.hidden_states)
    for i, (a, b) in enumerate(zip(ours.hidden_states, theirs.hidden_states, strict=True)):
        torch.testing.assert_close(
            a[real], b[real], rtol=1e-5, atol=1e-5, msg=lambda m, i=i: f"layer {i}: {m}"
        )
    assert load_served_model(out).alphabet == Alphabet.esm()


def test_round_trip_favor_hf_favor_is_bit_identical(tmp_path):
    _, folder = _hf_folder(tmp_path, "tiny")
    first = from_esm(folder, tmp_path / "a")
    result = to_hf(first, tmp_path / "hf-again")
    assert result["exact_twin"] is False
    again = from_esm(tmp_path / "hf-again", tmp_path / "b")
    a, b = load_pretrained(first).state_dict(), load_pretrained(again).state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # And Hugging Face itself loads what favor wrote, with the same logits.
    hf_again = transformers.EsmForMaskedLM.from_pretrained(tmp_path / "hf-again").eval()
    ids, padding = _batch()
    with torch.no_grad():
        theirs = hf_again(input_ids=ids, attention_mask=(~padding).long()).logits
        ours = load_pretrained(first)(ids, padding_mask=padding).logits
    torch.testing.assert_close(ours[~padding], theirs[~padding], rtol=1e-5, atol=1e-5)


def test_performer_conversion_keeps_the_weights_and_approximates(tmp_path):
    hf_model, folder = _hf_folder(tmp_path, "tiny")
    exact = load_pretrained(from_esm(folder, tmp_path / "exact"))
    favor = load_pretrained(from_esm(folder, tmp_path / "favor", attention="performer", nb_features=512))
    assert favor.config.backbone == "performer" and favor.config.attention.nb_features == 512
    ids, padding = _batch()
    with torch.no_grad():
        a = exact(ids, padding_mask=padding).logits.log_softmax(-1)
        b = favor(ids, padding_mask=padding).logits.log_softmax(-1)
    real = ~padding
    agree = (a.argmax(-1) == b.argmax(-1))[real].float().mean()
    assert agree > 0.9
    written = to_hf(tmp_path / "favor", tmp_path / "twin")
    assert written["exact_twin"] is True
    twin = transformers.EsmForMaskedLM.from_pretrained(tmp_path / "twin").eval()
    with torch.no_grad():
        torch.testing.assert_close(
            twin(input_ids=ids, attention_mask=real.long()).logits[real],
            a.new_tensor(0) + exact(ids, padding_mask=padding).logits[real],
            rtol=1e-5,
            atol=1e-5,
        )


def test_what_cannot_be_converted_is_refused(tmp_path):
    _, folder = _hf_folder(tmp_path, "tiny")
    config = json.loads((folder / "config.json").read_text())
    bad = tmp_path / "learned"
    shutil.copytree(folder, bad)
    (bad / "config.json").write_text(json.dumps({**config, "position_embedding_type": "absolute"}))
    with pytest.raises(ConversionError, match="position_embedding_type='absolute'.*rotary"):
        from_esm(bad, tmp_path / "x")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps(config))
    (pickled / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ConversionError, match="pickled checkpoint; favor never unpickles"):
        from_esm(pickled, tmp_path / "y")
    with pytest.raises(ConversionError, match="no config.json"):
        from_esm(tmp_path / "nowhere", tmp_path / "z")


def test_favor_commands_run_on_a_converted_model(tmp_path, capsys):
    import numpy as np

    from favor import cli
    from favor.data import sample_path

    _, folder = _hf_folder(tmp_path, "tiny")
    assert (
        cli.main(["convert", "from-esm", str(folder), "--out", str(tmp_path / "m"), "--max-length", "2050"])
        == 0
    )
    assert "up to 2048 residues" in capsys.readouterr().out
    emb = tmp_path / "emb.npz"
    assert (
        cli.main(["embed", str(tmp_path / "m"), "--data", str(sample_path("test")), "--out", str(emb)]) == 0
    )
    with np.load(emb) as stored:
        assert stored[stored.files[-1]].shape[-1] == 32
    assert (
        cli.main(["score", str(tmp_path / "m"), "--sequence", "MKTAYIAK", "--mutations", "K2R", "--json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["scores"][0]["mutation"] == "K2R"
    argv = [
        "evaluate",
        str(tmp_path / "m"),
        "--data",
        str(sample_path("test")),
        "--max-batches",
        "2",
        "--json",
    ]
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n_masked"] > 0 and "evaluation data" in result["unigram_from"]
    assert cli.main(["convert", "to-hf", str(tmp_path / "m"), "--out", str(tmp_path / "back")]) == 0
    assert (tmp_path / "back" / "model.safetensors").is_file()
    assert cli.main(["convert", "sideways", str(folder), "--out", str(tmp_path / "q")]) == 1
