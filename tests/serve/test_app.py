"""Happy paths of every route on tiny random models: shapes, values against the model, metrics, schema."""

import math
import re

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from favor.data import Alphabet  # noqa: E402
from favor.serve import ServeSettings, create_app, load_served_model  # noqa: E402
from tiny_models import save_tiny  # noqa: E402


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("mlm"), backbone="performer", task="mlm")


@pytest.fixture(scope="module")
def client(mlm_dir):
    with TestClient(create_app(mlm_dir, settings=ServeSettings(max_wait_ms=0))) as c:
        yield c


@pytest.fixture(scope="module")
def clm_client(tmp_path_factory):
    folder = save_tiny(tmp_path_factory.mktemp("clm"), backbone="performer", task="clm", causal=True)
    with TestClient(create_app(folder, settings=ServeSettings(max_wait_ms=0))) as c:
        yield c


def test_health_describes_the_model(client):
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert (body["task"], body["backbone"], body["n_layers"], body["max_residues"]) == (
        "mlm",
        "performer",
        2,
        46,
    )
    assert body["routes"] == ["/embed", "/fill-mask", "/score"]


def test_embed_matches_the_model_mean_over_residues(client, mlm_dir):
    sequences = ["MKTAYIAKQR", "ACDEFGHIKLMNPQRSTVWY", "g"]
    body = client.post("/embed", json={"sequences": sequences}).json()
    assert body["layer"] == 2 and body["dim"] == 16
    assert [len(e) for e in body["embeddings"]] == [16, 16, 16]
    served = load_served_model(mlm_dir)
    for sequence, embedding in zip(sequences, body["embeddings"], strict=True):
        ids = Alphabet.protein().encode(sequence, add_cls=True, add_eos=True, as_tensor=True)[None]
        with torch.no_grad():
            hidden = served.model(ids, repr_layers=[-1]).hidden_states[0][0, 1:-1].mean(0)
        torch.testing.assert_close(torch.tensor(embedding), hidden, atol=1e-5, rtol=1e-5)


def test_embed_layer_selects_a_representation(client):
    first = client.post("/embed", json={"sequences": ["MKTAY"], "layer": 0}).json()
    last = client.post("/embed", json={"sequences": ["MKTAY"], "layer": -1}).json()
    assert first["layer"] == 0 and last["layer"] == 2
    assert first["embeddings"] != last["embeddings"]


