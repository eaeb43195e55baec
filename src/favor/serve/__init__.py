"""HTTP inference server for favor models (FastAPI + uvicorn; install the ``serve`` extra).

    run_server("runs/mlm", host="127.0.0.1", port=8000)     # blocks; or: favor serve runs/mlm
    app = create_app("runs/mlm")                              # the ASGI app, e.g. for a test client

Routes: POST /embed /fill-mask /score /generate /predict, GET /health /metrics /openapi.json.
Concurrent requests are micro-batched into shared forward passes in one worker thread (see
`favor.serve.batcher`). Details, limits and error codes: docs/serving.md.

`favor.folders` (model folder / run directory resolution) needs only torch; the rest needs FastAPI.
"""

from favor.folders import ModelLoadError, ServedModel, load_served_model, resolve_model_dir

__all__ = [
    "ModelLoadError",
    "ServedModel",
    "ServeSettings",
    "create_app",
    "load_served_model",
    "resolve_model_dir",
    "run_server",
]


def __getattr__(name: str):
    # FastAPI and uvicorn are optional: import them only when the server itself is asked for.
    if name == "ServeSettings":
        from favor.serve.settings import ServeSettings

        return ServeSettings
    if name == "create_app":
        from favor.serve.app import create_app

        return create_app
    if name == "run_server":
        from favor.serve import server

        return getattr(server, name)
    raise AttributeError(f"module 'favor.serve' has no attribute {name!r}")
