"""``favor generate``: continue a protein sequence or a text with a causal LM, decoding incrementally, or
transcribe a word with a grapheme-to-phoneme encoder-decoder (``--source WORD``, greedy, sampled or beam).

The model folder decides the vocabulary: a character model carries the ``vocab.json`` its run saved
(`favor.data.text.CharVocabulary`); a seq2seq model uses the g2p vocabulary (`favor.data.g2p`); any other
model decodes with the protein alphabet.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["generate_command"]


def _print_json(data: Any) -> None:
    import json

    from favor.jsonsafe import json_safe

    print(json.dumps(json_safe(data)))


def _model_folder(path: Path) -> Path:
    from favor.folders import BUNDLED_MODELS, bundled_model_dir

    if str(path) in BUNDLED_MODELS and not path.exists():
        return bundled_model_dir(str(path))
    if (path / "config.json").is_file():
        return path
    if (path / "model" / "config.json").is_file():
        return path / "model"
    raise FileNotFoundError(
        f"{path}: no model here (expected config.json, or a run folder with model/config.json)"
    )


def _prompt_ids(folder: Path, config: Any, prompt: str, max_new_tokens: int) -> list[int]:
    """Token ids of the prompt as the model saw proteins in training, checked against its max_length."""
    import yaml

    from favor.data.alphabet import Alphabet, UnknownResidueError

    alphabet = Alphabet.protein()
    run_config = folder.parent / "config.yaml"
    data = (yaml.safe_load(run_config.read_text()) or {}).get("data", {}) if run_config.is_file() else {}
    try:
        residues = alphabet.encode(prompt, name="--prompt")
    except UnknownResidueError as error:
        raise ValueError(str(error).split(";")[0]) from None
    # Single-protein training wraps every protein in <cls> ... <eos>; concatenated streams have no <cls>.
    ids = residues if data.get("mode") == "concatenated" else [alphabet.cls_id, *residues]
    if not ids:
        raise ValueError("--prompt is empty and this model (concatenated training) has no start token")
    if config.position == "learned" and len(ids) + max_new_tokens > config.max_length:
        raise ValueError(
            f"prompt ({len(ids)} tokens) + --max-new-tokens {max_new_tokens} exceeds the model's max_length "
            f"{config.max_length}"
        )
    return ids


def _decoding(
    folder: Path, config: Any, prompt: str, max_new_tokens: int
) -> tuple[list[int], int | None, Callable[[list[int]], str], str]:
    """(prompt ids, end token id or None, decoder, prompt as shown) for the model's vocabulary: the
    vocab.json saved beside a character model, else the protein alphabet."""
    from favor.data.alphabet import Alphabet
    from favor.data.text import VOCAB_FILE, CharVocabulary

    if not (folder / VOCAB_FILE).is_file():
        alphabet = Alphabet.protein()
        ids = _prompt_ids(folder, config, prompt, max_new_tokens)
        return ids, alphabet.eos_id, alphabet.decode, prompt.upper()
    vocab = CharVocabulary.load(folder / VOCAB_FILE)
    ids = vocab.encode(prompt, name="--prompt").tolist()
    if not ids:
        raise ValueError("--prompt is empty: a character model continues a text of at least one character")
    if config.position == "learned" and len(ids) + max_new_tokens > config.max_length:
        raise ValueError(
            f"prompt ({len(ids)} characters) + --max-new-tokens {max_new_tokens} exceeds the model's "
            f"max_length {config.max_length}"
        )
    # Character models have no end token: they write exactly --max-new-tokens characters.
    return ids, None, vocab.decode, prompt


def _transcribe(
    model: Any, folder: Path, *, source: str, beam: int, max_new_tokens: int, sampling: dict
) -> dict:
    """Phonemes of the word ``source``: beam search (``beam > 1``), else greedy or sampled decoding."""
    import time

    import torch

    from favor.data.g2p import G2PVocabulary
    from favor.models.seq2seq_search import beam_search, make_scorer, sample_search

    vocab = G2PVocabulary()
    ids = vocab.encode_word(source, name="--source")
    if len(ids) > model.config.max_length:
        raise ValueError(f"--source has {len(ids)} letters; the model takes {model.config.max_length}")
    limit = min(max_new_tokens, model.config.max_length)
    device = next(model.parameters()).device
    scorer = make_scorer(model, torch.tensor([ids], device=device), bos_id=vocab.bos_id)
    start = time.perf_counter()
    if beam > 1:
        best = beam_search(scorer, beam_width=beam, eos_id=vocab.eos_id, max_new_tokens=limit)[0]
        tokens, log_prob = best.tokens, best.log_prob
    else:
        tokens = sample_search(scorer, eos_id=vocab.eos_id, max_new_tokens=limit, **sampling)[0]
        log_prob = None
    seconds = time.perf_counter() - start
    phonemes = vocab.decode_phonemes(tokens)
    return {
        "source": source.lower(),
        "phonemes": phonemes,
        "pronunciation": " ".join(phonemes),
        "beam": beam,
        "log_prob": log_prob,
        "seconds": seconds,
        "tokens_per_second": (len(tokens) + 1) / seconds if seconds > 0 else None,
        "model": str(folder),
    }


def generate_command(
    model_dir: Path,
    *,
    prompt: str = "",
    source: str | None = None,
    beam: int = 1,
    max_new_tokens: int = 100,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    json_: bool = False,
    device: str = "auto",
    threads: int = 1,
) -> int:
    """Continue a protein sequence or a text with a causal (clm) model, or transcribe a word (seq2seq).

    Prints the sequence as FASTA (a text model: the text), or with --json one object with the generated
    residues or characters and tokens_per_second. Protein generation stops at <eos> or after
    --max-new-tokens; a character model (vocab.json beside its weights) decodes with its own vocabulary.

    Args:
        model_dir: a model folder (config.json + model.safetensors) or a run folder holding model/.
        prompt (SEQ): the first residues (may be empty), or the text a character model continues.
        source (WORD): the word a grapheme-to-phoneme (seq2seq) model transcribes; prints its phonemes.
        beam (N): seq2seq models: beam-search width (1: greedy, or sampling with --temperature).
        max_new_tokens (N): most tokens to generate.
        temperature: sampling temperature; 0 is greedy (default 1 for causal LMs, 0 for seq2seq).
        top_k: sample among the k most likely tokens.
        top_p: sample from the smallest set of tokens whose probability reaches p (nucleus).
        seed: seed of the sampling generator.
        json_: print exactly one JSON object.
        device: auto (cuda if available), cpu, cuda or cuda:N.
        threads (N): torch CPU threads; one token at a time gains nothing from more on small models.
    """
    import time

    import torch

    from favor.inference import resolve_device
    from favor.models.generation import generate
    from favor.models.pretrained import load_pretrained

    torch.set_num_threads(threads)
    folder = _model_folder(Path(model_dir))
    model = load_pretrained(folder, device=resolve_device(device))
    if model.config.task == "seq2seq":
        if source is None:
            raise ValueError(f"{folder}: a seq2seq model transcribes a word: give --source WORD")
        if beam < 1:
            raise ValueError(f"--beam must be >= 1, got {beam}")
        sampling = {
            "temperature": 0.0 if temperature is None else temperature,
            "top_k": top_k,
            "top_p": top_p,
            "generator": torch.Generator().manual_seed(seed),
        }
        result = _transcribe(
            model, folder, source=source, beam=beam, max_new_tokens=max_new_tokens, sampling=sampling
        )
        if json_:
            _print_json(result)
        else:
            print(result["pronunciation"])
        return 0
    if source is not None or beam != 1:
        raise ValueError("--source and --beam are for seq2seq (grapheme-to-phoneme) models")
    temperature = 1.0 if temperature is None else temperature
    if model.config.task != "clm":
        raise ValueError(
            f"{folder}: favor generate needs a causal LM (task clm), not task {model.config.task!r}"
        )
    ids, eos_id, decode, shown = _decoding(folder, model.config, prompt, max_new_tokens)
    prompt_ids = torch.tensor([ids], dtype=torch.long, device=next(model.parameters()).device)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    out = generate(
        model,
        prompt_ids,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        generator=generator,
        eos_id=eos_id,
    )
    seconds = time.perf_counter() - start
    new = out[0, len(ids) :].tolist()
    stopped = eos_id is not None and eos_id in new
    new = new[: new.index(eos_id)] if stopped else new
    text = decode(new)
    result = {
        "prompt": shown,
        "generated": text,
        "sequence": shown + text,
        "new_tokens": len(new) + int(stopped),
        "stopped_at_eos": stopped,
        "seconds": seconds,
        "tokens_per_second": (len(new) + int(stopped)) / seconds if seconds > 0 else None,
        "model": str(folder),
    }
    if json_:
        _print_json(result)
    else:
        rate = result["tokens_per_second"] or 0.0
        print(f">generated new_tokens={result['new_tokens']} tokens_per_second={rate:.1f}")
        print(result["sequence"])
    return 0
