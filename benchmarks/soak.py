"""A bounded soak of `favor serve` on 127.0.0.1: valid, invalid, huge, slow and disconnecting clients at once.

Starts ``favor serve MODEL`` (default: a tiny random masked LM written to a temporary folder) on a free
loopback port, then runs client threads for ``--seconds`` (each stops by itself; loopback only):

    valid        /embed, /score, /fill-mask requests with real residues
    invalid      malformed JSON, unknown residues, huge positions, booleans as ints, made-up methods and paths
    huge         bodies over the size limit (413) and responses over the size limit (422)
    slow         a body sent in pieces with pauses (finished late, or never: the server times it out)
    disconnect   connections that send half a request and close

Reports requests sent, status counts, the number of 5xx (the target is 0), p50/p99 latency of the valid
requests, the server's RSS before and after, and whether /health still answers. Exits 1 on any 5xx.

    python benchmarks/soak.py --seconds 120            # the BENCHMARKS.md figures
    python benchmarks/soak.py --seconds 5 --json       # what tests/serve/test_soak.py runs
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

RESIDUES = "ACDEFGHIKLMNPQRSTVWY"


def tiny_model(folder: Path) -> Path:
    import torch

    from favor.models import ModelConfig, SequenceModel, save_pretrained

    torch.manual_seed(0)
    config = ModelConfig(
        task="mlm", vocab_size=29, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_length=258, dropout=0.0,
        attention={"nb_features": 16},
    )  # fmt: skip
    save_pretrained(SequenceModel(config), folder)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _head(length: int) -> str:
    return (
        "POST /embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )


class Soak:
    def __init__(self, base: str, port: int, seconds: float, seed: int = 0) -> None:
        self.base, self.port, self.deadline = base, port, time.monotonic() + seconds
        self.status: Counter = Counter()
        self.latencies: list[float] = []
        self.lock = threading.Lock()
        self.rng = random.Random(seed)

    def record(self, kind: str, status: int | str, seconds: float | None = None) -> None:
        with self.lock:
            self.status[(kind, status)] += 1
            if seconds is not None:
                self.latencies.append(seconds)

    def sequence(self, rng: random.Random, n: int) -> str:
        return "".join(rng.choice(RESIDUES) for _ in range(n))

    def valid(self, rng: random.Random) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as client:
            while time.monotonic() < self.deadline:
                seq = self.sequence(rng, rng.randint(5, 200))
                route, body = rng.choice(
                    [
                        ("/embed", {"sequences": [seq, seq[::-1]]}),
                        ("/score", {"sequence": seq, "mutations": [f"{seq[0]}1A", f"{seq[-1]}{len(seq)}C"]}),
                        ("/fill-mask", {"sequence": seq[:3] + "_" + seq[4:]}),
                    ]
                )
                start = time.perf_counter()
                response = client.post(route, json=body)
                self.record("valid", response.status_code, time.perf_counter() - start)

    def invalid(self, rng: random.Random) -> None:
        bodies = [
            ("POST", "/embed", b"{not json"),
            ("POST", "/embed", json.dumps({"sequences": ["MKJ*"]}).encode()),
            ("POST", "/embed", json.dumps({"sequences": ["MKT"], "layer": True}).encode()),
            (
                "POST",
                "/score",
                json.dumps({"sequence": "MKT", "mutations": ["M" + "9" * 3000 + "A"]}).encode(),
            ),
            ("POST", "/score", json.dumps({"sequence": "MKT", "mutations": ["M1A:M1C"]}).encode()),
            ("POST", "/generate", json.dumps({"prompt": "MK", "temperature": 1e-300}).encode()),
            ("BREW", "/embed", b""),
            ("GET", "/../../etc/passwd", b""),
            ("POST", "/embed", json.dumps({"sequences": []}).encode()),
        ]
        with httpx.Client(base_url=self.base, timeout=30) as client:
            while time.monotonic() < self.deadline:
                method, path, content = rng.choice(bodies)
                response = client.request(
                    method, path, content=content, headers={"content-type": "application/json"}
                )
                self.record("invalid", response.status_code)

    def huge(self, rng: random.Random) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as client:
            while time.monotonic() < self.deadline:
                if rng.random() < 0.5:
                    response = client.post("/embed", content=b"x" * (2 << 20))
                else:
                    response = client.post("/embed", json={"sequences": ["MKT"] * 5000})
                self.record("huge", response.status_code)

    def _raw(self, payload: bytes, *, pause: float = 0.0, pieces: int = 1, close_early: bool = False):
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
            step = max(1, len(payload) // pieces)
            for i in range(0, len(payload), step):
                sock.sendall(payload[i : i + step])
                if close_early:
                    return "closed"
                time.sleep(pause)
            data = sock.recv(65536)
            return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else "no response"

    def slow(self, rng: random.Random) -> None:
        body = json.dumps({"sequences": ["MKTAYIAKQR"]}).encode()
        head = _head(len(body))
        while time.monotonic() < self.deadline:
            try:
                self.record("slow", self._raw(head.encode() + body, pause=0.2, pieces=5))
            except OSError as error:
                self.record("slow", type(error).__name__)

    def disconnect(self, rng: random.Random) -> None:
        body = json.dumps({"sequences": ["MKTAYIAKQR" * 10]}).encode()
        head = _head(len(body))
        while time.monotonic() < self.deadline:
            try:
                self.record("disconnect", self._raw(head.encode() + body[:10], close_early=True))
            except OSError as error:
                self.record("disconnect", type(error).__name__)
            time.sleep(0.01)

    def run(self, threads: dict[str, int]) -> None:
        workers = []
        for kind, count in threads.items():
            for i in range(count):
                rng = random.Random(f"{kind}{i}")
                workers.append(threading.Thread(target=getattr(self, kind), args=(rng,), daemon=True))
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=max(1.0, self.deadline - time.monotonic() + 90))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model folder or name (default: a tiny random MLM)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(tiny_model(Path(tmp) / "model"))
        port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        server = subprocess.Popen(
            [sys.executable, "-m", "favor.cli", "serve", model, "--port", str(port), "--threads", "1",
             "--log-level", "warning", "--max-wait-ms", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(base + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            else:
                raise RuntimeError(
                    "the server did not start: " + server.stdout.read(4000).decode(errors="replace")
                )
            rss_before = rss_mib(server.pid)
            soak = Soak(base, port, args.seconds)
            soak.run({"valid": 3, "invalid": 2, "huge": 1, "slow": 2, "disconnect": 1})
            healthy = httpx.get(base + "/health", timeout=10).status_code == 200
            rss_after = rss_mib(server.pid)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    statuses = Counter()
    for (_, status), count in soak.status.items():
        statuses[str(status)] += count
    errors_5xx = sum(c for s, c in statuses.items() if s.isdigit() and int(s) >= 500)
    latencies = sorted(soak.latencies)
    result = {
        "seconds": args.seconds,
        "requests": sum(statuses.values()),
        "status": dict(sorted(statuses.items())),
        "by_client": {f"{k}:{s}": c for (k, s), c in sorted(soak.status.items(), key=str)},
        "5xx": errors_5xx,
        "valid_p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "valid_p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1) if latencies else None,
        "rss_before_mib": round(rss_before, 1),
        "rss_after_mib": round(rss_after, 1),
        "healthy_after": healthy,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0 if errors_5xx == 0 and healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
