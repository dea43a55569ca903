"""Property: any input to router.load / router validate ends in a Registry or a ConfigError whose every problem is
located (file, line >= 1, column >= 1), within the loader's budget (5 s and 512 MiB a load); never another
exception, a hang or a blow-up. Inputs: random YAML text and mutations of the example registry (deleted keys,
changed types, junk strings, huge and non-finite numbers, deep nesting, aliases, byte-level edits); includes and
``$ref``s aimed at every kind of file (FIFOs, sockets, devices, directories, symlinks out of the tree or in loops,
/etc/passwd, non-UTF-8, sparse 5 MiB files, deep or non-JSON JSON); long strings repeated through aliases into
every field; payload schemas built from a grammar of references, anchors and applicators, each then fed to the
enqueue guard, which may only refuse with a GuardError.

Example counts are fixed (a CI profile: the file runs in well under a minute); ``ROUTER_FUZZ_SCALE=N`` multiplies
them for a nightly run. Loads that touch files or long strings run in a :class:`loadbox.LoadBox` child under
``RLIMIT_AS`` = 512 MiB; ``ROUTER_FUZZ_REPORT=path`` writes the loads' count, slowest time and peak RSS there.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loadbox import BUDGET_S, LoadBox, assert_bounded
from regkit import REPO

import router
from router.errors import ConfigError, GuardError, Problem
from router.ops.cli import main
from router.producer.guard import Guard
from router.registry.model import Registry

SCALE = int(os.environ.get("ROUTER_FUZZ_SCALE", "1"))


def fuzz(examples: int) -> settings:
    """The fixed CI profile: ``examples`` (times ROUTER_FUZZ_SCALE), no example database, no deadline flakes."""
    return settings(max_examples=examples * SCALE, deadline=None, database=None, suppress_health_check=[
        HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])


FUZZ = fuzz(150)

EXAMPLE_TEXT = (REPO / "services.yaml").read_text(encoding="utf-8")
EXAMPLE_DATA: dict[str, Any] = yaml.safe_load(EXAMPLE_TEXT)

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                      st.text(max_size=12))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
junk = st.sampled_from(["", " ", "a:b", "{x}", "${NOPE}", "!!python/object:os.system", "*", "&", "null", "~", "0",
                        "-1", "1e999", "é", "\t", "x" * 300, "*/5 * * * *", "Europe/Paris", "../x.json", "$ref",
                        "/etc/passwd", "/dev/zero", "#", "redis+cluster://h:1", "redis+sentinel://h:1/m"])
# Numbers as YAML text: spliced in verbatim, since safe_dump cannot write what Python cannot read back.
NUMBER_TOKENS = ["9" * 400, "-" + "9" * 400, "1" * 5000, ".nan", ".inf", "-.inf", "1.0e+999", "1.0e-999",
                 "0x" + "f" * 300, "1_000_000", "190:20:30", "-0", "0.5", str(2 ** 64), "1e400"]
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
    """Load ``path``: a Registry, or a ConfigError whose problems are all located, within the time budget;
    anything else fails."""
    start = time.perf_counter()
    try:
        return router.load(path, env={})
    except ConfigError as exc:
        assert exc.problems, "a ConfigError must carry at least one problem"
        for problem in exc.problems:
            assert_located(problem)
        return None
    finally:
        assert time.perf_counter() - start <= BUDGET_S


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


@FUZZ
@given(payload=json_value, spec=st.one_of(junk, st.text(max_size=15)), tz=st.one_of(junk, st.text(max_size=15)))
def test_random_cron_entries(fleet_dir: Path, payload: Any, spec: str, tz: str) -> None:
    """Random cron specs, time zones and payloads are problems, never crashes."""
    entry = {"name": "fuzz", "task": "reports.digest", "spec": spec, "timezone": tz, "payload": payload}
    data = copy.deepcopy(EXAMPLE_DATA)
    data["cron"] = [entry]
    path = fleet_dir / "cron.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    check_outcome(path)


# ---- numbers JSON cannot carry, spliced into every numeric field -------------------------------------------------

NUMERIC_PATHS = [p for p in paths_of(EXAMPLE_DATA) if p and isinstance(p[-1], str) and p[-1] in (
    "max_payload_bytes", "max_retry", "timeout_s", "retention_s", "concurrency", "weight", "version")]


@FUZZ
@given(where=st.sampled_from([*NUMERIC_PATHS, ("services", "email", "tasks", "email.receipt", "payload", "maxLength"),
                              ("services", "email", "tasks", "email.receipt", "payload", "multipleOf"),
                              ("services", "email", "tasks", "email.receipt", "unique_s"), ("cron",)]),
       token=st.sampled_from(NUMBER_TOKENS))
def test_huge_and_non_finite_numbers_anywhere(fleet_dir: Path, where: tuple[Any, ...], token: str) -> None:
    """A number of any size or kind in any numeric field is a located problem (or a legal value), never an
    OverflowError or a ValueError; a registry that loads routes payloads without raw exceptions."""
    marker = "NUMBER-MARKER"
    value: Any = [{"name": "c", "task": "email.receipt", "spec": "* * * * *", "payload": {"n": marker}}] \
        if where == ("cron",) else marker
    text = yaml.safe_dump(mutate(EXAMPLE_DATA, where, "replace", value), allow_unicode=True)
    path = fleet_dir / "numbers.yaml"
    path.write_text(text.replace(repr(marker), token).replace(marker, token), encoding="utf-8")
    registry = check_outcome(path)
    if registry is not None:
        route_anything(registry, {"n": 10 ** 400, "to": "a@b.c", "invoice_id": "x"})


def route_anything(registry: Registry, payload: Any) -> None:
    """Every task type of ``registry`` either routes ``payload`` or refuses it with a GuardError."""
    guard = Guard(registry)
    for task_type in registry.tasks:
        try:
            guard.route(task_type, payload)
        except GuardError:
            pass


# ---- payload schemas from a grammar of references, anchors and applicators ----------------------------------------

POINTERS = ["#", "#/properties/a", "#/properties/a/items", "#/$defs/x", "#/$defs/y", "#/$defs/x/allOf/0", "#x",
            "#meta", "#/nowhere", "other.json", "#/$defs/x/not", "#/items", "#/required", "#/$defs"]
schema_leaf = st.one_of(
    st.booleans(),
    st.fixed_dictionaries({}, optional={"type": st.sampled_from(["object", "string", "integer", "array", "null"]),
                                        "maximum": st.sampled_from([10 ** 400, -1, 0.5, 3]),
                                        "multipleOf": st.sampled_from([0.5, 3, 10 ** 300, 1e-300]),
                                        "minLength": st.sampled_from([0, 1, 10 ** 400]),
                                        "pattern": st.sampled_from(["^a", "(a+)+$", "["]),
                                        "format": st.sampled_from(["email", "date", "regex", "nope"]),
                                        "required": st.lists(st.sampled_from(["a", "b", 1]), max_size=3),
                                        "$ref": st.sampled_from(POINTERS),
                                        "$dynamicRef": st.sampled_from(POINTERS),
                                        "$anchor": st.sampled_from(["x", "meta", "1bad"]),
                                        "$dynamicAnchor": st.sampled_from(["x", "meta"])}),
)


def _applicators(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries({}, optional={
        "allOf": st.lists(inner, min_size=1, max_size=2), "anyOf": st.lists(inner, min_size=1, max_size=2),
        "not": inner, "if": inner, "then": inner, "else": inner, "items": inner,
        "properties": st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2),
        "$defs": st.dictionaries(st.sampled_from(["x", "y"]), inner, max_size=2),
        "$ref": st.sampled_from(POINTERS), "$dynamicRef": st.sampled_from(POINTERS),
        "$dynamicAnchor": st.sampled_from(["x", "meta"]),
    })


payload_schema = st.recursive(schema_leaf, _applicators, max_leaves=10)


@fuzz(300)
@given(schema=payload_schema, payload=json_value, with_cron=st.booleans())
def test_payload_schemas_from_a_grammar(fleet_dir: Path, schema: Any, payload: Any, with_cron: bool) -> None:
    """Self-references, dangling pointers and anchors, ``$dynamicRef``, huge bounds: the load refuses what cannot
    be evaluated (located), and whatever loads, the guard answers with a Route or a GuardError, never a raw
    exception (RecursionError, jsonschema's internal errors, OverflowError)."""
    data: dict[str, Any] = {"version": 1, "services": {"s": {"tasks": {"s.t": {"payload": schema}}}}}
    if with_cron:
        data["cron"] = [{"name": "c", "task": "s.t", "spec": "* * * * *",
                         "payload": payload if isinstance(payload, dict) else {"p": payload}}]
    path = fleet_dir / "schemas.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    registry = check_outcome(path)
    if registry is not None:
        route_anything(registry, payload if isinstance(payload, dict) else {"a": payload})
        route_anything(registry, {"a": {"a": [10 ** 400, "x"]}, "b": None})


# ---- includes and $refs aimed at every kind of file, loaded in a bounded child -------------------------------------

SECRET = "SECRET-7f3a-do-not-echo"


@pytest.fixture(scope="module")
def box() -> Iterator[LoadBox]:
    """One bounded child for the module; reports its figures to ROUTER_FUZZ_REPORT when set."""
    b = LoadBox()
    yield b
    b.close()
    report = os.environ.get("ROUTER_FUZZ_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"loads": b.loads, "slowest_s": round(b.slowest_s, 3),
                                 "peak_rss_mib": b.peak_rss >> 20}) + "\n")


