"""`router validate` through click's CliRunner: exit codes 0/1/2, text and JSON output, --import."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from regkit import EXAMPLE, REPO, write

from router.ops.cli import main


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validate", *args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def broken(tmp_path: Path) -> Path:
    return write(tmp_path, "services.yaml", """
        version: 1
        services:
          email:
            tasks:
              email.welcome: {queue: fast, timeout_s: -1}
        """)


def test_example_fleet_is_valid_with_import() -> None:
    """The example fleet passes, handlers included: exit 0 and a summary line."""
    code, out = run(str(EXAMPLE), "--import")
    assert code == 0, out
    assert out.strip() == f"{EXAMPLE}: valid (3 services, 8 task types, 2 cron entries)"


def test_invalid_registry_text_output(tmp_path: Path) -> None:
    """Exit 1; one `file:line:col: message [code]` line per problem, then a summary."""
    path = broken(tmp_path)
    code, out = run(str(path))
    lines = out.strip().splitlines()
    assert code == 1
    assert lines[0].startswith(f"{path}:5:30: task 'email.welcome' is on queue 'fast'")
    assert lines[0].endswith("[unknown-queue]")
    assert lines[1].startswith(f"{path}:5:47: services.email.tasks['email.welcome'].timeout_s must be > 0")
    assert lines[-1] == f"{path}: invalid, 2 problem(s)"


def test_invalid_registry_json_output(tmp_path: Path) -> None:
    """--format json prints {valid, problems[{file,line,column,code,message}]} and still exits 1."""
    path = broken(tmp_path)
    code, out = run(str(path), "--format", "json")
    document = json.loads(out)
    assert code == 1 and document["valid"] is False
    assert [(p["file"], p["line"], p["column"], p["code"]) for p in document["problems"]] == [
        (str(path), 5, 30, "unknown-queue"), (str(path), 5, 47, "schema-range")]
    assert all(p["message"] for p in document["problems"])


def test_valid_registry_json_output() -> None:
    """A valid registry in JSON is {"valid": true, "problems": []}."""
    code, out = run(str(EXAMPLE), "--format", "json")
    assert (code, json.loads(out)) == (0, {"valid": True, "problems": []})


@pytest.mark.parametrize("args", [["does/not/exist.yaml"], [str(REPO)], ["--format", "yaml", str(EXAMPLE)],
                                  ["--bogus"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    """An unreadable PATH, a directory, or a bad option is a usage error: exit 2."""
    code, _ = run(*args)
    assert code == 2


def test_path_defaults_to_env_then_services_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without PATH, ROUTER_REGISTRY is used, else ./services.yaml."""
    path = broken(tmp_path)
    assert run(env={"ROUTER_REGISTRY": str(path)})[0] == 1
    assert run(env={"ROUTER_REGISTRY": str(EXAMPLE)})[0] == 0
    monkeypatch.chdir(tmp_path)
    code, out = run(env={"ROUTER_REGISTRY": ""})
    assert code == 1 and out.strip().endswith("services.yaml: invalid, 2 problem(s)")


def test_import_of_a_broken_fleet_names_the_owner(tmp_path: Path) -> None:
    """--import fails (exit 1) when a service handles a task another service owns, naming the owner."""
    module = f"fleet_{uuid.uuid4().hex[:8]}"
    write(tmp_path, f"{module}/__init__.py", "")
    write(tmp_path, f"{module}/email.py", """
        from router import Service
        app = Service("email")
        @app.handler("email.welcome")
        def welcome(task): return None
        @app.handler("billing.charge")
        def charge(task): return None
        """)
    write(tmp_path, f"{module}/billing.py", """
        from router import Service
        app = Service("billing")
        @app.handler("billing.charge")
        def charge(task): return None
        """)
    path = write(tmp_path, "services.yaml", f"""
        version: 1
        services:
          email:
            app: "{module}.email:app"
            tasks:
              email.welcome: {{}}
          billing:
            app: "{module}.billing:app"
            tasks:
              billing.charge: {{}}
        """)
    assert run(str(path))[0] == 0  # without --import only the registry is checked
    code, out = run(str(path), "--import")
    assert code == 1
    first = out.splitlines()[0]
    assert first.startswith(f"{path}:4:10: {module}.email:app registers a handler for 'billing.charge'")
    assert f"owned by service 'billing' ({path}:10)" in first
    assert first.endswith("[handler-foreign]")


def test_help_documents_exit_codes() -> None:
    """`router validate --help` states the exit codes."""
    result = CliRunner().invoke(main, ["validate", "--help"])
    assert result.exit_code == 0
    for fragment in ("0 the registry is valid", "1 it is invalid", "2 usage error"):
        assert fragment in " ".join(result.output.split())
