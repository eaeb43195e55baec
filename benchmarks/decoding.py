"""Per-token decoding time at a short and a long context: causal Performer (recurrent FAVOR+ state) vs the
exact Transformer (KV cache) vs performer-pytorch's generate (which re-runs the whole model every token).

Same shape for all: 6 layers, d_model 512, 8 heads, d_ff 2048, m=256, batch 1, fp32, random weights (speed
does not depend on them). The context is consumed first (favor: one chunked `step` call), then
``--tokens`` single-token steps are timed; reported: median ms per token.

    python benchmarks/decoding.py                         # the BENCHMARKS.md table
    python benchmarks/decoding.py --contexts 128 16384 --impls favor-performer favor-transformer

performer-pytorch needs the bench extra (pip install -e '.[bench]').
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date

import torch

SHAPE = {"d_model": 512, "n_layers": 6, "n_heads": 8, "d_ff": 2048}
IMPLS = ("favor-performer", "favor-transformer", "performer-pytorch")


@torch.inference_mode()
def favor_per_token(backbone: str, context: int, tokens: int, nb_features: int) -> float:
    from favor.models import ModelConfig, PerformerConfig, SequenceModel

    config = ModelConfig(
        backbone=backbone,
        task="clm",
        causal=True,
        vocab_size=29,
        dropout=0.0,
        max_length=context + tokens + 1,
        position="rotary",
        attention=PerformerConfig(nb_features=nb_features),
        **SHAPE,
    )
    model = SequenceModel(config).eval()
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(4, 24, (1, context), generator=g)
    logits, state = model.step(prompt)
    token = logits[:, -1:].argmax(-1)
    times = []
    for _ in range(tokens):
        start = time.perf_counter()
        logits, state = model.step(token, state)
        token = logits[:, -1:].argmax(-1)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


@torch.inference_mode()
def performer_pytorch_per_token(context: int, tokens: int, nb_features: int) -> float:
    import warnings

    from performer_pytorch import PerformerLM

    warnings.filterwarnings("ignore")
    model = PerformerLM(
        num_tokens=29,
        max_seq_len=context + tokens + 1,
        dim=SHAPE["d_model"],
        depth=SHAPE["n_layers"],
        heads=SHAPE["n_heads"],
        ff_mult=SHAPE["d_ff"] // SHAPE["d_model"],
        nb_features=nb_features,
        causal=True,
    ).eval()
    sequence = torch.randint(4, 24, (1, context), generator=torch.Generator().manual_seed(0))
    times = []
    # Its generate loop: the whole sequence goes through the model for every new token.
    for _ in range(tokens):
        start = time.perf_counter()
        logits = model(sequence)
        sequence = torch.cat([sequence, logits[:, -1:].argmax(-1)], dim=1)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) if len(times) > 1 else times[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contexts", type=int, nargs="+", default=[128, 1024, 16384])
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--peer-tokens", type=int, default=4, help="tokens timed for performer-pytorch")
    parser.add_argument(
        "--peer-max-context",
        type=int,
        default=4096,
        help="skip performer-pytorch above this context (its causal CPU path is O(L m d) memory)",
    )
    parser.add_argument("--nb-features", type=int, default=256)
    args = parser.parse_args(argv)

    print(
        f"# {date.today()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"6 layers, d_model 512, 8 heads, m={args.nb_features}, batch 1"
    )
    results: dict[str, dict[int, float]] = {impl: {} for impl in args.impls}
    for impl in args.impls:
        for context in args.contexts:
            if impl == "performer-pytorch":
                if context > args.peer_max_context:
                    continue
                seconds = performer_pytorch_per_token(context, args.peer_tokens, args.nb_features)
            else:
                seconds = favor_per_token(impl.removeprefix("favor-"), context, args.tokens, args.nb_features)
            results[impl][context] = seconds
            print(f"{impl} context={context}: {seconds * 1e3:.2f} ms/token", flush=True)

    print()
    header = " | ".join(f"context {c:,}" for c in args.contexts)
    print(f"| impl | {header} | longest / shortest |")
    print("|---" * (len(args.contexts) + 2) + "|")
    for impl, row in results.items():
        cells = " | ".join(f"{row[c] * 1e3:.1f} ms" if c in row else "skipped" for c in args.contexts)
        measured = [row[c] for c in args.contexts if c in row]
        ratio = f"{measured[-1] / measured[0]:.2f}x" if len(measured) > 1 else "-"
        print(f"| {impl} | {cells} | {ratio} |")


if __name__ == "__main__":
    main()