@pytest.fixture(scope="module")
def targets() -> Iterator[tuple[Path, dict[str, str]]]:
    """A registry tree beside an outside directory, and every kind of file an include or $ref could name."""
    base = Path(tempfile.mkdtemp(prefix="router-fuzz-files-"))
    tree, outside = base / "tree", base / "outside"
    tree.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET + "\n", encoding="utf-8")
    (outside / "fragment.yaml").write_text("services: {outsider: {}}\n", encoding="utf-8")
    files = {
        "fragment.yaml": "services: {inside: {}}\n", "valid.json": json.dumps({"type": "object"}),
        "secret.txt": f"{SECRET} {SECRET}\n", "secret.json": f'{{"a": {SECRET}}}', "empty.yaml": "",
        "list.yaml": f"- {SECRET}\n", "cycle.yaml": "include: [cycle.yaml]\n",
        "bomb.yaml": "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
            f"a{i}: &a{i} [{','.join([f'*a{i - 1}' if i > 1 else '*a'] * 10)}]\n" for i in range(1, 8)),
        "loop.json": json.dumps({"$ref": "#"}), "dyn.json": json.dumps({"$dynamicRef": "#nowhere"}),
        "nan.json": '{"maximum": NaN}', "bigint.json": '{"maximum": ' + "9" * 5000 + "}",
        "list.json": "[1, 2]", "deep.json": "[" * 5000 + "]" * 5000, "shallowdeep.json": "[" * 80 + "]" * 80,
    }
    for name, text in files.items():
        (tree / name).write_text(text, encoding="utf-8")
    (tree / "latin1.yaml").write_bytes("services: {caf\xe9: {}}\n".encode("latin-1"))
    (tree / "binary.json").write_bytes(bytes(range(256)) * 4)
    with open(tree / "sparse.json", "wb") as fh:
        fh.truncate(5 * 1024 * 1024)
    os.mkfifo(tree / "fifo.yaml")
    (tree / "dir.yaml").mkdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tree / "socket.yaml"))
    for link, to in {"out.yaml": outside / "fragment.yaml", "out.json": outside / "secret.txt",
                     "loop-a.yaml": tree / "loop-b.yaml", "loop-b.yaml": tree / "loop-a.yaml",
                     "dangling.yaml": tree / "nowhere.yaml", "in.yaml": tree / "fragment.yaml",
                     "outdir": outside}.items():
        os.symlink(to, tree / link)
    names = {name: name for name in [*files, "latin1.yaml", "binary.json", "sparse.json", "fifo.yaml", "dir.yaml",
                                     "socket.yaml", "out.yaml", "out.json", "loop-a.yaml", "dangling.yaml",
                                     "in.yaml", "outdir/fragment.yaml", "outdir/secret.txt", "missing.yaml"]}
    names |= {"../outside/fragment.yaml": "../outside/fragment.yaml", "abs-outside": str(outside / "secret.txt"),
              "/etc/passwd": "/etc/passwd", "/dev/zero": "/dev/zero", "/dev/null": "/dev/null",
              "/dev/urandom": "/dev/urandom", "/proc/self/status": "/proc/self/status", "/": "/",
              "long": "x" * 5000, "nul": "a\x00b.yaml"}
    yield tree, names
    sock.close()
    shutil.rmtree(base)


