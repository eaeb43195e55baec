"""Neural-network layers built on `favor.ops`: attention modules, feed-forward, embeddings, positions,
convolution blocks and task heads. Attention layout everywhere: ``(batch, heads, length, head_dim)``."""

from favor.layers.attention import ExactSelfAttention, SelfAttention
from favor.layers.conv import DilatedConvBlock
from favor.layers.embeddings import InputEmbedding
from favor.layers.favor_attention import FavorSelfAttention
from favor.layers.feedforward import FeedForward
from favor.layers.heads import LMHead, PairwiseHead, SequenceHead, TokenHead, pool
from favor.layers.linformer_attention import LinformerSelfAttention
from favor.layers.positions import LearnedPositions, RotaryEmbedding

__all__ = [
    "DilatedConvBlock",
    "ExactSelfAttention",
    "FavorSelfAttention",
    "FeedForward",
    "InputEmbedding",
    "LMHead",
    "LearnedPositions",
    "LinformerSelfAttention",
    "PairwiseHead",
    "RotaryEmbedding",
    "SelfAttention",
    "SequenceHead",
    "TokenHead",
    "pool",
]
