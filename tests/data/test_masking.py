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


def _draws(alphabet: Alphabet, shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, ...]:
    """The three draws mask_tokens takes from a generator seeded with ``seed``: selection, action, pick."""
    g = torch.Generator().manual_seed(seed)
    u_select = torch.rand(shape, generator=g)
    u_action = torch.rand(shape, generator=g)
    pick = torch.randint(len(alphabet.standard_ids), shape, generator=g)
    return u_select, u_action, pick


# Bad tokens: the error names the function and what was passed (dtype, type name or shape).
def test_bad_tokens_messages(alphabet: Alphabet) -> None:
    with pytest.raises(TypeError, match=r"^mask_tokens: .*LongTensor.*got torch\.int32"):
        mask_tokens(torch.zeros(3, dtype=torch.int32), alphabet)
    with pytest.raises(TypeError, match=r"^mask_tokens: .*LongTensor.*got list"):
        mask_tokens([4, 5, 6], alphabet)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^mask_tokens: .*shape.*got \(2, 2, 2\)"):
        mask_tokens(torch.zeros(2, 2, 2, dtype=torch.long), alphabet)
    with pytest.raises(ValueError, match=r"^causal_lm_labels: .*shape.*got \(2, 2, 2\)"):
        causal_lm_labels(torch.zeros(2, 2, 2, dtype=torch.long), alphabet)


# A special_mask / padding_mask of the wrong shape is refused, naming the function and both shapes.
def test_mask_shape_mismatch_messages(alphabet: Alphabet) -> None:
    tokens = torch.tensor([alphabet.encode("MKTAY")])
    short = torch.zeros(1, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"^mask_tokens: special_mask shape \(1, 3\).*tokens shape \(1, 5\)"):
        mask_tokens(tokens, alphabet, special_mask=short)
    with pytest.raises(ValueError, match=r"^causal_lm_labels: padding_mask shape \(1, 3\).*shape \(1, 5\)"):
        causal_lm_labels(tokens, alphabet, padding_mask=short)


# Probability 0 is allowed (nothing selected); outside [0, 1] is refused.
def test_probability_boundaries(alphabet: Alphabet) -> None:
    tokens = _random_batch(alphabet, 4, 50)
    out = mask_tokens(tokens, alphabet, probability=0.0, generator=torch.Generator().manual_seed(0))
    assert (out.labels == IGNORE_INDEX).all() and torch.equal(out.input_ids, tokens)
    with pytest.raises(ValueError, match=r"^mask_tokens: probability.*got -0\.1"):
        mask_tokens(tokens, alphabet, probability=-0.1)


# Each fraction condition alone is refused (negative mask, negative random, sum > 1), with both values named.
def test_fraction_refusals(alphabet: Alphabet) -> None:
    tokens = torch.tensor(alphabet.encode("MKTAY"))
    message = r"^mask_tokens: mask_fraction and random_fraction must be >= 0 and sum to <= 1, got {} and {}"
    for mask_fraction, random_fraction in [(-0.1, 0.1), (0.5, -0.1), (0.6, 0.6)]:
        expected = message.format(mask_fraction, random_fraction).replace(".", r"\.")
        with pytest.raises(ValueError, match=expected):
            mask_tokens(tokens, alphabet, mask_fraction=mask_fraction, random_fraction=random_fraction)


def _select_all(tokens, alphabet, mask_fraction, random_fraction, *, seed):
    """mask_tokens with every eligible position selected (probability 1) and the given action fractions."""
    return mask_tokens(
        tokens,
        alphabet,
        probability=1.0,
        mask_fraction=mask_fraction,
        random_fraction=random_fraction,
        generator=torch.Generator().manual_seed(seed),
    )


# Fractions of exactly 0 and a sum of exactly 1 are allowed and act as all-unchanged / all-mask / all-random.
def test_fraction_boundaries_allowed(alphabet: Alphabet) -> None:
    tokens = _random_batch(alphabet, 4, 50)
    residue = torch.isin(tokens, torch.tensor(alphabet.residue_ids))

    def run(mask_fraction: float, random_fraction: float) -> torch.Tensor:
        out = _select_all(tokens, alphabet, mask_fraction, random_fraction, seed=0)
        assert torch.equal(out.labels[residue], tokens[residue])
        assert torch.equal(out.input_ids[~residue], tokens[~residue])
        return out.input_ids[residue]

    assert torch.equal(run(0.0, 0.0), tokens[residue])
    assert (run(1.0, 0.0) == alphabet.mask_id).all()
    assert torch.isin(run(0.0, 1.0), torch.tensor(alphabet.standard_ids)).all()
    mixed = run(0.5, 0.5)
    assert torch.isin(mixed, torch.tensor([alphabet.mask_id, *alphabet.standard_ids])).all()


# A residue is selected iff its draw is strictly below probability (a draw equal to it is not).
def test_selection_threshold_is_strict(alphabet: Alphabet) -> None:
    tokens = torch.tensor(alphabet.encode("MKTAYIAKQR"))
    u_select, _, _ = _draws(alphabet, tuple(tokens.shape), seed=4)
    probability = float(u_select[0])
    out = mask_tokens(tokens, alphabet, probability=probability, generator=torch.Generator().manual_seed(4))
    assert out.labels[0] == IGNORE_INDEX
    assert torch.equal(out.labels, torch.where(u_select < probability, tokens, IGNORE_INDEX))


