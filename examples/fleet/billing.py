"""Handlers of the ``billing`` service; services.yaml points at ``app`` here."""

from __future__ import annotations

from typing import Any

from router import Service, SkipRetry, Task

app = Service("billing")


@app.handler("billing.charge")
def charge(task: Task) -> dict[str, Any]:
    """Pretend to charge a customer; a zero-decimal currency we do not support is not worth retrying."""
    if task.payload["currency"] not in {"EUR", "USD", "GBP"}:
        raise SkipRetry(f"unsupported currency {task.payload['currency']}")
    return {"customer_id": task.payload["customer_id"], "charged_cents": task.payload["amount_cents"]}


@app.handler("billing.invoice.render")
def render_invoice(task: Task) -> dict[str, Any]:
    """Pretend to render an invoice; returns its would-be file name."""
    locale = task.payload.get("locale", "en")
    return {"file": f"invoice-{task.payload['invoice_id']}.{locale}.pdf"}
