"""router.load: the example fleet, frozen results, safe positioned YAML, includes and ${VAR} interpolation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from regkit import EXAMPLE, only, problems, write

import router
from router.registry import payloads, yamlsource
from router.registry.model import CatchUp, PriorityMode, QueueSpec


def test_example_fleet_loads_with_owners_queues_and_cron() -> None:
    """The example registry maps every task to its owner, its queue and the owner's prefix."""
    registry = router.load(EXAMPLE, env={})
    assert set(registry.services) == {"email", "billing", "reports"}
    email, billing = registry.service("email"), registry.service("billing")
    # The Asynq trap: both services have queues named default and critical, under different prefixes.
    assert {q.name for q in email.queues} == {q.name for q in billing.queues} == {"default", "critical"}
    assert email.prefix == "email" and billing.prefix == "billing"
    assert billing.priority is PriorityMode.STRICT and email.priority is PriorityMode.WEIGHTED
    assert billing.queue("critical") == QueueSpec("critical", 2)
    assert registry.tasks["billing.charge"].service == "billing"
    assert registry.tasks["billing.charge"].queue == "critical"
    assert registry.tasks["reports.digest"].location is not None
    assert registry.tasks["reports.digest"].location.file.endswith("services.d/reports.yaml")
    assert registry.tasks["email.welcome"].payload_schema["required"] == ["user_id", "to"]  # from its $ref file
    assert registry.tasks["email.welcome"].max_retry == 5
    assert registry.tasks["billing.invoice.render"].max_retry == 25  # from defaults
    digest, live = registry.cron
    assert (digest.name, digest.task, digest.spec, digest.timezone) == (
        "reports-nightly-digest", "reports.digest", "0 2 * * *", "Europe/Paris")
    assert dict(digest.payload) == {"period": "daily"} and digest.catch_up is CatchUp.LATEST  # the default
    assert digest.location is not None and digest.location.file.endswith("services.d/reports.yaml")
    assert (live.spec, live.timezone, live.catch_up) == ("* * * * * */5", "UTC", CatchUp.NONE)
    assert registry.redis_url == "redis://localhost:6379/0"
    assert registry.max_payload_bytes == 524288


def test_unique_tasks_and_cron_entries_load(tmp_path: Path) -> None:
    """unique_s and its policy load (a policy without a window is refused); cron entries are fired by
    `router scheduler`, so they load, with their catch-up policy."""
    root = write(tmp_path, "services.yaml", """
        version: 1
        services:
          a:
            tasks:
              a.x: {unique_s: 60}
              a.y: {unique_s: 600, unique_policy: until_finished}
              a.z: {unique_policy: until_finished}
        """)
    [problem] = problems(root)
    assert (problem.code, problem.line) == ("unique", 7) and "unique_policy needs unique_s" in problem.message
    root = write(tmp_path, "services.yaml", """
        version: 1
        services:
          a:
            tasks:
              a.x: {unique_s: 60}
              a.y: {unique_s: 600, unique_policy: until_finished}
        """)
    tasks = router.load(root, env={}).tasks
    assert (tasks["a.x"].unique_s, tasks["a.x"].unique_policy) == (60.0, router.UniquePolicy.TTL)
    assert (tasks["a.y"].unique_s, tasks["a.y"].unique_policy) == (600.0, router.UniquePolicy.UNTIL_FINISHED)
    root = write(tmp_path, "services.yaml", """
        version: 1
        services:
          a:
            tasks:
              a.x: {}
        cron:
          - {name: tick, task: a.x, spec: '*/5 * * * *', catch_up: all}
          - {name: tock, task: a.x, spec: '* * * * * */30', timezone: America/New_York}
        """)
    tick, tock = router.load(root, env={}).cron
    assert (tick.name, tick.spec, tick.timezone, tick.catch_up) == ("tick", "*/5 * * * *", "UTC", CatchUp.ALL)
    assert (tock.spec, tock.timezone, tock.catch_up) == ("* * * * * */30", "America/New_York", CatchUp.LATEST)


