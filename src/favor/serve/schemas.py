"""Request and response bodies (pydantic): what the OpenAPI schema at ``/openapi.json`` documents.

Requests reject unknown keys (a misspelt field is an error, not a silent default). Limits that depend on
the loaded model or the server settings (residues per sequence, sequences per request) are checked by
the route itself, with a message naming the field, sequence index and limit.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

__all__ = [
    "EmbedRequest",
    "EmbedResponse",
    "FillMaskRequest",
    "FillMaskResponse",
    "ScoreRequest",
    "ScoreResponse",
    "GenerateRequest",
    "GenerateResponse",
    "PredictRequest",
    "PredictResponse",
    "ContactsRequest",
    "ContactsResponse",
    "HealthResponse",
    "ErrorResponse",
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Documented in the schema (clients and fuzzers see which strings make sense) but checked by the routes,
# whose messages name the sequence, the position and the character.
RESIDUES = {"pattern": "^[A-Za-z]+$"}
MASKED = {"pattern": "^([A-Za-z_]|<mask>)+$"}


class EmbedRequest(_Request):
    sequences: list[Annotated[str, Field(json_schema_extra=RESIDUES)]] = Field(
        min_length=1, description="Protein sequences (residue letters, any case)."
    )
    layer: StrictInt | None = Field(
        default=None,
        description="Representation layer: 0 = embeddings, n_layers = last (default); negative counts back.",
    )
    per_residue: StrictBool = Field(
        default=False, description="Also return each residue's vector (residue_embeddings)."
    )


class EmbedResponse(BaseModel):
    embeddings: list[list[float]] = Field(
        description="One d_model vector per sequence: mean over its residues."
    )
    layer: int
    dim: int
    residue_embeddings: list[list[list[float]]] | None = Field(
        default=None,
        description="With per_residue: per sequence, one d_model vector per residue (no <cls> or <eos>).",
    )


class FillMaskRequest(_Request):
    sequence: str = Field(
        min_length=1,
        json_schema_extra=MASKED,
        description="A sequence with masked positions written <mask> or _.",
    )
    top_k: StrictInt = Field(default=5, ge=1, le=64, description="Candidates per masked position.")


class Candidate(BaseModel):
    residue: str
    probability: float


class MaskPrediction(BaseModel):
    position: int = Field(description="1-based residue position (a mask counts as one residue).")
    predictions: list[Candidate]


class FillMaskResponse(BaseModel):
    masks: list[MaskPrediction]
    sequence: str = Field(description="The sequence with every mask replaced by its top candidate.")


class ScoreRequest(_Request):
    sequence: str = Field(min_length=1, json_schema_extra=RESIDUES, description="Wild-type sequence.")
    mutations: list[str] = Field(
        min_length=1,
        description="Mutations like 'A23G' (1-based position); multi-site mutants joined by ':'.",
    )


class MutationScore(BaseModel):
    mutation: str
    score: float = Field(description="Masked-marginal log p(mutant) - log p(wild type), summed over sites.")


class ScoreResponse(BaseModel):
    scores: list[MutationScore]


class GenerateRequest(_Request):
    prompt: str = Field(
        default="",
        description="Residues to continue (may be empty), or, for a character model, the text to continue.",
    )
    max_new_tokens: StrictInt = Field(
        default=100,
        ge=1,
        description="Most residues to sample (stops at <eos>); characters: exactly this many.",
    )
    temperature: float = Field(default=1.0, ge=0.0, le=100.0, description="0 is greedy.")
    top_k: StrictInt | None = Field(default=None, ge=1)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: StrictInt | None = Field(
        default=None, ge=0, lt=2**63, description="Sampling seed; drawn and returned if absent."
    )


class GenerateResponse(BaseModel):
    sequence: str = Field(description="Prompt followed by the generated residues (or characters).")
    generated: str
    finished: bool = Field(description="True when the model produced <eos>.")
    seed: int


class PredictRequest(_Request):
    sequences: list[Annotated[str, Field(json_schema_extra=RESIDUES)]] = Field(min_length=1)


class Prediction(BaseModel):
    label: int | None = None
    labels: list[int] | None = None
    probabilities: list[float] | list[list[float]] | None = None
    values: list[float] | list[list[float]] | None = None
    contacts: list[list[float]] | None = None


class PredictResponse(BaseModel):
    task: str
    predictions: list[Prediction]


class ContactsRequest(_Request):
    sequence: str = Field(min_length=1, json_schema_extra=RESIDUES, description="One protein sequence.")


class ContactsResponse(BaseModel):
    contacts: list[list[float]] = Field(
        description="L x L contact probabilities over the residues (symmetric, in [0, 1])."
    )
    length: int = Field(description="L, the number of residues.")


class HealthResponse(BaseModel):
    status: str
    model: str
    backbone: str
    task: str
    causal: bool
    n_layers: int
    d_model: int
    max_residues: int
    residues: str | None = Field(
        default=None, description="The alphabet's residue letters; null for a character model."
    )
    routes: list[str] = Field(description="The POST routes this model serves.")


class ErrorResponse(BaseModel):
    detail: str
