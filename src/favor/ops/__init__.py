"""FAVOR+ operations: stateless functions on ``(batch, heads, length, head_dim)`` tensors.

random_projection     draw the (m, d) projection (block-orthogonal, chi or sqrt(d) norms, or IID)
favor_attention       FAVOR+ attention, bidirectional or causal (chunked), exact padding
favor_attention_step  causal FAVOR+ continued from a recurrent FavorState (decoding)
softmax_attention     exact softmax attention, the reference
feature_map, KERNELS  the feature maps by name
"""

from favor.ops.attention import favor_attention, favor_attention_step
from favor.ops.causal import FavorState
from favor.ops.exact import softmax_attention
from favor.ops.features import KERNELS, Features, feature_map
from favor.ops.projection import random_projection

__all__ = [
    "KERNELS",
    "FavorState",
    "Features",
    "favor_attention",
    "favor_attention_step",
    "feature_map",
    "random_projection",
    "softmax_attention",
]
