"""Longest context: one masked-LM training step (forward + backward + AdamW) per sequence length.

A 6-layer, d_model 512, 8-head, d_ff 2048 encoder (the paper's protein model is 36 layers at this width),
batch 1, fp32, activation checkpointing per block, rotary positions. Each (backbone, length) runs in its own
subprocess; reported: median step time over ``--steps`` steps after one warm-up step, tokens/s, and the
process's peak resident set size (VmHWM, which includes the ~0.3 GB of the Python + torch runtime).

    python benchmarks/model_step.py                                   # the BENCHMARKS.md table
    python benchmarks/model_step.py --backbones performer --lengths 32768 65536
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path


def _peak_rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("VmHWM not in /proc/self/status")


def run_child(backbone: str, length: int, steps: int, nb_features: int, checkpointing: bool) -> dict:
    import torch

    from favor.models import ModelConfig, PerformerConfig, SequenceModel

    config = ModelConfig(
        backbone=backbone,
        task="mlm",
        vocab_size=29,
        d_model=512,
        n_layers=6,
        n_heads=8,
        d_ff=2048,
        dropout=0.0,
        max_length=length,
        position="rotary",
        attention=PerformerConfig(nb_features=nb_features),
        gradient_checkpointing=checkpointing,
    )
    model = SequenceModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, 24, (1, length), generator=g)
    labels = torch.full_like(tokens, -100)
    masked = torch.rand(1, length, generator=g) < 0.15
    labels[masked] = tokens[masked]
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = model(tokens, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    median = statistics.median(times[1:])
    return {
        "step_s": median,
        "tokens_per_s": length / median,
        "peak_rss_gib": _peak_rss_gib(),
        "loss": float(loss),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbones", nargs="+", default=["performer", "transformer"])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 8192, 16384, 32768, 65536])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--nb-features", type=int, default=256)
    parser.add_argument("--no-checkpointing", action="store_true")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per (backbone, length)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        backbone, length = args.child[0], int(args.child[1])
        print(
            json.dumps(run_child(backbone, length, args.steps, args.nb_features, not args.no_checkpointing))
        )
        return

    print(
        f"# {date.today()}: 6 layers, d_model 512, 8 heads, d_ff 2048, batch 1, m={args.nb_features}, "
        f"checkpointing={not args.no_checkpointing}"
    )
    print("| backbone | L | step time | tokens/s | peak RSS |")
    print("|---|---|---|---|---|")
    for backbone in args.backbones:
        for length in args.lengths:
            command = [
                sys.executable,
                __file__,
                "--child",
                backbone,
                str(length),
                "--steps",
                str(args.steps),
                "--nb-features",
                str(args.nb_features),
            ] + (["--no-checkpointing"] if args.no_checkpointing else [])
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
                if done.returncode != 0:
                    tail = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
                    # A process killed by the kernel for memory exits with -9 and no traceback.
                    raise RuntimeError(tail if done.returncode != -9 else "killed (out of memory)")
                r = json.loads(done.stdout.strip().splitlines()[-1])
                print(
                    f"| {backbone} | {length:,} | {r['step_s']:.2f} s | {r['tokens_per_s']:,.0f} | "
                    f"{r['peak_rss_gib']:.1f} GiB |",
                    flush=True,
                )
            except (subprocess.TimeoutExpired, RuntimeError) as error:
                reason = (
                    f"timeout after {args.timeout:.0f} s"
                    if isinstance(error, subprocess.TimeoutExpired)
                    else str(error)[:120]
                )
                print(f"| {backbone} | {length:,} | {reason} | - | - |", flush=True)
                break  # longer lengths will not do better


if __name__ == "__main__":
    main()
