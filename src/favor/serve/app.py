"""The FastAPI application: routes, validation errors, body-size limit and metrics.

    app = create_app("runs/mlm")            # a model folder or a training run directory
    # POST /embed /fill-mask /score /generate /predict /contacts
    # GET /health /metrics /openapi.json, GET / (the page)

Status codes: 200 on success; 400 for a route the loaded model has no head for (e.g. /generate on a
masked LM), or a Host header the server does not answer to; 409 for /contacts on a model without a fitted
contact regression; 408 for a body not sent within
``body_timeout_s``; 413 for a body over ``max_body_bytes``; 422 for an invalid request (malformed JSON, a
wrong type, an unknown residue, an empty or over-long sequence, too many sequences, sites or response
numbers, a mutation that does not fit the sequence); 503 with ``Retry-After`` when the work queue is full,
the result is not ready within ``request_timeout_s``, or the server is shutting down. Every body is JSON:
``{"detail": "<message naming the field>"}``; an unexpected failure is a JSON 500 without internals.

Responses are encoded to JSON in the inference worker, never on the event loop, and a request whose
client has gone is dropped from the queue before it runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from favor.folders import ServedModel, load_served_model
from favor.inference import (
    EngineLimits,
    InferenceEngine,
    InputError,
    NoContactRegression,
    TaskError,
    contact_regression_of,
)
from favor.jsonsafe import json_safe
from favor.serve.batcher import MicroBatcher, Overloaded
from favor.serve.metrics import CONTENT_TYPE, Metrics
from favor.serve.page import add_page_routes
from favor.serve.schemas import (
    ContactsRequest,
    ContactsResponse,
    EmbedRequest,
    EmbedResponse,
    ErrorResponse,
    FillMaskRequest,
    FillMaskResponse,
    GenerateRequest,
    GenerateResponse,
    HealthResponse,
    PredictRequest,
    PredictResponse,
    ScoreRequest,
    ScoreResponse,
)
from favor.serve.settings import ServeSettings
from favor.serve.tasks import (
    PREDICT_TASKS,
    contacts_job,
    embed_job,
    fill_mask_job,
    generate_job,
    likelihood_job,
    predict_job,
    score_job,
)

__all__ = ["ServeSettings", "create_app"]

_ERRORS = {
    400: {"model": ErrorResponse, "description": "The model has no head for this route."},
    409: {"model": ErrorResponse, "description": "The model has no fitted contact regression (/contacts)."},
    413: {"model": ErrorResponse, "description": "Request body too large."},
    422: {"model": ErrorResponse, "description": "Invalid request; the message names the field."},
    503: {"model": ErrorResponse, "description": "Busy or shutting down; retry after Retry-After seconds."},
}
# The HTTP methods /metrics counts by name; any other is counted as "other" (a closed label set).
_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}
# Status recorded for a request whose client disconnected before a response was sent.
CLIENT_CLOSED = 499


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def render_json(result: Any) -> bytes:
    """A route's result as JSON bytes (NaN and inf become null): runs in the inference worker."""
    try:
        return json.dumps(result, allow_nan=False, separators=(",", ":")).encode()
    except ValueError:
        return json.dumps(json_safe(result), separators=(",", ":")).encode()


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        if item.get("type") == "json_invalid":
            reason = (item.get("ctx") or {}).get("error", "invalid JSON")
            parts.append(f"malformed JSON body: {reason}")
            continue
        where = ".".join(str(x) for x in item.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {item.get('msg', 'invalid value')}")
    return "; ".join(parts) or "invalid request"


class BodyLimitMiddleware:
    """Answer 413 to a request body over ``max_bytes`` (declared or streamed) before the app reads it."""

    def __init__(self, app, *, max_bytes: int, timeout_s: float = 30.0) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            status = 413 if declared.isdigit() else 400
            message = (
                f"request body of {int(declared)} bytes is over the limit of {self.max_bytes} bytes"
                if status == 413
                else "invalid Content-Length header"
            )
            return await _error(status, message)(scope, receive, send)
        chunks, size, more = [], 0, True
        deadline = time.monotonic() + self.timeout_s
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                message = f"request body not received within {self.timeout_s:g} s"
                return await _error(408, message, {"Connection": "close"})(scope, receive, send)
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                return await _error(413, f"request body is over the limit of {self.max_bytes} bytes")(
                    scope, receive, send
                )
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


class MetricsMiddleware:
    """Count every request by route and status and time it (unknown paths count as ``other``)."""

    def __init__(self, app, *, metrics: Metrics, routes: set[str]) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), CLIENT_CLOSED

        async def record(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            route = scope["path"] if scope["path"] in self.routes else "other"
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.observe_request(route, method, status, time.perf_counter() - start)


class HostCheckMiddleware:
    """Answer 400 to a request whose Host header is not one the server answers to (DNS rebinding: a web
    page on another site that resolves its own name to 127.0.0.1 cannot talk to a loopback server)."""

    def __init__(self, app, *, allowed: tuple[str, ...]) -> None:
        self.app, self.allowed = app, {h.lower() for h in allowed}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host  # drop the port
        if name.startswith("[") and "]" in name:
            name = name[: name.index("]") + 1]
        if name not in self.allowed:
            message = (
                f"Host header {host[:100]!r} is not served here; allowed: {', '.join(sorted(self.allowed))}"
            )
            return await _error(400, message)(scope, receive, send)
        return await self.app(scope, receive, send)


def _served_routes(task: str, *, text: bool = False, contacts: bool = False) -> list[str]:
    if text:  # a character model: text generation only
        return ["/generate"] if task == "clm" else []
    routes = ["/embed"]
    if task == "mlm":
        routes += ["/fill-mask", "/score"]
    if task == "clm":
        routes.append("/generate")
    if task in PREDICT_TASKS:
        routes.append("/predict")
    if contacts or task == "contact":
        routes.append("/contacts")
    return routes


def create_app(
    model: str | os.PathLike | ServedModel,
    *,
    settings: ServeSettings | None = None,
    device: str = "cpu",
) -> FastAPI:
    """Build the application for ``model`` (a path, see `favor.folders`, or a loaded `ServedModel`).

    ``app.state`` holds the `InferenceEngine` (``engine``), the `MicroBatcher` (``batcher``), the
    `Metrics` (``metrics``) and the settings. The batcher's worker thread starts with the app's lifespan
    (or on the first request) and stops when the app shuts down.
    """
    settings = settings or ServeSettings()
    served = model if isinstance(model, ServedModel) else load_served_model(model, device=device)
    limits = EngineLimits(
        max_residues=settings.max_residues,
        max_batch_tokens=settings.max_batch_tokens,
        max_batch_rows=settings.max_batch_rows,
    )
    engine = InferenceEngine(served, limits=limits)
    config = served.config
    # Read and checked at start-up, like the weights: a damaged regression file fails here, naming it.
    regression = None if config.task == "contact" else contact_regression_of(served)
    metrics = Metrics(
        model_info={"backbone": config.backbone, "task": config.task, "causal": str(config.causal)}
    )
    engine.on_forward = metrics.observe_forward
    batcher = MicroBatcher(
        lambda key, rows: engine.forward_rows(rows, output=key[0], layer=key[1]),
        max_rows=settings.max_batch_rows,
        max_wait_s=settings.max_wait_ms / 1000.0,
        on_batch=metrics.observe_batch,
        render=render_json,
        max_queue=settings.max_queue,
    )
    metrics.pending = lambda: batcher.pending

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        batcher.close()

    app = FastAPI(
        title="favor",
        summary="Protein language model inference: embeddings, masked-residue prediction, mutation scores.",
        version="0.1.0",
        lifespan=lifespan,
        # The interactive docs pages load their scripts from a CDN: off, so nothing leaves the machine.
        # The schema stays at /openapi.json.
        docs_url=None,
        redoc_url=None,
    )
    app.state.engine, app.state.batcher = engine, batcher
    app.state.metrics, app.state.settings = metrics, settings
    app.state.contact_regression = regression
    _add_error_handlers(app)
    monitor = _Monitor(engine, batcher, metrics, settings.monitor_every)
    _add_model_routes(app, engine, batcher, settings, monitor)
    _add_service_routes(app, engine, metrics)
    add_page_routes(app)  # GET /: the web page (favor.serve.page)
    routes = {route.path for route in app.routes}
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s
    )
    if settings.allowed_hosts is not None:
        app.add_middleware(HostCheckMiddleware, allowed=settings.allowed_hosts)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=routes)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(error))

    @app.exception_handler(InputError)
    async def _input_error(request: Request, error: InputError) -> JSONResponse:
        return _error(422, str(error))

    @app.exception_handler(NoContactRegression)
    async def _no_regression(request: Request, error: NoContactRegression) -> JSONResponse:
        return _error(409, str(error))

    @app.exception_handler(TaskError)
    async def _task_error(request: Request, error: TaskError) -> JSONResponse:
        return _error(400, str(error))

    @app.exception_handler(Overloaded)
    async def _overloaded(request: Request, error: Overloaded) -> JSONResponse:
        return _error(503, str(error), {"Retry-After": str(error.retry_after_s)})

    @app.exception_handler(Exception)
    async def _internal(request: Request, error: Exception) -> JSONResponse:
        # A bug, not the client's fault: a JSON body without internals (the log has the traceback).
        return _error(500, "internal error while answering this request")


