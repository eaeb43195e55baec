"""Micro-batching: concurrent requests share forward passes, run in one worker thread off the event loop.

A request becomes a `Job`: token rows plus a ``key`` saying which forward output it needs (rows with equal
keys can share a batch) and a ``finish`` function that turns its rows' outputs into the response. The
worker thread takes the first waiting job, then keeps collecting jobs for up to ``max_wait_s`` or until
``max_rows`` rows are waiting, runs each key's rows as padded batches (`InferenceEngine.forward_rows`),
and hands every job its own outputs. While a batch runs, new requests queue up and form the next batch,
so under load batches grow without any added wait.

The queue is a thread-safe `queue.Queue` and each job carries the asyncio future (and loop) to resolve:
awaiting a job never blocks the event loop, and the batcher works with any number of event loops (the
test client and uvicorn alike). One worker thread owns the model, so requests never run it concurrently.
Jobs that cannot be batched (generation) carry a ``call`` instead and run alone, in arrival order.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["Job", "MicroBatcher", "Overloaded"]


class Overloaded(RuntimeError):
    """The server cannot take this request now (queue full, shutting down, or out of time): answer 503."""

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass
class Job:
    """One request's work: ``rows`` + ``key`` + ``finish`` (batchable), or a ``call`` run alone."""

    rows: list[torch.Tensor] = field(default_factory=list)
    key: Hashable | None = None
    finish: Callable[[list[Any]], Any] | None = None
    call: Callable[[], Any] | None = None

    @property
    def batchable(self) -> bool:
        return self.call is None


@dataclass
class _Pending:
    job: Job
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future


def _resolve(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    # The client may have gone away (the future was cancelled) while the job ran.
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class MicroBatcher:
    """Collects jobs for up to ``max_wait_s`` / ``max_rows`` rows and runs them in one worker thread.

    Args:
        run_rows: ``run_rows(key, rows) -> outputs`` (one output per row, in order); called in the worker.
        max_rows: stop collecting once this many rows wait.
        max_wait_s: how long the first job of a batch waits for company.
        on_batch: ``on_batch(jobs, rows)`` after each key's batch (metrics).
        render: applied to every job's result in the worker thread (e.g. JSON encoding), so heavy responses
            are never built on the event loop.
        max_queue: jobs that may wait; `submit` raises `Overloaded` past it, and after `close`.
    """

    def __init__(
        self,
        run_rows: Callable[[Hashable, list[torch.Tensor]], list[Any]],
        *,
        max_rows: int = 64,
        max_wait_s: float = 0.005,
        on_batch: Callable[[int, int], None] | None = None,
        render: Callable[[Any], Any] | None = None,
        max_queue: int = 256,
    ) -> None:
        self.run_rows = run_rows
        self.render = render
        self.max_queue = max_queue
        self._closed = False
        # Set by `drain`: after this monotonic time, queued work is answered 503 instead of run.
        self._drain_deadline: float | None = None
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Jobs waiting to be picked up by the worker."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the worker thread (idempotent; `submit` calls it unless the batcher was closed)."""
        with self._lock:
            self._closed = False
            if self._thread is None or not self._thread.is_alive():
                # Intra-op thread counts are per thread: the worker uses the starting thread's setting.
                threads = torch.get_num_threads()
                self._thread = threading.Thread(
                    target=self._work, args=(threads,), name="favor-inference", daemon=True
                )
                self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queued jobs, then stop the worker thread."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout)
        # Whatever is still queued will not run: its clients get 503, not a hang or a 500.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._send(item, None, Overloaded("the server is shutting down; retry shortly"))

    def drain(self, seconds: float) -> None:
        """Shutdown has begun: refuse new work now, run queued work for ``seconds``, answer the rest 503.

        Called from the server's signal handler, so that every request still waiting when the grace period
        ends has had a 503 rather than a dropped connection.
        """
        self._drain_deadline = time.monotonic() + max(0.0, seconds)
        self._closed = True

    async def submit(self, job: Job, *, timeout_s: float | None = None) -> Any:
        """Queue ``job`` and wait (without blocking the event loop) for its result or exception.

        Raises `Overloaded` when the queue is full, the batcher is closed, or ``timeout_s`` passes first; a
        job whose waiter has gone (timed out, or the client disconnected) is skipped by the worker.
        """
        if self._closed:
            raise Overloaded("the server is shutting down; retry shortly")
        if self._queue.qsize() >= self.max_queue:
            raise Overloaded(
                f"{self._queue.qsize()} requests are waiting (limit {self.max_queue}); retry shortly"
            )
        self.start()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Pending(job=job, loop=loop, future=future))
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise Overloaded(f"no result within {timeout_s:g} s; the server is busy, retry later") from None

    def _collect(self, first: _Pending) -> tuple[list[_Pending], bool]:
        """The batch starting with ``first``; the flag says a stop was requested meanwhile."""
        batch, rows = [first], len(first.job.rows)
        if not first.job.batchable:
            return batch, False
        deadline = time.monotonic() + self.max_wait_s
        while rows < self.max_rows:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
            rows += len(item.job.rows)
        return batch, False

    def _work(self, threads: int) -> None:
        torch.set_num_threads(threads)
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._collect(first)
            if self._drain_deadline is not None and time.monotonic() > self._drain_deadline:
                for item in batch:
                    self._send(item, None, Overloaded("the server is shutting down; retry shortly"))
                if stop:
                    return
                continue
            with torch.inference_mode():
                self._run(batch)
            if stop:
                return

    def _run(self, batch: list[_Pending]) -> None:
        groups: dict[Hashable, list[_Pending]] = {}
        # Nobody waits for a cancelled future (the client left or timed out): do not compute it.
        batch = [item for item in batch if not item.future.done()]
        for item in batch:
            if item.job.batchable:
                groups.setdefault(item.job.key, []).append(item)
            else:
                self._finish(item, item.job.call)
        for key, items in groups.items():
            rows = [row for item in items for row in item.job.rows]
            try:
                outputs = self.run_rows(key, rows) if rows else []
            except Exception as error:
                for item in items:
                    self._send(item, None, error)
                continue
            if self.on_batch is not None:
                self.on_batch(len(items), len(rows))
            start = 0
            for item in items:
                mine = outputs[start : start + len(item.job.rows)]
                start += len(item.job.rows)
                self._finish(item, lambda item=item, mine=mine: item.job.finish(mine))

    def _finish(self, item: _Pending, compute: Callable[[], Any]) -> None:
        try:
            result = compute()
            if self.render is not None:
                result = self.render(result)
        except Exception as error:
            self._send(item, None, error)
        else:
            self._send(item, result, None)

    @staticmethod
    def _send(item: _Pending, result: Any, error: BaseException | None) -> None:
        try:
            item.loop.call_soon_threadsafe(_resolve, item.future, result, error)
        except RuntimeError:
            # The request's event loop is closed: nobody is waiting for this result any more.
            pass
