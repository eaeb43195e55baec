"""Training and validation data of the ``g2p`` source: (word, pronunciation) pairs of the CMU dictionary.

Every pronunciation of a training word is one item (a homograph gives several); the parts are cut by
`favor.data.g2p.g2p_part` from ``data.valid_fraction`` and ``data.test_fraction``, so training, validation
and `favor evaluate` agree on which words each holds. A batch holds ``data.max_tokens // data.max_length``
items, padded to its longest word and pronunciation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from favor.data.arrays import IndexBatchLoader
from favor.data.g2p import G2PVocabulary, g2p_batch, load_cmudict, split_dictionary
from favor.train.config import DataConfig

__all__ = ["build_g2p_data", "g2p_words", "g2p_loader"]


def g2p_words(config: DataConfig, part: str) -> list[tuple[str, tuple[tuple[str, ...], ...]]]:
    """``(word, pronunciations)`` of ``part``, sorted by word; checked against ``data.max_length``."""
    words = split_dictionary(
        load_cmudict(), part, valid_fraction=config.valid_fraction, test_fraction=config.test_fraction
    )
    if not words:
        raise ValueError(f"the g2p {part} part is empty; change data.valid_fraction/test_fraction")
    word, prons = max(words, key=lambda wp: max(len(wp[0]), *(len(p) + 1 for p in wp[1])))
    longest = max(len(word), *(len(p) + 1 for p in prons))
    if longest > config.max_length:
        raise ValueError(
            f"data.max_length={config.max_length} is shorter than the g2p {part} part needs: {word!r} takes "
            f"{longest} positions (letters, or phonemes + <bos>/<eos>); set data.max_length >= {longest}"
        )
    return words


def g2p_loader(
    pairs: list[tuple[str, tuple[str, ...]]],
    config: DataConfig,
    *,
    train: bool,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> IndexBatchLoader:
    vocab = G2PVocabulary()

    def make_batch(indices: np.ndarray, _epoch: int) -> dict[str, Any]:
        return g2p_batch(vocab, [pairs[i] for i in indices.tolist()])

    n, batch = len(pairs), config.batch_size
    return IndexBatchLoader(
        n_items=n,
        batch_size=batch,
        make_batch=make_batch,
        shuffle=train,
        drop_last=train and n >= batch * world_size,
        seed=seed,
        rank=rank,
        world_size=world_size,
    )


def _pairs(words: list[tuple[str, tuple[tuple[str, ...], ...]]]) -> list[tuple[str, tuple[str, ...]]]:
    return [(word, pron) for word, prons in words for pron in prons]


def build_g2p_data(config: DataConfig, *, seed: int, rank: int, world_size: int) -> Any:
    from favor.train.data import RunData

    shard = {"rank": rank, "world_size": world_size}
    train = g2p_loader(_pairs(g2p_words(config, "train")), config, train=True, seed=seed, **shard)
    valid = None
    if config.has_valid:
        words = g2p_words(config, "valid")[: config.valid_max_sequences]
        valid = g2p_loader(_pairs(words), config, train=False, **shard)
    return RunData(train_loader=train, valid_loader=valid, tokenizer=G2PVocabulary())
