"""The scripts of ``router/storage/lua`` (:class:`Script`), one invocation of one (:class:`Call`), and how values
go over the wire. Nothing here performs I/O."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = [
    "ACK",
    "ALL_SCRIPTS",
    "ARCHIVE",
    "CANCEL",
    "CANCELLED",
    "CRON_FIRE",
    "DELETE",
    "DEQUEUE",
    "ENQUEUE",
    "EXTEND",
    "FLUSH",
    "LOOKUP",
    "MAINTAIN",
    "OVERVIEW",
    "PAGE",
    "PAUSE",
    "QUARANTINE",
    "REQUEUE",
    "RETRY",
    "RUN",
    "SWEEP",
    "UNPAUSE",
    "Arg",
    "Call",
    "Envelope",
    "Script",
    "text",
    "wire",
]

Arg = str | int | float | bytes
#: An encoded envelope, as text or as the UTF-8 bytes the guard already produced.
Envelope = str | bytes


@dataclass(frozen=True)
class Script:
    """A Lua script shipped in ``router/storage/lua``; ``sha`` is what EVALSHA needs."""

    name: str
    source: str
    sha: str


def _load(name: str) -> Script:
    source = resources.files("router.storage").joinpath(f"lua/{name}.lua").read_text(encoding="utf-8")
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


ENQUEUE = _load("enqueue")
DEQUEUE = _load("dequeue")
ACK = _load("ack")
RETRY = _load("retry")
ARCHIVE = _load("archive")
REQUEUE = _load("requeue")
EXTEND = _load("extend")
MAINTAIN = _load("maintain")
SWEEP = _load("sweep")
QUARANTINE = _load("quarantine")
PAUSE = _load("pause")
UNPAUSE = _load("unpause")
RUN = _load("run")
DELETE = _load("delete")
OVERVIEW = _load("overview")
PAGE = _load("page")
CRON_FIRE = _load("cron_fire")
LOOKUP = _load("lookup")
CANCEL = _load("cancel")
CANCELLED = _load("cancelled")
FLUSH = _load("flush")
ALL_SCRIPTS = (ENQUEUE, DEQUEUE, ACK, RETRY, ARCHIVE, REQUEUE, EXTEND, MAINTAIN, SWEEP, QUARANTINE, CRON_FIRE, LOOKUP,
               CANCEL, CANCELLED, FLUSH, PAUSE, UNPAUSE, RUN, DELETE, OVERVIEW, PAGE)


@dataclass(frozen=True)
class Call:
    """One script invocation: every key it touches is in ``keys`` (ACL and cluster need that)."""

    script: Script
    keys: tuple[str, ...]
    args: tuple[Arg, ...]


def wire(text: str) -> str | bytes:
    """``text`` as sent to Redis: ids read back with surrogateescape (garbage pushed by another client that is
    not UTF-8) go out as their original bytes, so the member they name is found again."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")
    return text


def text(value: Any) -> str:
    """A reply's bytes as text (undecodable bytes kept by surrogateescape, so they go back out unchanged)."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)