def test_registry_is_frozen_all_the_way_down() -> None:
    """Mappings are read-only proxies and lists refuse changes, including inside payload schemas."""
    registry = router.load(EXAMPLE, env={})
    with pytest.raises(TypeError):
        registry.services["x"] = registry.services["email"]  # type: ignore[index]
    with pytest.raises(TypeError):
        registry.tasks["email.welcome"].payload_schema["properties"]["to"]["type"] = "integer"  # type: ignore[index]
    with pytest.raises(TypeError):
        registry.tasks["email.welcome"].payload_schema["required"].append("locale")
    thawed = payloads.thaw(registry.tasks["email.welcome"].payload_schema)
    assert json.loads(json.dumps(thawed)) == thawed


def test_payload_validator_is_compiled_once_per_task_and_reports_violations() -> None:
    """payload_validator caches per TaskSpec; payload_violations gives JSON paths and messages."""
    registry = router.load(EXAMPLE, env={})
    spec = registry.tasks["billing.charge"]
    assert payloads.payload_validator(spec) is payloads.payload_validator(spec)
    assert payloads.payload_violations(spec, {"customer_id": "c1", "amount_cents": 100, "currency": "EUR"}) == []
    violations = payloads.payload_violations(spec, {"customer_id": "c1", "amount_cents": 0, "currency": "euro"})
    assert {v.path for v in violations} == {"$.amount_cents", "$.currency"}
    email = registry.tasks["email.welcome"]
    assert not payloads.payload_validator(email).is_valid({"user_id": 1, "to": "not-an-address"})  # format checked


def test_redis_url_interpolation(tmp_path: Path) -> None:
    """${VAR} and ${VAR:-default} expand from the given environment; $$ is a literal dollar."""
    root = write(tmp_path, "services.yaml", 'version: 1\nredis: {url: "redis://:pa$$word@${HOST:-db}:${PORT}/0"}\n')
    assert router.load(root, env={"PORT": "6380"}).redis_url == "redis://:pa$word@db:6380/0"
    assert router.load(root, env={"PORT": "1", "HOST": "h"}).redis_url == "redis://:pa$word@h:1/0"
    assert router.load(root, env={"PORT": "1", "HOST": ""}).redis_url == "redis://:pa$word@db:1/0"


def test_interpolation_applies_only_to_the_redis_section(tmp_path: Path) -> None:
    """Everything outside `redis` is literal, so CI validates exactly what production runs."""
    root = write(tmp_path, "services.yaml", 'version: 1\nservices:\n  email: {app: "pkg.mod:app"}\n'
                 "cron: []\n")
    assert router.load(root, env={}).services["email"].app == "pkg.mod:app"
    root = write(tmp_path, "services.yaml", 'version: 1\nservices:\n  "${SVC}": {}\n')
    assert "name-invalid" in [p.code for p in problems(root, env={"SVC": "email"})]


