"""The short soak (benchmarks/soak.py): a real `favor serve` on 127.0.0.1 under valid, invalid, huge, slow and
disconnecting clients for a few seconds answers no request with a 5xx and is healthy afterwards."""

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def test_a_short_soak_has_no_5xx():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--seconds", "4", "--json"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["5xx"] == 0 and result["healthy_after"]
    statuses = result["status"]
    for code in ("200", "413", "422"):
        assert statuses.get(code, 0) > 0, statuses


@contextlib.contextmanager
def _serving(*extra: str):
    """A real `favor serve` of a tiny random model on a free loopback port: yields (process, port)."""
    import httpx

    sys.path.insert(0, str(SCRIPT.parent))
    from soak import free_port, tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        model, port = tiny_model(Path(tmp) / "m"), free_port()
        command = [
            sys.executable,
            "-m",
            "favor.cli",
            "serve",
            str(model),
            "--port",
            str(port),
            "--threads",
            "1",
        ]
        server = subprocess.Popen([*command, "--log-level", "warning", *extra])
        try:
            for _ in range(300):
                try:
                    httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            yield server, port
        finally:
            if server.poll() is None:
                server.terminate()
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()


def test_sigterm_under_load_answers_200_or_503_never_500():
    """A real `favor serve` gets SIGTERM with hundreds of requests queued: each request either completes or
    gets 503 before the grace period ends (connections whose request the server had not yet read, or opened
    after the signal, are closed or refused: the server never started them)."""
    import asyncio
    import signal
    from collections import Counter

    import httpx

    with _serving() as (server, port):

        async def one(client):
            try:
                response = await client.post("/embed", json={"sequences": ["MKTAYIAKQR" * 25] * 16})
                return response.status_code
            except httpx.HTTPError as error:
                return type(error).__name__

        async def scenario():
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                tasks = [asyncio.create_task(one(client)) for _ in range(400)]
                # Signal once the server is visibly working through the queue (10 answers back).
                while sum(t.done() for t in tasks) < 10:
                    await asyncio.sleep(0.05)
                server.send_signal(signal.SIGTERM)
                return await asyncio.gather(*tasks)

        results = Counter(asyncio.run(scenario()))
        # uvicorn re-raises the signal once it has shut down cleanly: exit status -15 (or 0).
        assert server.wait(timeout=60) in (0, -signal.SIGTERM)
    statuses = {k: v for k, v in results.items() if isinstance(k, int)}
    assert statuses and set(statuses) <= {200, 503}, results


def test_a_client_that_never_finishes_its_headers_is_disconnected():
    """Slowloris: a connection that sends half a request line and headers is closed after --header-timeout,
    while a normal request on another connection is answered."""
    import socket

    import httpx

    with _serving("--header-timeout", "1") as (_, port):
        slow = socket.create_connection(("127.0.0.1", port), timeout=10)
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: headers unfinished
        start = time.monotonic()
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
        assert slow.recv(1024) == b"" and time.monotonic() - start < 5  # b"": the server closed it
