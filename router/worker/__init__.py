"""The worker: the loop and one module per component (see docs/architecture.md)."""

from __future__ import annotations

from router.worker.settings import WorkerSettings
from router.worker.worker import Worker

__all__ = ["Worker", "WorkerSettings"]
