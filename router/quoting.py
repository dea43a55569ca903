"""Quoting untrusted values inside error messages, bounded.

A message that repeats a value helps its reader only while the value is short; a registry value can be a megabyte
(and, through YAML aliases, the same megabyte in thousands of places), and a number can have thousands of digits.
:func:`quote` renders any value as a ``repr``-like text of at most about :data:`QUOTE_LIMIT` characters, marking
what it cut with an ellipsis, in time bounded by that limit rather than by the value's size.
"""

from __future__ import annotations

import reprlib

QUOTE_LIMIT = 80
ELLIPSIS = "…"
# Python refuses to turn an int of more than 4300 digits into text; 14,000 bits is about 4,200 digits.
_PRINTABLE_INT_BITS = 14_000

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple = 2, 4, 4, 4
_REPR.maxstring, _REPR.maxlong, _REPR.maxother = QUOTE_LIMIT // 2, 40, QUOTE_LIMIT // 2


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)``, shortened to about ``limit`` characters with an ellipsis where it was cut."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        head = repr(value[:limit])
        return f"{head[:-1]}{ELLIPSIS}{head[-1]} ({len(value)} characters)"
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > _PRINTABLE_INT_BITS:
            return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
        text = str(value)
        if len(text) <= limit:
            return text
        return f"{text[:limit // 2]}{ELLIPSIS}{text[-8:]} ({len(text.lstrip('-'))} digits)"
    try:
        text = _REPR.repr(value)
    except ValueError:  # an int too long to print, somewhere inside a container
        text = f"<a {type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + ELLIPSIS