# The action draw splits [0, 1) into mask [0, m), random [m, m + r), unchanged [m + r, 1): half-open bands.
def test_action_bands_are_half_open(alphabet: Alphabet) -> None:
    shape = (10,)
    _, u_action, pick = _draws(alphabet, shape, seed=6)
    standard = torch.tensor(alphabet.standard_ids)
    # Every token differs from its random replacement, so a replacement is always visible.
    tokens = standard[(pick + 1) % len(standard)]
    u = float(u_action[0])
    # Position 0's draw sits exactly on a band edge: not masked at m = u; random at the start of [m, m + r);
    # unchanged at its end.
    edges = [(u, 0.0, tokens[0]), (u, (1.0 - u) / 2, standard[pick[0]]), (0.0, u, tokens[0])]
    for mask_fraction, random_fraction, at_edge in edges:
        out = _select_all(tokens, alphabet, mask_fraction, random_fraction, seed=6)
        expected = tokens.clone()
        to_random = (u_action >= mask_fraction) & (u_action < mask_fraction + random_fraction)
        expected[to_random] = standard[pick][to_random]
        expected[u_action < mask_fraction] = alphabet.mask_id
        assert out.input_ids[0] == at_edge
        assert torch.equal(out.input_ids, expected)


# special_mask adds to the special-token exclusion: padding, <cls>, <eos> stay out even where it is False.
def test_special_mask_combined_with_padding(alphabet: Alphabet) -> None:
    tokens = _random_batch(alphabet, 6, 40)
    residue = torch.isin(tokens, torch.tensor(alphabet.residue_ids))
    keep_out = torch.zeros_like(tokens, dtype=torch.bool)
    keep_out[:, 1::3] = True
    g = torch.Generator().manual_seed(2)
    out = mask_tokens(tokens, alphabet, probability=1.0, special_mask=keep_out, generator=g)
    selected = out.labels != IGNORE_INDEX
    assert torch.equal(selected, residue & ~keep_out)
    # An integer 0/1 mask means the same as a boolean one.
    g = torch.Generator().manual_seed(2)
    as_int = mask_tokens(tokens, alphabet, probability=1.0, special_mask=keep_out.long(), generator=g)
    assert torch.equal(as_int.labels, out.labels) and torch.equal(as_int.input_ids, out.input_ids)


# An integer 0/1 padding_mask means the same as a boolean one.
def test_causal_lm_labels_integer_padding_mask(alphabet: Alphabet) -> None:
    tokens = torch.tensor([alphabet.encode("MKTAY", add_cls=True, add_eos=True)] * 3)
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[0, 4:] = True
    mask[2, 2:] = True
    expected = causal_lm_labels(tokens, alphabet, padding_mask=mask)
    assert torch.equal(causal_lm_labels(tokens, alphabet, padding_mask=mask.long()), expected)
    assert expected[1].tolist() == tokens[1, 1:].tolist() + [IGNORE_INDEX]


# ensure_one forces one eligible position in rows that drew none; rows without eligible positions stay empty.
def test_ensure_one_rows(alphabet: Alphabet) -> None:
    row = alphabet.encode("MKTAY", add_cls=True, add_eos=True)
    tokens = torch.tensor([row, [alphabet.pad_id] * len(row), row])
    keep_out = torch.zeros_like(tokens, dtype=torch.bool)
    keep_out[2] = True
    out = mask_tokens(
        tokens,
        alphabet,
        probability=0.0,
        special_mask=keep_out,
        ensure_one=True,
        generator=torch.Generator().manual_seed(0),
    )
    selected = out.labels != IGNORE_INDEX
    assert selected.sum(dim=1).tolist() == [1, 0, 0]
    assert selected[0, 1:-1].any()
    assert torch.equal(out.input_ids[1:], tokens[1:])


# ensure_one on a 1-D sequence: one residue selected, never a special token.
def test_ensure_one_1d(alphabet: Alphabet) -> None:
    tokens = torch.tensor(alphabet.encode("MKTAY", add_cls=True, add_eos=True))
    g = torch.Generator().manual_seed(0)
    out = mask_tokens(tokens, alphabet, probability=0.0, ensure_one=True, generator=g)
    selected = out.labels != IGNORE_INDEX
    assert out.labels.shape == tokens.shape
    assert int(selected.sum()) == 1 and not selected[0] and not selected[-1]
    assert torch.equal(out.labels[selected], tokens[selected])


# Tokens on the GPU with a CPU generator: draws happen on the generator, so the masks equal the CPU ones.
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tokens_cpu_generator(alphabet: Alphabet) -> None:
    tokens = _random_batch(alphabet, 4, 60)
    cpu = mask_tokens(tokens, alphabet, generator=torch.Generator().manual_seed(5), ensure_one=True)
    gpu = mask_tokens(tokens.cuda(), alphabet, generator=torch.Generator().manual_seed(5), ensure_one=True)
    assert gpu.input_ids.is_cuda and gpu.labels.is_cuda
    assert torch.equal(gpu.input_ids.cpu(), cpu.input_ids) and torch.equal(gpu.labels.cpu(), cpu.labels)
