"""Character vocabularies, the bundled corpus, contiguous splits, LM windows and TBPTT streams."""

from __future__ import annotations

import numpy as np
import pytest

from favor.data.masking import IGNORE_INDEX
from favor.data.text import (
    CharVocabulary,
    StreamBatchLoader,
    UnknownCharacterError,
    load_text,
    split_text,
    window_batch,
)


def test_ascii_round_trip():
    vocab = CharVocabulary.ascii()
    text = "def f(x):\n    return x ** 2  # ~{}|\\"
    ids = vocab.encode(text)
    assert ids.dtype == np.int64 and len(ids) == len(text)
    assert vocab.decode(ids) == text
    assert vocab.vocab_size == 98 and min(ids) >= 2
    assert CharVocabulary.from_dict(vocab.to_dict()) == vocab


def test_unknown_characters_are_an_error_or_unk():
    vocab = CharVocabulary.ascii()
    with pytest.raises(UnknownCharacterError) as info:
        vocab.encode("caf\u00e9 ok", name="prompt")
    assert info.value.position == 4 and info.value.char == "\u00e9"
    assert "prompt" in str(info.value) and "position 4" in str(info.value)
    ids = vocab.encode("caf\u00e9\tx", unknown="unk")
    assert ids[3] == vocab.unk_id and ids[4] == vocab.unk_id
    assert vocab.decode(ids) == "caf\ufffd\ufffdx"
    # Padding never reaches decoded text.
    assert vocab.decode([vocab.pad_id, *vocab.encode("a")]) == "a"


def test_bytes_vocabulary_has_no_unknowns(tmp_path):
    vocab = CharVocabulary.bytes()
    text = "na\u00efve \u2014 \u00fcber"
    ids = vocab.encode(text)
    assert vocab.vocab_size == 258 and vocab.decode(ids) == text
    vocab.save(tmp_path / "vocab.json")
    assert CharVocabulary.load(tmp_path / "vocab.json") == vocab
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        CharVocabulary.load(tmp_path / "bad.json")


def test_bundled_corpus_is_ascii_and_split_by_position():
    text = load_text()
    assert len(text) > 400_000
    CharVocabulary.ascii().encode(text)
    train, valid, test = split_text(text, valid_fraction=0.05, test_fraction=0.05)
    assert train + valid + test == text
    assert len(test) == round(len(text) * 0.05) and text.endswith(test)


def test_window_labels_are_the_next_characters():
    tokens = np.arange(10, 20)
    batch = window_batch(tokens, np.array([0, 6]), window=4)
    assert batch["input_ids"][0].tolist() == [10, 11, 12, 13]
    assert batch["labels"][0].tolist() == [11, 12, 13, 14]
    # The window cut short by the end of the text is right-padded.
    assert batch["input_ids"][1].tolist() == [16, 17, 18, 0]
    assert batch["labels"][1].tolist() == [17, 18, 19, IGNORE_INDEX]
    assert batch["padding_mask"][1].tolist() == [False, False, False, True]


def test_streams_continue_from_batch_to_batch_and_resume():
    tokens = np.arange(1000)
    loader = StreamBatchLoader(tokens, batch_size=3, window=8, seed=1)
    batches = list(loader)
    assert batches[0]["reset"] and not any(b["reset"] for b in batches[1:])
    for first, second in zip(batches, batches[1:], strict=False):
        # Row b of the next batch picks up right where row b of this one stopped.
        assert (second["input_ids"][:, 0] == first["input_ids"][:, -1] + 1).all()
        assert (first["labels"] == first["input_ids"] + 1).all()
    again = StreamBatchLoader(tokens, batch_size=3, window=8, seed=1)
    iterator = iter(again)
    next(iterator)
    state = again.state_dict()
    resumed = StreamBatchLoader(tokens, batch_size=3, window=8, seed=1)
    resumed.load_state_dict(state)
    assert (next(iter(resumed))["input_ids"] == batches[1]["input_ids"]).all()