async def _answer(batcher: MicroBatcher, job, settings: ServeSettings) -> Response:
    body = await batcher.submit(job, timeout_s=settings.request_timeout_s)
    return Response(content=body, media_type="application/json")


class _Monitor:
    """Drift monitoring of what clients send (favor_input_* on /metrics): lengths and composition of every
    valid request's sequences, and for one request in ``settings.monitor_every`` (masked LMs) the
    likelihood under the model, computed by a background job that never delays the response."""

    def __init__(self, engine: InferenceEngine, batcher: MicroBatcher, metrics: Metrics, every: int) -> None:
        self.engine, self.batcher, self.metrics, self.every = engine, batcher, metrics, every
        self.count = 0
        self.tasks: set[asyncio.Task] = set()
        alphabet = engine.alphabet
        self.letters = (
            frozenset(alphabet.tokens[t] for t in alphabet.residue_ids) if alphabet else frozenset()
        )

    def observe(self, sequences: list[str]) -> None:
        if self.engine.alphabet is None:
            return
        self.metrics.observe_inputs(sequences, self.letters)
        self.count += 1
        if not self.every or self.count % self.every:
            return
        try:
            job = likelihood_job(self.engine, sequences, self.metrics.observe_likelihood)
        except Exception:  # the request itself was validated; monitoring never fails it
            return
        if job is None:
            return
        task = asyncio.ensure_future(self._run(job))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, job) -> None:
        try:
            await self.batcher.submit(job, timeout_s=60.0)
        except Exception:  # busy or shutting down: this sample is skipped
            pass


