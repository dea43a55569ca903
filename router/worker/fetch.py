"""Which of a service's queues a worker fetches from first: strict or weighted priority (Asynq's two modes).

* **strict**: queues in descending weight; a lower queue is read only when every higher one came back short.
* **weighted**: every fetch draws the first queue at random in proportion to the weights, then the rest in
  weighted random order, so a heavy queue cannot starve a light one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from router.registry.model import PriorityMode
from router.storage.keys import QueueKeys


class QueueOrder:
    """The order in which to fetch from ``queues`` (with their ``weights``) under ``mode``."""

    def __init__(self, queues: Sequence[QueueKeys], weights: Sequence[int], mode: PriorityMode) -> None:
        self._pairs = list(zip(queues, weights))
        self._strict = mode is PriorityMode.STRICT or len(self._pairs) == 1
        self._by_weight = [qk for qk, _ in sorted(self._pairs, key=lambda p: -p[1])]

    def __call__(self) -> list[QueueKeys]:
        if self._strict:
            return self._by_weight
        order: list[QueueKeys] = []
        pool = list(self._pairs)
        while pool:
            pick = random.choices(range(len(pool)), weights=[w for _, w in pool])[0]
            order.append(pool.pop(pick)[0])
        return order
