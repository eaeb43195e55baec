"""Protein data: alphabet, FASTA, masking, datasets, batching, and a bundled real sample.

Typical pretraining pipeline::

    from favor.data import (Alphabet, ProteinCorpus, SingleProteinDataset, TokenBudgetBatchSampler,
                            ProteinBatchLoader, sample_path)

    corpus = ProteinCorpus.from_fasta(sample_path("train"), alphabet=Alphabet.protein())
    dataset = SingleProteinDataset(corpus, max_length=512, crop="random", seed=0)
    sampler = TokenBudgetBatchSampler(dataset.item_lengths(), max_tokens=8192, seed=0)
    loader = ProteinBatchLoader(dataset, batch_sampler=sampler, objective="mlm", mask_seed=0)
    for batch in loader:  # {"input_ids", "padding_mask", "labels"}
        ...
    state = loader.state_dict()  # plain ints; loader.load_state_dict(state) resumes exactly

Labels are aligned with the logits (``labels[:, t]`` is the target of position t, -100 where none): from raw
token ids, ``causal_lm_labels(tokens, alphabet)`` gives a causal LM's next-token labels for
``model(tokens, labels=...)`` (the model does not shift), ``mask_tokens`` the masked LM's inputs and labels.
"""

from favor.data.alphabet import (
    EXTRA_RESIDUES,
    PROTEIN_SPECIAL_TOKENS,
    STANDARD_AMINO_ACIDS,
    Alphabet,
    EncodingStats,
    UnknownPolicy,
    UnknownResidueError,
)
from favor.data.batching import (
    Collator,
    FixedSizeBatchSampler,
    Objective,
    ResumableBatchSampler,
    TokenBudgetBatchSampler,
    collate_batch,
)
from favor.data.bundled import SAMPLE_SPLITS, sample_path
from favor.data.corpus import ProteinCorpus, unigram_frequencies
from favor.data.datasets import (
    ConcatenatedProteinDataset,
    CropMode,
    PackedProteinDataset,
    ProteinItem,
    SingleProteinDataset,
)
from favor.data.fasta import FastaFormatError, FastaRecord, read_fasta, write_fasta
from favor.data.loader import ProteinBatchLoader
from favor.data.masking import IGNORE_INDEX, MaskedTokens, causal_lm_labels, mask_tokens
from favor.data.seeding import derive_seed, generator_for

__all__ = [
    "Alphabet",
    "EncodingStats",
    "UnknownPolicy",
    "UnknownResidueError",
    "PROTEIN_SPECIAL_TOKENS",
    "STANDARD_AMINO_ACIDS",
    "EXTRA_RESIDUES",
    "FastaFormatError",
    "FastaRecord",
    "read_fasta",
    "write_fasta",
    "IGNORE_INDEX",
    "MaskedTokens",
    "mask_tokens",
    "causal_lm_labels",
    "ProteinCorpus",
    "unigram_frequencies",
    "ProteinItem",
    "CropMode",
    "SingleProteinDataset",
    "ConcatenatedProteinDataset",
    "PackedProteinDataset",
    "Objective",
    "collate_batch",
    "Collator",
    "ResumableBatchSampler",
    "TokenBudgetBatchSampler",
    "FixedSizeBatchSampler",
    "ProteinBatchLoader",
    "derive_seed",
    "generator_for",
    "SAMPLE_SPLITS",
    "sample_path",
]
