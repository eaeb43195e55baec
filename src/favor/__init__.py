"""favor: long-context sequence modeling with Performer (FAVOR+) attention.

Layers of the package, bottom up:
    favor.ops      stateless attention operations (FAVOR+ feature maps, random projections,
                   bidirectional and chunked causal linear attention, exact softmax reference)
    favor.layers   attention modules, feed-forward, embeddings, positions
    favor.models   backbones behind one interface and task heads, save/load
    favor.data     protein alphabet, FASTA, masking, datasets, batching
    favor.train    training loop, checkpoints, distributed
"""

__version__ = "0.1.0"
