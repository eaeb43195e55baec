"""What each route computes: validation and row building (event loop), and the result (worker thread).

Each ``*_job`` function checks a request against the model, raising `InputError` (422) or `TaskError`
(400) with a message naming the field, and returns a `Job` whose ``finish`` turns the rows' outputs into
the JSON-ready response. Residue positions in requests and responses are 1-based, as in mutation names.
"""

from __future__ import annotations

import secrets

import torch

from favor.data.text import UnknownCharacterError
from favor.inference import (
    SEQUENCE_TASKS,
    TOKEN_TASKS,
    InferenceEngine,
    InputError,
    parse_mutation,
    predict_contacts,
)
from favor.models import sample_next_token
from favor.serve.batcher import Job

__all__ = [
    "PREDICT_TASKS",
    "likelihood_job",
    "embed_job",
    "fill_mask_job",
    "score_job",
    "predict_job",
    "contacts_job",
    "generate_job",
    "parse_mutation",
]

PREDICT_TASKS = (*SEQUENCE_TASKS, *TOKEN_TASKS, "contact")


def check_response_size(values: int, limit: int, *, what: str) -> None:
    """Refuse (422) a request whose response would hold more than ``limit`` numbers, before any work."""
    if values > limit:
        raise InputError(
            f"{what}: the response would hold {values:,} numbers, over the server's limit of {limit:,}; "
            "send fewer or shorter sequences"
        )


def _check_count(engine: InferenceEngine, sequences: list[str], limit: int) -> None:
    if not sequences:
        raise InputError("sequences: empty list; send at least one sequence")
    if len(sequences) > limit:
        raise InputError(f"sequences: {len(sequences)} sequences, over the limit of {limit} per request")


def embed_job(
    engine: InferenceEngine,
    sequences: list[str],
    layer: int | None,
    *,
    max_sequences: int,
    max_values: int = 1_000_000,
    per_residue: bool = False,
) -> Job:
    """Mean over the real residues (not <cls>, <eos> or padding) of one layer's states; with
    ``per_residue`` also every residue's state (``residue_embeddings``, one (n, D) list per sequence)."""
    _check_count(engine, sequences, max_sequences)
    resolved = engine.resolve_layer(layer)
    vectors = len(sequences) + (sum(len(s) for s in sequences) if per_residue else 0)
    check_response_size(vectors * engine.config.d_model, max_values, what="sequences")
    rows = [engine.encode(s, where=f"sequences[{i}]") for i, s in enumerate(sequences)]

    def finish(states: list[torch.Tensor]) -> dict:
        embeddings = [state[1:-1].mean(dim=0).tolist() for state in states]  # (n + 2, D) -> (D,)
        body = {"embeddings": embeddings, "layer": resolved, "dim": engine.config.d_model}
        if per_residue:
            body["residue_embeddings"] = [state[1:-1].tolist() for state in states]
        return body

    return Job(rows=rows, key=("hidden", resolved), finish=finish)


def fill_mask_job(engine: InferenceEngine, sequence: str, top_k: int) -> Job:
    """Top-k residues per masked position, probabilities over residue tokens (specials excluded)."""
    engine.require_task("POST /fill-mask", ("mlm",), "a masked language model")
    row = engine.encode(sequence, where="sequence", masks=True)
    positions = (row == engine.alphabet.mask_id).nonzero().flatten().tolist()
    if not positions:
        raise InputError("sequence: no masked position; mark residues to predict with <mask> or _")
    k = min(top_k, len(engine.alphabet.residue_ids))

    def finish(outputs: list[torch.Tensor]) -> dict:
        probs = engine.residue_log_probs(outputs[0][positions]).exp()  # (n_masks, n_residues)
        top = probs.topk(k, dim=-1)
        masks, letters = [], [engine.alphabet.tokens[int(t)] for t in row]
        for j, position in enumerate(positions):
            candidates = [
                {"residue": engine.residue(int(c)), "probability": float(p)}
                for p, c in zip(top.values[j], top.indices[j], strict=True)
            ]
            letters[position] = candidates[0]["residue"]
            masks.append({"position": position, "predictions": candidates})
        return {"masks": masks, "sequence": "".join(letters[1:-1])}

    return Job(rows=[row], key=("head", None), finish=finish)


