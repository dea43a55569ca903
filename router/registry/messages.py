"""Wording problem messages about registry values: paths in YAML terms and "did you mean" hints, both bounded.

Aliases let one long value appear at thousands of places in a registry, and every problem there renders it; so the
path of a node is shortened part by part, and fuzzy matching (difflib, quadratic in the worst case) runs only on
short names against a bounded list of candidates. Values themselves are quoted with :func:`router.quoting.quote`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from itertools import islice

from router.quoting import quote

# Names longer than this get no "did you mean": no real key, queue or task type is that long, and difflib's cost
# grows with the square of the length.
FUZZY_MAX_CHARS = 128
# Candidates considered for a suggestion; registries declare a few, only an alias-built list holds thousands.
FUZZY_MAX_CANDIDATES = 1000
_PART_LIMIT = 40

Path = tuple[str | int, ...]


def suggest(name: object, candidates: Iterable[object]) -> str:
    """' (did you mean X?)' when ``name`` is close to one of ``candidates``, else ''."""
    if not isinstance(name, str) or len(name) > FUZZY_MAX_CHARS:
        return ""
    names = [c for c in (str(c) for c in islice(candidates, FUZZY_MAX_CANDIDATES)) if len(c) <= FUZZY_MAX_CHARS]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def where(path: Path) -> str:
    """A YAML-ish rendering of a path: ``services.email.tasks['email.welcome'].queue``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part and len(part) <= _PART_LIMIT and all(c.isalnum() or c in "_-" for c in part):
            out += f".{part}" if out else part
        else:
            out += f"[{quote(part, _PART_LIMIT)}]"
    return out or "the top level"