@fuzz(200)
@given(data=st.data())
def test_includes_and_refs_to_every_kind_of_file(targets: tuple[Path, dict[str, str]], box: LoadBox,
                                                 data: st.DataObject) -> None:
    """Whatever an include or a $ref names, the load ends located and bounded (a FIFO never blocks it, a device is
    never read), reads nothing outside the tree unless the caller allows it, and never echoes a file that is not
    what it claims to be."""
    tree, names = targets
    keys = sorted(names)
    includes = data.draw(st.lists(st.sampled_from(keys), max_size=3), label="includes")
    refs = data.draw(st.lists(st.sampled_from(keys), max_size=2), label="refs")
    roots = data.draw(st.sampled_from([None, [str(tree.parent / "outside")], ["/dev", "/etc", "/proc", "/"]]))
    tasks = {f"s.t{i}": {"payload": {"$ref": names[k]}} for i, k in enumerate(refs)}
    document = {"version": 1, "include": [names[k] for k in includes], "services": {"s": {"tasks": tasks}}}
    root = tree / "services.yaml"
    root.write_text(json.dumps(document), encoding="utf-8")  # JSON is YAML, and keeps the NUL escaped
    outcome = box.load(root, roots=roots)
    assert_bounded(outcome)
    for p in outcome.problems:
        assert SECRET not in p.message, p
    if roots is None:  # nothing outside the tree was read: its fragment never shows up as a service
        assert outcome.kind != "registry" or not any("outside" in k for k in includes)


