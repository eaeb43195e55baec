"""FAVOR+ operations: stateless functions on ``(batch, heads, length, head_dim)`` tensors.

random_projection     draw the (m, d) projection (block-orthogonal, chi or sqrt(d) norms, or IID)
favor_attention       FAVOR+ attention, bidirectional or causal (chunked), exact padding
favor_attention_step  causal FAVOR+ continued from a recurrent FavorState (decoding)
favor_cross_attention FAVOR+ cross-attention (decoder queries, encoder keys/values; favor_cross_context,
                      favor_cross_read: the source context computed once, then O(m d) per query)
softmax_attention     exact softmax attention, the reference
favor_attention_matrix, softmax_attention_matrix
                      the L x L matrices they apply, materialised (inspection, contacts)
feature_map, KERNELS  the feature maps by name (KERNEL_NAMES: their names, in order)
naive_favor_attention, naive_favor_cross_attention
                      the plain twins of favor_attention and favor_cross_attention (same signatures, no
                      mode): an explicit matrix or prefix sums, for tests and small references;
                      ``mode="naive"`` on the fast ops is an alias that calls them
"""

from favor.ops.attention import favor_attention, favor_attention_step
from favor.ops.causal import FavorState
from favor.ops.cross import favor_cross_attention, favor_cross_context, favor_cross_read
from favor.ops.exact import softmax_attention
from favor.ops.features import KERNEL_NAMES, KERNELS, Features, feature_map
from favor.ops.matrices import favor_attention_matrix, softmax_attention_matrix
from favor.ops.naive import naive_favor_attention, naive_favor_cross_attention
from favor.ops.projection import random_projection

__all__ = [
    "KERNEL_NAMES",
    "KERNELS",
    "FavorState",
    "Features",
    "favor_attention",
    "favor_attention_matrix",
    "favor_attention_step",
    "favor_cross_attention",
    "favor_cross_context",
    "favor_cross_read",
    "feature_map",
    "naive_favor_attention",
    "naive_favor_cross_attention",
    "random_projection",
    "softmax_attention",
    "softmax_attention_matrix",
]
