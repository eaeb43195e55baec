"""Fuzz the API against its own OpenAPI schema (schemathesis): no input may produce a 5xx.

Both generation modes run: positive (bodies that fit the schema) and negative (bodies that violate it,
wrong types, missing fields, non-JSON bytes). The number of examples is bounded so the test takes a few
seconds; derandomize makes every run try the same cases.
"""

from collections import Counter

import pytest
import torch

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from favor.models import ModelConfig, SequenceModel, save_pretrained  # noqa: E402
from favor.serve import ServeSettings, create_app  # noqa: E402

EXAMPLES = 400


@pytest.mark.parametrize("task", ["mlm", "clm"])
def test_api_never_answers_5xx(tmp_path, task, record_property):
    torch.manual_seed(0)
    config = ModelConfig(
        task=task, causal=task == "clm", vocab_size=29, d_model=16, n_layers=1, n_heads=2, d_ff=32,
        max_length=32, dropout=0.0, attention={"nb_features": 8},
    )  # fmt: skip
    save_pretrained(SequenceModel(config), tmp_path)
    app = create_app(tmp_path, settings=ServeSettings(max_wait_ms=0, max_new_tokens=8))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    cases = st.one_of(
        [op.as_strategy(generation_mode=mode) for op in operations for mode in schemathesis.GenerationMode]
    )
    statuses: Counter = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def check(case):
        response = case.call()
        statuses[(case.method, case.path, response.status_code)] += 1
        assert response.status_code < 500, f"{case.method} {case.path} body={case.body!r}: {response.text}"

    try:
        check()
    finally:
        app.state.batcher.close()
    total = sum(statuses.values())
    record_property("schemathesis_cases", total)
    print(f"schemathesis ({task}): {total} cases, statuses {dict(sorted(statuses.items()))}")
    assert total >= EXAMPLES // 2
    # The fuzzer reached the model, not only the validators.
    assert any(status == 200 and method == "POST" for method, _, status in statuses)
