"""The web page of ``favor serve``: ``GET /`` and its assets under ``/static/``, shipped in the package.

Everything the page loads comes from this server (the vendored Chart.js included, see
``static/vendor/README.md``), so it works offline and behind a firewall; the Content-Security-Policy header
makes the browser refuse anything else. Assets are an allowlist read once at start-up and served with
fixed content types (not guessed from the machine's MIME table, which on some systems maps ``.js`` to
``text/plain``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

__all__ = ["STATIC", "PAGE_HEADERS", "add_page_routes", "static_assets"]

STATIC = Path(__file__).with_name("static")
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
PAGE_HEADERS = {
    # Only this origin: no CDN, no outside fetch, no inline script; blob: for the embedding download.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def static_assets(root: Path = STATIC) -> dict[str, tuple[bytes, str]]:
    """``{"vendor/chart.umd.min.js": (bytes, content type), ...}``: the scripts and stylesheets under root."""
    return {
        path.relative_to(root).as_posix(): (path.read_bytes(), _TYPES[path.suffix])
        for path in sorted(root.rglob("*"))
        if path.suffix in (".js", ".css") and path.is_file()
    }


def add_page_routes(app: FastAPI) -> None:
    """``GET /`` (the page) and ``GET /static/{name}`` (its scripts and styles); not in the API schema."""
    index = (STATIC / "index.html").read_bytes()
    assets = static_assets()

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(index, media_type=_TYPES[".html"], headers=PAGE_HEADERS)

    @app.get("/static/{name:path}", include_in_schema=False)
    async def asset(name: str) -> Response:
        found = assets.get(name)
        if found is None:
            return JSONResponse({"detail": f"no such file: /static/{name[:100]}"}, status_code=404)
        return Response(found[0], media_type=found[1], headers=PAGE_HEADERS)
