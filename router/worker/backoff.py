"""Retry delays: exponential backoff with jitter."""

from __future__ import annotations

import random
from collections.abc import Callable

#: (failures so far, the error) -> seconds until the next attempt.
Backoff = Callable[[int, BaseException], float]


def exponential_jitter(base_s: float = 1.0, cap_s: float = 3600.0) -> Backoff:
    """``base * 2**(n-1)`` capped at ``cap_s``, scaled by a random factor in [0.5, 1.0) so retries spread out."""

    def delay(failures: int, error: BaseException) -> float:
        raw = min(cap_s, base_s * 2.0 ** max(0, min(failures - 1, 62)))
        return raw * (0.5 + random.random() / 2)

    return delay
