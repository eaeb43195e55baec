"""JSON-safe copies of results: NaN and infinities become ``null`` (JSON has no such numbers).

One function for everything favor writes as JSON (command output, run summaries, HTTP responses).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["json_safe"]


def json_safe(value: Any) -> Any:
    """A copy of ``value`` (dicts, lists, tuples, scalars) with every non-finite float replaced by None."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
