"""The wire message (envelope) and its codec.

An envelope is compact, versioned JSON that any language can write (see ``schemas/task-envelope.schema.json``).
The task id is not repeated inside it: the id is the field under which the envelope is stored in ``Q:msg``.
Fields: ``v`` version (1), ``t`` task type, ``p`` payload object, ``e`` enqueue time (ms since the epoch),
and optional ``r`` max_retry override, ``to`` timeout override (s), ``dl`` deadline (ms; reserved, not yet
enforced), ``n`` failed deliveries so far, ``err`` last error, ``why`` archive reason, ``res`` retained result,
``by`` the ``<service>/<worker id>`` that completed it.
Decoding never trusts its input: anything malformed raises :class:`MalformedMessage` with a reason, so the
worker can dead-letter it instead of crashing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

VERSION = 1
MAX_ENVELOPE_BYTES = 16 * 1024 * 1024
MAX_TYPE_LEN = 200

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


class MalformedMessage(Exception):
    """A stored message could not be decoded; ``reason`` is a short machine-readable word."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class Envelope:
    """A decoded message."""

    type: str
    payload: Mapping[str, Any]
    enqueued_at_ms: int
    max_retry: int | None = None
    timeout_s: float | None = None
    deadline_ms: int | None = None
    failures: int = 0
    last_error: str | None = None
    reason: str | None = None
    result: Any = None
    completed_by: str | None = None


def encode_payload(payload: Mapping[str, Any]) -> str:
    """Payload as compact JSON; raises TypeError/ValueError for values JSON cannot carry."""
    return _dumps(payload)


def encode_new(task_type: str, payload_json: str, enqueued_at_ms: int, extra: Mapping[str, Any] | None = None) -> str:
    """Encode a fresh envelope around an already encoded payload (the enqueue hot path: no re-encoding)."""
    head = f'{{"v":{VERSION},"t":{_dumps(task_type)},"e":{enqueued_at_ms}'
    if extra:
        head += "," + _dumps(dict(extra))[1:-1]
    return f'{head},"p":{payload_json}}}'


def encode(env: Envelope) -> str:
    """Encode a full envelope (used when a failure, archive or result rewrites it)."""
    doc: dict[str, Any] = {"v": VERSION, "t": env.type, "e": env.enqueued_at_ms}
    optional: dict[str, Any] = {
        "r": env.max_retry,
        "to": env.timeout_s,
        "dl": env.deadline_ms,
        "n": env.failures or None,
        "err": env.last_error,
        "why": env.reason,
        "res": env.result,
        "by": env.completed_by,
    }
    doc.update((k, v) for k, v in optional.items() if v is not None)
    doc["p"] = env.payload
    return _dumps(doc)


def decode(raw: bytes | str | None) -> Envelope:
    """Decode and check a stored envelope; raises MalformedMessage saying what is wrong."""
    if raw is None:
        raise MalformedMessage("missing_message", "the task id has no stored message")
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise MalformedMessage("malformed", f"message of {len(raw)} bytes exceeds {MAX_ENVELOPE_BYTES}")
    try:
        # Bytes are read as json.loads reads them (UTF-8, -16 or -32, a BOM allowed), without its per-call decoder.
        text = raw if isinstance(raw, str) else raw.decode(json.detect_encoding(raw), "surrogatepass")
        doc = _DECODER.decode(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessage("malformed", f"not JSON: {exc}") from None
    except RecursionError:
        raise MalformedMessage("malformed", "JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise MalformedMessage("malformed", f"expected a JSON object, got {type(doc).__name__}")
    if doc.get("v") != VERSION:
        raise MalformedMessage("malformed", f"unsupported envelope version {doc.get('v')!r}")
    task_type, payload, enqueued = doc.get("t"), doc.get("p"), doc.get("e")
    if not isinstance(task_type, str) or not 0 < len(task_type) <= MAX_TYPE_LEN:
        raise MalformedMessage("malformed", "field 't' (task type) must be a non-empty string")
    if not isinstance(payload, dict):
        raise MalformedMessage("malformed", "field 'p' (payload) must be an object")
    if not isinstance(enqueued, int) or isinstance(enqueued, bool):
        raise MalformedMessage("malformed", "field 'e' (enqueue time, ms) must be an integer")
    return Envelope(
        type=task_type,
        payload=payload,
        enqueued_at_ms=enqueued,
        max_retry=_opt(doc, "r", int),
        timeout_s=_opt_number(doc, "to"),
        deadline_ms=_opt(doc, "dl", int),
        failures=_opt(doc, "n", int) or 0,
        last_error=_opt(doc, "err", str),
        reason=_opt(doc, "why", str),
        result=doc.get("res"),
        completed_by=_opt(doc, "by", str),
    )


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON: accepting them here would make the message impossible to re-encode later.
    raise ValueError(f"{name} is not a JSON number")


#: One decoder for every message (``json.loads`` with an option builds a new one per call).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def encode_result(result: Any) -> Any:
    """``result`` if the envelope can carry it as JSON, else a bounded repr (a handler's return value is data)."""
    try:
        _dumps(result)
    except (TypeError, ValueError, RecursionError):
        return repr(result)[:10_000]
    return result


def _opt(doc: Mapping[str, Any], key: str, kind: type[Any]) -> Any:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MalformedMessage("malformed", f"field {key!r} must be {kind.__name__}")
    return value


def _opt_number(doc: Mapping[str, Any], key: str) -> float | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise MalformedMessage("malformed", f"field {key!r} must be a positive number")
    return float(value)
