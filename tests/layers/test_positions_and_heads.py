import pytest
import torch

from favor.layers import (
    DilatedConvBlock,
    InputEmbedding,
    LearnedPositions,
    PairwiseHead,
    RotaryEmbedding,
    SequenceHead,
    pool,
)


def test_rotary_scores_depend_only_on_relative_position():
    rotary = RotaryEmbedding(head_dim=8).double()
    q = torch.randn(1, 1, 1, 8, dtype=torch.float64)
    k = torch.randn(1, 1, 1, 8, dtype=torch.float64)
    scores = [(rotary(q, offset=i) * rotary(k, offset=j)).sum() for i, j in [(3, 1), (7, 5), (12, 10)]]
    torch.testing.assert_close(scores[0], scores[1])
    torch.testing.assert_close(scores[0], scores[2])
    assert torch.equal(rotary(q, offset=0), q)


def test_rotary_offset_matches_slicing():
    rotary = RotaryEmbedding(head_dim=4)
    x = torch.randn(2, 3, 6, 4)
    torch.testing.assert_close(rotary(x)[:, :, 4:], rotary(x[:, :, 4:], offset=4))
    with pytest.raises(ValueError, match="even head_dim"):
        RotaryEmbedding(head_dim=5)


def test_learned_positions_reject_lengths_beyond_the_table():
    positions = LearnedPositions(max_length=4, d_model=3)
    assert positions(2, offset=2).shape == (2, 3)
    with pytest.raises(ValueError, match="max_length=4"):
        positions(3, offset=2)


def test_input_embedding_takes_exactly_one_input():
    embedding = InputEmbedding(d_model=8, vocab_size=5, input_dim=3, max_length=10)
    assert embedding(torch.zeros(2, 4, dtype=torch.long)).shape == (2, 4, 8)
    assert embedding(input_values=torch.zeros(2, 4, 3)).shape == (2, 4, 8)
    with pytest.raises(ValueError, match="exactly one"):
        embedding()
    with pytest.raises(ValueError, match=r"\(batch, length, 3\)"):
        embedding(input_values=torch.zeros(2, 4, 2))


def test_mean_pooling_ignores_padding_and_cls_takes_the_first_position():
    hidden = torch.arange(12.0).view(1, 4, 3)
    padding_mask = torch.tensor([[False, False, True, True]])
    torch.testing.assert_close(pool(hidden, padding_mask, mode="mean"), hidden[:, :2].mean(dim=1))
    torch.testing.assert_close(pool(hidden, None, mode="cls"), hidden[:, 0])
    head = SequenceHead(d_model=3, num_labels=2, pooling="mean")
    assert head(hidden, padding_mask).shape == (1, 2)


@pytest.mark.parametrize("kind", ["bilinear", "mlp"])
def test_pairwise_head_is_symmetric(kind):
    head = PairwiseHead(d_model=6, pair_dim=4, kind=kind)
    logits = head(torch.randn(2, 5, 6))
    assert logits.shape == (2, 5, 5)
    torch.testing.assert_close(logits, logits.transpose(1, 2))


@pytest.mark.parametrize("causal", [False, True])
def test_conv_block_padding_and_causality(causal):
    torch.manual_seed(0)
    block = DilatedConvBlock(d_model=6, d_hidden=4, kernel_size=3, dilation=2, causal=causal).double()
    x = torch.randn(1, 7, 6, dtype=torch.float64)
    padded = torch.cat([x, torch.randn(1, 4, 6, dtype=torch.float64)], dim=1)
    padding_mask = torch.arange(11)[None, :] >= 7
    torch.testing.assert_close(block(padded, padding_mask=padding_mask)[:, :7], block(x))
    if causal:
        torch.testing.assert_close(block(x)[:, :4], block(x[:, :4]))
        window = block.init_window(1, dtype=torch.float64)
        outputs = []
        for t in range(7):
            out, window = block.step(x[:, t : t + 1], window)
            outputs.append(out)
        torch.testing.assert_close(torch.cat(outputs, dim=1), block(x))
