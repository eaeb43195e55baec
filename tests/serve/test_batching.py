"""Micro-batching: concurrent requests share forward passes, and batching never changes a result."""

import asyncio
import re

import pytest
import torch

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from favor.models import ModelConfig, SequenceModel, save_pretrained  # noqa: E402
from favor.serve import ServeSettings, create_app  # noqa: E402
from favor.serve.batcher import Job, MicroBatcher, Overloaded  # noqa: E402

# Different lengths, so batched rows are padded.
SEQUENCES = [
    "MKTAYIAKQRQISFVKSHFSRQ",
    "ACDE",
    "MVLSPADKTNVKAAWGKVGAHAGEYGAEALERMF",
    "GG",
    "MKV",
    "PEPTIDE",
    "W",
    "QRST",
]


@pytest.fixture(scope="module", params=["performer", "transformer"])
def model_dir(request, tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp(request.param)
    config = ModelConfig(
        backbone=request.param, task="mlm", vocab_size=29, d_model=16, n_layers=2, n_heads=2, d_ff=32,
        max_length=64, dropout=0.0, attention={"nb_features": 8},
    )  # fmt: skip
    save_pretrained(SequenceModel(config), folder)
    return folder


async def _embed_all(app, sequences, *, concurrent):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        requests = [client.post("/embed", json={"sequences": [s]}) for s in sequences]
        if concurrent:
            responses = await asyncio.gather(*requests)
        else:
            responses = [await r for r in requests]
        metrics = (await client.get("/metrics")).text
    assert all(r.status_code == 200 for r in responses)
    return [r.json()["embeddings"][0] for r in responses], metrics


def _histogram(metrics, name):
    count = float(re.search(rf"^{name}_count (\S+)$", metrics, re.M).group(1))
    singles = float(re.search(rf'^{name}_bucket{{le="1.0"}} (\S+)$', metrics, re.M).group(1))
    total = float(re.search(rf"^{name}_sum (\S+)$", metrics, re.M).group(1))
    return count, singles, total


def test_concurrent_requests_are_batched_and_match_unbatched(model_dir):
    # A long wait makes the 8 concurrent requests meet in one batch whatever the machine's load.
    batched_app = create_app(model_dir, settings=ServeSettings(max_wait_ms=200, max_batch_rows=64))
    single_app = create_app(model_dir, settings=ServeSettings(max_wait_ms=0))
    try:
        batched, metrics = asyncio.run(_embed_all(batched_app, SEQUENCES, concurrent=True))
        single, single_metrics = asyncio.run(_embed_all(single_app, SEQUENCES, concurrent=False))
    finally:
        batched_app.state.batcher.close()
        single_app.state.batcher.close()
    count, singles, total = _histogram(metrics, "favor_batch_requests")
    assert singles < count, "no batch held more than one request"
    assert total == len(SEQUENCES)
    assert float(re.search(r"^favor_forward_rows_sum (\S+)$", metrics, re.M).group(1)) == len(SEQUENCES)
    assert _histogram(single_metrics, "favor_batch_requests")[1] == len(SEQUENCES)
    torch.testing.assert_close(torch.tensor(batched), torch.tensor(single), atol=1e-5, rtol=1e-5)


def test_token_budget_splits_long_batches(model_dir):
    app = create_app(model_dir, settings=ServeSettings(max_wait_ms=0, max_batch_tokens=64, max_batch_rows=3))
    engine = app.state.engine
    rows = [engine.encode(s, where="s") for s in SEQUENCES]
    seen = []
    engine.on_forward = lambda n, tokens, seconds: seen.append((n, tokens))
    outputs = engine.forward_rows(rows, output="hidden", layer=2)
    assert sum(n for n, _ in seen) == len(rows)
    assert all(n <= 3 and (tokens <= 64 or n == 1) for n, tokens in seen)
    for row, out in zip(rows, outputs, strict=True):
        alone = engine.forward_rows([row], output="hidden", layer=2)[0]
        assert out.shape == (len(row), 16)
        torch.testing.assert_close(out, alone, atol=1e-5, rtol=1e-5)


def test_batcher_isolates_failing_jobs():
    def run_rows(key, rows):
        return [row * 2 for row in rows]

    def boom(outputs):
        raise ValueError("bad job")

    batcher = MicroBatcher(run_rows, max_rows=8, max_wait_s=0.05)

    async def main():
        good = Job(rows=[torch.ones(2)], key="k", finish=lambda outs: outs[0].tolist())
        bad = Job(rows=[torch.ones(1)], key="k", finish=boom)
        solo = Job(call=lambda: "alone")
        return await asyncio.gather(
            batcher.submit(good), batcher.submit(bad), batcher.submit(solo), return_exceptions=True
        )

    try:
        good, bad, solo = asyncio.run(main())
    finally:
        batcher.close()
    assert good == [2.0, 2.0] and solo == "alone"
    assert isinstance(bad, ValueError) and "bad job" in str(bad)


def test_a_closed_batcher_refuses_work_until_started_again():
    batcher = MicroBatcher(lambda key, rows: rows, max_wait_s=0.0)
    job = Job(rows=[torch.zeros(1)], key=None, finish=lambda outs: len(outs))
    assert asyncio.run(batcher.submit(job)) == 1
    batcher.close()
    with pytest.raises(Overloaded, match="shutting down"):
        asyncio.run(batcher.submit(job))
    batcher.start()
    assert asyncio.run(batcher.submit(job)) == 1
    batcher.close()
