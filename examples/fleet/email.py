"""Handlers of the ``email`` service; services.yaml points at ``app`` here."""

from __future__ import annotations

from typing import Any

from router import Service, Task

app = Service("email")


@app.handler("email.welcome")
def welcome(task: Task) -> dict[str, Any]:
    """Pretend to send a welcome message; returns what would be sent."""
    locale = task.payload.get("locale", "en")
    return {"to": task.payload["to"], "template": f"welcome.{locale}", "user_id": task.payload["user_id"]}


@app.handler("email.digest")
def digest(task: Task) -> dict[str, Any]:
    """Send one email with the lines of a digest group (``email.digest_line`` tasks aggregated by the worker)."""
    return {"user": task.payload["group"], "lines": [item["line"] for item in task.payload["items"]]}


@app.handler("email.receipt")
async def receipt(task: Task) -> dict[str, Any]:
    """An ``async def`` handler: runs on the worker's event loop."""
    return {"to": task.payload["to"], "template": "receipt", "invoice_id": task.payload["invoice_id"]}
