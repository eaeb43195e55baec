"""Parameter-efficient fine-tuning: LoRA adapters (PEFT) on the backbone, and freezing the first K blocks.

    add_lora(model, rank=8, targets=("qkv", "out"))   # only the adapters and the task head train
    freeze_layers(model, 2)                            # the embedding and blocks 0..1 stay fixed
    merge_lora(model)                                  # fold the adapters into the weights (serve, export)

LoRA (Hu et al. 2021) adds a trainable low-rank update ``B A`` (rank r, scaled by alpha / r, B starting at
zero, so training starts from the pretrained model) beside each targeted linear layer of the backbone's
blocks; the pretrained weights stay frozen. The adapters come from Hugging Face PEFT
(``peft.inject_adapter_in_model``, which works on any ``nn.Module``), installed with the ``dev`` extra or
``pip install peft``. `save_adapter` writes them as safetensors with the base model's path beside them;
`merge_lora` folds them in so the fine-tuned model is an ordinary favor model folder.

Targets are names of linear layers inside each block: ``qkv`` and ``out`` (attention), ``fc_in`` and
``fc_out`` (feed-forward). Only attention backbones (performer, transformer, linformer) have them.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

__all__ = ["LORA_TARGETS", "add_lora", "merge_lora", "freeze_layers", "save_adapter", "trainable_parameters"]

LORA_TARGETS = ("qkv", "out", "fc_in", "fc_out")


def _peft():
    try:
        import peft
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "LoRA fine-tuning needs PEFT; install it with: pip install 'favor[dev]' (or pip install peft)",
            name=error.name,
        ) from None
    return peft


def add_lora(
    model: nn.Module, *, rank: int, targets: tuple[str, ...] = ("qkv", "out"), alpha: float | None = None
):
    """Inject LoRA adapters of ``rank`` into ``targets`` of every backbone block; freeze all but them and the
    task head. Returns the model (changed in place)."""
    if rank < 1:
        raise ValueError(f"--lora-rank {rank}: expected an integer >= 1")
    unknown = sorted(set(targets) - set(LORA_TARGETS))
    if unknown:
        raise ValueError(f"--lora-targets {', '.join(unknown)}: choose from {', '.join(LORA_TARGETS)}")
    blocks = getattr(model.backbone, "blocks", None)
    if blocks is None or not hasattr(blocks[0], "attention"):
        raise ValueError(
            "LoRA needs an attention backbone (performer, transformer, linformer), "
            f"not {model.config.backbone!r}"
        )
    peft = _peft()
    parts = [("attention\\." if t in ("qkv", "out") else "feed_forward\\.") + t for t in targets]
    pattern = r".*backbone\.blocks\.\d+\.(" + "|".join(parts) + ")"
    config = peft.LoraConfig(r=rank, lora_alpha=alpha or 2 * rank, target_modules=pattern, lora_dropout=0.0)
    peft.inject_adapter_in_model(config, model)
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name or name.startswith("head."))
    model.lora_settings = {"rank": rank, "alpha": alpha or 2 * rank, "targets": list(targets)}
    return model


def freeze_layers(model: nn.Module, count: int) -> None:
    """Freeze the input embedding and the first ``count`` backbone blocks (the rest and the head train)."""
    blocks = getattr(model.backbone, "blocks", None) or getattr(model.backbone, "layers", None)
    if blocks is None:
        raise ValueError(f"--freeze-layers: backbone {model.config.backbone!r} has no blocks to freeze")
    if not 0 <= count <= len(blocks):
        raise ValueError(f"--freeze-layers {count}: the backbone has {len(blocks)} blocks")
    model.embedding.requires_grad_(False)
    for block in list(blocks)[:count]:
        block.requires_grad_(False)


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_adapter(model: nn.Module, folder: str | Path, *, base: str) -> Path:
    """Write the LoRA weights and the task head (``adapter.safetensors``) and ``adapter.json`` (the base
    model's path, rank, alpha and targets)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: param.detach().cpu().contiguous()
        for name, param in model.named_parameters()
        if "lora_" in name or name.startswith("head.")
    }
    save_file(tensors, str(folder / "adapter.safetensors"))
    meta = {"base_model": base, **getattr(model, "lora_settings", {})}
    (folder / "adapter.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return folder


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its base layer and put the plain ``nn.Linear`` back (in place)."""
    peft = _peft()
    lora_layer = peft.tuners.lora.layer.LoraLayer
    for name, module in list(model.named_modules()):
        if isinstance(module, lora_layer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
    for param in model.parameters():
        param.requires_grad_(True)
    if hasattr(model, "lora_settings"):
        del model.lora_settings
    return model
