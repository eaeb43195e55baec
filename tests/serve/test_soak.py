"""The short soak (benchmarks/soak.py): a real `favor serve` on 127.0.0.1 under valid, invalid, huge, slow and
disconnecting clients for a few seconds answers no request with a 5xx and is healthy afterwards."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def test_a_short_soak_has_no_5xx():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--seconds", "4", "--json"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["5xx"] == 0 and result["healthy_after"]
    statuses = result["status"]
    for code in ("200", "413", "422"):
        assert statuses.get(code, 0) > 0, statuses