def _add_model_routes(
    app: FastAPI, engine: InferenceEngine, batcher: MicroBatcher, settings: ServeSettings, monitor: _Monitor
) -> None:
    # Results are plain JSON-ready dicts: returning a JSONResponse skips re-validating every float.
    @app.post("/embed", response_model=EmbedResponse, responses=_ERRORS)
    async def embed(body: EmbedRequest) -> JSONResponse:
        """Mean-pooled residue embeddings of one layer (default: the last) for each sequence."""
        job = embed_job(
            engine,
            body.sequences,
            body.layer,
            max_sequences=settings.max_sequences,
            max_values=settings.max_response_values,
            per_residue=body.per_residue,
        )
        monitor.observe(body.sequences)
        return await _answer(batcher, job, settings)

    @app.post("/fill-mask", response_model=FillMaskResponse, responses=_ERRORS)
    async def fill_mask(body: FillMaskRequest) -> JSONResponse:
        """Top-k residues with probabilities at every ``<mask>`` / ``_`` position (masked LMs)."""
        return await _answer(batcher, fill_mask_job(engine, body.sequence, body.top_k), settings)

    @app.post("/score", response_model=ScoreResponse, responses=_ERRORS)
    async def score(body: ScoreRequest) -> JSONResponse:
        """Masked-marginal log-likelihood ratio of each mutation (masked LMs)."""
        job = score_job(
            engine,
            body.sequence,
            body.mutations,
            max_mutations=settings.max_mutations,
            max_sites=settings.max_sites,
        )
        monitor.observe([body.sequence])
        return await _answer(batcher, job, settings)

    @app.post("/generate", response_model=GenerateResponse, responses=_ERRORS)
    async def generate(body: GenerateRequest) -> JSONResponse:
        """Sample a continuation of the prompt (causal LMs); reproducible from the returned seed."""
        if body.max_new_tokens > settings.max_new_tokens:
            raise InputError(
                f"max_new_tokens: {body.max_new_tokens} is over the limit of {settings.max_new_tokens}"
            )
        job = generate_job(
            engine,
            prompt=body.prompt,
            max_new_tokens=body.max_new_tokens,
            temperature=body.temperature,
            top_k=body.top_k,
            top_p=body.top_p,
            seed=body.seed,
        )
        return await _answer(batcher, job, settings)

    @app.post("/predict", response_model=PredictResponse, responses=_ERRORS)
    async def predict(body: PredictRequest) -> JSONResponse:
        """Outputs of a fine-tuned head: per sequence, per residue (token heads) or per pair (contacts)."""
        job = predict_job(
            engine,
            body.sequences,
            max_sequences=settings.max_sequences,
            max_values=settings.max_response_values,
        )
        monitor.observe(body.sequences)
        return await _answer(batcher, job, settings)

    @app.post("/contacts", response_model=ContactsResponse, responses=_ERRORS)
    async def contacts(body: ContactsRequest) -> JSONResponse:
        """Residue contact probabilities (L x L, symmetric): the attention maps combined by the model's
        fitted regression (favor contacts fit), or a contact model's supervised head; 409 without either."""
        regression = app.state.contact_regression
        if engine.config.task != "contact" and regression is None:
            raise NoContactRegression(
                "this model has no contact regression; fit one with: favor contacts fit MODEL, then restart"
            )
        job = contacts_job(engine, body.sequence, regression, max_values=settings.max_response_values)
        monitor.observe([body.sequence])
        return await _answer(batcher, job, settings)


