"""Shared output format: one JSON object per line per figure."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable


def emit(bench: str, metric: str, value: float, unit: str, **extra: object) -> None:
    print(json.dumps({"bench": bench, "metric": metric, "value": round(value, 4), "unit": unit, **extra}))
    sys.stdout.flush()


def per_second(fn: Callable[[], object], min_seconds: float = 1.0) -> float:
    """Calls per second of ``fn``, timed over at least ``min_seconds``."""
    n = 0
    start = time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return n / elapsed
