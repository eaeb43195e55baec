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
    # Sites over all mutants of one /score request (a multi-site mutant counts each of its sites).
    max_sites: int = 4096
    # Numbers in one response (e.g. L x L contact probabilities per sequence): bounds response size and the
    # memory and time to build it; a request that would exceed it gets 422 before any work is done.
    max_response_values: int = 1_000_000
    # Jobs waiting for the inference worker; past it requests get 503 with Retry-After.
    max_queue: int = 256
    # Seconds a client may take to send its body (408 after), and a request may wait for its result
    # (503 after; the queued work is dropped).
    body_timeout_s: float = 30.0
    # Seconds a connection may take to send a request's line and headers (the connection is closed after),
    # so slow clients cannot hold connections open (slowloris).
    header_timeout_s: float = 10.0
    request_timeout_s: float = 120.0
    # Host headers accepted (DNS rebinding guard); None: only loopback names when bound to loopback, any
    # host otherwise.
    allowed_hosts: tuple[str, ...] | None = None
    # Concurrent connections (uvicorn's limit_concurrency): past it, new connections get 503 at once, so a
    # flood of slow clients cannot exhaust file descriptors.
    max_connections: int = 128
    # Seconds a shutdown (SIGTERM, Ctrl-C) waits for in-flight requests; what is left then gets 503.
    shutdown_grace_s: int = 10
    # Drift monitoring: the input likelihood (favor_input_log_likelihood) is computed for one valid request
    # in this many (/embed, /score, /predict on a masked LM); 0 switches it off. Lengths and composition are
    # counted for every request.
    monitor_every: int = 10

    def __post_init__(self) -> None:
        for name in (
            "max_sequences",
            "max_mutations",
            "max_new_tokens",
            "max_body_bytes",
            "max_batch_rows",
            "max_batch_tokens",
            "max_sites",
            "max_response_values",
            "max_queue",
            "max_connections",
            "shutdown_grace_s",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"ServeSettings.{name}={getattr(self, name)!r}: expected an integer >= 1")
        if self.monitor_every < 0:
            raise ValueError(f"ServeSettings.monitor_every={self.monitor_every!r}: expected an integer >= 0")
        if self.max_residues is not None and self.max_residues < 1:
            raise ValueError(f"ServeSettings.max_residues={self.max_residues!r}: expected None or >= 1")
        for name in ("body_timeout_s", "request_timeout_s", "header_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ServeSettings.{name}={getattr(self, name)!r}: expected seconds > 0")
        if self.max_wait_ms < 0:
            raise ValueError(f"ServeSettings.max_wait_ms={self.max_wait_ms!r}: expected >= 0")
