"""The web page's HTTP side (no browser): GET / and its assets, their content types and security headers,
and the two API additions the page needs (per-residue /embed, the alphabet's letters in /health)."""

import re

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from favor.data import Alphabet  # noqa: E402
from favor.serve import ServeSettings, create_app, load_served_model  # noqa: E402
from favor.serve.page import STATIC, static_assets  # noqa: E402
from tiny_models import save_tiny  # noqa: E402

LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("mlm"), backbone="performer", task="mlm")


@pytest.fixture(scope="module")
def client(mlm_dir):
    settings = ServeSettings(max_wait_ms=0, allowed_hosts=LOOPBACK, max_response_values=2000)
    with TestClient(create_app(mlm_dir, settings=settings), base_url="http://127.0.0.1:8000") as c:
        yield c


def test_the_page_and_every_asset_it_names_are_served_with_their_types(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    for element in (
        "sequence",
        "run",
        "heatmap",
        "probabilities",
        "contacts",
        "download",
        "error",
        "progress",
    ):
        assert f'id="{element}"' in page.text, element
    named = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert named and all(url.startswith("/static/") for url in named), named  # nothing from outside
    imports = set()
    for url in named:
        response = client.get(url)
        assert response.status_code == 200, url
        expected = "text/css" if url.endswith(".css") else "text/javascript"
        assert response.headers["content-type"] == f"{expected}; charset=utf-8", url
        assert response.headers["x-content-type-options"] == "nosniff"
        imports |= set(re.findall(r'from "\./([\w.]+)"', response.text))
    for module in imports:  # the ES modules page.js imports, and theirs
        response = client.get(f"/static/{module}")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/javascript")
        for nested in re.findall(r'from "\./([\w.]+)"', response.text):
            assert client.get(f"/static/{nested}").status_code == 200, nested


def test_the_page_forbids_outside_resources(client):
    policy = client.get("/").headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    for path, (content, _) in static_assets().items():
        if path.startswith("vendor/"):
            continue  # the vendored bundles mention their home pages in comments only
        text = content.decode("utf-8")
        assert not re.search(r"https?://", text), f"{path} names an outside URL"


def test_only_shipped_assets_are_served(client):
    assert client.get("/static/vendor/README.md").status_code == 404  # not an asset type
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/static/%2e%2e/page.py").status_code == 404
    assert client.get("/static/nope.js").json()["detail"].startswith("no such file")
    assert (STATIC / "vendor" / "LICENSE-chart.js.md").is_file()  # the licences ship beside the code


def test_the_host_check_covers_the_page(client):
    assert client.get("/", headers={"Host": "attacker.example:8000"}).status_code == 400
    assert client.get("/static/page.js", headers={"Host": "attacker.example"}).status_code == 400


def test_the_page_is_not_in_the_api_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)


def test_health_lists_the_residue_letters(client):
    assert client.get("/health").json()["residues"] == "ACDEFGHIKLMNPQRSTVWYXBZUO"


def test_embed_per_residue_returns_every_residue_state(client, mlm_dir):
    sequences = ["MKTAYIAKQR", "acd"]
    body = client.post("/embed", json={"sequences": sequences, "per_residue": True}).json()
    plain = client.post("/embed", json={"sequences": sequences}).json()
    assert "residue_embeddings" not in plain and body["embeddings"] == plain["embeddings"]
    served = load_served_model(mlm_dir)
    for sequence, residues, mean in zip(
        sequences, body["residue_embeddings"], body["embeddings"], strict=True
    ):
        ids = Alphabet.protein().encode(sequence, add_cls=True, add_eos=True, as_tensor=True)[None]
        with torch.no_grad():
            hidden = served.model(ids, repr_layers=[-1]).hidden_states[0][0, 1:-1]
        torch.testing.assert_close(torch.tensor(residues), hidden, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(torch.tensor(residues).mean(0), torch.tensor(mean), atol=1e-6, rtol=1e-6)


def test_embed_per_residue_is_bounded_and_strict(client):
    # 2 sequences x (1 mean + 40 residues) x 16 = 1,312 numbers fit the 2,000 limit; 4 x 41 x 16 do not.
    assert client.post("/embed", json={"sequences": ["M" * 40] * 2, "per_residue": True}).status_code == 200
    response = client.post("/embed", json={"sequences": ["M" * 40] * 4, "per_residue": True})
    assert response.status_code == 422 and "2,624 numbers" in response.json()["detail"]
    response = client.post("/embed", json={"sequences": ["MKT"], "per_residue": "yes"})
    assert response.status_code == 422 and "per_residue" in response.json()["detail"]


def test_the_package_data_ships_every_static_file():
    from pathlib import Path, PurePosixPath

    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["favor.serve"]
    files = [p.relative_to(STATIC.parent).as_posix() for p in STATIC.rglob("*") if p.is_file()]
    assert files

    # setuptools globs: "*" stays in one folder, like PurePosixPath.match of a pattern as deep as the path.
    def shipped(name):
        return any(PurePosixPath(name).match(p) and p.count("/") == name.count("/") for p in patterns)

    missing = [f for f in files if not shipped(f)]
    assert not missing, f"not in pyproject.toml package-data: {missing}"
