"""The paper's backward-compatibility claim on a softmax-pretrained protein model of ESM layout.

ESM-2 weights cannot be downloaded here, so the teacher is pretrained with favor's own trainer: an exact
(softmax) Transformer of ESM-2 layout (rotary positions, tied LM head) from configs/protein_mlm_pretrain.yaml.
Then, as a user with real ESM-2 weights would:

    favor convert to-hf TEACHER --out TEACHER_HF                               # an EsmForMaskedLM folder
    favor convert from-esm TEACHER_HF --out SWAP --attention performer --nb-features M --kernel K
    favor train CONFIG --set model.backbone=performer ... --set train.init_from=SWAP   # a short fine-tune

For each (M, kernel): test masked accuracy and perplexity before the fine-tune and after it, the validation
curve along it, and agreement with the teacher on the test proteins (mean cosine of final embeddings, share
of masked positions where the top-1 prediction equals the teacher's). All on the same seeded masks.

    python benchmarks/esm_swap.py --teacher-minutes 10 --finetune-minutes 4 --out runs/esm_swap

Needs ../shared/data/proteins (or --data-root).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "protein_mlm_pretrain.yaml"
VARIANTS = ["softmax:64", "softmax:128", "softmax:256", "relu:128"]


def favor(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "favor.cli", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"favor {' '.join(args)} failed: {done.stderr.strip()[-800:]}")
    return done.stdout


def evaluate(model: Path, test: Path, batches: int) -> dict:
    out = favor("evaluate", str(model), "--data", str(test), "--max-batches", str(batches), "--json")
    return json.loads(out.strip().splitlines()[-1])


@torch.no_grad()
def agreement(teacher: Path, student: Path, test: Path, n: int = 64) -> tuple[float, float]:
    """(mean cosine of final mean embeddings, top-1 agreement at masked positions) on ``n`` test proteins."""
    from favor.data.masking import mask_tokens
    from favor.data.seeding import generator_for
    from favor.evaluate.data import load_corpus
    from favor.folders import load_served_model

    a, b = load_served_model(teacher), load_served_model(student)
    corpus = load_corpus(test, unknown="x", max_records=n, alphabet=a.alphabet)
    cosines, same, total = [], 0, 0
    for i in range(len(corpus)):
        ids = torch.tensor(a.alphabet.encode(corpus.sequence(i)[:1022], add_cls=True, add_eos=True))
        masked = mask_tokens(ids, a.alphabet, generator=generator_for(1234, i))
        x = masked.input_ids[None]
        out_a = a.model(x, output_hidden_states=True)
        out_b = b.model(x, output_hidden_states=True)
        ea, eb = out_a.hidden_states[-1][0, 1:-1].mean(0), out_b.hidden_states[-1][0, 1:-1].mean(0)
        cosines.append(float(torch.nn.functional.cosine_similarity(ea, eb, dim=0)))
        sites = masked.labels[None] != -100
        same += int((out_a.logits.argmax(-1) == out_b.logits.argmax(-1))[sites].sum())
        total += int(sites.sum())
    return sum(cosines) / len(cosines), same / max(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "esm_swap")
    parser.add_argument("--teacher-minutes", type=float, default=10.0)
    parser.add_argument("--finetune-minutes", type=float, default=4.0)
    parser.add_argument("--test-batches", type=int, default=40)
    parser.add_argument("--variants", nargs="+", default=VARIANTS, help="KERNEL:M for each swapped model")
    args = parser.parse_args()
    proteins = args.data_root / "proteins"
    train, valid, test = (proteins / f"{s}.fasta.gz" for s in ("train", "valid", "test"))
    data = ["--train", str(train), "--valid", str(valid), "--set", "data.valid_max_sequences=300"]
    out = args.out
    teacher = out / "teacher"
    if not (teacher / "summary.json").is_file():
        sets = ["model.backbone=transformer", f"train.budget_minutes={args.teacher_minutes}"]
        favor("train", str(CONFIG), "--out", str(teacher), *data, "--quiet", *_sets(sets))
    favor("convert", "to-hf", str(teacher), "--out", str(out / "teacher-hf"))
    favor("convert", "from-esm", str(out / "teacher-hf"), "--out", str(out / "teacher-exact"))
    rows = [{"model": "exact teacher", **_metrics(evaluate(out / "teacher-exact", test, args.test_batches))}]
    curves = {}
    for variant in args.variants:
        kernel, m = variant.split(":")[0], int(variant.split(":")[1])
        name = f"performer-{kernel}-m{m}"
        swap = out / name / "converted"
        options = ["--attention", "performer", "--nb-features", str(m), "--kernel", kernel]
        favor("convert", "from-esm", str(out / "teacher-hf"), "--out", str(swap), *options)
        before = _metrics(evaluate(swap, test, args.test_batches))
        tuned = out / name / "finetune"
        if not (tuned / "summary.json").is_file():
            sets = [
                "model.backbone=performer",
                f"model.attention.nb_features={m}",
                f"model.attention.kernel={kernel}",
                f"train.init_from={swap}",
                f"train.budget_minutes={args.finetune_minutes}",
                "train.warmup_steps=20",
                "train.lr=5e-4",
                "train.eval_interval=25",
                "train.redraw_interval=0",
            ]
            favor("train", str(CONFIG), "--out", str(tuned), *data, "--quiet", *_sets(sets))
        after = _metrics(evaluate(tuned, test, args.test_batches))
        cosine, top1 = agreement(out / "teacher-exact", tuned / "model", test)
        rows.append({"model": f"{name} before fine-tune", **before})
        rows.append(
            {"model": f"{name} after {args.finetune_minutes:g} min", **after, "cosine": cosine, "top1": top1}
        )
        with open(tuned / "metrics.csv") as handle:
            curves[name] = [
                (int(r["step"]), float(r["accuracy"]))
                for r in csv.DictReader(handle)
                if r["split"] == "valid"
            ]
    _plot(curves, rows[0]["accuracy"], ROOT / "docs" / "img" / "esm_swap.png")
    print(
        f"{date.today()}; teacher {args.teacher_minutes:g} min, fine-tune {args.finetune_minutes:g} min each"
    )
    print("| model | test masked accuracy | perplexity | embedding cosine to teacher | top-1 agreement |")
    print("|---|---|---|---|---|")
    for r in rows:
        extra = f"{r['cosine']:.3f} | {r['top1']:.3f}" if "cosine" in r else "- | -"
        print(f"| {r['model']} | {r['accuracy']:.4f} | {r['perplexity']:.2f} | {extra} |")
    (out / "results.json").write_text(json.dumps({"rows": rows, "curves": curves}, indent=2))


def _sets(values: list[str]) -> list[str]:
    return [part for value in values for part in ("--set", value)]


def _metrics(result: dict) -> dict:
    return {"accuracy": result["masked_accuracy"], "perplexity": result["perplexity"]}


def _plot(curves: dict, teacher_accuracy: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, points in curves.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=name)
    ax.axhline(teacher_accuracy, color="black", linestyle="--", label="exact teacher (test)")
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("validation masked accuracy")
    ax.set_title("Softmax-pretrained weights with FAVOR+ attention")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
