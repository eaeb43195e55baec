"""Encoder-decoder models: teacher forcing equals incremental decoding for every backbone, the fast
scorer equals its full-prefix twin, padding of the source is exact, checkpoints round-trip, and config
errors name the field."""

import pytest
import torch

from favor.models import ModelConfig, Seq2SeqModel, SequenceModel, build_model, load_pretrained
from favor.models.seq2seq_search import beam_search, make_scorer, sample_search
from tiny_models import VOCAB, tiny_config

# "lstm:bottom": Luong attention over the first decoder layer, feeding the layers above (decoder_attention).
BACKBONES = ("performer", "transformer", "lstm", "lstm:bottom")
EOS, BOS = 2, 1


def tiny_seq2seq(backbone: str, **overrides) -> ModelConfig:
    backbone, _, attention = backbone.partition(":")
    if attention:
        overrides = {"decoder_attention": attention, **overrides}
    return tiny_config(backbone, **{"task": "seq2seq", "decoder_layers": 2, **overrides})


def _model(backbone: str) -> Seq2SeqModel:
    torch.manual_seed(0)
    return build_model(tiny_seq2seq(backbone)).double().eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    source = torch.randint(3, VOCAB, (2, 7), generator=g)
    padding = torch.zeros(2, 7, dtype=torch.bool)
    padding[1, 4:] = True
    target = torch.randint(3, VOCAB, (2, 6), generator=g)
    return source, padding, target


@pytest.mark.parametrize("backbone", BACKBONES)
def test_incremental_decoding_equals_teacher_forcing(backbone):
    model = _model(backbone)
    source, padding, target = _batch()
    full = model(source, padding_mask=padding, decoder_input_ids=target).logits  # (2, 6, V)
    state = model.init_state(model.encode(source, padding_mask=padding))
    logits, state = model.step(target[:, :2], state)  # a two-token prefill, then one token per step
    pieces = [logits]
    for t in range(2, target.shape[1]):
        logits, state = model.step(target[:, t : t + 1], state)
        pieces.append(logits)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-9, atol=1e-10)
    assert state.decoding.position == target.shape[1]


@pytest.mark.parametrize("backbone", BACKBONES)
def test_source_padding_never_changes_the_output(backbone):
    model = _model(backbone)
    source, padding, target = _batch()
    padded = model(source, padding_mask=padding, decoder_input_ids=target).logits[1]
    alone = model(source[1:, :4], decoder_input_ids=target[1:]).logits[0]
    torch.testing.assert_close(padded, alone, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_incremental_scorer_equals_its_full_prefix_twin(backbone):
    model = _model(backbone)
    source, padding, _ = _batch()
    greedy = [
        sample_search(make_scorer(model, source, padding, bos_id=BOS, mode=m), eos_id=EOS, max_new_tokens=8)
        for m in ("incremental", "full")
    ]
    assert greedy[0] == greedy[1]
    beams = [
        beam_search(
            make_scorer(model, source[:1], bos_id=BOS, mode=m), beam_width=3, eos_id=EOS, max_new_tokens=8
        )
        for m in ("incremental", "full")
    ]
    assert [h.tokens for h in beams[0]] == [h.tokens for h in beams[1]]
    for a, b in zip(beams[0], beams[1], strict=True):
        assert a.log_prob == pytest.approx(b.log_prob, abs=1e-9)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_beam_of_one_equals_greedy(backbone):
    model = _model(backbone)
    source, _, _ = _batch()
    for row in range(source.shape[0]):
        ids = source[row : row + 1]
        greedy = sample_search(make_scorer(model, ids, bos_id=BOS), eos_id=EOS, max_new_tokens=10)[0]
        best = beam_search(make_scorer(model, ids, bos_id=BOS), beam_width=1, eos_id=EOS, max_new_tokens=10)
        assert best[0].tokens == greedy


@pytest.mark.parametrize("backbone", ["performer", "lstm:bottom"])
def test_training_loss_ignores_padding_and_reaches_every_parameter(backbone):
    model = build_model(tiny_seq2seq(backbone))
    source, padding, target = _batch()
    labels = target.clone()
    decoder_padding = torch.zeros_like(target, dtype=torch.bool)
    decoder_padding[0, -2:] = True
    inputs = {"padding_mask": padding, "decoder_input_ids": target, "decoder_padding_mask": decoder_padding}
    out = model(source, **inputs, labels=labels)
    changed = labels.clone()
    changed[0, -2:] = 5  # labels under decoder padding do not count
    again = model(source, **inputs, labels=changed)
    assert out.loss.item() == pytest.approx(again.loss.item())
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("backbone", BACKBONES)
def test_checkpoint_round_trip_is_exact(tmp_path, backbone):
    model = _model(backbone).float()
    model.save_pretrained(tmp_path / "m")
    loaded = load_pretrained(tmp_path / "m")
    assert isinstance(loaded, Seq2SeqModel)
    source, padding, target = _batch()
    a = model(source, padding_mask=padding, decoder_input_ids=target).logits
    b = loaded(source, padding_mask=padding, decoder_input_ids=target).logits
    assert torch.equal(a, b)
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"config.json", "model.safetensors"}


def test_redraw_reaches_self_and_cross_attention():
    model = build_model(tiny_seq2seq("performer"))
    # encoder 2 + decoder 2 self-attention + 2 cross-attention
    assert model.redraw_projections(torch.Generator().manual_seed(5)) == 6
    assert build_model(tiny_seq2seq("transformer")).redraw_projections() == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"backbone": "cnn"}, r"backbone='cnn' is invalid: expected one of performer, transformer, lstm"),
        ({"causal": True}, r"causal=True is invalid: expected False for task 'seq2seq'"),
        ({"vocab_size": None, "input_dim": 3}, r"vocab_size=None is invalid"),
        ({"decoder_layers": 0}, r"decoder_layers=0 is invalid: expected an integer >= 1"),
        ({"decoder_attention": "bottom"}, r"decoder_attention='bottom' is invalid: expected 'top' unless "),
        (
            {"backbone": "lstm", "decoder_attention": "bottom", "decoder_layers": 1},
            r"decoder_attention='bottom' is invalid: expected 'top' for a one-layer decoder",
        ),
        ({"backbone": "lstm", "decoder_attention": "middle"}, r"decoder_attention='middle' is invalid"),
    ],
)
def test_config_errors_name_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_seq2seq(**{"backbone": "performer", **overrides})


def test_decoder_layers_only_for_seq2seq_and_sequence_model_points_to_build_model():
    with pytest.raises(
        ValueError, match="decoder_layers=2 is invalid: expected None unless task is 'seq2seq'"
    ):
        tiny_config("performer", decoder_layers=2)
    with pytest.raises(ValueError, match="decoder_attention='bottom' is invalid: expected 'top' unless task"):
        tiny_config("lstm", decoder_attention="bottom")
    with pytest.raises(ValueError, match="build_model"):
        SequenceModel(tiny_seq2seq("performer"))