@pytest.mark.parametrize(("text", "code", "line", "column", "says"), [
    ("version: 1\nservices: !!python/object:os.system {}\n", "yaml-tag", 2, 11, "not allowed in a registry"),
    ("version: 1\nx: !custom 1\n", "yaml-tag", 2, 4, "'!custom'"),
    ("version: 1\na: &a [1, *a]\n", "yaml-recursive-alias", 2, 11, "recursive"),
    ("version: 1\nb: *nowhere\n", "yaml-syntax", 2, 4, "no anchor"),
    ("version: 1\nversion: 1\n", "yaml-duplicate-key", 2, 1, "duplicate key 'version' (first at line 1)"),
    ("version: 1\nservices:\n  1: {}\n", "yaml-key-type", 3, 3, "quote it ('1')"),
    ("version: 1\nservices:\n  on: {}\n", "yaml-key-type", 3, 3, "read as a boolean"),
    ("version: 1\n---\nversion: 1\n", "yaml-multiple-documents", 2, 1, "one YAML document"),
    ("version: 1\nservices: {email: [}\n", "yaml-syntax", 2, 20, "YAML syntax error"),
    ("version: 1\nx: \x07\n", "yaml-syntax", 2, 4, "not allowed in YAML"),
    ("version: 1\nx: " + "[" * 70 + "]" * 70 + "\n", "yaml-too-deep", 2, 67, "deeper than 64"),
    ("version: 1\nx: {<<: 3}\n", "yaml-merge", 2, 5, "merge key takes a mapping"),
])
def test_unsafe_or_ambiguous_yaml_is_a_located_problem(
        tmp_path: Path, text: str, code: str, line: int, column: int, says: str) -> None:
    """Tags, recursive and undefined aliases, duplicate or non-string keys, several documents, syntax errors,
    control characters, deep nesting and bad merges are each reported at their position."""
    root = tmp_path / "services.yaml"
    root.write_text(text, encoding="utf-8")
    problem = only(problems(root), code)
    assert (problem.file, problem.line, problem.column) == (str(root), line, column), str(problem)
    assert says in problem.message


def test_python_tags_are_never_constructed(tmp_path: Path) -> None:
    """A python/object tag is refused and nothing is executed, even with a valid registry around it."""
    marker = tmp_path / "pwned"
    root = write(tmp_path, "services.yaml", f"""
        version: 1
        x: !!python/object/apply:os.system ["touch {marker}"]
        """)
    assert only(problems(root), "yaml-tag").line == 2
    assert not marker.exists()


