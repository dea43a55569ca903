"""The loader is total on numbers and payload schemas, and the guard on validators: huge and non-finite numbers,
self-referencing and unresolvable schemas, and alias-repeated big scalars each end in a located problem (or a
PayloadInvalid at enqueue), never another exception, within the time and memory budget."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from loadbox import LoadBox, assert_bounded
from regkit import only, problems, write

import router
from router.errors import PayloadInvalid, Problem
from router.producer.guard import Guard
from router.registry.cronspecs import CronEntries
from router.registry.model import QueueSpec, Registry, ServiceSpec, TaskSpec
from router.registry.payloads import freeze
from router.registry.yamlsource import parse_yaml

HUGE = "9" * 400

# YAML with {n} where the number goes, and the code it must produce ("": a legal payload schema that loads).
INTEGER_FIELDS = {
    "version": ("version: {n}\n", "schema-value"),
    "limits.max_payload_bytes": ("version: 1\nlimits: {{max_payload_bytes: {n}}}\n", "schema-range"),
    "defaults.max_retry": ("version: 1\ndefaults: {{max_retry: {n}}}\n", "schema-range"),
    "defaults.timeout_s": ("version: 1\ndefaults: {{timeout_s: {n}}}\n", "schema-range"),
    "defaults.retention_s": ("version: 1\ndefaults: {{retention_s: {n}}}\n", "schema-range"),
    "concurrency": ("version: 1\nservices:\n  s:\n    concurrency: {n}\n", "schema-range"),
    "queue weight": ("version: 1\nservices:\n  s:\n    queues: {{default: {{weight: {n}}}}}\n", "schema-range"),
    "task max_retry": ("version: 1\nservices:\n  s:\n    tasks:\n      s.t: {{max_retry: {n}}}\n", "schema-range"),
    "task timeout_s": ("version: 1\nservices:\n  s:\n    tasks:\n      s.t: {{timeout_s: {n}}}\n", "schema-range"),
    "task retention_s": ("version: 1\nservices:\n  s:\n    tasks:\n      s.t: {{retention_s: {n}}}\n",
                         "schema-range"),
    "task unique_s": ("version: 1\nservices:\n  s:\n    tasks:\n      s.t: {{unique_s: {n}}}\n", "schema-range"),
    "payload maxLength": ("version: 1\nservices:\n  s:\n    tasks:\n      s.t: {{payload: {{maxLength: {n}}}}}\n",
                          ""),
}


def position_of(text: str, marker: str) -> tuple[int, int]:
    """1-based line and column of ``marker`` in ``text``."""
    before = text[: text.index(marker)]
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


@pytest.mark.parametrize("field", list(INTEGER_FIELDS))
def test_a_400_digit_integer_in_any_integer_field_is_a_located_problem(tmp_path: Path, field: str) -> None:
    """Regression (issue 9 item 4): ``float()`` of a huge int raised OverflowError out of router.load."""
    text, code = INTEGER_FIELDS[field]
    path = write(tmp_path, "services.yaml", text.format(n=HUGE))
    line, column = position_of(text.format(n="{n}"), "{n}")
    if not code:  # a huge bound inside a payload schema is legal JSON Schema: it loads
        registry = router.load(path, env={})
        assert registry.tasks["s.t"].payload_schema["maxLength"] == int(HUGE)
        return
    found = problems(path)
    problem = only(found, code)
    assert (problem.line, problem.column) == (line, column), problem
    assert len(problem.message) < 300, "the number is quoted in full instead of shortened"
    assert "…" in problem.message


def test_an_integer_python_cannot_read_is_a_located_problem(tmp_path: Path) -> None:
    """Regression: a 5,000-digit integer hit Python's int-from-string limit (ValueError out of router.load)."""
    path = write(tmp_path, "services.yaml", f"version: 1\ndefaults: {{max_retry: {'1' * 5000}}}\n")
    problem = only(problems(path), "yaml-number")
    assert (problem.line, problem.column) == (2, 23)
    assert "digits" in problem.message and len(problem.message) < 300


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1.0e+999"])
def test_non_finite_numbers_are_refused(tmp_path: Path, value: str) -> None:
    """Sibling: ``timeout_s: .nan`` passed every range check (NaN compares false) and loaded as a timeout."""
    path = write(tmp_path, "services.yaml", f"version: 1\ndefaults: {{timeout_s: {value}}}\n")
    problem = only(problems(path), "yaml-number")
    assert (problem.line, problem.column) == (2, 23)
    assert "finite" in problem.message