def score_job(
    engine: InferenceEngine, sequence: str, mutations: list[str], *, max_mutations: int, max_sites: int = 4096
) -> Job:
    """Masked-marginal scores: ``log p(mutant) - log p(wild type)`` with the site masked, summed over sites.

    One row per distinct mutated position (the wild type with that position masked), as in Meier et al.
    2021 (ESM-1v); a multi-site mutant ``A23G:K45R`` scores the sum of its sites.
    """
    engine.require_task("POST /score", ("mlm",), "a masked language model")
    if not mutations:
        raise InputError("mutations: empty list; send at least one mutation such as 'A23G'")
    if len(mutations) > max_mutations:
        raise InputError(f"mutations: {len(mutations)} mutations, over the limit of {max_mutations}")
    wild_type = engine.encode(sequence, where="sequence")
    # Every site costs parsing and (if new) a forward row: bound them before reading any mutation in full.
    sites_total = sum(m.count(":") + 1 for m in mutations)
    if sites_total > max_sites:
        raise InputError(f"mutations: {sites_total} sites in all, over the limit of {max_sites} per request")
    parsed = [parse_mutation(m, sequence, where=f"mutations[{i}]") for i, m in enumerate(mutations)]
    letters = {engine.alphabet.tokens[t] for t in engine.alphabet.residue_ids}
    for i, sites in enumerate(parsed):
        for _, _, mutant in sites:
            if mutant not in letters:
                raise InputError(
                    f"mutations[{i}] {mutations[i]!r}: {mutant!r} is not a residue of the alphabet"
                )
    positions = sorted({p for sites in parsed for p, _, _ in sites})
    rows = []
    for position in positions:
        row = wild_type.clone()
        row[position] = engine.alphabet.mask_id
        rows.append(row)
    column = {tid: j for j, tid in enumerate(engine.alphabet.residue_ids)}

    def finish(outputs: list[torch.Tensor]) -> dict:
        site_log_probs = {
            p: engine.residue_log_probs(out[p]) for p, out in zip(positions, outputs, strict=True)
        }
        scores = []
        for text, sites in zip(mutations, parsed, strict=True):
            total = 0.0
            for position, wild, mutant in sites:
                log_probs = site_log_probs[position]
                mut = column[engine.alphabet.token_to_id(mutant)]
                wt = column[engine.alphabet.token_to_id(wild)]
                total += float(log_probs[mut] - log_probs[wt])
            scores.append({"mutation": text, "score": total})
        return {"scores": scores}

    return Job(rows=rows, key=("head", None), finish=finish)


def likelihood_job(engine: InferenceEngine, sequences: list[str], observe) -> Job | None:
    """Monitoring: each sequence with every 8th residue masked, one forward pass; ``observe(mean log p)``
    per sequence of the true residues at the masked positions. None for models that are not masked LMs."""
    if engine.config.task != "mlm" or engine.alphabet is None:
        return None
    rows, positions = [], []
    for i, sequence in enumerate(sequences):
        row = engine.encode(sequence, where=f"sequences[{i}]")
        sites = torch.arange(1 + i % 8, len(row) - 1, 8)
        if len(sites) == 0:
            continue
        masked = row.clone()
        masked[sites] = engine.alphabet.mask_id
        rows.append(masked)
        positions.append((sites, row[sites]))
    if not rows:
        return None
    column = torch.full((engine.alphabet.vocab_size,), -1, dtype=torch.long)
    column[torch.tensor(engine.alphabet.residue_ids)] = torch.arange(len(engine.alphabet.residue_ids))

    def finish(outputs: list[torch.Tensor]) -> dict:
        for out, (sites, truth) in zip(outputs, positions, strict=True):
            log_probs = engine.residue_log_probs(out[sites])
            index = column[truth]
            known = index >= 0  # X, B, Z ... are not scored
            if known.any():
                observe(float(log_probs[known].gather(1, index[known, None]).mean()))
        return {}

    return Job(rows=rows, key=("head", None), finish=finish)


def predict_job(
    engine: InferenceEngine, sequences: list[str], *, max_sequences: int, max_values: int = 1_000_000
) -> Job:
    """The fine-tuned head's outputs per sequence (per residue for token heads, per pair for contacts)."""
    engine.require_task("POST /predict", PREDICT_TASKS, "a fine-tuned head")
    _check_count(engine, sequences, max_sequences)
    task = engine.config.task
    per_residue = engine.config.num_labels if task in TOKEN_TASKS else 0
    values = sum(
        len(s) ** 2
        if task == "contact"
        else len(s) * per_residue
        if per_residue
        else engine.config.num_labels
        for s in sequences
    )
    check_response_size(values, max_values, what="sequences")
    rows = [engine.encode(s, where=f"sequences[{i}]") for i, s in enumerate(sequences)]
    task, multi_label = engine.config.task, engine.config.multi_label

    def one(output: torch.Tensor) -> dict:
        if task == "sequence_regression":
            return {"values": output.tolist()}
        if task == "sequence_classification":
            if multi_label:
                probs = output.sigmoid()
                return {"probabilities": probs.tolist(), "labels": (probs > 0.5).nonzero().flatten().tolist()}
            probs = output.softmax(dim=-1)
            return {"probabilities": probs.tolist(), "label": int(probs.argmax())}
        residues = output[1:-1]  # drop <cls> and <eos>
        if task == "token_regression":
            return {"values": residues.tolist()}
        if task == "token_classification":
            probs = residues.softmax(dim=-1)
            return {"probabilities": probs.tolist(), "labels": probs.argmax(dim=-1).tolist()}
        return {"contacts": residues[:, 1:-1].sigmoid().tolist()}

    def finish(outputs: list[torch.Tensor]) -> dict:
        return {"task": task, "predictions": [one(o) for o in outputs]}

    return Job(rows=rows, key=("head", None), finish=finish)


