"""``${VAR}`` interpolation for the few registry values that differ per deployment (the ``redis`` section).

Only ``redis`` is interpolated on purpose: everything else in services.yaml is fleet policy reviewed in code and
checked by ``router validate`` in CI, so it must mean the same in CI and in production.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_ENV_REF = re.compile(r"\$(?:(\$)|\{([^}]*)\}|(\{))")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def interpolate(text: str, env: Mapping[str, str]) -> tuple[str, str | None]:
    """Expand ``${VAR}``, ``${VAR:-default}`` and ``$$`` in ``text``; returns (result, first error or None)."""
    errors: list[str] = []

    def expand(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        if match.group(3):
            errors.append(f"unterminated '${{' in {text!r}; write ${{VAR}}, ${{VAR:-default}} or $$ for a literal $")
            return ""
        name, sep, default = match.group(2).partition(":-")
        if not _ENV_NAME.fullmatch(name):
            errors.append(f"${{{match.group(2)}}} is not a variable reference; write ${{VAR}} or ${{VAR:-default}}")
            return ""
        value = env.get(name)
        if sep:
            return value if value else default
        if value is None:
            errors.append(f"environment variable {name} is not set; set it, or give a default: ${{{name}:-value}}")
            return ""
        return value

    result = _ENV_REF.sub(expand, text)
    return result, errors[0] if errors else None
