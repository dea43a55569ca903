"""What an untagged plain YAML scalar means in a registry: YAML 1.1 resolution minus timestamps and ``=`` (so the
data stays JSON), and refusal of the numbers JSON cannot carry.

``.nan`` and ``.inf`` (and floats such as ``1.0e+999`` that overflow to infinity) are not JSON numbers, and NaN passes
every range check (it compares false with everything), so ``timeout_s: .nan`` would load as a timeout. An integer
of more than Python's 4,300-digit conversion limit cannot be read at all. Both are refused where they are written.
"""

from __future__ import annotations

import math
import re
import sys
from typing import Any

from yaml.constructor import SafeConstructor
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from router.quoting import quote

STR_TAG = "tag:yaml.org,2002:str"
MERGE_TAG = "tag:yaml.org,2002:merge"
_INT_TAG = "tag:yaml.org,2002:int"
# YAML 1.1 timestamps and the `=` value key are not JSON; leaving them unresolved keeps them strings.
_EXCLUDED_TAGS = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"}
_RESOLVERS: dict[str | None, list[tuple[str, re.Pattern[str]]]] = {
    first: [(tag, rx) for tag, rx in entries if tag not in _EXCLUDED_TAGS]
    for first, entries in Resolver.yaml_implicit_resolvers.items()
}
_CONSTRUCTOR = SafeConstructor()
_MAX_INT_DIGITS = getattr(sys, "get_int_max_str_digits", lambda: 4300)() or 4300


def resolve_tag(value: str) -> str:
    """The implicit tag of a plain scalar, as YAML 1.1 resolves it, minus timestamps and `=`."""
    candidates = _RESOLVERS.get("", []) if value == "" else _RESOLVERS.get(value[0], [])
    for tag, regexp in (*candidates, *_RESOLVERS.get(None, [])):
        if regexp.match(value):
            return tag
    return STR_TAG


def plain_value(text: str) -> tuple[Any, str | None]:
    """The value of the untagged plain scalar ``text``, and why it cannot be in a registry (None when it can).

    A refused number keeps its text as its value, so the checks after it see a string rather than a wrong number.
    """
    tag = resolve_tag(text)
    if tag in (STR_TAG, MERGE_TAG):
        return text, None
    if tag == _INT_TAG and sum(c.isdigit() for c in text) > _MAX_INT_DIGITS:
        return text, (f"an integer of {sum(c.isdigit() for c in text)} digits is too long to read (at most "
                      f"{_MAX_INT_DIGITS}); no registry setting needs one, so shorten it")
    try:
        value = _CONSTRUCTOR.construct_object(ScalarNode(tag, text))
    except ValueError:  # e.g. a sexagesimal integer whose parts overflow the digit limit
        return text, "a number too long to read; shorten it"
    if type(value) is float and not math.isfinite(value):
        return text, (f"{quote(text, 20)} is not a finite number, and registries hold JSON numbers only (no .nan or "
                      ".inf); give a finite number, or remove the setting for its default")
    return value, None