def _task_yaml(payload: str, cron: bool = False) -> str:
    text = f"version: 1\nservices:\n  s:\n    tasks:\n      s.t:\n        payload: {payload}\n"
    if cron:
        text += "cron:\n  - {name: c, task: s.t, spec: '* * * * *'}\n"
    return text


def test_self_referencing_schema_used_by_cron_is_a_located_problem(tmp_path: Path) -> None:
    """Regression (issue 9 item 4): ``payload: {$ref: "#"}`` on a task a cron entry uses raised RecursionError."""
    path = write(tmp_path, "services.yaml", _task_yaml('{$ref: "#"}', cron=True))
    problem = only(problems(path), "payload-schema")
    assert (problem.line, problem.column) == (6, 25), problem
    assert "refers to itself" in problem.message


def test_the_cron_payload_check_survives_an_unevaluable_schema_on_its_own() -> None:
    """The cron check does not rely on the load having flagged the schema (nor on cron being refused)."""
    doc, found = parse_yaml("cron:\n  - {name: c, task: s.t, spec: '* * * * *', payload: {a: 1}}\n", "f.yaml")
    assert doc is not None and not found
    tasks = {name: TaskSpec(name, "s", "default", freeze(schema)) for name, schema in {
        "s.t": {"$ref": "#"}, "s.u": {"$dynamicRef": "#nowhere"}}.items()}
    for name in tasks:
        doc.data["cron"][0]["task"] = name
        out: list[Problem] = []
        CronEntries(out, tasks, bad_schema=set()).build([doc])
        problem = only(out, "cron-payload")
        assert problem.line == 2, problem
        assert "cannot be evaluated" in problem.message


@pytest.mark.parametrize(("payload", "says"), [
    ('{$ref: "#"}', "refers to itself"),
    ('{allOf: [{$ref: "#/$defs/a"}], $defs: {a: {not: {$ref: "#"}}}}', "refers to itself"),
    ('{properties: {a: {$ref: "#/properties/a"}}}', "refers to itself"),
    ('{$dynamicRef: "#meta"}', "'#meta'"),
    ('{properties: {a: {$dynamicRef: "#nope"}}}', "'#nope'"),
    ('{$ref: "#nope"}', "'#nope'"),
])
def test_schemas_that_cannot_be_evaluated_are_refused_at_load(tmp_path: Path, payload: str, says: str) -> None:
    """Regression (issue 9 item 4): a ``$dynamicRef`` schema passed validation, then every enqueue raised a
    jsonschema internal error. Loops and unresolvable anchors anywhere in the schema are found at load."""
    path = write(tmp_path, "services.yaml", _task_yaml(payload))
    problem = only(problems(path), "payload-schema")
    assert problem.line == 6 and says in problem.message, problem


@pytest.mark.parametrize("payload", [
    "{type: object, properties: {children: {type: array, items: {$ref: '#'}}}}",  # a tree: descends each time
    "{$defs: {node: {$dynamicAnchor: node, type: object}}, $ref: '#/$defs/node'}",
    "{$anchor: top, type: object, properties: {next: {$ref: '#top'}}}",
])
def test_recursive_schemas_that_descend_still_load(tmp_path: Path, payload: str) -> None:
    """No false alarm: a ``$ref`` loop that goes through the payload's structure is ordinary recursion."""
    registry = router.load(write(tmp_path, "services.yaml", _task_yaml(payload)), env={})
    Guard(registry).route("s.t", {"children": [{"children": []}], "next": {}})


def _registry_with(schema: dict[str, Any]) -> Registry:
    """A registry built in code, so the guard meets schemas the loader would refuse."""
    task = TaskSpec("s.t", "s", "default", freeze(schema))
    service = ServiceSpec("s", "s", (QueueSpec("default"),), MappingProxyType({"s.t": task}))
    return Registry(MappingProxyType({"s": service}), MappingProxyType({"s.t": task}))


