"""Bad requests get a 4xx whose message names the problem: never a 5xx."""

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from favor.models import ModelConfig, SequenceModel, save_pretrained  # noqa: E402
from favor.serve import ServeSettings, create_app  # noqa: E402


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("mlm")
    config = ModelConfig(
        task="mlm", vocab_size=29, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_length=32, dropout=0.0,
        attention={"nb_features": 8},
    )  # fmt: skip
    save_pretrained(SequenceModel(config), folder)
    settings = ServeSettings(max_wait_ms=0, max_sequences=4, max_body_bytes=4096, max_mutations=3)
    with TestClient(create_app(folder, settings=settings)) as c:
        yield c


def detail(response, status):
    assert response.status_code == status, response.text
    message = response.json()["detail"]
    assert isinstance(message, str) and message
    return message


def test_unknown_residue_names_sequence_position_and_char(client):
    message = detail(client.post("/embed", json={"sequences": ["MKT", "MKTJA"]}), 422)
    assert "sequences[1]" in message and "position 4" in message and "'J'" in message


def test_mask_marker_outside_fill_mask_is_an_unknown_residue(client):
    message = detail(client.post("/embed", json={"sequences": ["MK_A"]}), 422)
    assert "sequences[0]" in message and "'_'" in message and "position 3" in message


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"sequences": [""]}, ["sequences[0]", "empty"]),
        ({"sequences": ["A" * 31]}, ["sequences[0]", "31 residues", "limit of 30"]),
        ({"sequences": ["A"] * 5}, ["5 sequences", "limit of 4"]),
        ({"sequences": []}, ["sequences", "at least 1"]),
        ({"sequences": "MKT"}, ["sequences", "list"]),
        ({"sequences": [3]}, ["sequences.0", "string"]),
        ({"sequence": ["MKT"]}, ["sequences", "required"]),
        ({"sequences": ["MKT"], "layer": 9}, ["layer=9", "out of range"]),
        ({"sequences": ["MKT"], "extra": 1}, ["extra", "not permitted"]),
    ],
)
def test_embed_validation(client, body, words):
    message = detail(client.post("/embed", json=body), 422)
    for word in words:
        assert word in message


def test_malformed_json_is_422(client):
    response = client.post("/embed", content=b'{"sequences": [', headers={"content-type": "application/json"})
    assert "malformed JSON" in detail(response, 422)


def test_body_over_the_limit_is_413(client):
    response = client.post("/embed", json={"sequences": ["A" * 5000]})
    assert "limit of 4096 bytes" in detail(response, 413)


@pytest.mark.parametrize(
    ("mutation", "words"),
    [
        ("A3G", ["mutations[0] 'A3G'", "has 'T' at position 3"]),
        ("A99G", ["mutations[0] 'A99G'", "position 99", "outside"]),
        ("A4J", ["'J' is not a residue"]),
        ("A4", ["expected <wild-type><position><mutant>"]),
        ("A4G:A4C", ["position 4 is mutated twice"]),
    ],
)
def test_score_rejects_mutations_that_do_not_fit(client, mutation, words):
    message = detail(
        client.post("/score", json={"sequence": "MKTAYIAK", "mutations": ["K2R", mutation]}), 422
    )
    message = message.replace("mutations[1]", "mutations[0]")
    for word in words:
        assert word in message


def test_score_limits_mutation_count(client):
    message = detail(client.post("/score", json={"sequence": "MKTA", "mutations": ["K2R"] * 4}), 422)
    assert "4 mutations" in message and "limit of 3" in message


def test_fill_mask_needs_a_mask(client):
    assert "no masked position" in detail(client.post("/fill-mask", json={"sequence": "MKT"}), 422)


def test_routes_for_other_tasks_answer_400(client):
    assert "causal language model" in detail(client.post("/generate", json={"prompt": "MK"}), 400)
    assert "fine-tuned head" in detail(client.post("/predict", json={"sequences": ["MK"]}), 400)


def test_generate_parameters_are_validated(client):
    assert "top_p" in detail(client.post("/generate", json={"prompt": "MK", "top_p": 0}), 422)
    assert "temperature" in detail(client.post("/generate", json={"prompt": "MK", "temperature": -1}), 422)
