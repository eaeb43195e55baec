"""MLM masking statistics and determinism; causal-LM labels."""

import pytest
import torch

from favor.data import IGNORE_INDEX, Alphabet, causal_lm_labels, mask_tokens


@pytest.fixture
def alphabet() -> Alphabet:
    return Alphabet.protein()


def _random_batch(alphabet: Alphabet, batch: int, length: int, seed: int = 0) -> torch.Tensor:
    """(B, L) of <cls> residues <eos> followed by padding, with varied lengths."""
    g = torch.Generator().manual_seed(seed)
    residues = torch.tensor(alphabet.residue_ids)
    tokens = residues[torch.randint(len(residues), (batch, length), generator=g)]
    lengths = torch.randint(length // 2, length + 1, (batch,), generator=g)
    for i, n in enumerate(lengths.tolist()):
        tokens[i, 0] = alphabet.cls_id
        tokens[i, n - 1] = alphabet.eos_id
        tokens[i, n:] = alphabet.pad_id
    return tokens


def test_rate_and_80_10_10_split(alphabet: Alphabet) -> None:
    tokens = _random_batch(alphabet, 64, 1000)
    out = mask_tokens(tokens, alphabet, generator=torch.Generator().manual_seed(1))
    eligible = torch.isin(tokens, torch.tensor(alphabet.residue_ids))
    selected = out.labels != IGNORE_INDEX
    n_selected = int(selected.sum())
    assert abs(n_selected / int(eligible.sum()) - 0.15) < 0.005
    masked = (out.input_ids == alphabet.mask_id) & selected
    changed = (out.input_ids != tokens) & selected & ~masked
    unchanged = (out.input_ids == tokens) & selected
    assert abs(int(masked.sum()) / n_selected - 0.8) < 0.01
    # A random replacement equal to the original counts as unchanged: 10% + 10% / 20 standard residues.
    assert abs(int(changed.sum()) / n_selected - 0.1 * 19 / 20) < 0.01
    assert abs(int(unchanged.sum()) / n_selected - (0.1 + 0.1 / 20)) < 0.01
    replaced = out.input_ids[changed]
    assert torch.isin(replaced, torch.tensor(alphabet.standard_ids)).all()


def test_specials_and_padding_never_selected(alphabet: Alphabet) -> None:
    tokens = _random_batch(alphabet, 16, 200)
    out = mask_tokens(tokens, alphabet, probability=1.0, generator=torch.Generator().manual_seed(0))
    special = torch.isin(tokens, torch.tensor(alphabet.special_ids))
    assert (out.labels[special] == IGNORE_INDEX).all()
    assert torch.equal(out.input_ids[special], tokens[special])
    assert (out.labels[~special] == tokens[~special]).all()


def test_labels_and_unselected_positions(alphabet: Alphabet) -> None:
    tokens = _random_batch(alphabet, 8, 300)
    out = mask_tokens(tokens, alphabet, generator=torch.Generator().manual_seed(3))
    selected = out.labels != IGNORE_INDEX
    assert torch.equal(out.labels[selected], tokens[selected])
    assert torch.equal(out.input_ids[~selected], tokens[~selected])
    assert out.input_ids.dtype == out.labels.dtype == torch.long


def test_special_mask_excludes_positions(alphabet: Alphabet) -> None:
    tokens = torch.tensor([alphabet.encode("MKTAYIAKQR")])
    keep_out = torch.zeros_like(tokens, dtype=torch.bool)
    keep_out[0, 5:] = True
    out = mask_tokens(tokens, alphabet, probability=1.0, special_mask=keep_out)
    assert (out.labels[0, 5:] == IGNORE_INDEX).all() and (out.labels[0, :5] != IGNORE_INDEX).all()


def test_deterministic_with_seeded_generator(alphabet: Alphabet) -> None:
    tokens = _random_batch(alphabet, 4, 100)
    a = mask_tokens(tokens, alphabet, generator=torch.Generator().manual_seed(7))
    b = mask_tokens(tokens, alphabet, generator=torch.Generator().manual_seed(7))
    c = mask_tokens(tokens, alphabet, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, c.labels)


def test_ensure_one(alphabet: Alphabet) -> None:
    tokens = torch.tensor([alphabet.encode("MK", add_cls=True, add_eos=True)] * 200)
    g = torch.Generator().manual_seed(0)
    plain = mask_tokens(tokens, alphabet, generator=g)
    assert ((plain.labels != IGNORE_INDEX).sum(dim=1) == 0).any()
    forced = mask_tokens(tokens, alphabet, generator=torch.Generator().manual_seed(0), ensure_one=True)
    assert ((forced.labels != IGNORE_INDEX).sum(dim=1) >= 1).all()
    assert (forced.labels[:, [0, 3]] == IGNORE_INDEX).all()


def test_bad_arguments(alphabet: Alphabet) -> None:
    with pytest.raises(TypeError, match="LongTensor"):
        mask_tokens(torch.zeros(3, dtype=torch.int32), alphabet)
    with pytest.raises(ValueError, match="probability"):
        mask_tokens(torch.zeros(3, dtype=torch.long), alphabet, probability=1.5)


def test_causal_lm_labels(alphabet: Alphabet) -> None:
    a = alphabet.encode("MKT", add_cls=True, add_eos=True)
    b = alphabet.encode("W", add_cls=True, add_eos=True) + [alphabet.pad_id] * 2
    tokens = torch.tensor([a, b])
    labels = causal_lm_labels(tokens, alphabet)
    assert labels[0].tolist() == a[1:] + [IGNORE_INDEX]
    assert labels[1].tolist() == b[1:3] + [IGNORE_INDEX] * 3
    assert causal_lm_labels(tokens[0], alphabet).tolist() == a[1:] + [IGNORE_INDEX]
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[0, 3:] = True
    assert causal_lm_labels(tokens, alphabet, padding_mask=mask)[0].tolist() == a[1:3] + [IGNORE_INDEX] * 3
