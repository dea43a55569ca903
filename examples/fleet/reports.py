"""Handlers of the ``reports`` service (declared in services.d/reports.yaml)."""

from __future__ import annotations

from typing import Any

from router import Service, Task

app = Service("reports")


@app.handler("reports.digest")
async def digest(task: Task) -> dict[str, Any]:
    """Build the periodic digest the cron entry asks for."""
    return {"period": task.payload["period"], "recipients": len(task.payload.get("recipients", []))}


@app.handler("reports.export")
def export(task: Task) -> dict[str, Any]:
    """Pretend to export a report; returns the would-be file name."""
    return {"file": f"{task.payload['report']}.{task.payload['format']}"}
