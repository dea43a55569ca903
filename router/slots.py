"""Redis Cluster hash slots computed client-side: :func:`key_slot` applies the exact rule Redis uses
(CRC16-XMODEM of the key, or of its hash tag, modulo 16384) so tests and tools can check that every key a
script touches lives in one slot without asking a cluster node.
"""

from __future__ import annotations

__all__ = ["SLOT_COUNT", "hash_tag", "key_slot"]

SLOT_COUNT = 16384


def _build_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_TABLE = _build_table()


def _crc16(data: bytes) -> int:
    crc = 0
    table = _TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ byte) & 0xFF]
    return crc


def _as_bytes(key: str | bytes) -> bytes:
    # Redis sees the bytes the client sends; redis-py encodes str keys as UTF-8.
    return key.encode("utf-8") if isinstance(key, str) else bytes(key)


def hash_tag(key: str | bytes) -> bytes:
    """Return the part of ``key`` that Redis hashes: the hash tag if the key has a usable one, else the key.

    The tag is the content between the first ``{`` and the first ``}`` after it, used only when non-empty;
    so ``a{b}c{d}`` hashes ``b``, ``{}x`` and ``}{`` hash the whole key, and ``{{a}}`` hashes ``{a``.
    """
    data = _as_bytes(key)
    start = data.find(b"{")
    if start == -1:
        return data
    end = data.find(b"}", start + 1)
    if end == -1 or end == start + 1:
        return data
    return data[start + 1 : end]


def key_slot(key: str | bytes) -> int:
    """Return the Redis Cluster hash slot (0..16383) of ``key``, as ``CLUSTER KEYSLOT`` would."""
    return _crc16(hash_tag(key)) % SLOT_COUNT
