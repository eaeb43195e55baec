"""Paired attention timing: favor and its peers alternated in one process, ratios taken call by call.

`benchmarks/attention.py` measures each cell in a fresh process (clean peak memory, but each call pays for
first-touch page faults on its fresh output buffers, and the cells run minutes apart on a noisy machine).
This script answers the speed question alone: it builds favor, performer-pytorch `FastAttention` and torch
SDPA on the same q, k, v (B=1, H=8, d=64, m=256 by default), then runs them in turns, forward + backward,
``--rounds`` times after one warm-up round, and reports each one's median time and the median of the
per-round ratios peer / favor. Memory is not measured here.

    python benchmarks/attention_paired.py --length 16384 --mode bidirectional --rounds 5
    python benchmarks/attention_paired.py --length 16384 --mode causal --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from datetime import date

import torch
import torch.nn.functional as F

from favor.ops import favor_attention, random_projection


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--length", type=int, default=16384)
    parser.add_argument("--mode", choices=("bidirectional", "causal"), default="bidirectional")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--nb-features", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds after one warm-up round")
    parser.add_argument("--impls", nargs="+", default=["favor", "performer_pytorch", "sdpa"])
    args = parser.parse_args(argv)
    causal = args.mode == "causal"
    g = torch.Generator().manual_seed(0)
    shape = (1, args.heads, args.length, args.head_dim)
    q, k, v = (torch.randn(shape, generator=g).requires_grad_(True) for _ in range(3))
    grad = torch.randn(shape, generator=g)
    seed = torch.Generator().manual_seed(0)
    projection = random_projection(args.nb_features, args.head_dim, generator=seed)
    fns = {"favor": lambda: favor_attention(q, k, v, projection, causal=causal)}
    if "performer_pytorch" in args.impls:
        warnings.filterwarnings("ignore")
        from performer_pytorch import FastAttention

        peer = FastAttention(dim_heads=args.head_dim, nb_features=args.nb_features, causal=causal)
        fns["performer_pytorch"] = lambda: peer(q, k, v)
    if "sdpa" in args.impls:
        fns["sdpa"] = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(args.rounds + 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn().backward(grad)
            times[name].append(time.perf_counter() - start)
            q.grad = k.grad = v.grad = None
    timed = {name: t[1:] for name, t in times.items()}
    print(
        f"# {date.today()}, torch {torch.__version__}, {torch.get_num_threads()} threads; L={args.length} "
        f"{args.mode}, H={args.heads}, d={args.head_dim}, m={args.nb_features}; {args.rounds} rounds"
    )
    print("| impl | median forward+backward | per-round times (ms) | median ratio impl / favor |")
    print("|---|---|---|---|")
    for name, t in timed.items():
        ratios = [a / b for a, b in zip(t, timed["favor"], strict=True)]
        cells = ", ".join(f"{x * 1e3:,.0f}" for x in t)
        median = statistics.median(t) * 1e3
        print(f"| {name} | {median:,.0f} ms | {cells} | {statistics.median(ratios):.2f}x |")


if __name__ == "__main__":
    main()
