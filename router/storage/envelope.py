"""The wire message (envelope) and its codec.

An envelope is compact, versioned JSON that any language can write (see ``schemas/task-envelope.schema.json``).
The task id is not repeated inside it: the id is the field under which the envelope is stored in ``Q:msg``.
Fields: ``v`` version (1), ``t`` task type, ``p`` payload object, ``e`` enqueue time (ms since the epoch),
and optional ``r`` max_retry override (0-1000), ``to`` timeout override (s), ``dl`` deadline (ms: not started by
then, or still running then, the task is archived as ``deadline_exceeded``), ``u`` the unique lock an "until
finished" task releases when it ends (the lock key's digest), ``g`` the group of an aggregating task, ``n`` failed
deliveries so far, ``err`` last error, ``why`` archive reason, ``res`` retained result, ``by`` the
``<service>/<worker id>`` that completed it, ``c`` when it completed (ms), ``tp`` the W3C ``traceparent`` of the
producer's span (``00-<32 hex trace id>-<16 hex span id>-<2 hex flags>``), so the worker's span joins its trace.

Decoding never trusts its input: anything the envelope schema refuses (a field of the wrong type or out of range,
``true`` for a number), or that could not be written back later (a lone surrogate, a number too large for a float,
NaN), raises :class:`MalformedMessage` with a reason, so the worker dead-letters it instead of crashing. Encoding
is total: it always returns UTF-8 bytes that decode again, whatever a handler put in a result or an error.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from router.names import NAME_PATTERN

VERSION = 1
MAX_ENVELOPE_BYTES = 16 * 1024 * 1024
MAX_TYPE_LEN = 200
#: The largest max_retry an envelope (or an enqueue option) may carry.
MAX_RETRY_LIMIT = 1000
#: Timeouts are below a year: a larger one is a mistake, and a float of it would overflow timers.
MAX_TIMEOUT_S = 365 * 86400.0
#: A W3C traceparent: version, trace id, parent span id, flags, in lowercase hex (version ff is invalid).
_TRACEPARENT = re.compile(r"(?!ff)[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
#: A surrogate escape in JSON text: only then can a decoded string hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

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
    unique: str | None = None
    group: str | None = None
    completed_at_ms: int | None = None
    traceparent: str | None = None


def encode_payload(payload: Mapping[str, Any]) -> str:
    """Payload as compact JSON; raises TypeError/ValueError for values JSON cannot carry."""
    return _dumps(payload)


def encode_new(task_type: str, payload_json: str, enqueued_at_ms: int, extra: Mapping[str, Any] | None = None) -> str:
    """Encode a fresh envelope around an already encoded payload (the enqueue hot path: no re-encoding)."""
    head = f'{{"v":{VERSION},"t":{_dumps(task_type)},"e":{enqueued_at_ms}'
    if extra:
        head += "," + _dumps(dict(extra))[1:-1]
    return f'{head},"p":{payload_json}}}'


def encode(env: Envelope) -> bytes:
    """Encode a full envelope (when a failure, an archive or a result rewrites it); never raises.

    A payload or result that JSON cannot carry is kept as a bounded ``repr``, and characters UTF-8 cannot encode
    (lone surrogates, from a handler's error message, say) become ``?``, so the bytes always decode again.
    """
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
        "u": env.unique,
        "g": env.group,
        "c": env.completed_at_ms,
        "tp": env.traceparent,
    }
    doc.update((k, v) for k, v in optional.items() if v is not None)
    doc["p"] = env.payload
    try:
        text = _dumps(doc)
    except (TypeError, ValueError, RecursionError):
        doc["p"] = {"unencodable_payload": _bounded_repr(env.payload)}
        if "res" in doc:
            doc["res"] = encode_result(doc["res"])
        text = _dumps(doc)
    return utf8(text)


def undecodable(raw: bytes | None, reason: str, error: str, enqueued_at_ms: int = 0) -> Envelope:
    """The dead-letter envelope of a message that could not be decoded: its bytes kept (up to 1 MB) for inspection,
    as text with the undecodable bytes escaped."""
    data = raw or b""
    payload = {"raw": data.decode("utf-8", "backslashreplace")[:1_000_000], "raw_bytes": len(data)}
    return Envelope(type="<undecodable>", payload=payload, enqueued_at_ms=enqueued_at_ms, reason=reason,
                    last_error=error)


def utf8(text: str) -> bytes:
    """``text`` as UTF-8, with any character UTF-8 cannot encode (a lone surrogate) replaced by ``?``."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _bounded_repr(value: Any) -> str:
    try:
        return repr(value)[:10_000]
    except Exception:  # a repr that raises is still not our crash
        return f"<unrepresentable {type(value).__name__}>"


def decode(raw: bytes | str | None) -> Envelope:
    """Decode and check a stored envelope; raises MalformedMessage saying what is wrong."""
    if raw is None:
        raise MalformedMessage("missing_message", "the task id has no stored message")
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise MalformedMessage("malformed", f"message of {len(raw)} bytes exceeds {MAX_ENVELOPE_BYTES}")
    encoding = "utf-8" if isinstance(raw, str) else json.detect_encoding(raw)
    try:
        # Bytes are read as json.loads reads them (UTF-8, -16 or -32, a BOM allowed), without its per-call decoder.
        text = raw if isinstance(raw, str) else raw.decode(encoding)
        doc = _DECODER.decode(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessage("malformed", f"not JSON: {exc}") from None
    except RecursionError:
        raise MalformedMessage("malformed", "JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise MalformedMessage("malformed", f"expected a JSON object, got {type(doc).__name__}")
    raw_bytes = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    if not encoding.startswith("utf-8") or _SURROGATE_ESCAPE.search(raw_bytes):
        _check_writable(doc)
    version = doc.get("v")
    if type(version) is not int or version != VERSION:
        raise MalformedMessage("malformed", f"unsupported envelope version {version!r}")
    task_type, payload, enqueued = doc.get("t"), doc.get("p"), doc.get("e")
    if not isinstance(task_type, str) or not 0 < len(task_type) <= MAX_TYPE_LEN:
        raise MalformedMessage("malformed", "field 't' (task type) must be a non-empty string")
    if not isinstance(payload, dict):
        raise MalformedMessage("malformed", "field 'p' (payload) must be an object")
    if type(enqueued) is not int:
        raise MalformedMessage("malformed", "field 'e' (enqueue time, ms) must be an integer")
    return Envelope(
        type=task_type,
        payload=payload,
        enqueued_at_ms=enqueued,
        max_retry=_opt_int(doc, "r", 0, MAX_RETRY_LIMIT),
        timeout_s=_opt_number(doc, "to"),
        deadline_ms=_opt_int(doc, "dl", None, None),
        failures=_opt_int(doc, "n", 0, None) or 0,
        last_error=_opt(doc, "err", str),
        reason=_opt(doc, "why", str),
        result=doc.get("res"),
        completed_by=_opt(doc, "by", str),
        unique=_opt_pattern(doc, "u", _DIGEST, "a lowercase hex digest"),
        group=_opt_pattern(doc, "g", _GROUP, "a group name"),
        completed_at_ms=_opt_int(doc, "c", 0, None),
        traceparent=_opt_traceparent(doc),
    )


def _check_writable(doc: Any) -> None:
    """Refuse a message holding a lone surrogate: it decodes, but no UTF-8 text can carry it back to Redis."""
    try:
        _dumps(doc).encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedMessage("malformed", "a string holds a lone UTF-16 surrogate (invalid Unicode)") from None
    except (ValueError, RecursionError):
        raise MalformedMessage("malformed", "the message cannot be encoded as JSON again") from None


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON: accepting them here would make the message impossible to re-encode later.
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e999: valid JSON, but a float cannot hold it and JSON cannot write it back
        raise ValueError(f"number {text[:40]} is too large for a float")
    return value


#: One decoder for every message (``json.loads`` with an option builds a new one per call).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


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


def _opt_traceparent(doc: Mapping[str, Any]) -> str | None:
    value: str | None = _opt(doc, "tp", str)
    if value is not None and not _TRACEPARENT.fullmatch(value):
        raise MalformedMessage("malformed", f"field 'tp' must be a W3C traceparent, got {_short(value)}")
    return value


def _opt_int(doc: Mapping[str, Any], key: str, low: int | None, high: int | None) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    if type(value) is not int or (low is not None and value < low) or (high is not None and value > high):
        bounds = f" from {low} to {high}" if high is not None else f" >= {low}" if low is not None else ""
        raise MalformedMessage("malformed", f"field {key!r} must be an integer{bounds}, got {_short(value)}")
    return value


def _opt_number(doc: Mapping[str, Any], key: str) -> float | None:
    value = doc.get(key)
    if value is None:
        return None
    if type(value) not in (int, float) or not 0 < value < MAX_TIMEOUT_S:
        raise MalformedMessage("malformed", f"field {key!r} must be a positive number of seconds below "
                                            f"{MAX_TIMEOUT_S:g}, got {_short(value)}")
    return float(value)


_DIGEST = re.compile(r"[0-9a-f]{1,64}")
_GROUP = re.compile(NAME_PATTERN)


def _opt_pattern(doc: Mapping[str, Any], key: str, pattern: re.Pattern[str], what: str) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise MalformedMessage("malformed", f"field {key!r} must be {what}, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