@pytest.mark.parametrize(("schema", "payload"), [
    ({"$dynamicRef": "#meta"}, {}),
    ({"$ref": "#"}, {}),
    ({"properties": {"n": {"multipleOf": 0.5}}}, {"n": 10 ** 400}),
])
def test_the_guard_turns_validator_failures_into_payload_invalid(schema: dict[str, Any], payload: Any) -> None:
    """Regression (issue 9 item 4): the compiled validator's own exceptions escaped ``Client.enqueue`` raw."""
    with pytest.raises(PayloadInvalid) as info:
        Guard(_registry_with(schema)).route("s.t", payload)
    assert "cannot be evaluated" in str(info.value) and "services.yaml" in str(info.value)


@pytest.fixture(scope="module")
def box() -> Iterator[LoadBox]:
    b = LoadBox()
    yield b
    b.close()


def _alias_bomb_of_big_scalars(base: Path, shape: str) -> Path:
    big = "a" * 1_000_000
    if shape == "task fields":
        lines = ["version: 1", "services:", "  email:", f"    app: &big {big}", "    tasks:"]
        lines += [f"      email.t{i}: {{queue: *big, timeout_s: *big, payload: {{$ref: *big}}}}" for i in range(300)]
    elif shape == "service fields":
        lines = ["version: 1", "services:", "  email:", "    tasks:", f"      e.x: {{queue: &big {big}}}"]
        lines += [f"  s{i}: {{app: *big, prefix: *big, priority: *big, queues: [*big, *big]}}" for i in range(300)]
    else:  # keys of many mappings: unknown keys and list items
        lines = ["version: 1", f"include: [&big {big}]", "services:"]
        lines += [f"  s{i}: {{tasks: {{s.t{i}: {{queue: *big}}}}, queues: [*big]}}" for i in range(300)]
        lines += ["cron:"] + ["  - {name: *big, task: *big, spec: *big, timezone: *big}" for _ in range(100)]
    return write(base, f"alias-{shape.replace(' ', '-')}.yaml", "\n".join(lines) + "\n")


@pytest.mark.parametrize("shape", ["task fields", "service fields", "cron and includes"])
def test_alias_repeated_big_scalar_is_cheap(tmp_path: Path, box: LoadBox, shape: str) -> None:
    """Regression (issue 9 item 4): a 1 MB scalar repeated through aliases took tens of seconds and over 1 GB,
    each problem quoting it in full and fuzzy-matching it. Now: within budget, and every message is short."""
    outcome = box.load(_alias_bomb_of_big_scalars(tmp_path, shape))
    assert_bounded(outcome)
    assert outcome.kind == "config-error"
    assert max(len(p.message) for p in outcome.problems) < 1000, outcome.describe()


def _write_lines(base: Path, name: str, lines: list[str]) -> Path:
    path = base / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_deep_include_chain_is_refused_not_a_crash(tmp_path: Path, box: LoadBox) -> None:
    """Sibling: 1,200 files each including the next recursed until Python's stack ran out, which surfaced as a
    Rust panic (a BaseException) inside jsonschema's reference store."""
    _write_lines(tmp_path, "services.yaml", ["version: 1", "include: [a0.yaml]"])
    for i in range(1200):
        _write_lines(tmp_path, f"a{i}.yaml", [f"include: [a{i + 1}.yaml]" if i < 1199 else "services: {}"])
    outcome = box.load(tmp_path / "services.yaml")
    assert_bounded(outcome)
    assert [p.code for p in outcome.problems] == ["include-limit"], outcome.describe()


@pytest.mark.parametrize("shape", ["one body, many services", "many unknown keys", "many bad queue names"])
def test_problems_stop_at_a_thousand(tmp_path: Path, box: LoadBox, shape: str) -> None:
    """Sibling: one bad value repeated by aliases made a problem per repetition (900,000 of them: 10 to 15 s and
    half a gigabyte). A load now stops at 1,000 problems and says so."""
    if shape == "one body, many services":  # every service re-declares the same 100 task types
        lines = ["version: 1", "services:", "  s0: &s {tasks: {" + ", ".join(f"t.t{i}: {{}}" for i in range(100))
                 + "}}"] + [f"  s{i}: *s" for i in range(1, 3000)]
    elif shape == "many unknown keys":
        lines = ["version: 1", "services:", "  s:", "    tasks:", "      t.0: &t {"
                 + ", ".join(f"k{i}: 1" for i in range(300)) + "}"] + [f"      t.{i}: *t" for i in range(1, 1000)]
    else:
        lines = ["version: 1", "services:", "  s0: {queues: &q [" + ", ".join(f"'bad:{i}'" for i in range(1000))
                 + "]}"] + [f"  s{i}: {{queues: *q}}" for i in range(1, 300)]
    outcome = box.load(_write_lines(tmp_path, "services.yaml", lines))
    assert_bounded(outcome)
    assert len(outcome.problems) == 1001 and outcome.problems[0].code == "too-many-problems", outcome.describe()


