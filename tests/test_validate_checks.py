"""One test per registry check: each asserts the problem's code, file, line, column and the fix it suggests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from regkit import only, problems, write

import router


@dataclass
class Case:
    """A registry (root file plus extra files) and the one problem it must produce."""

    yaml: str
    code: str
    line: int
    column: int
    says: tuple[str, ...]
    files: dict[str, str | dict[str, object]] = field(default_factory=dict)
    file: str = "services.yaml"


CASES: dict[str, Case] = {
    "version": Case("""
        version: 2
        """, "schema-value", 1, 10, ("version must be 1",)),
    "unknown top-level key, with suggestion": Case("""
        version: 1
        servces: {}
        """, "unknown-key", 2, 1, ("unknown key 'servces'", "did you mean 'services'?", "allowed keys:")),
    "unknown task key": Case("""
        version: 1
        services:
          email:
            tasks:
              email.welcome: {queue: default, retries: 3}
        """, "unknown-key", 5, 39, ("unknown key 'retries'", "services.email.tasks['email.welcome']", "max_retry")),
    "wrong type": Case("""
        version: 1
        services:
          email:
            concurrency: "ten"
        """, "schema-type", 4, 18, ("services.email.concurrency must be an integer", "the string 'ten'")),
    "zero timeout": Case("""
        version: 1
        services:
          email:
            tasks:
              email.welcome: {timeout_s: 0}
        """, "schema-range", 5, 34, ("timeout_s must be > 0", "got 0")),
    "negative retries": Case("""
        version: 1
        defaults: {max_retry: -1}
        """, "schema-range", 2, 23, ("defaults.max_retry must be >= 0",)),
    "bad priority": Case("""
        version: 1
        services:
          email: {priority: strikt}
        """, "schema-value", 3, 21, ("must be one of 'weighted', 'strict'", "did you mean 'strict'?")),
    "missing cron field": Case("""
        version: 1
        cron:
          - {name: nightly, task: a.b}
        """, "schema-required", 3, 5, ("cron[0] is missing required key(s) 'spec'",)),
    "bad app path": Case("""
        version: 1
        services:
          email: {app: "examples/fleet/email.py"}
        """, "schema-value", 3, 16, ("app must look like 'package.module:attribute'",)),
    "task declared by two services": Case("""
        version: 1
        services:
          email:
            tasks:
              shared.task: {}
          billing:
            tasks:
              shared.task: {}
        """, "duplicate-task", 8, 7, ("'shared.task' is declared twice", "service 'billing' here",
                                      "service 'email' at {d}/services.yaml:5")),
    "task declared twice across included files": Case("""
        version: 1
        include: [teams/billing.yaml]
        services:
          email:
            tasks:
              email.welcome: {}
        """, "duplicate-task", 5, 7, ("'email.welcome' is declared twice", "service 'billing' here",
                                      "service 'email' at {d}/services.yaml:6"),
        files={"teams/billing.yaml": "services:\n  billing:\n    tasks:\n      other: {}\n      email.welcome: {}\n"},
        file="teams/billing.yaml"),
    "service declared in two files": Case("""
        version: 1
        include: [more.yaml]
        services:
          email: {}
        """, "duplicate-service", 2, 3, ("service 'email' is declared twice", "{d}/services.yaml:4"),
        files={"more.yaml": "services:\n  email: {}\n"}, file="more.yaml"),
    "task type declared twice in one mapping": Case("""
        version: 1
        services:
          email:
            tasks:
              email.welcome: {}
              email.welcome: {}
        """, "yaml-duplicate-key", 6, 7, ("duplicate key 'email.welcome' (first at line 5)",)),
    "empty prefix": Case("""
        version: 1
        services:
          email: {prefix: ""}
        """, "prefix-invalid", 3, 19, ("prefix '' is empty",)),
    "prefix with a colon": Case("""
        version: 1
        services:
          email: {prefix: "app:email"}
        """, "prefix-invalid", 3, 19, ("contains a colon",)),
    "prefix with a brace": Case("""
        version: 1
        services:
          email: {prefix: "{email}"}
        """, "prefix-invalid", 3, 19, ("contains a brace", "hash tag")),
    "prefix with whitespace": Case("""
        version: 1
        services:
          email: {prefix: "e mail"}
        """, "prefix-invalid", 3, 19, ("contains whitespace",)),
    "prefix too long": Case(f"""
        version: 1
        services:
          email: {{prefix: "{'p' * 65}"}}
        """, "prefix-invalid", 3, 19, ("65 characters long, over 64",)),
    "two services, one prefix": Case("""
        version: 1
        services:
          email: {}
          mailer: {prefix: email}
        """, "prefix-duplicate", 4, 20, ("prefix 'email' of service 'mailer' is already the prefix of service "
                                         "'email' ({d}/services.yaml:3)", "its own `prefix:`")),
    "service name with a colon": Case("""
        version: 1
        services:
          "email:v2": {}
        """, "name-invalid", 3, 3, ("service name 'email:v2' contains a colon",)),
    "queue name with a brace": Case("""
        version: 1
        services:
          email:
            queues: {"de{fault": {}}
        """, "name-invalid", 4, 14, ("queue name 'de{fault' contains a brace",)),
    "queue name in list form with whitespace": Case("""
        version: 1
        services:
          email:
            queues: [default, "hi prio"]
        """, "name-invalid", 4, 23, ("queue name 'hi prio' contains whitespace",)),
    "task type with whitespace": Case("""
        version: 1
        services:
          email:
            tasks:
              "email welcome": {}
        """, "name-invalid", 5, 7, ("task type 'email welcome' contains whitespace",)),
    "task type too long": Case(f"""
        version: 1
        services:
          email:
            tasks:
              {'t' * 129}: {{}}
        """, "name-invalid", 5, 7, ("129 characters long, over 128",)),
    "task on an undeclared queue": Case("""
        version: 1
        services:
          email:
            queues: {default: {}, critical: {weight: 5}}
            tasks:
              email.welcome: {queue: critcal}
        """, "unknown-queue", 6, 30, ("on queue 'critcal', which service 'email' does not declare",
                                      "did you mean 'critical'?", "declared queues: default, critical")),
    "task on the default queue its service lacks": Case("""
        version: 1
        services:
          email:
            queues: [critical]
            tasks:
              email.welcome: {}
        """, "unknown-queue", 6, 7, ("on queue 'default' (the default queue)", "declared queues: critical")),
    "inline payload schema invalid": Case("""
        version: 1
        services:
          email:
            tasks:
              email.welcome:
                payload:
                  type: object
                  properties:
                    to: {type: strin}
        """, "payload-schema", 9, 24, ("payload schema of 'email.welcome' is not a valid JSON Schema",
                                       "'strin' is not a JSON Schema type")),
    "inline payload schema with a bad minimum": Case("""
        version: 1
        services:
          email:
            tasks:
              email.welcome:
                payload: {type: object, minProperties: -1}
        """, "payload-schema", 6, 48, ("not a valid JSON Schema", "-1")),
    "payload $ref file missing": Case("""
        version: 1
        services:
          email:
            tasks:
              email.welcome:
                payload: {$ref: "schemas/nope.json"}
        """, "payload-schema", 6, 25, ("schemas/nope.json' not found", "relative to")),
    "payload $ref file not JSON": Case("""
        version: 1
        services:
          email:
            tasks:
              email.welcome:
                payload: {$ref: "schemas/bad.json"}
        """, "payload-schema", 6, 25, ("schemas/bad.json:2:3: payload schema is not valid JSON",),
        files={"schemas/bad.json": '{"type": "object",\n  oops\n}\n'}),
    "payload $ref file not a schema": Case("""
        version: 1
        services:
          email:
            tasks:
              email.welcome:
                payload: {$ref: "schemas/x.json"}
        """, "payload-schema", 6, 25, ("payload schema 'schemas/x.json' of 'email.welcome' is not a valid JSON Schema",
                                       "required"),
        files={"schemas/x.json": {"type": "object", "required": "to"}}),
    "payload schema with an external $ref": Case("""
        version: 1
        services:
          email:
            tasks:
              email.welcome:
                payload:
                  properties:
                    to: {$ref: "other.json#/x"}
        """, "payload-schema", 8, 24, ("points outside this schema", "self-contained")),
    "payload schema with a dangling pointer": Case("""
        version: 1
        services:
          email:
            tasks:
              email.welcome:
                payload:
                  properties:
                    to: {$ref: "#/$defs/address"}
        """, "payload-schema", 8, 24, ("'#/$defs/address' points to nothing",)),
    "cron spec": Case("""
        version: 1
        services: {reports: {tasks: {reports.digest: {}}}}
        cron:
          - {name: nightly, task: reports.digest, spec: "0 25 * * *"}
        """, "cron-spec", 4, 49, ("cron spec '0 25 * * *' does not parse", "five fields")),
    "cron time zone": Case("""
        version: 1
        services: {reports: {tasks: {reports.digest: {}}}}
        cron:
          - name: nightly
            task: reports.digest
            spec: "0 2 * * *"
            timezone: Europe/Pariss
        """, "cron-timezone", 7, 15, ("unknown time zone 'Europe/Pariss'", "IANA")),
    "cron unknown task": Case("""
        version: 1
        services: {reports: {tasks: {reports.digest: {}}}}
        cron:
          - {name: nightly, task: reports.digets, spec: "0 2 * * *"}
        """, "cron-unknown-task", 4, 27, ("unknown task type 'reports.digets'", "did you mean 'reports.digest'?")),
    "cron payload fails the task's schema": Case("""
        version: 1
        services:
          reports:
            tasks:
              reports.digest:
                payload: {type: object, properties: {period: {enum: [daily, weekly]}}}
        cron:
          - name: nightly
            task: reports.digest
            spec: "0 2 * * *"
            payload: {period: hourly}
        """, "cron-payload", 11, 23, ("cron entry 'nightly': payload does not match the schema of 'reports.digest'",
                                      "'hourly' is not one of")),
    "cron name twice": Case("""
        version: 1
        services: {reports: {tasks: {reports.digest: {}}}}
        cron:
          - {name: nightly, task: reports.digest, spec: "0 2 * * *"}
          - {name: nightly, task: reports.digest, spec: "0 3 * * *"}
        """, "duplicate-cron", 5, 12, ("cron entry 'nightly' is declared twice (first at {d}/services.yaml:4)",)),
    "cron spec written seconds first": Case("""
        version: 1
        services: {reports: {tasks: {reports.digest: {}}}}
        cron:
          - {name: half-minute, task: reports.digest, spec: "*/30 * * * * *"}
        """, "cron-spec", 4, 53, ("fires every second of the minutes '*/30'", "seconds and comes LAST",
                                  "'* * * * * */30'")),
    "six-field cron spec that does not parse": Case("""
        version: 1
        services: {reports: {tasks: {reports.digest: {}}}}
        cron:
          - {name: asynq-style, task: reports.digest, spec: "0 30 2 * * 1"}
        """, "cron-spec", 4, 53, ("does not parse", "sixth field is the seconds and comes LAST")),
    "cron spec in Asynq's @every form": Case("""
        version: 1
        services: {reports: {tasks: {reports.digest: {}}}}
        cron:
          - {name: every, task: reports.digest, spec: "@every 30s"}
        """, "cron-spec", 4, 47, ("There is no @every", "'* * * * * */30' (seconds LAST)")),
    "cron spec that never fires": Case("""
        version: 1
        services: {reports: {tasks: {reports.digest: {}}}}
        cron:
          - {name: never, task: reports.digest, spec: "0 0 31 2 *"}
        """, "cron-spec", 4, 47, ("cron spec '0 0 31 2 *' never fires",)),
    "cron catch-up policy": Case("""
        version: 1
        services: {reports: {tasks: {reports.digest: {}}}}
        cron:
          - {name: nightly, task: reports.digest, spec: "0 2 * * *", catch_up: every}
        """, "schema-value", 4, 72, ("catch_up", "'latest'", "'all'", "'none'")),
    "cron catch-up policy of the wrong type": Case("""
        version: 1
        services: {reports: {tasks: {reports.digest: {}}}}
        cron:
          - {name: nightly, task: reports.digest, spec: "0 2 * * *", catch_up: [latest]}
        """, "schema-value", 4, 72, ("cron[0].catch_up must be one of", "got ['latest']")),
    "cron name with a colon": Case("""
        version: 1
        services: {reports: {tasks: {reports.digest: {}}}}
        cron:
          - {name: "a:b", task: reports.digest, spec: "0 2 * * *"}
        """, "name-invalid", 4, 12, ("cron name 'a:b' contains a colon",)),
    "redis url scheme": Case("""
        version: 1
        redis: {url: "http://localhost:6379"}
        """, "redis-url", 2, 14, ("must start with redis://, rediss:// (TLS) or unix://",)),
    "unset variable without default": Case("""
        version: 1
        redis: {url: "redis://${REDIS_HOST}:6379/0"}
        """, "env", 2, 14, ("environment variable REDIS_HOST is not set", "${REDIS_HOST:-value}")),
    "malformed interpolation": Case("""
        version: 1
        redis: {url: "redis://${REDIS-HOST}:6379/0"}
        """, "env", 2, 14, ("${REDIS-HOST} is not a variable reference",)),
    "missing include": Case("""
        version: 1
        include:
          - teams/ghost.yaml
        """, "include-missing", 3, 5, ("included file '{d}/teams/ghost.yaml' is not found", "relative to")),
    "include cycle": Case("""
        version: 1
        include: [a.yaml]
        """, "include-cycle", 1, 11, ("include cycle: {d}/a.yaml -> {d}/b.yaml -> {d}/a.yaml",),
        files={"a.yaml": "include: [b.yaml]\n", "b.yaml": "include: [a.yaml]\n"}, file="b.yaml"),
    "included twice": Case("""
        version: 1
        include: [a.yaml, a.yaml]
        """, "include-duplicate", 2, 19, ("is already included (from {d}/services.yaml:2)",),
        files={"a.yaml": "services: {}\n"}),
    "included file holds a root-only key": Case("""
        version: 1
        include: [a.yaml]
        """, "unknown-key", 1, 1, ("unknown key 'redis'", "included files may hold only include, services and cron"),
        files={"a.yaml": "redis: {url: 'redis://x'}\n"}, file="a.yaml"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_check_reports_located_fixable_problem(tmp_path: Path, case: Case) -> None:
    """Each broken registry yields exactly one problem of the expected code, at the offending node, saying the fix."""
    root = write(tmp_path, "services.yaml", case.yaml)
    for name, content in case.files.items():
        write(tmp_path, name, content)
    problem = only(problems(root), case.code)
    assert problem.file == str(tmp_path / case.file)
    assert (problem.line, problem.column) == (case.line, case.column), str(problem)
    for fragment in case.says:
        assert fragment.replace("{d}", str(tmp_path)) in problem.message, problem.message


def test_every_problem_is_collected_not_just_the_first(tmp_path: Path) -> None:
    """Problems of different kinds in different files are all reported in one ConfigError, in file order."""
    root = write(tmp_path, "services.yaml", """
        version: 1
        include: [team.yaml]
        services:
          email:
            prefix: "a b"
            tasks:
              email.welcome: {queue: nope, timeout_s: -5}
        cron:
          - {name: c, task: ghost, spec: "bad", timezone: "Nowhere/City"}
        """)
    write(tmp_path, "team.yaml", "services:\n  billing:\n    tasks:\n      email.welcome: {}\n")
    found = problems(root)
    codes = [p.code for p in found]
    for code in ("prefix-invalid", "unknown-queue", "schema-range", "cron-unknown-task", "cron-spec", "cron-timezone",
                 "duplicate-task"):
        assert code in codes, codes
    assert [p.file for p in found] == sorted((p.file for p in found), key=lambda f: f.endswith("team.yaml"))


def test_payload_ref_is_relative_to_the_including_file(tmp_path: Path) -> None:
    """A $ref in an included file resolves against that file's directory, not the root's."""
    root = write(tmp_path, "services.yaml", "version: 1\ninclude: [teams/t.yaml]\n")
    write(tmp_path, "teams/t.yaml", 'services:\n  t:\n    tasks:\n      t.x: {payload: {$ref: "s.json"}}\n')
    write(tmp_path, "teams/s.json", {"type": "object", "required": ["id"]})
    registry = router.load(root, env={})
    assert registry.tasks["t.x"].payload_schema["required"] == ["id"]
