"""`run_server` and the ``favor serve`` command line.

    favor serve RUN_DIR [--host 127.0.0.1] [--port 8000] [--max-wait-ms 5] [--max-batch-rows 64] ...

`serve_cli` is a typed function (positional ``run_dir``, keyword-only options, an ``Args:`` docstring)
from which `favor.cli` builds the ``favor serve`` parser, like every other command's (one parser, one
error style). Without the console script: ``python -m favor.cli serve RUN_DIR``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import sys

import torch

from favor.folders import DEFAULT_MODEL
from favor.serve.settings import ServeSettings

__all__ = ["run_server", "serve_cli", "LOOPBACK_HOSTS"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_server(
    model_dir: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServeSettings | None = None,
    device: str = "cpu",
    threads: int | None = None,
    log_level: str = "info",
) -> None:
    """Load ``model_dir`` and serve it over HTTP until interrupted (Ctrl-C / SIGTERM).

    Args:
        model_dir: a model folder (``config.json`` + ``model.safetensors``), a training run directory
            (``RUN_DIR/model`` or the newest checkpoint ``RUN_DIR/checkpoints/latest``), or one checkpoint
            folder; see `favor.folders`.
        host: address to bind; the default serves this machine only. Any other address exposes an
            unauthenticated API to the network.
        port: TCP port (0 picks a free one).
        settings: request limits and micro-batching knobs (`ServeSettings`).
        device: torch device of the model ("cpu", "cuda", "cuda:1").
        threads: torch intra-op threads for inference (None: torch's default).
        log_level: uvicorn log level.
    """
    try:
        import uvicorn

        from favor.serve.app import create_app
    except ImportError as error:
        raise ImportError(
            f"favor serve needs FastAPI and uvicorn ({error}); install them with: pip install 'favor[serve]'"
        ) from None
    if threads is not None:
        torch.set_num_threads(threads)
    settings = settings or ServeSettings()
    if not _is_loopback(host):
        print(f"favor serve: warning: binding to {host}: the API has no authentication", file=sys.stderr)
    elif settings.allowed_hosts is None:
        # Bound to loopback: answer only to loopback names, so a page on another site whose name resolves to
        # 127.0.0.1 (DNS rebinding) cannot use the API from a browser.
        settings = dataclasses.replace(settings, allowed_hosts=LOOPBACK_HOSTS)
    app = create_app(model_dir, settings=settings, device=device)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
        # Idle keep-alive connections close after this; past max_connections, new work gets 503 at once.
        timeout_keep_alive=5,
        limit_concurrency=settings.max_connections,
        # Request lines and headers over 64 KiB are refused by the HTTP parser.
        h11_max_incomplete_event_size=64 * 1024,
        # A connection that has not sent a whole request line and headers within header_timeout_s is closed.
        http=_header_timeout_protocol(settings.header_timeout_s),
    )
    batcher = app.state.batcher
    # Queued work gets until one second before the grace period ends; then 503, never a dropped connection.
    _DrainingServer(config, on_exit=lambda: batcher.drain(settings.shutdown_grace_s - 1.0)).run()


def _header_timeout_protocol(seconds: float):
    """uvicorn's h11 protocol with a timer on each request's line and headers (slowloris guard)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._header_timer = self.loop.call_later(seconds, self._header_deadline)

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and not self.cycle.response_complete and self._header_timer is not None:
                self._header_timer.cancel()  # a whole request arrived: the body has its own timeout
                self._header_timer = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(seconds, self._header_deadline)

        def connection_lost(self, exc) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def _header_deadline(self) -> None:
            self._header_timer = None
            waiting = self.cycle is None or self.cycle.response_complete
            if waiting and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


def _draining_server_class():
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """uvicorn's server, telling the app's batcher to drain as soon as a shutdown signal arrives."""

        def __init__(self, config, *, on_exit) -> None:
            super().__init__(config)
            self._on_exit = on_exit

        def handle_exit(self, sig, frame) -> None:
            self._on_exit()
            super().handle_exit(sig, frame)

    return DrainingServer


def _DrainingServer(config, *, on_exit):  # noqa: N802 (a class built on first use: uvicorn is optional)
    return _draining_server_class()(config, on_exit=on_exit)


_DEFAULTS = ServeSettings()


def serve_cli(
    run_dir: str = DEFAULT_MODEL,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "cpu",
    threads: int | None = None,
    max_residues: int | None = None,
    max_sequences: int = _DEFAULTS.max_sequences,
    max_body_bytes: int = _DEFAULTS.max_body_bytes,
    max_wait_ms: float = _DEFAULTS.max_wait_ms,
    max_batch_rows: int = _DEFAULTS.max_batch_rows,
    max_batch_tokens: int = _DEFAULTS.max_batch_tokens,
    header_timeout: float = _DEFAULTS.header_timeout_s,
    log_level: str = "info",
) -> int:
    """Serve a model over HTTP: embed, fill-mask, score, generate, predict, health, metrics.

    Binds 127.0.0.1 (this machine only) unless --host says otherwise; the API has no authentication.
    Routes, limits, error codes and metrics: docs/serving.md. Stops on Ctrl-C / SIGTERM.

    Args:
        run_dir: model folder (config.json + model.safetensors), training run directory (RUN_DIR/model,
            else the newest checkpoint), one checkpoint folder, or the name of a bundled model.
        host: address to bind.
        port: TCP port (0 picks a free one).
        device: torch device of the model (cpu, cuda, cuda:1).
        threads: torch intra-op threads (default: torch's).
        max_residues: residues per sequence (default: the model's max_length - 2).
        max_sequences: sequences per request.
        max_body_bytes: request body limit; larger bodies get 413.
        max_wait_ms: how long a micro-batch waits for more requests.
        max_batch_rows: sequences per micro-batch and forward pass.
        max_batch_tokens: padded tokens (rows x longest row) per forward pass.
        header_timeout (S): seconds a connection may take to send a request line and headers.
        log_level: uvicorn log level (critical, error, warning, info, debug).
    """
    settings = ServeSettings(
        max_residues=max_residues,
        max_sequences=max_sequences,
        max_body_bytes=max_body_bytes,
        max_wait_ms=max_wait_ms,
        max_batch_rows=max_batch_rows,
        max_batch_tokens=max_batch_tokens,
        header_timeout_s=header_timeout,
    )
    run_server(
        run_dir, host=host, port=port, settings=settings, device=device, threads=threads, log_level=log_level
    )
    return 0
