"""`ServeSettings`: request limits and micro-batching knobs (no FastAPI needed to build one)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServeSettings"]


@dataclass(frozen=True)
class ServeSettings:
    """Server limits and micro-batching knobs (the CLI flags of ``favor serve``)."""

    # Residues per sequence; None: the model's max_length minus <cls> and <eos>.
    max_residues: int | None = None
    max_sequences: int = 64
    max_mutations: int = 1024
    max_new_tokens: int = 1024
    max_body_bytes: int = 1 << 20
    # A micro-batch closes after max_wait_ms or once max_batch_rows sequences wait.
    max_wait_ms: float = 5.0
    max_batch_rows: int = 64
    # Padded tokens per forward pass (rows x longest row): bounds activation memory. On CPU, batches past a
    # few thousand tokens run no faster per sequence (benchmarks/serve.py); raise it on a GPU.
    max_batch_tokens: int = 4096

    def __post_init__(self) -> None:
        for name in (
            "max_sequences",
            "max_mutations",
            "max_new_tokens",
            "max_body_bytes",
            "max_batch_rows",
            "max_batch_tokens",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"ServeSettings.{name}={getattr(self, name)!r}: expected an integer >= 1")
        if self.max_residues is not None and self.max_residues < 1:
            raise ValueError(f"ServeSettings.max_residues={self.max_residues!r}: expected None or >= 1")
        if self.max_wait_ms < 0:
            raise ValueError(f"ServeSettings.max_wait_ms={self.max_wait_ms!r}: expected >= 0")
