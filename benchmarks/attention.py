"""Forward + backward time and peak memory of one attention call: favor vs performer-pytorch vs torch SDPA.

Every measurement runs in a fresh subprocess so that peak memory is that of the call alone: the peak
resident set size is reset after the inputs exist (Linux /proc/self/clear_refs) and read back after the
timed repetitions. Times are medians of ``--repeats`` runs after one warm-up (one run when the warm-up
took more than 30 s). The same run also measures
``torch.matmul`` (a large square product, and the (L, d) x (d, m) product FAVOR+ itself runs) so the
achieved FLOP rate is reported against this machine's rate, not a datasheet.

    python benchmarks/attention.py                       # the BENCHMARKS.md table (takes ~15-30 min)
    python benchmarks/attention.py --lengths 1024 4096 --impls favor sdpa --modes bidirectional

Needs the bench extra for the performer-pytorch peer: pip install -e '.[bench]'.
FLOP count of FAVOR+ forward + backward: about 24 L m d per head.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

IMPLS = ("favor", "performer_pytorch", "sdpa")
# Seconds: a call slower than this is timed once after the warm-up instead of --repeats times.
SLOW_CALL_S = 30.0
MODES = ("bidirectional", "causal")


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _build(impl: str, causal: bool, head_dim: int, nb_features: int):
    import torch

    if impl == "favor":
        from favor.ops import favor_attention, random_projection

        projection = random_projection(nb_features, head_dim, generator=torch.Generator().manual_seed(0))
        return lambda q, k, v: favor_attention(q, k, v, projection, causal=causal)
    if impl == "performer_pytorch":
        import warnings

        from performer_pytorch import FastAttention

        warnings.filterwarnings("ignore")
        module = FastAttention(dim_heads=head_dim, nb_features=nb_features, causal=causal)
        return module
    if impl == "sdpa":
        import torch.nn.functional as F

        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    raise ValueError(f"unknown impl {impl!r}")


def measure_one(
    impl: str,
    mode: str,
    length: int,
    *,
    batch: int,
    heads: int,
    head_dim: int,
    nb_features: int,
    repeats: int,
) -> dict:
    """Run inside the child process: time forward+backward and record the peak RSS above the inputs."""
    import torch

    fn = _build(impl, mode == "causal", head_dim, nb_features)
    g = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(batch, heads, length, head_dim, generator=g).requires_grad_(True) for _ in range(3)
    )
    grad = torch.randn(batch, heads, length, head_dim, generator=g)
    baseline = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    times = []
    runs = repeats + 1
    while len(times) < runs:
        start = time.perf_counter()
        out = fn(q, k, v)
        out.backward(grad)
        times.append(time.perf_counter() - start)
        q.grad = k.grad = v.grad = None
        del out
        if len(times) == 1 and times[0] > SLOW_CALL_S:
            runs = 2  # a slow configuration is timed once after its warm-up
    peak = _rss_kib("VmHWM")
    return {
        "median_s": statistics.median(times[1:]),
        "times_s": times[1:],
        "peak_mib": (peak - baseline) / 1024,
        "threads": torch.get_num_threads(),
    }


def matmul_rates(length: int, head_dim: int, nb_features: int, heads: int) -> dict:
    """GFLOP/s of torch.matmul on a 4096^2 square product and on the (H, L, d) x (d, m) feature product."""
    import torch

    def rate(a, b, flops):
        a @ b
        times = []
        for _ in range(5):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        return flops / statistics.median(times) / 1e9

    n = 4096
    square = rate(torch.randn(n, n), torch.randn(n, n), 2 * n**3)
    x, w = torch.randn(heads, length, head_dim), torch.randn(head_dim, nb_features)
    feature = rate(x, w, 2 * heads * length * head_dim * nb_features)
    return {"square_4096": square, "feature_product": feature}


def _child(args) -> None:
    result = measure_one(
        args.impl,
        args.mode,
        args.length,
        batch=args.batch,
        heads=args.heads,
        head_dim=args.head_dim,
        nb_features=args.nb_features,
        repeats=args.repeats,
    )
    print(json.dumps(result))


def _run_child(impl, mode, length, args) -> dict | None:
    command = [
        sys.executable,
        __file__,
        "--child",
        "--impl",
        impl,
        "--mode",
        mode,
        "--length",
        str(length),
        "--batch",
        str(args.batch),
        "--heads",
        str(args.heads),
        "--head-dim",
        str(args.head_dim),
        "--nb-features",
        str(args.nb_features),
        "--repeats",
        str(args.repeats),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {args.timeout} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": last[:200]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384, 32768, 65536])
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--nb-features", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per measurement before giving up")
    parser.add_argument(
        "--skip-after",
        type=float,
        default=60,
        help="skip longer lengths of an impl/mode once one run took more seconds than this",
    )
    parser.add_argument("--json", type=Path, help="also write all results to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return

    import torch

    print(
        f"# {date.today()} {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; "
        f"B={args.batch} H={args.heads} d={args.head_dim} m={args.nb_features}"
    )
    rows, skipped = [], set()
    for length in args.lengths:
        rates = matmul_rates(length, args.head_dim, args.nb_features, args.heads)
        for mode in args.modes:
            for impl in args.impls:
                if (impl, mode) in skipped:
                    result = {"error": f"skipped (a shorter length failed or took > {args.skip_after:.0f} s)"}
                else:
                    result = _run_child(impl, mode, length, args)
                    # Longer inputs of an impl that failed or was already slow here would fail or take longer.
                    if "median_s" not in result or result["median_s"] > args.skip_after:
                        skipped.add((impl, mode))
                row = {"length": length, "mode": mode, "impl": impl, **result, "matmul_gflops": rates}
                if impl == "favor" and "median_s" in result:
                    flops = 24 * length * args.nb_features * args.head_dim * args.heads * args.batch
                    row["gflops"] = flops / result["median_s"] / 1e9
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "times_s"}), flush=True)
    print()
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def _cell(by_impl: dict, impl: str) -> str:
    r = by_impl.get(impl)
    if r is None:
        return "-"
    if "median_s" not in r:
        return r["error"]
    return f"{r['median_s'] * 1e3:,.0f} ms, {r['peak_mib']:,.0f} MiB"


def _ratio(by_impl: dict, peer: str) -> str:
    ours, theirs = by_impl.get("favor", {}), by_impl.get(peer, {})
    if "median_s" in ours and "median_s" in theirs:
        return f"{theirs['median_s'] / ours['median_s']:.1f}x"
    return "-"


def format_table(rows: list[dict]) -> str:
    """Markdown: one line per (length, mode) with each impl's median time and peak memory, and ratios."""
    lines = [
        "| L | mode | favor | performer-pytorch | SDPA | vs performer-pytorch | vs SDPA | favor GFLOP/s "
        "(% of square matmul / of feature matmul) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["length"], r["mode"]) for r in rows}, key=lambda k: (k[1], k[0]))
    for length, mode in keys:
        by_impl = {r["impl"]: r for r in rows if r["length"] == length and r["mode"] == mode}
        cell = functools.partial(_cell, by_impl)
        ratio = functools.partial(_ratio, by_impl)

        favor = by_impl.get("favor", {})
        if "gflops" in favor:
            rates = favor["matmul_gflops"]
            flops = (
                f"{favor['gflops']:.0f} ({100 * favor['gflops'] / rates['square_4096']:.0f}% / "
                f"{100 * favor['gflops'] / rates['feature_product']:.0f}%)"
            )
        else:
            flops = "-"
        lines.append(
            f"| {length:,} | {mode} | {cell('favor')} | {cell('performer_pytorch')} | {cell('sdpa')} | "
            f"{ratio('performer_pytorch')} | {ratio('sdpa')} | {flops} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
