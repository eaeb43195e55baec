"""Residues trained per second: packed rows vs padded batches, on the real length distribution.

Builds the recipe's model (configs/protein_mlm_pretrain.yaml) three times over the shared training split,
all in this one process with the same threads, and times optimizer steps (forward, backward, AdamW) in
interleaved rounds so that machine noise hits every variant alike:

    packed           whole proteins packed several per row (best-fit decreasing) with segment_ids
    padded-bucketed  one protein per row, token-budget batches sorted by length within buffers of 1,024
                     (favor's default for data.mode=single)
    padded-random    one protein per row, data.max_tokens // data.max_length proteins per batch in random
                     order, padded to the longest (the classic fixed-size padded batch)

The first two fill the same token budget per batch (data.max_tokens, padding included); the third has at
most that many tokens. Residues are the real
(non-padding) tokens of a step; the table reports the median of per-round rates and the ratio to packed.

    python benchmarks/packing.py --rounds 5 --steps 6 --threads 1      # the BENCHMARKS.md table

Needs ../shared/data/proteins (or --data-root).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from datetime import date
from pathlib import Path

import torch

from favor.data.batching import FixedSizeBatchSampler
from favor.runs.config import load_run_config
from favor.train.distributed import DistContext
from favor.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "packed": ["data.mode=packed"],
    "padded-bucketed": ["data.mode=single"],
    "padded-random": ["data.mode=single"],
}


def build(config: Path, train: Path, extra: list[str]) -> Trainer:
    overrides = [f"data.train={train}", "data.valid=none", *extra]
    return Trainer(config=load_run_config(config, overrides=overrides), dist=DistContext())


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line), "?")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "protein_mlm_pretrain.yaml")
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per variant and round")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = args.data_root / "proteins" / "train.fasta.gz"
    trainers = {name: build(args.config, train, extra) for name, extra in VARIANTS.items()}
    loader, data = trainers["padded-random"].data.train_loader, trainers["padded-random"].config.data
    loader.batch_sampler = FixedSizeBatchSampler(len(loader.dataset), batch_size=data.batch_size, seed=0)
    for trainer in trainers.values():
        trainer.train_step()  # warm-up step, not timed
    rates: dict[str, list[float]] = {name: [] for name in trainers}
    padding: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(args.rounds):
        for name, trainer in trainers.items():
            residues, slots, seconds = 0, 0, 0.0
            for _ in range(args.steps):
                batch = trainer.next_batch()
                slots += batch["input_ids"].numel()
                residues += int((~batch["padding_mask"]).sum())
                start = time.perf_counter()
                trainer.train_step([batch])
                seconds += time.perf_counter() - start
            rates[name].append(residues / seconds)
            padding[name].append(1.0 - residues / slots)
    packed = statistics.median(rates["packed"])
    print(
        f"{date.today()}, {cpu_model()}, {args.threads} thread(s), {args.rounds} rounds x {args.steps} steps"
    )
    print("| batches | residues/s (median) | packed / this | padding share |")
    print("|---|---|---|---|")
    for name in trainers:
        rate = statistics.median(rates[name])
        print(f"| {name} | {rate:,.0f} | {packed / rate:.2f}x | {statistics.median(padding[name]):.1%} |")


if __name__ == "__main__":
    main()
