"""Copy a trained run's final model into the package as a bundled model (e.g. favor-protein-small).

    python tools/bundle_model.py runs/pretrain --name favor-protein-small

Writes src/favor/bundled_models/NAME/: config.json + model.safetensors (the weights, float32), config.yaml
(the run's resolved config), unigram.json (the training data's unigram baseline, for favor evaluate) and
README.md (a pointer to the model card in docs/models.md, with the run's summary). Refuses a model over
25 MB or with non-finite weights (load_pretrained checks them).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from favor.models import load_pretrained

ROOT = Path(__file__).resolve().parents[1]
LIMIT_BYTES = 25 * 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("--name", default="favor-protein-small")
    args = parser.parse_args()
    model_dir = args.run / "model"
    load_pretrained(model_dir)  # shapes and finite weights checked
    weights = model_dir / "model.safetensors"
    if weights.stat().st_size > LIMIT_BYTES:
        raise SystemExit(
            f"{weights}: {weights.stat().st_size:,} bytes, over the 25 MB limit of a bundled model"
        )
    target = ROOT / "src" / "favor" / "bundled_models" / args.name
    target.mkdir(parents=True, exist_ok=True)
    for source, name in (
        (model_dir / "config.json", "config.json"),
        (weights, "model.safetensors"),
        (args.run / "config.yaml", "config.yaml"),
        (args.run / "unigram.json", "unigram.json"),
    ):
        shutil.copyfile(source, target / name)
    summary = json.loads((args.run / "summary.json").read_text())
    valid = summary.get("valid") or {}
    hours = summary["train_time_s"] / 3600
    accuracy, perplexity = valid.get("masked_accuracy", float("nan")), valid.get("perplexity", float("nan"))
    lines = [
        f"# {args.name}",
        "",
        "A protein masked language model (Performer, FAVOR+ attention) that ships with favor; the model card",
        "(data, recipe, budget, curves, test metrics, downstream results, limits) is docs/models.md.",
        "",
        f"- parameters: {summary['params']:,}; optimizer steps: {summary['steps']:,}",
        f"- training tokens: {summary['tokens_seen']:,}; training time: {hours:.2f} h",
        f"- validation ({valid.get('n_sequences', '?')} proteins of the shared valid split): masked accuracy "
        f"{accuracy:.4f}, perplexity {perplexity:.2f}",
        "- data: UniProtKB/Swiss-Prot (January 2014, UniProt Consortium, CC BY 4.0), the shared train split",
        "  (50%-identity representatives, split by 30%-identity clusters)",
    ]
    (target / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"bundled {args.run} as {target} ({weights.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