def test_a_task_among_many_queues_is_looked_up_not_scanned(tmp_path: Path, box: LoadBox) -> None:
    """Sibling: each task's queue was searched in a list of its service's queues: 20,000 tasks on a service of
    100,000 queues (one alias) took minutes."""
    lines = ["version: 1", "services:", "  q: {queues: &q [" + ",".join(f"q{i}" for i in range(100_000)) + "]}",
             "  s:", "    queues: *q", "    tasks:"] + [f"      t{i}: {{queue: q99999}}" for i in range(20_000)]
    outcome = box.load(_write_lines(tmp_path, "services.yaml", lines))
    assert_bounded(outcome)
    assert outcome.kind == "registry", outcome.describe()


def test_duplicate_queue_names_are_found_in_linear_time(tmp_path: Path, box: LoadBox) -> None:
    """Sibling: jsonschema checks ``uniqueItems`` by comparing every pair when the items do not sort (mixed
    types): 30,000 queue entries took minutes. Now linear, and the duplicate is named."""
    items = [f"q{i}" if i % 2 else str(i) for i in range(30_000)] + ["q1"]
    lines = ["version: 1", "services:", "  s: {queues: [" + ", ".join(items) + "]}"]
    outcome = box.load(_write_lines(tmp_path, "services.yaml", lines))
    assert_bounded(outcome)
    duplicate = [p for p in outcome.problems if "more than once" in p.message]
    assert len(duplicate) == 1 and "'q1'" in duplicate[0].message, outcome.describe()


def test_schemas_needing_the_slow_metaschema_check_are_budgeted(tmp_path: Path, box: LoadBox) -> None:
    """Sibling: a payload schema the fast check cannot vouch for (here: `$anchor`s) goes through jsonschema's own
    metaschema check at about 0.2 ms a subschema: 20,000 properties took seconds. Beyond the budget, a problem."""
    lines = ["version: 1", "services:", "  s:", "    tasks:", "      s.t:", "        payload:",
             "          type: object", "          properties:"]
    lines += [f"            p{i}: {{type: string, maxLength: {i}, $anchor: a{i}}}" for i in range(20_000)]
    outcome = box.load(_write_lines(tmp_path, "services.yaml", lines))
    assert_bounded(outcome)
    problem = only(outcome.problems, "payload-schema")
    assert "metaschema check" in problem.message and (problem.line, problem.column) == (7, 11), problem


def test_a_reference_to_data_that_is_not_a_schema_is_refused(tmp_path: Path) -> None:
    """Sibling: ``$ref: "#/required"`` points at a list; the load accepted it and the validator raised
    AttributeError on every payload that had the property."""
    path = write(tmp_path, "services.yaml", _task_yaml('{required: [a], properties: {x: {$ref: "#/required"}}}'))
    problem = only(problems(path), "payload-schema")
    assert "not at a schema" in problem.message and problem.line == 6


@pytest.mark.parametrize("field", ["max_payload_bytes", "max_result_bytes"])
def test_payload_and_result_limits_stay_within_what_a_worker_reads(tmp_path: Path, field: str) -> None:
    """A worker refuses a stored message over 16 MiB: a payload or result limit above 7 MiB each would be accepted
    and then not honoured, so the load refuses it."""
    assert router.load(write(tmp_path, "ok.yaml", f"version: 1\nlimits: {{{field}: 7340032}}\n"), env={})
    with pytest.raises(router.ConfigError) as caught:
        router.load(write(tmp_path, "big.yaml", f"version: 1\nlimits: {{{field}: 7340033}}\n"), env={})
    assert [p.code for p in caught.value.problems] == ["schema-range"]
