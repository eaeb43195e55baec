"""Requests a hostile or careless client sends: none gets a 5xx, every refusal is a JSON 4xx (or a 503 with
Retry-After when the server is busy) naming the field, and per-request cost is bounded before any work."""

import asyncio
import threading
import time

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from favor.serve import ServeSettings, create_app  # noqa: E402
from favor.serve.batcher import Job, MicroBatcher, Overloaded  # noqa: E402
from tiny_models import save_tiny  # noqa: E402


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("mlm"), backbone="performer", task="mlm")


@pytest.fixture(scope="module")
def client(mlm_dir):
    settings = ServeSettings(max_wait_ms=0, max_sites=50, max_response_values=2000, max_sequences=500)
    with TestClient(create_app(mlm_dir, settings=settings)) as c:
        yield c


def _refused(response, status, *needles):
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    for needle in needles:
        assert needle in detail, detail
    return detail


def test_a_tiny_temperature_samples_greedily_instead_of_failing(tmp_path):
    folder = save_tiny(tmp_path / "clm", backbone="performer", task="clm", causal=True)
    with TestClient(create_app(folder, settings=ServeSettings(max_wait_ms=0))) as c:
        tiny = c.post(
            "/generate", json={"prompt": "MK", "temperature": 1e-300, "max_new_tokens": 5, "seed": 1}
        )
        greedy = c.post("/generate", json={"prompt": "MK", "temperature": 0, "max_new_tokens": 5, "seed": 1})
    assert tiny.status_code == 200, tiny.text
    assert tiny.json()["generated"] == greedy.json()["generated"]


def test_a_position_with_thousands_of_digits_is_a_422(client):
    response = client.post("/score", json={"sequence": "MKTAYIAK", "mutations": ["A" + "9" * 5000 + "G"]})
    detail = _refused(response, 422, "mutations[0]", "outside the sequence")
    assert len(detail) < 400  # the message quotes the mutation shortened, not 5,000 digits


def test_sites_are_bounded_and_duplicates_found_in_linear_time(client):
    many = ":".join(f"M{i}A" for i in range(1, 40))
    response = client.post("/score", json={"sequence": "M" * 40, "mutations": [many, many]})
    _refused(response, 422, "78 sites", "limit of 50")
    twice = client.post("/score", json={"sequence": "MKTAYIAK", "mutations": ["A4G:A4C"]})
    _refused(twice, 422, "mutated twice")


def test_responses_are_bounded_before_any_work(client):
    # 40 sequences x d_model 16 = 640 numbers fit; 200 x 16 = 3,200 do not (limit 2,000).
    assert client.post("/embed", json={"sequences": ["MKT"] * 40}).status_code == 200
    _refused(client.post("/embed", json={"sequences": ["MKT"] * 200}), 422, "3,200 numbers", "2,000")


def test_contact_maps_are_bounded(tmp_path):
    folder = save_tiny(tmp_path / "contact", backbone="performer", task="contact")
    settings = ServeSettings(max_wait_ms=0, max_response_values=1000)
    with TestClient(create_app(folder, settings=settings)) as c:
        assert c.post("/predict", json={"sequences": ["MKTAYIAKQR"]}).status_code == 200
        _refused(c.post("/predict", json={"sequences": ["MKTAYIAKQR" * 4]}), 422, "1,600 numbers")


def test_booleans_are_not_integers(client):
    _refused(client.post("/embed", json={"sequences": ["MKT"], "layer": True}), 422, "layer")


def test_made_up_methods_share_one_metrics_label(client):
    before = len(client.get("/metrics").text)
    for i in range(60):
        client.request(f"BREW{i}", "/embed")
    text = client.get("/metrics").text
    assert 'method="other"' in text and "BREW" not in text
    assert len(text) < before + 2000


def test_health_names_the_model_without_its_path_and_docs_load_nothing_remote(client, mlm_dir):
    body = client.get("/health").json()
    assert body["model"] == mlm_dir.name and "/" not in body["model"]
    assert client.get("/docs").status_code == 404
    assert client.get("/openapi.json").status_code == 200


def test_a_foreign_host_header_is_refused(mlm_dir):
    settings = ServeSettings(max_wait_ms=0, allowed_hosts=("127.0.0.1", "localhost", "[::1]"))
    with TestClient(create_app(mlm_dir, settings=settings), base_url="http://127.0.0.1:8000") as c:
        assert c.get("/health").status_code == 200
        assert c.get("/health", headers={"Host": "localhost:8000"}).status_code == 200
        assert c.get("/health", headers={"Host": "[::1]:8000"}).status_code == 200
        _refused(c.get("/health", headers={"Host": "attacker.example:8000"}), 400, "Host header")