def contacts_job(engine: InferenceEngine, sequence: str, regression, *, max_values: int = 1_000_000) -> Job:
    """``{"contacts": L x L probabilities, "length": L}`` for one sequence: attention maps combined by the
    model's fitted regression, or a contact model's supervised head (`favor.tasks.attention_contacts`)."""
    check_response_size(len(sequence) ** 2, max_values, what="sequence")
    engine.encode(sequence, where="sequence")  # validate on the event loop: 422 before any work

    def call() -> dict:
        contacts = predict_contacts(engine, sequence, regression=regression, where="sequence")
        return {"contacts": contacts.round(5).tolist(), "length": len(sequence)}

    return Job(call=call)


def _generation_setup(engine: InferenceEngine, prompt: str, max_new_tokens: int):
    """(prompt ids, banned ids, end id or None, decoder, prompt as echoed) for the model's vocabulary."""
    vocab = engine.vocabulary
    if vocab is None:
        ids = (
            engine.encode(prompt, where="prompt", add_eos=False)
            if prompt
            else torch.tensor([engine.alphabet.cls_id])
        )
        # Room for max_residues residues plus <cls> and <eos>.
        limit, room, given, what = engine.max_residues + 2, engine.max_residues, len(ids) - 1, "residues"
        alphabet = engine.alphabet
        banned = [alphabet.pad_id, alphabet.mask_id, alphabet.cls_id]
        setup = ids, banned, alphabet.eos_id, alphabet.decode, prompt.upper()
    else:
        if not prompt:
            raise InputError("prompt: empty; a character model continues a text of at least one character")
        try:
            ids = torch.from_numpy(vocab.encode(prompt, name="prompt"))
        except UnknownCharacterError as error:
            raise InputError(str(error).split(";")[0]) from None
        limit = room = engine.config.max_length
        given, what = len(ids), "characters"
        # Character models have no end token: they write exactly max_new_tokens characters.
        setup = ids, [vocab.pad_id, vocab.unk_id], None, vocab.decode, prompt
    if engine.config.position == "learned" and len(ids) + max_new_tokens > limit:
        raise InputError(
            f"max_new_tokens: {given} prompt {what} + {max_new_tokens} new tokens exceed the "
            f"model's {room} {what}"
        )
    return setup


def generate_job(
    engine: InferenceEngine,
    *,
    prompt: str,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    seed: int | None,
) -> Job:
    """Sample residues after ``<cls> prompt`` until ``<eos>`` or ``max_new_tokens`` (causal LM only).

    ``<pad>``, ``<mask>`` and ``<cls>`` are never sampled. A character model (see `favor.folders`)
    continues the text ``prompt`` by exactly ``max_new_tokens`` characters, never ``<pad>`` or ``<unk>``.
    The seed (drawn when not given) is returned, so any response can be reproduced.
    """
    engine.require_task("POST /generate", ("clm",), "a causal language model")
    ids, banned, end_id, decode, shown = _generation_setup(engine, prompt, max_new_tokens)
    seed = secrets.randbits(31) if seed is None else seed

    def call() -> dict:
        generator = torch.Generator().manual_seed(seed)
        new: list[int] = []
        finished = False
        logits, state = engine.model.step(ids[None].to(engine.device), None)
        for _ in range(max_new_tokens):
            last = logits[:, -1].float()
            last[:, banned] = float("-inf")
            token = int(
                sample_next_token(
                    last, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
                )
            )
            if token == end_id:
                finished = True
                break
            new.append(token)
            logits, state = engine.model.step(torch.tensor([[token]], device=engine.device), state)
        generated = decode(new)
        return {
            "sequence": shown + generated,
            "generated": generated,
            "finished": finished,
            "seed": seed,
        }

    return Job(call=call)
