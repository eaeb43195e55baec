"""Long proteins with an ESM-2 model: Hugging Face's exact ESM, favor exact and favor FAVOR+, time and memory.

A randomly initialised ``transformers.EsmForMaskedLM`` of the esm2_t6_8M shape (6 layers, d 320, 20 heads,
ff 1280; the timing does not depend on the weights) is converted with ``favor convert from-esm`` to exact and
FAVOR+ (m features) models. Each measurement runs in a fresh process: one forward pass (embedding the
sequence, no gradients) after a warm-up at 1,024 residues; the process's peak resident memory (VmHWM) is
reported. ``no-attention`` is the floor any attention can reach: the FAVOR+ model with its attention
mixing replaced by the identity on the values (``attend`` returns ``v``), so embeddings, projections,
feed-forward layers and norms cost what they cost in every column. Lengths are single random proteins
and, with ``--complex``, complexes of several chains joined as ESM users do for multimers (a poly-G
linker of 25 between chains).

    python benchmarks/esm_long.py --lengths 1024 4096 16384 32768 --threads 2    # the BENCHMARKS.md table

A cell that would run past ``--timeout`` seconds (or out of memory) is reported as such, not estimated.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

IMPLS = ("hf-exact", "favor-exact", "favor-performer", "no-attention")
SHAPE = dict(hidden_size=320, num_hidden_layers=6, num_attention_heads=20, intermediate_size=1280)


def build(folder: Path, nb_features: int) -> None:
    import torch
    import transformers

    from favor.convert import from_esm

    config = transformers.EsmConfig(
        vocab_size=33, pad_token_id=1, mask_token_id=32, position_embedding_type="rotary",
        max_position_embeddings=1026, emb_layer_norm_before=False, token_dropout=True, layer_norm_eps=1e-5,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **SHAPE,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.EsmForMaskedLM(config).save_pretrained(folder / "hf", safe_serialization=True)
    from_esm(folder / "hf", folder / "favor-exact", max_length=70_000)
    from_esm(
        folder / "hf",
        folder / "favor-performer",
        attention="performer",
        nb_features=nb_features,
        max_length=70_000,
    )


def sequence(length: int, chains: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    residues = "ACDEFGHIKLMNPQRSTVWY"
    if chains == 1:
        return "".join(rng.choice(residues) for _ in range(length))
    linker = "G" * 25
    each = (length - (chains - 1) * len(linker)) // chains
    return linker.join("".join(rng.choice(residues) for _ in range(each)) for _ in range(chains))


def peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one(folder: Path, impl: str, length: int, chains: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from favor.data import Alphabet

    alphabet = Alphabet.esm()
    if impl == "hf-exact":
        import transformers

        model = transformers.EsmForMaskedLM.from_pretrained(folder / "hf", attn_implementation="sdpa").eval()

        def run(ids):
            return model.esm(input_ids=ids).last_hidden_state
    else:
        from favor.layers.favor_attention import FavorSelfAttention
        from favor.models import load_pretrained

        model = load_pretrained(folder / ("favor-performer" if impl == "no-attention" else impl))
        if impl == "no-attention":
            for module in model.modules():
                if isinstance(module, FavorSelfAttention):
                    module.attend = lambda q, k, v, **_: v

        def run(ids):
            return model(ids, repr_layers=[-1]).hidden_states[0]

    with torch.inference_mode():
        warm = torch.tensor([alphabet.encode(sequence(1024, 1, seed=1), add_cls=True, add_eos=True)])
        run(warm)
        ids = torch.tensor([alphabet.encode(sequence(length, chains), add_cls=True, add_eos=True)])
        start = time.perf_counter()
        out = run(ids)
        seconds = time.perf_counter() - start
    assert out.shape[1] == ids.shape[1]
    return {"seconds": seconds, "peak_mib": peak_mib()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384, 32768])
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    parser.add_argument("--complex", type=int, default=0, help="also time complexes of this many chains")
    parser.add_argument("--nb-features", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--one", nargs=4, metavar=("FOLDER", "IMPL", "LENGTH", "CHAINS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.one:
        folder, impl, length, chains = args.one
        print(json.dumps(one(Path(folder), impl, int(length), int(chains), args.threads)))
        return
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in lscpu if "Model name" in line), "?")
    print(f"{date.today()}, {cpu}, {args.threads} thread(s), esm2_t6_8M shape, FAVOR+ m={args.nb_features}")
    print("| input | residues | " + " | ".join(f"{i} s (peak MiB)" for i in args.impls) + " |")
    print("|---|---|" + "---|" * len(args.impls))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build(folder, args.nb_features)
        inputs = [(n, 1) for n in args.lengths] + (
            [(n, args.complex) for n in args.lengths] if args.complex else []
        )
        for length, chains in inputs:
            cells = []
            for impl in args.impls:
                command = [
                    sys.executable,
                    __file__,
                    "--threads",
                    str(args.threads),
                    "--one",
                    str(folder),
                    impl,
                    str(length),
                    str(chains),
                ]
                try:
                    done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
                except subprocess.TimeoutExpired:
                    cells.append(f"> {args.timeout:.0f} s (not finished)")
                    continue
                if done.returncode != 0:
                    reason = (
                        "out of memory"
                        if done.returncode in (-9, 137) or "memory" in done.stderr.lower()
                        else "failed"
                    )
                    cells.append(f"{reason}")
                    continue
                result = json.loads(done.stdout.strip().splitlines()[-1])
                cells.append(f"{result['seconds']:.2f} ({result['peak_mib']:,.0f})")
            what = "protein" if chains == 1 else f"complex of {chains} chains"
            print(f"| {what} | {length:,} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
