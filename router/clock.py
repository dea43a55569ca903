"""Time as router reads it: an injectable clock, so tests move time instead of sleeping.

Every component that stamps or compares times (the guard's delays, the worker's retries and leases, the cron
scheduler's fire times) takes a :data:`Clock`; production passes :func:`time.time`. Redis scores and envelope
timestamps are integer milliseconds since the epoch (``_ms`` names); human-facing settings are seconds (``_s``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: Seconds since the epoch, as :func:`time.time` returns them.
Clock = Callable[[], float]

system_clock: Clock = time.time


def to_ms(seconds: float) -> int:
    """Seconds (since the epoch, or a duration) as the integer milliseconds Redis scores hold."""
    return int(seconds * 1000)