def _model_name(path) -> str:
    """What /health calls the model: its folder's name (the run's, for RUN_DIR/model), not a full path."""
    from pathlib import Path

    path = Path(path)
    return path.parent.name if path.name == "model" else path.name


def _residue_letters(engine: InferenceEngine) -> str | None:
    """The alphabet's residue letters (what /score accepts as mutants); None for a character model."""
    alphabet = engine.alphabet
    return None if alphabet is None else "".join(alphabet.tokens[i] for i in alphabet.residue_ids)


def _add_service_routes(app: FastAPI, engine: InferenceEngine, metrics: Metrics) -> None:
    config = engine.config

    @app.get("/health", response_model=HealthResponse)
    async def health() -> dict:
        """Liveness and a description of the loaded model."""
        return {
            "status": "ok",
            "model": _model_name(engine.served.path),
            "backbone": config.backbone,
            "task": config.task,
            "causal": config.causal,
            "n_layers": config.n_layers,
            "d_model": config.d_model,
            "max_residues": engine.max_residues,
            "residues": _residue_letters(engine),
            "routes": _served_routes(
                config.task,
                text=engine.vocabulary is not None,
                contacts=app.state.contact_regression is not None,
            ),
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        """Prometheus text exposition: requests, errors, latency, batch sizes, queue length."""
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)
