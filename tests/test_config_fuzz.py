"""Property: any input to router.load / router validate ends in a Registry or a ConfigError whose every problem is
located (file, line >= 1, column >= 1); never another exception. Random YAML text and mutations of the example
registry (deleted keys, changed types, junk strings, deep nesting, aliases, byte-level edits)."""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from regkit import REPO

import router
from router.errors import ConfigError, Problem
from router.ops.cli import main
from router.registry.model import Registry

FUZZ = settings(max_examples=50, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow], database=None)

EXAMPLE_TEXT = (REPO / "services.yaml").read_text(encoding="utf-8")
EXAMPLE_DATA: dict[str, Any] = yaml.safe_load(EXAMPLE_TEXT)

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                      st.text(max_size=12))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
junk = st.sampled_from(["", " ", "a:b", "{x}", "${NOPE}", "!!python/object:os.system", "*", "&", "null", "~", "0",
                        "-1", "1e999", "é", "\t", "x" * 300, "*/5 * * * *", "Europe/Paris", "../x.json", "$ref"])
yaml_piece = st.sampled_from(["version: 1\n", "services:\n", "  email:\n", "    tasks:\n", "      a.b: {}\n", "- ",
                              "cron:\n", "include: [x.yaml]\n", "&a ", "*a ", "!!str ", "!tag ", "<<: ", "{", "}",
                              "[", "]", ": ", "'", '"', "\n", "  ", "---\n", "? ", "|\n", ">\n", "#", "\x00", "\ufeff"])


@pytest.fixture(scope="module")
def fleet_dir() -> Iterator[Path]:
    """A copy of the example fleet's registry files, so mutations never touch the repository."""
    base = Path(tempfile.mkdtemp(prefix="router-fuzz-"))
    shutil.copy(REPO / "services.yaml", base / "services.yaml")
    shutil.copytree(REPO / "services.d", base / "services.d")
    shutil.copytree(REPO / "schemas", base / "schemas", symlinks=True)
    yield base
    shutil.rmtree(base)


def check_outcome(path: Path) -> Registry | None:
    """Load ``path``: a Registry, or a ConfigError whose problems are all located; anything else fails."""
    try:
        return router.load(path, env={})
    except ConfigError as exc:
        assert exc.problems, "a ConfigError must carry at least one problem"
        for problem in exc.problems:
            assert_located(problem)
        return None


def assert_located(problem: Problem) -> None:
    assert isinstance(problem.file, str) and problem.file
    assert isinstance(problem.line, int) and problem.line >= 1, problem
    assert isinstance(problem.column, int) and problem.column >= 1, problem
    assert problem.message and problem.code


def check_cli(path: Path) -> None:
    """`router validate --format json` on ``path`` exits 0 or 1 with well-formed, located JSON."""
    result = CliRunner().invoke(main, ["validate", str(path), "--format", "json"])
    assert result.exit_code in (0, 1), (result.exit_code, result.output, result.exception)
    document = json.loads(result.output)
    assert document["valid"] is (result.exit_code == 0)
    for p in document["problems"]:
        assert_located(Problem(p["file"], p["line"], p["column"], p["message"], p["code"]))


@FUZZ
@given(pieces=st.lists(st.one_of(yaml_piece, st.text(max_size=6)), max_size=25))
def test_random_yaml_text(fleet_dir: Path, pieces: list[str]) -> None:
    """Random YAML-ish text never escapes as anything but a located ConfigError."""
    path = fleet_dir / "random.yaml"
    path.write_bytes("".join(pieces).encode("utf-8", "surrogatepass"))
    check_outcome(path)


def paths_of(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            found += paths_of(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            found += paths_of(v, (*prefix, i))
    return found


def mutate(data: Any, path: tuple[Any, ...], action: str, value: Any) -> Any:
    """Apply one mutation at ``path`` of a deep copy of ``data``."""
    data = copy.deepcopy(data)
    if not path:
        return value if action != "nest" else [[[data]]]
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "replace":
        parent[last] = value
    elif action == "nest":
        nested: Any = parent[last]
        for _ in range(value if isinstance(value, int) and 0 < value < 90 else 70):
            nested = [nested]
        parent[last] = nested
    elif action == "alias":  # the same object twice: safe_dump writes an anchor and an alias
        parent[last] = data if isinstance(data, dict) and len(path) > 1 else parent[last]
        shared = parent[last]
        if isinstance(parent, dict):
            parent[f"{last}_again"] = shared
    elif action == "junk_key" and isinstance(parent[last], dict):
        parent[last][str(value)[:20]] = value
    return data


@FUZZ
@given(st.data())
def test_mutated_example_registry(fleet_dir: Path, data: st.DataObject) -> None:
    """Deleting keys, changing types, inserting junk, nesting deeply and aliasing never crash the loader."""
    paths = paths_of(EXAMPLE_DATA)
    path = data.draw(st.sampled_from(paths))
    action = data.draw(st.sampled_from(["delete", "replace", "nest", "alias", "junk_key"]))
    value = data.draw(st.one_of(json_value, junk))
    if action == "delete" and not path:
        action = "replace"
    mutated = mutate(EXAMPLE_DATA, path, action, value)
    target = fleet_dir / "services.yaml"
    try:
        text = yaml.safe_dump(mutated, allow_unicode=True)
    except yaml.YAMLError:  # a recursive structure: write the text form of the mutation instead
        text = EXAMPLE_TEXT + f"\nextra: {json.dumps(str(value))}\n"
    target.write_text(text, encoding="utf-8")
    try:
        check_outcome(target)
    finally:
        target.write_text(EXAMPLE_TEXT, encoding="utf-8")


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(EXAMPLE_TEXT)), st.integers(0, 8),
                                st.one_of(yaml_piece, junk, st.text(max_size=4))), min_size=1, max_size=4))
def test_text_edits_of_example_registry(fleet_dir: Path, edits: list[tuple[int, int, str]]) -> None:
    """Byte-level edits of the example text (cut and insert) through both router.load and the CLI."""
    text = EXAMPLE_TEXT
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut:]
    path = fleet_dir / "edited.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    check_outcome(path)
    check_cli(path)


@settings(max_examples=50, deadline=3000, database=None)
@given(payload=json_value, spec=st.one_of(junk, st.text(max_size=15)), tz=st.one_of(junk, st.text(max_size=15)))
def test_random_cron_entries(fleet_dir: Path, payload: Any, spec: str, tz: str) -> None:
    """Random cron specs, time zones and payloads are problems, never crashes."""
    entry = {"name": "fuzz", "task": "reports.digest", "spec": spec, "timezone": tz, "payload": payload}
    data = copy.deepcopy(EXAMPLE_DATA)
    data["cron"] = [entry]
    path = fleet_dir / "cron.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    check_outcome(path)
