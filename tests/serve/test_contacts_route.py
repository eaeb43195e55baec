"""POST /contacts: the command's prediction over HTTP, 409 without a fitted regression, 422 for bad input,
and a damaged regression file refused at start-up."""

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from favor.inference import InferenceEngine, contact_regression_of, predict_contacts  # noqa: E402
from favor.models.contact_regression import REGRESSION_WEIGHTS, ContactRegression  # noqa: E402
from favor.serve import ServeSettings, create_app, load_served_model  # noqa: E402
from tiny_models import save_tiny  # noqa: E402

SETTINGS = ServeSettings(max_wait_ms=0)


@pytest.fixture
def fitted_dir(tmp_path):
    folder = save_tiny(tmp_path / "mlm", backbone="performer")
    ContactRegression(torch.linspace(-1, 1, 4), -2.0, {"C": 0.1}).save(folder)
    return folder


def test_contacts_equal_the_commands_prediction(fitted_dir):
    sequence = "MKTAYIAKQRQISFVKSHFSRQ"
    served = load_served_model(fitted_dir)
    expected = predict_contacts(InferenceEngine(served), sequence, regression=contact_regression_of(served))
    with TestClient(create_app(fitted_dir, settings=SETTINGS)) as client:
        assert "/contacts" in client.get("/health").json()["routes"]
        response = client.post("/contacts", json={"sequence": sequence})
        assert response.status_code == 200
        body = response.json()
        assert body["length"] == len(sequence)
        np.testing.assert_allclose(np.array(body["contacts"]), expected, atol=1e-5)
        bad = client.post("/contacts", json={"sequence": "MKTAYIJAKQR"})
        assert bad.status_code == 422 and "'J' at position 7" in bad.json()["detail"]
        long = client.post("/contacts", json={"sequence": "M" * 47})
        assert long.status_code == 422 and "over the limit of 46" in long.json()["detail"]
        extra = client.post("/contacts", json={"sequence": "MKT", "layers": 3})
        assert extra.status_code == 422


def test_without_a_regression_the_route_answers_409(tmp_path):
    folder = save_tiny(tmp_path / "bare", backbone="transformer")
    with TestClient(create_app(folder, settings=SETTINGS)) as client:
        assert "/contacts" not in client.get("/health").json()["routes"]
        response = client.post("/contacts", json={"sequence": "MKTAYIAKQR"})
        assert response.status_code == 409 and "favor contacts fit" in response.json()["detail"]


def test_a_contact_model_serves_its_supervised_head(tmp_path):
    folder = save_tiny(tmp_path / "contact", task="contact", num_labels=1)
    with TestClient(create_app(folder, settings=SETTINGS)) as client:
        body = client.post("/contacts", json={"sequence": "MKTAYIAKQRQIS"}).json()
    contacts = np.array(body["contacts"])
    assert contacts.shape == (13, 13) and np.allclose(contacts, contacts.T)
    assert 0 <= contacts.min() and contacts.max() <= 1


def test_a_damaged_regression_file_stops_the_server_at_start(fitted_dir):
    (fitted_dir / REGRESSION_WEIGHTS).write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match=REGRESSION_WEIGHTS):
        create_app(fitted_dir, settings=SETTINGS)