def test_an_internal_failure_is_a_json_500_without_internals(mlm_dir):
    app = create_app(mlm_dir, settings=ServeSettings(max_wait_ms=0))

    def broken(rows, *, output, layer):
        raise RuntimeError("secret internal state")

    app.state.engine.forward_rows = broken
    with TestClient(app, raise_server_exceptions=False) as c:
        response = c.post("/embed", json={"sequences": ["MKT"]})
    assert response.status_code == 500
    assert "secret" not in response.text and "internal error" in response.json()["detail"]


def _slow(seconds, calls):
    def run(key, rows):
        calls.append(len(rows))
        time.sleep(seconds)
        return rows

    return run


def test_a_full_queue_answers_overloaded():
    calls = []
    batcher = MicroBatcher(_slow(0.3, calls), max_wait_s=0.0, max_queue=1)
    job = Job(rows=[torch.zeros(1)], key=None, finish=len)

    async def flood():
        return await asyncio.gather(*(batcher.submit(job) for _ in range(4)), return_exceptions=True)

    results = asyncio.run(flood())
    batcher.close()
    refused = [r for r in results if isinstance(r, Overloaded)]
    assert refused and "limit 1" in str(refused[0])
    assert any(r == 1 for r in results)


def test_work_whose_client_gave_up_is_never_run():
    calls = []
    batcher = MicroBatcher(_slow(0.4, calls), max_wait_s=0.0)
    busy = Job(rows=[torch.zeros(1)], key="busy", finish=len)
    waiting = Job(rows=[torch.zeros(1), torch.zeros(1), torch.zeros(1)], key="waiting", finish=len)

    async def scenario():
        first = asyncio.ensure_future(batcher.submit(busy))
        await asyncio.sleep(0.05)  # the worker is now busy with the first job
        with pytest.raises(Overloaded, match="no result within"):
            await batcher.submit(waiting, timeout_s=0.1)
        return await first

    assert asyncio.run(scenario()) == 1
    time.sleep(0.6)
    batcher.close()
    assert calls == [1]  # the 3-row job timed out while queued and was dropped


def test_a_slow_body_gets_408(mlm_dir):
    """A client that starts a body and never finishes it is answered 408 after body_timeout_s."""
    from favor.serve.app import BodyLimitMiddleware

    sent = []

    async def app(scope, receive, send):  # never reached
        raise AssertionError

    async def receive():
        await asyncio.sleep(10)

    async def send(message):
        sent.append(message)

    middleware = BodyLimitMiddleware(app, max_bytes=100, timeout_s=0.1)
    scope = {"type": "http", "method": "POST", "headers": [], "path": "/embed"}
    start = time.perf_counter()
    asyncio.run(middleware(scope, receive, send))
    assert time.perf_counter() - start < 2
    assert sent[0]["status"] == 408
    assert threading.active_count() >= 1


def test_metrics_watch_input_drift(mlm_dir):
    """Lengths, composition and (every request here) the input likelihood appear on /metrics; the
    likelihood equals the model's own mean log-probability of the masked true residues."""
    import re

    from favor.serve.tasks import likelihood_job

    settings = ServeSettings(max_wait_ms=0, monitor_every=1)
    app = create_app(mlm_dir, settings=settings)
    with TestClient(app) as c:
        assert c.post("/embed", json={"sequences": ["MKTAYIAKQRQISFVKSHFSRQ", "GGGG"]}).status_code == 200
        deadline = time.time() + 5
        while time.time() < deadline and "favor_input_log_likelihood_count 2" not in c.get("/metrics").text:
            time.sleep(0.05)
        text = c.get("/metrics").text
    assert 'favor_input_residue_total{residue="G"} 4' in text
    assert "favor_input_residues_count 2" in text
    assert "favor_input_log_likelihood_count 2" in text
    total = float(re.search(r"favor_input_log_likelihood_sum (\S+)", text).group(1))
    seen = []
    job = likelihood_job(app.state.engine, ["MKTAYIAKQRQISFVKSHFSRQ", "GGGG"], seen.append)
    with torch.inference_mode():
        job.finish(app.state.engine.forward_rows(job.rows, output="head"))
    assert total == pytest.approx(sum(seen), rel=1e-5)
    assert all(-10 < v < 0 for v in seen)
