"""Importing each service's handler set and comparing it with the registry (router validate --import, worker start)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from enginekit import build_registry, task
from regkit import EXAMPLE, REPO, write

import router
from router.registry.appload import AppLoadError, check_handlers, compare_handlers, load_app
from router.registry.model import AggregateSpec, Registry


@pytest.fixture
def pkg(tmp_path: Path) -> Iterator[str]:
    """A unique importable module name under tmp_path (unique so sys.modules never serves a stale copy)."""
    name = f"handlers_{uuid.uuid4().hex[:8]}"
    sys.path.insert(0, str(tmp_path))
    yield name
    sys.path.remove(str(tmp_path))
    sys.modules.pop(name, None)


def fleet(tmp_path: Path, module: str, code: str) -> Registry:
    """A two-service registry whose `email` app is ``module:app``, with ``code`` as that module."""
    write(tmp_path, f"{module}.py", code)
    root = write(tmp_path, "services.yaml", f"""
        version: 1
        services:
          email:
            app: "{module}:app"
            tasks:
              email.welcome: {{}}
              email.receipt: {{}}
          billing:
            tasks:
              billing.charge: {{}}
        """)
    return router.load(root, env={})


def test_example_fleet_handlers_match_the_registry() -> None:
    """Every example service imports, and its handlers are exactly its declared tasks."""
    assert check_handlers(router.load(EXAMPLE, env={}), directory=str(REPO)) == []


def test_load_app_returns_the_service() -> None:
    """load_app imports "pkg.module:attr" and returns the router.Service it names."""
    registry = router.load(EXAMPLE, env={})
    app = load_app(registry.services["email"])
    assert isinstance(app, router.Service) and set(app) == {"email.welcome", "email.receipt", "email.digest"}
    assert app["email.receipt"].is_async and not app["email.welcome"].is_async


def test_foreign_handler_names_the_real_owner(tmp_path: Path, pkg: str) -> None:
    """A handler for another service's task is a problem at the app line naming the owner and its location."""
    registry = fleet(tmp_path, pkg, """
        from router import Service
        app = Service("email")
        for t in ("email.welcome", "email.receipt", "billing.charge"):
            app.add(t, lambda task: None)
        """)
    (problem,) = compare_handlers(registry.services["email"], registry, load_app(registry.services["email"]))
    assert problem.code == "handler-foreign"
    assert (problem.file, problem.line, problem.column) == (str(tmp_path / "services.yaml"), 4, 10)
    assert f"owned by service 'billing' ({tmp_path / 'services.yaml'}:10)" in problem.message


def test_missing_and_undeclared_handlers(tmp_path: Path, pkg: str) -> None:
    """A declared task without handler is reported at its declaration; an undeclared handler at the app line."""
    registry = fleet(tmp_path, pkg, """
        from router import Service
        app = Service("email")
        app.add("email.welcome", lambda task: None)
        app.add("email.recept", lambda task: None)
        """)
    found = {p.code: p for p in compare_handlers(registry.services["email"], registry,
                                                 load_app(registry.services["email"]))}
    assert set(found) == {"handler-missing", "handler-undeclared"}
    assert (found["handler-missing"].line, found["handler-missing"].column) == (7, 7)
    assert "no handler for it" in found["handler-missing"].message
    assert found["handler-undeclared"].line == 4
    assert "did you mean 'email.receipt'?" in found["handler-undeclared"].message


@pytest.mark.parametrize(("code", "source", "says"), [
    ("app-import", "import does_not_exist_anywhere\n", "ModuleNotFoundError"),
    ("app-import", "raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),
    ("app-import", "x = 1\n", "has no attribute 'app'"),
    ("app-type", "app = {'email.welcome': print}\n", "is a dict, not a router.Service"),
    ("app-name", "from router import Service\napp = Service('billing')\n", "is Service('billing')"),
    ("app-import", "from router import Service\napp = Service('email')\n"
                   "app.add('email.welcome', print)\napp.add('email.welcome', print)\n", "DuplicateHandler"),
])
def test_broken_app_is_a_problem_at_the_app_line(tmp_path: Path, pkg: str, code: str, source: str, says: str) -> None:
    """Import failures of any kind, wrong objects and mismatched names are Problems at the `app:` value."""
    registry = fleet(tmp_path, pkg, source)
    with pytest.raises(AppLoadError) as info:
        load_app(registry.services["email"])
    problem = info.value.problem
    assert (problem.code, problem.line, problem.column) == (code, 4, 10)
    assert says in problem.message
    all_problems = check_handlers(registry)
    assert [p.code for p in all_problems] == [code, "app-missing"]  # billing has no app at all


def test_check_handlers_imports_from_the_given_directory(tmp_path: Path) -> None:
    """check_handlers puts `directory` first on sys.path while importing, and takes it off afterwards."""
    module = f"handlers_{uuid.uuid4().hex[:8]}"
    registry = fleet(tmp_path, module, """
        from router import Service
        app = Service("email")
        app.add("email.welcome", print)
        app.add("email.receipt", print)
        """)
    try:
        found = check_handlers(registry, directory=str(tmp_path))
    finally:
        sys.modules.pop(module, None)
    assert [p.code for p in found] == ["app-missing"]
    assert str(tmp_path) not in sys.path


def test_an_aggregate_member_needs_no_handler_and_may_not_have_one(redis_url: str) -> None:
    """Members of an aggregate never run on their own: no handler is needed, and one would be dead code."""
    member = task(aggregate=AggregateSpec("svc.batch", 5, 60, 100))
    reg = build_registry(redis_url, {"svc": {"tasks": {"svc.item": member, "svc.batch": task()}}})
    app = router.Service("svc")
    app.add("svc.batch", lambda t: None)
    assert compare_handlers(reg.services["svc"], reg, app) == []
    app.add("svc.item", lambda t: None)
    [problem] = compare_handlers(reg.services["svc"], reg, app)
    assert problem.code == "handler-aggregated" and "remove the handler" in problem.message
