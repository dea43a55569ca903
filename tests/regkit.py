"""Helpers for registry tests: write YAML/JSON files under tmp_path and collect the problems of a load."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

import router
from router.errors import ConfigError, Problem

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "services.yaml"

HEAD = "version: 1\n"


def write(base: Path, name: str, content: str | dict[str, Any]) -> Path:
    """Write ``content`` (YAML text, dedented; or a JSON-able dict) to ``base/name``; return the path."""
    path = base / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(textwrap.dedent(content).lstrip("\n"), encoding="utf-8")
    else:
        path.write_text(json.dumps(content), encoding="utf-8")
    return path


def problems(path: Path, env: dict[str, str] | None = None) -> list[Problem]:
    """The problems of loading ``path``; fails the test if it loads."""
    with pytest.raises(ConfigError) as info:
        router.load(path, env=env or {})
    return list(info.value.problems)


def only(found: list[Problem], code: str) -> Problem:
    """The single problem with ``code`` in ``found`` (fails listing them all otherwise)."""
    matching = [p for p in found if p.code == code]
    assert len(matching) == 1, f"expected one {code!r} problem, got: " + "\n".join(f"{p} [{p.code}]" for p in found)
    return matching[0]
