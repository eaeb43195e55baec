"""Neural-network layers built on `favor.ops`: attention modules, feed-forward, embeddings, positions,
convolution blocks and task heads. Attention layout everywhere: ``(batch, heads, length, head_dim)``."""

from favor.layers.attention import ExactSelfAttention, SelfAttention
from favor.layers.conv import DilatedConvBlock
from favor.layers.cross_attention import CrossAttention, SourceMemory
from favor.layers.embeddings import InputEmbedding
from favor.layers.favor_attention import FavorSelfAttention
from favor.layers.feedforward import FeedForward
from favor.layers.heads import LMHead, PairwiseHead, SequenceHead, TokenHead, pool
from favor.layers.linformer_attention import LinformerSelfAttention
from favor.layers.luong_attention import LuongAttention
from favor.layers.positions import LearnedPositions, RotaryEmbedding

__all__ = [
    "CrossAttention",
    "DilatedConvBlock",
    "ExactSelfAttention",
    "FavorSelfAttention",
    "FeedForward",
    "InputEmbedding",
    "LMHead",
    "LearnedPositions",
    "LinformerSelfAttention",
    "LuongAttention",
    "PairwiseHead",
    "RotaryEmbedding",
    "SelfAttention",
    "SequenceHead",
    "SourceMemory",
    "TokenHead",
    "pool",
]