def test_fill_mask_returns_top_k_per_masked_position(client):
    body = client.post("/fill-mask", json={"sequence": "MKT<mask>YIA_QR", "top_k": 3}).json()
    assert [m["position"] for m in body["masks"]] == [4, 8]
    for mask in body["masks"]:
        probs = [c["probability"] for c in mask["predictions"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and all(0 < p < 1 for p in probs)
        assert all(c["residue"] in "ACDEFGHIKLMNPQRSTVWYXBZUO" for c in mask["predictions"])
    filled = body["sequence"]
    assert (
        len(filled) == 10
        and filled[:3] == "MKT"
        and filled[3] == body["masks"][0]["predictions"][0]["residue"]
    )


def test_score_is_the_masked_marginal_log_ratio(client, mlm_dir):
    sequence = "MKTAYIAKQR"
    body = client.post("/score", json={"sequence": sequence, "mutations": ["A4G", "K2R:Y5F", "m1m"]}).json()
    scores = {s["mutation"]: s["score"] for s in body["scores"]}
    assert scores["m1m"] == 0.0
    served, alphabet = load_served_model(mlm_dir), Alphabet.protein()
    residues = list(alphabet.residue_ids)

    def site(position, wild, mutant):
        ids = alphabet.encode(sequence, add_cls=True, add_eos=True, as_tensor=True)
        ids[position] = alphabet.mask_id
        with torch.no_grad():
            log_probs = served.model(ids[None]).logits[0, position, residues].log_softmax(-1)
        return float(
            log_probs[residues.index(alphabet.token_to_id(mutant))]
            - log_probs[residues.index(alphabet.token_to_id(wild))]
        )

    assert math.isclose(scores["A4G"], site(4, "A", "G"), abs_tol=1e-5)
    assert math.isclose(scores["K2R:Y5F"], site(2, "K", "R") + site(5, "Y", "F"), abs_tol=1e-5)


def test_generate_is_reproducible_from_the_seed(clm_client):
    request = {"prompt": "MK", "max_new_tokens": 12, "temperature": 1.0, "top_k": 10, "seed": 7}
    first, second = (clm_client.post("/generate", json=request).json() for _ in range(2))
    assert first == second
    assert first["seed"] == 7 and first["sequence"] == "MK" + first["generated"]
    assert len(first["generated"]) <= 12 and re.fullmatch("[A-Z]*", first["generated"])
    greedy = clm_client.post("/generate", json={"prompt": "", "max_new_tokens": 5, "temperature": 0}).json()
    assert len(greedy["generated"]) == 5 or greedy["finished"]


def test_generate_unseeded_returns_the_seed_it_drew(clm_client):
    body = clm_client.post("/generate", json={"prompt": "M", "max_new_tokens": 4}).json()
    again = clm_client.post(
        "/generate", json={"prompt": "M", "max_new_tokens": 4, "seed": body["seed"]}
    ).json()
    assert again == body


def test_causal_model_embeds_but_has_no_masked_routes(clm_client):
    assert clm_client.post("/embed", json={"sequences": ["MKT"]}).status_code == 200
    response = clm_client.post("/fill-mask", json={"sequence": "MK_"})
    assert response.status_code == 400 and "masked language model" in response.json()["detail"]


@pytest.mark.parametrize(
    ("task", "extra", "keys"),
    [
        ("sequence_classification", {"num_labels": 3}, {"probabilities", "label"}),
        ("sequence_regression", {"num_labels": 1}, {"values"}),
        ("token_classification", {"num_labels": 4}, {"probabilities", "labels"}),
        ("token_regression", {"num_labels": 2}, {"values"}),
        ("contact", {}, {"contacts"}),
    ],
)
def test_predict_returns_head_outputs(tmp_path, task, extra, keys):
    folder = save_tiny(tmp_path / task, backbone="transformer", task=task, n_layers=1, **extra)
    with TestClient(create_app(folder, settings=ServeSettings(max_wait_ms=0))) as c:
        body = c.post("/predict", json={"sequences": ["MKTAY", "AC"]}).json()
        assert c.post("/fill-mask", json={"sequence": "M_"}).status_code == 400
    assert body["task"] == task and len(body["predictions"]) == 2
    for prediction, n in zip(body["predictions"], (5, 2), strict=True):
        assert set(prediction) == keys
        if task.startswith("token"):
            assert len(prediction["values" if "values" in keys else "labels"]) == n
        if task == "contact":
            assert len(prediction["contacts"]) == n and all(len(row) == n for row in prediction["contacts"])
        if task == "sequence_classification":
            assert math.isclose(sum(prediction["probabilities"]), 1.0, rel_tol=1e-5)


def parse_prometheus(text):
    """Strict parse of the text format: every sample typed, histograms cumulative with +Inf == count."""
    types, samples = {}, {}
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')
    for line in text.strip().split("\n"):
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif line.startswith("# HELP "):
            continue
        else:
            match = line_re.match(line)
            assert match, f"not a Prometheus sample line: {line!r}"
            name, labels, value = match.group(1), match.group(2) or "", float(match.group(3))
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in types or base in types, f"sample {name} has no # TYPE"
            samples[name + labels] = value
    for name, kind in types.items():
        if kind == "histogram":
            buckets = [(k, v) for k, v in samples.items() if k.startswith(name + "_bucket")]
            for key, value in buckets:
                if 'le="+Inf"' in key:
                    labels = re.sub(r',?le="\+Inf"', "", key[len(name + "_bucket") :]).replace("{}", "")
                    assert value == samples[name + "_count" + labels]
    return types, samples


def test_metrics_parse_and_count_requests(client):
    client.post("/embed", json={"sequences": ["MKT"]})
    client.post("/embed", json={"sequences": ["MK1"]})
    client.get("/no-such-route")
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    types, samples = parse_prometheus(response.text)
    assert types["favor_requests_total"] == "counter"
    assert types["favor_request_duration_seconds"] == "histogram"
    assert samples['favor_requests_total{route="/embed",method="POST",status="200"}'] >= 1
    assert samples['favor_request_errors_total{route="/embed",status="422"}'] >= 1
    assert samples['favor_requests_total{route="other",method="GET",status="404"}'] == 1
    assert samples["favor_batch_rows_count"] >= 1 and samples["favor_forward_rows_count"] >= 1


def test_openapi_schema_lists_every_route(client):
    schema = client.get("/openapi.json").json()
    assert {"/embed", "/fill-mask", "/score", "/generate", "/predict", "/health", "/metrics"} <= set(
        schema["paths"]
    )
    assert "EmbedRequest" in schema["components"]["schemas"]


@pytest.fixture(scope="module")
def char_client(tmp_path_factory):
    from favor.data.text import VOCAB_FILE, CharVocabulary

    vocab = CharVocabulary.ascii()
    folder = save_tiny(
        tmp_path_factory.mktemp("char"), backbone="lstm", task="clm", causal=True, vocab_size=vocab.vocab_size
    )
    vocab.save(folder / VOCAB_FILE)
    with TestClient(create_app(folder, settings=ServeSettings(max_wait_ms=0))) as c:
        yield c


def test_character_model_generates_text(char_client):
    assert char_client.get("/health").json()["routes"] == ["/generate"]
    request = {"prompt": "def f(x):", "max_new_tokens": 20, "temperature": 1.0, "seed": 3}
    first, second = (char_client.post("/generate", json=request).json() for _ in range(2))
    assert first == second and first["sequence"] == "def f(x):" + first["generated"]
    # No end token: exactly max_new_tokens printable characters (never <pad> or <unk>).
    assert len(first["generated"]) == 20 and not first["finished"]
    assert all(ch == "\n" or " " <= ch <= "~" for ch in first["generated"])


def test_character_model_refuses_protein_routes_and_bad_prompts(char_client):
    response = char_client.post("/embed", json={"sequences": ["MKT"]})
    assert response.status_code == 400 and "POST /generate only" in response.json()["detail"]
    for body, needle in (
        ({"prompt": "caf\u00e9", "max_new_tokens": 2}, "unknown character '\u00e9' (U+00E9) at position 4"),
        ({"prompt": "", "max_new_tokens": 2}, "empty"),
        (
            {"prompt": "abc", "max_new_tokens": 46},
            "3 prompt characters + 46 new tokens exceed the model's 48",
        ),
    ):
        response = char_client.post("/generate", json=body)
        assert response.status_code == 422 and needle in response.json()["detail"], response.json()