# ---- long strings repeated through aliases into every field --------------------------------------------------------

ALIAS_FIELDS = {
    "app": ("services:", "  s{i}: {{app: {v}}}"), "prefix": ("services:", "  s{i}: {{prefix: {v}}}"),
    "queue list": ("services:", "  s{i}: {{queues: [{v}]}}"), "priority": ("services:", "  s{i}: {{priority: {v}}}"),
    "unknown key": ("services:", "  s{i}: {{nope: {v}}}"),
    "task queue": ("services:\n  s:\n    tasks:", "      t.{i}: {{queue: {v}}}"),
    "payload $ref": ("services:\n  s:\n    tasks:", "      t.{i}: {{payload: {{$ref: {v}}}}}"),
    "payload pattern": ("services:\n  s:\n    tasks:", "      t.{i}: {{payload: {{type: string, pattern: {v}}}}}"),
    "payload enum": ("services:\n  s:\n    tasks:", "      t.{i}: {{payload: {{enum: [{v}, {v}]}}}}"),
    "timeout": ("services:\n  s:\n    tasks:", "      t.{i}: {{timeout_s: {v}}}"),
    "cron": ("services: {s: {tasks: {s.t: {}}}}\ncron:", "  - {{name: {v}, task: {v}, spec: {v}, timezone: {v}}}"),
    "include": ("include:", "  - {v}"),
}


@fuzz(60)
@given(field=st.sampled_from(sorted(ALIAS_FIELDS)), length=st.sampled_from([100, 10_000, 300_000, 1_000_000]),
       uses=st.integers(1, 3000), char=st.sampled_from(["a", "9", "a:", " é", "{", "/"]), quoted=st.booleans())
def test_long_strings_repeated_through_aliases(fleet_dir: Path, box: LoadBox, field: str, length: int, uses: int,
                                               char: str, quoted: bool) -> None:
    """Every problem message stays short and the load stays within budget, however often a long string repeats."""
    text = (char * length)[:length]
    scalar = json.dumps(text) if quoted or not text[0].isalnum() or ": " in text else text
    head, line = ALIAS_FIELDS[field]
    lines = ["version: 1", f"x-anchor: &big {scalar}", head] + [line.format(i=i, v="*big") for i in range(uses)]
    path = fleet_dir / "aliases.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    outcome = box.load(path)
    assert_bounded(outcome)
    assert all(len(p.message) < 2000 for p in outcome.problems), outcome.describe()
    assert len(outcome.problems) <= 1001

