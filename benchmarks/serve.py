"""Load test of ``favor serve``: /embed throughput and latency by concurrency, against in-process calls.

The server runs in a subprocess bound to 127.0.0.1 (a free port); a local `httpx.AsyncClient` sends
``--requests`` single-sequence /embed requests per configuration with 1, 8 and 32 requests in flight.
Sequences are real proteins from the bundled ``test.fasta``: those with at least L residues, cropped to
exactly L (there are few proteins of 1,000+ residues there, so requests cycle over the distinct ones;
the content does not change the cost). The same sequences then go through the model in this process,
one at a time (batch 1) and in padded batches (the server's own `InferenceEngine`), with the same number
of torch threads as the server. Each configuration runs ``--repeats`` times; throughput is the median,
latency percentiles pool every request. The machine is shared and noisy: compare medians.

    python benchmarks/serve.py                        # fresh model of the "small" size, ~3-6 min on 2 cores
    python benchmarks/serve.py --model runs/mlm --lengths 300 --concurrency 1 8
    python benchmarks/serve.py --size tiny --requests 16 --repeats 1        # a quick smoke run

Needs the serve extra (fastapi, uvicorn, httpx). Sends traffic to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

SIZES = {
    "tiny": dict(d_model=64, n_layers=2, n_heads=4, d_ff=256, nb_features=32),
    "small": dict(d_model=128, n_layers=4, n_heads=4, d_ff=512, nb_features=64),
    "base": dict(d_model=256, n_layers=6, n_heads=8, d_ff=1024, nb_features=128),
}


def fresh_model(folder: Path, size: str) -> Path:
    """A randomly initialised bidirectional Performer MLM of the named size (max_length 1024)."""
    from favor.models import ModelConfig, SequenceModel, save_pretrained

    spec = dict(SIZES[size])
    nb_features = spec.pop("nb_features")
    torch.manual_seed(0)
    config = ModelConfig(
        backbone="performer", task="mlm", vocab_size=29, max_length=1024, dropout=0.0,
        attention={"nb_features": nb_features}, **spec,
    )  # fmt: skip
    save_pretrained(SequenceModel(config), folder)
    return folder


def proteins(length: int) -> list[str]:
    """Bundled test proteins with at least ``length`` residues, cropped to exactly ``length``."""
    from favor.data import read_fasta, sample_path

    chosen = [r.sequence[:length] for r in read_fasta(sample_path("test")) if len(r.sequence) >= length]
    if not chosen:
        raise SystemExit(f"no protein of {length}+ residues in the bundled test.fasta")
    return chosen


def percentiles(latencies: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return q[49] * 1e3, q[94] * 1e3, q[98] * 1e3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: Path, port: int, args: argparse.Namespace) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "favor.serve.server", str(model), "--host", "127.0.0.1", "--port", str(port),
        "--threads", str(args.threads), "--max-wait-ms", str(args.max_wait_ms), "--log-level", "warning",
    ]  # fmt: skip
    server = subprocess.Popen(command)
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("the server did not answer /health within 120 s")


def batch_stats(metrics: str) -> tuple[float, float]:
    """(sum, count) of favor_batch_requests: requests per micro-batch."""
    total = float(re.search(r"^favor_batch_requests_sum (\S+)$", metrics, re.M).group(1))
    count = float(re.search(r"^favor_batch_requests_count (\S+)$", metrics, re.M).group(1))
    return total, count


async def load(url: str, sequences: list[str], concurrency: int, n: int) -> tuple[float, list[float], float]:
    """Send ``n`` /embed requests with ``concurrency`` in flight: (seconds, latencies, mean batch)."""
    import httpx

    latencies: list[float] = []
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300) as client:
        before = batch_stats((await client.get("/metrics")).text)

        async def worker() -> None:
            nonlocal next_index
            while next_index < n:
                sequence = sequences[next_index % len(sequences)]
                next_index += 1
                start = time.perf_counter()
                response = await client.post("/embed", json={"sequences": [sequence]})
                latencies.append(time.perf_counter() - start)
                response.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
        after = batch_stats((await client.get("/metrics")).text)
    mean_batch = (after[0] - before[0]) / max(1.0, after[1] - before[1])
    return seconds, latencies, mean_batch


def in_process(engine, sequences: list[str], n: int, batch: int) -> tuple[float, list[float]]:
    """Embed ``n`` sequences through the engine ``batch`` at a time: (seconds, per-call latencies)."""
    rows = [engine.encode(sequences[i % len(sequences)], where="bench") for i in range(n)]
    latencies = []
    start = time.perf_counter()
    for i in range(0, n, batch):
        call = time.perf_counter()
        states = engine.forward_rows(rows[i : i + batch], output="hidden", layer=engine.n_layers)
        [state[1:-1].mean(0).tolist() for state in states]
        latencies.append(time.perf_counter() - call)
    return time.perf_counter() - start, latencies


def row(mode, length, width, n, throughputs, latencies, mean_batch="") -> str:
    p50, p95, p99 = percentiles(latencies)
    tput = statistics.median(throughputs)
    cells = [mode, length, width, n, f"{tput:.1f}", f"{p50:.0f}", f"{p95:.0f}", f"{p99:.0f}", mean_batch]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", type=Path, default=None, help="model folder or run dir (default: a fresh one)"
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="small", help="fresh model size")
    parser.add_argument("--lengths", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=64, help="requests per configuration and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    # One thread: on a shared 2-core machine a 2-thread OpenMP team stalls whenever a neighbour takes a core.
    parser.add_argument("--threads", type=int, default=1, help="torch threads, server and in-process")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="server micro-batch wait")
    parser.add_argument("--batch", type=int, default=32, help="in-process batched size")
    args = parser.parse_args()

    from favor.folders import load_served_model
    from favor.inference import InferenceEngine

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or fresh_model(Path(tmp) / "model", args.size)
        served = load_served_model(model)
        engine = InferenceEngine(served)
        sets = {length: proteins(length) for length in args.lengths}
        lines = []
        for length, sequences in sets.items():
            in_process(engine, sequences, 2, 1)  # warm-up
            for batch in (1, args.batch):
                runs = [in_process(engine, sequences, args.requests, batch) for _ in range(args.repeats)]
                tputs = [args.requests / seconds for seconds, _ in runs]
                lats = [lat for _, ls in runs for lat in ls]
                lines.append(
                    row("in-process", length, f"batch {batch}", args.requests, tputs, lats, str(batch))
                )
        port = free_port()
        server = start_server(model, port, args)
        try:
            url = f"http://127.0.0.1:{port}"
            for length, sequences in sets.items():
                asyncio.run(load(url, sequences, 1, 2))  # warm-up
                for concurrency in args.concurrency:
                    runs = [
                        asyncio.run(load(url, sequences, concurrency, args.requests))
                        for _ in range(args.repeats)
                    ]
                    tputs = [args.requests / seconds for seconds, _, _ in runs]
                    lats = [lat for _, ls, _ in runs for lat in ls]
                    mean_batch = f"{statistics.median(b for _, _, b in runs):.1f}"
                    width = f"{concurrency} in flight"
                    lines.append(row("HTTP /embed", length, width, args.requests, tputs, lats, mean_batch))
        finally:
            server.terminate()
            server.wait(timeout=30)
        config = served.config
    distinct = {k: len(v) for k, v in sets.items()}
    print(
        f"favor serve load test, {date.today().isoformat()}, {platform.node()} ({platform.machine()}, "
        f"{os.cpu_count()} CPUs visible, torch {torch.__version__}, {args.threads} torch threads)"
    )
    print(
        f"model: {args.model or 'fresh ' + args.size}: {config.backbone} {config.task}, "
        f"d_model {config.d_model}, {config.n_layers} layers, {config.n_heads} heads, "
        f"nb_features {config.attention.nb_features}; server max_wait_ms {args.max_wait_ms}; "
        f"distinct proteins per length: {distinct}"
    )
    print(f"throughput: median of {args.repeats} runs; latency percentiles over all requests")
    print("(in-process latency is per call: one sequence at batch 1, the whole batch otherwise)")
    print()
    print(
        "| mode | residues | concurrency / batch | requests | seq/s | p50 ms | p95 ms | p99 ms | mean batch |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
