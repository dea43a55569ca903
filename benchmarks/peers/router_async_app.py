"""router with an ``async def`` handler using redis.asyncio: the same service and task type, asyncio mode."""

from __future__ import annotations

import router
from benchmarks.peers.base import record_async
from benchmarks.peers.router_common import SERVICE, TASK_TYPE, make_producer

__all__ = ["app", "make_producer"]

app = router.Service(SERVICE)


@app.handler(TASK_TYPE)
async def handle(task: router.Task) -> None:
    """The shared handler body."""
    await record_async(task.payload)