def test_billion_laughs_is_bounded(tmp_path: Path) -> None:
    """Nested aliases that would expand to billions of nodes stop at the node budget, quickly and located."""
    lines = ["version: 1", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    root = tmp_path / "services.yaml"
    root.write_text("\n".join(lines) + "\n", encoding="utf-8")
    problem = only(problems(root), "yaml-alias-bomb")
    assert problem.line == 7 and "alias bomb" in problem.message  # a6 is the first level past 10^6 nodes


def test_file_size_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file over the size bound is refused before it is parsed."""
    monkeypatch.setattr(yamlsource, "MAX_FILE_BYTES", 100)
    root = write(tmp_path, "services.yaml", "version: 1\n# " + "x" * 200 + "\n")
    problem = only(problems(root), "file-too-large")
    assert (problem.line, problem.column) == (1, 1) and "split it with `include:`" in problem.message


def test_invalid_utf8_is_located(tmp_path: Path) -> None:
    """A byte sequence that is not UTF-8 is reported at its line and column."""
    root = tmp_path / "services.yaml"
    root.write_bytes(b"version: 1\nx: ab\xff\n")
    problem = only(problems(root), "file-encoding")
    assert (problem.line, problem.column) == (2, 6)


def test_missing_root_file(tmp_path: Path) -> None:
    """A missing root file is one file-missing problem naming it."""
    problem = only(problems(tmp_path / "nope.yaml"), "file-missing")
    assert problem.file == str(tmp_path / "nope.yaml")


def test_empty_file_is_a_schema_problem(tmp_path: Path) -> None:
    """An empty file is not a registry: the top level must be a mapping."""
    root = write(tmp_path, "services.yaml", "# nothing\n")
    assert "the top level must be a mapping" in only(problems(root), "schema-type").message


def test_merge_keys_and_aliases_share_policy(tmp_path: Path) -> None:
    """`<<: *anchor` merges a mapping; keys written beside it win; dates stay strings."""
    root = write(tmp_path, "services.yaml", """
        version: 1
        services:
          email:
            tasks:
              email.a: &policy {timeout_s: 30, max_retry: 3}
              email.b:
                <<: *policy
                max_retry: 7
              email.c:
                payload: {type: object, properties: {when: {const: 2024-01-01}}}
        """)
    tasks = router.load(root, env={}).tasks
    assert (tasks["email.b"].timeout_s, tasks["email.b"].max_retry) == (30.0, 7)
    assert tasks["email.c"].payload_schema["properties"]["when"]["const"] == "2024-01-01"


def test_merge_key_after_the_same_text_as_a_value(tmp_path: Path) -> None:
    """A plain `<<` seen earlier as a value does not turn a later `<<:` into an ordinary key."""
    root = write(tmp_path, "services.yaml", """
        version: 1
        services:
          email:
            tasks:
              email.a: &policy {timeout_s: 30}
              email.b: {payload: {title: <<}}
              email.c: {<<: *policy}
        """)
    assert router.load(root, env={}).tasks["email.c"].timeout_s == 30.0


def test_queues_as_a_list_and_defaults(tmp_path: Path) -> None:
    """A queue list means weight 1 each; no queues means one `default` queue; a null task takes all defaults."""
    root = write(tmp_path, "services.yaml", """
        version: 1
        defaults: {max_retry: 3, timeout_s: 60, retention_s: 10}
        services:
          a:
            queues: [default, low]
            tasks:
              a.x:
          b:
            prefix: bee
            tasks:
              b.y: {queue: default, payload: false}
        """)
    registry = router.load(root, env={})
    assert registry.services["a"].queues == (QueueSpec("default", 1), QueueSpec("low", 1))
    assert registry.services["b"].queues == (QueueSpec("default", 1),)
    assert registry.services["b"].prefix == "bee"
    x = registry.tasks["a.x"]
    assert (x.queue, x.max_retry, x.timeout_s, x.retention_s, dict(x.payload_schema)) == (
        "default", 3, 60.0, 10.0, {"type": "object"})
    assert registry.tasks["b.y"].payload_schema is False


def test_nested_includes_resolve_relative_to_each_file(tmp_path: Path) -> None:
    """An included file may include further files, relative to itself; their services are merged."""
    root = write(tmp_path, "services.yaml", "version: 1\ninclude: [teams/a.yaml]\n")
    write(tmp_path, "teams/a.yaml", "include: [sub/b.yaml]\nservices:\n  a: {tasks: {a.x: {}}}\n")
    write(tmp_path, "teams/sub/b.yaml", "services:\n  b: {tasks: {b.y: {}}}\n")
    registry = router.load(root, env={})
    assert set(registry.tasks) == {"a.x", "b.y"}
    assert registry.tasks["b.y"].location is not None and registry.tasks["b.y"].location.file.endswith("sub/b.yaml")


def test_deep_problem_positions_are_exact(tmp_path: Path) -> None:
    """A problem deep inside an inline payload schema points at its own line, not at the task."""
    root = write(tmp_path, "services.yaml", """
        version: 1
        services:
          email:
            tasks:
              email.x:
                payload:
                  type: object
                  properties:
                    a:
                      type: object
                      properties:
                        b:
                          type: array
                          minItems: "2"
        """)
    problem = only(problems(root), "payload-schema")
    assert (problem.line, problem.column) == (14, 29)


def test_lifecycle_settings_that_cannot_be_honoured_are_refused(tmp_path: Path) -> None:
    """A cron entry cannot name a group or take a unique lock, and an aggregate member never finishes on its own:
    these combinations are located problems, never accepted and ignored."""
    root = write(tmp_path, "services.yaml", """
        version: 1
        services:
          a:
            tasks:
              a.item: {aggregate: {into: a.batch}}
              a.batch: {}
              a.once: {unique_s: 60}
              a.held: {unique_s: 60, unique_policy: until_finished, aggregate: {into: a.held_batch}}
              a.held_batch: {}
        cron:
          - {name: feed, task: a.item, spec: "* * * * *"}
          - {name: single, task: a.once, spec: "* * * * *"}
        """)
    found = {(p.code, p.line) for p in problems(root)}
    assert found == {("aggregate", 8), ("cron-aggregate", 11), ("cron-unique", 12)}, found
