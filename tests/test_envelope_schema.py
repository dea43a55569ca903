"""The wire contract ships with the package: ``schemas/task-envelope.schema.json`` is package data, and every envelope
router writes (the guard's, and the rewrites after a failure, an archive or a retained completion) validates against
it, as a producer in another language would check."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from enginekit import REPO, FakeClock, build_registry, fast_settings, qk, raw_client, task

import router

SERVICES = {
    "svc": {
        "queues": {"default": 1},
        "tasks": {"svc.job": task(max_retry=1), "svc.kept": task(retention_s=600)},
    }
}


def envelope_schema() -> dict[str, Any]:
    text = resources.files("router").joinpath("schemas/task-envelope.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def test_envelope_schema_is_package_data_and_a_valid_schema() -> None:
    schema = envelope_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["required"] == ["v", "t", "e", "p"]
    # The repository's documented path is the same file, and pyproject ships it with the package.
    assert json.loads((REPO / "schemas" / "task-envelope.schema.json").read_text()) == schema
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["router"]
    shipped = {p.relative_to(REPO / "router") for pattern in patterns for p in (REPO / "router").glob(pattern)}
    assert Path("schemas/task-envelope.schema.json") in shipped


def test_every_envelope_router_writes_validates(redis_url: str) -> None:
    validator = jsonschema.Draft202012Validator(envelope_schema())
    reg = build_registry(redis_url, SERVICES)
    r = raw_client(redis_url)
    q = qk(reg, "svc")
    clock = FakeClock()

    def stored(task_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(r.hget(q.messages, task_id))
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
        assert not errors, f"{task_id}: {doc} breaks the envelope schema: {errors}"
        return doc

    with router.Client(reg, url=redis_url, clock=clock) as c:
        c.enqueue("svc.job", {"n": 1, "text": "héllo"}, task_id="plain")
        c.enqueue("svc.job", {"n": 2}, task_id="overrides", max_retry=3, timeout_s=2.5)
        c.enqueue("svc.job", {"n": 3}, task_id="delayed", process_in=3600)
        c.enqueue_many([("svc.job", {"fail": True}, {"task_id": "fails"}),
                        ("svc.kept", {"n": 4}, {"task_id": "kept"})])
    assert stored("plain")["p"] == {"n": 1, "text": "héllo"}
    assert (stored("overrides")["r"], stored("overrides")["to"]) == (3, 2.5)
    stored("delayed")

    app = router.Service("svc")

    def job(t: router.Task) -> str:
        if t.payload.get("fail"):
            raise RuntimeError("planned")
        return "ok"

    app.add("svc.job", job)
    app.add("svc.kept", lambda t: {"result": [1, 2, 3]})
    router.Worker(reg, app, url=redis_url, settings=fast_settings(), clock=clock).run(burst=True)
    retried = stored("fails")
    assert (retried["n"], retried["err"]) == (1, "RuntimeError: planned")
    kept = stored("kept")
    assert kept["res"] == {"result": [1, 2, 3]} and kept["by"].startswith("svc/")
    clock.advance(3600)
    router.Worker(reg, app, url=redis_url, settings=fast_settings(), clock=clock).run(burst=True)
    dead = stored("fails")
    assert dead["why"] == "max_retry_exceeded" and dead["n"] == 2
    r.close()
