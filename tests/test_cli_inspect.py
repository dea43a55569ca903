"""The operator's commands (router queues, tasks, workers, pause, unpause, run, delete, enqueue): every option, the
environment variables, every exit code, and the JSON output of each validated against its published schema in
schemas/."""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from clikit import InProcess, make_invoker
from enginekit import REPO, build_registry, fast_settings, qk, raw_client, task, wait_for, write_registry_yaml
from schedkit import start_scheduler, write_cron_yaml

import router
from router.ops.views import ActionJSON, CronEntryStatus, QueueJSON, SchedulerStatus, TaskJSON, TaskPageJSON, WorkerJSON

SERVICES: dict[str, Any] = {
    "shop": {
        "queues": {"default": 1, "critical": 3},
        "tasks": {"shop.order": task("default", {"type": "object", "required": ["n"]}, max_retry=0),
                  "shop.alert": task("critical")},
    },
}
DOWN = "redis://127.0.0.1:1/0"


def schema(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((REPO / "schemas" / f"{name}.schema.json").read_text())
    return doc


def valid(name: str, text: str) -> Any:
    """The JSON ``text``, after checking it against ``schemas/<name>.schema.json``."""
    doc = json.loads(text)
    jsonschema.Draft202012Validator(schema(name)).validate(doc)
    return doc


@pytest.fixture
def invoke(monkeypatch: pytest.MonkeyPatch) -> Callable[..., InProcess]:
    return make_invoker(monkeypatch)


@pytest.fixture
def shop(redis_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    path = write_registry_yaml(tmp_path / "services.yaml", SERVICES, DOWN)  # tests pass --url
    reg = build_registry(redis_url, SERVICES)
    r = raw_client(redis_url)
    yield {"path": str(path), "url": redis_url, "reg": reg, "q": qk(reg, "shop"), "r": r, "tmp": tmp_path}
    r.close()


def _archive(shop: dict[str, Any], n: int) -> list[str]:
    """``n`` archived tasks, written as the archive script leaves them."""
    q, r = shop["q"], shop["r"]
    ids = [f"dead{i}" for i in range(n)]
    for i, task_id in enumerate(ids):
        env = {"v": 1, "t": "shop.order", "e": 1000, "p": {"n": i}, "n": 1, "why": "max_retry_exceeded",
               "err": "RuntimeError: boom"}
        r.hset(q.messages, task_id, json.dumps(env))
        r.zadd(q.archived, {task_id: 1000 + i})
    return ids


def test_schemas_ship_as_package_data_and_match_the_typeddicts() -> None:
    from importlib import resources  # noqa: PLC0415

    for name, typed in (("cli-queues", QueueJSON), ("cli-tasks", TaskPageJSON), ("cli-workers", WorkerJSON),
                        ("cli-action", ActionJSON), ("cli-enqueue", None), ("cli-cron", None)):
        doc = schema(name)
        jsonschema.Draft202012Validator.check_schema(doc)
        shipped = json.loads(resources.files("router").joinpath(f"schemas/{name}.schema.json").read_text())
        assert shipped == doc, f"schemas/{name}.schema.json is not the package's file"
        if typed is not None:
            props = doc["items"]["properties"] if doc["type"] == "array" else doc["properties"]
            assert set(props) == set(typed.__annotations__), name
    items = schema("cli-tasks")["properties"]["tasks"]["items"]["properties"]
    assert set(items) == set(TaskJSON.__annotations__)
    cron = schema("cli-cron")["properties"]
    assert set(cron["entries"]["items"]["properties"]) == {f.name for f in dataclasses.fields(CronEntryStatus)}
    assert set(cron["schedulers"]["items"]["properties"]) == {f.name for f in dataclasses.fields(SchedulerStatus)}


def test_queues_lists_sizes_latency_and_throughput(invoke: Callable[..., InProcess], shop: dict[str, Any]) -> None:
    with router.Client(shop["reg"], url=shop["url"]) as c:
        c.enqueue_many([("shop.order", {"n": n}) for n in range(3)])
    res = invoke("queues", "--registry", shop["path"], "--url", shop["url"])
    assert res.code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split()[:8] == ["service", "queue", "pending", "active", "scheduled", "retry", "archived",
                                    "completed"]
    assert lines[1].split()[:3] == ["shop", "default", "3"]
    doc = valid("cli-queues", invoke("queues", "-r", shop["path"], "--url", shop["url"], "--service", "shop",
                                     "--format", "json").output)
    assert [(q["queue"], q["sizes"]["pending"]) for q in doc] == [("default", 3), ("critical", 0)]
    assert doc[0]["latency_s"] is not None and doc[1]["latency_s"] is None
    again = valid("cli-queues", invoke("queues", "-r", shop["path"], "--url", shop["url"], "-s", "shop",
                                       "--format", "json").output)
    assert [q["sizes"] for q in again] == [q["sizes"] for q in doc]


def test_tasks_pages_with_a_cursor(invoke: Callable[..., InProcess], shop: dict[str, Any]) -> None:
    with router.Client(shop["reg"], url=shop["url"]) as c:
        ids = [i.id for i in c.enqueue_many([("shop.order", {"n": n}) for n in range(5)])]
    _archive(shop, 2)
    base = ("tasks", "shop", "default", "--registry", shop["path"], "--url", shop["url"])
    first = valid("cli-tasks", invoke(*base, "--limit", "3", "--format", "json").output)
    assert [t["id"] for t in first["tasks"]] == ids[:3] and first["total"] == 5 and first["state"] == "pending"
    rest = valid("cli-tasks", invoke(*base, "--limit", "3", "--cursor", first["next_cursor"], "--format",
                                     "json").output)
    assert [t["id"] for t in rest["tasks"]] == ids[3:] and rest["next_cursor"] is None
    dead = valid("cli-tasks", invoke(*base, "--state", "archived", "--format", "json").output)
    assert [(t["id"], t["reason"], t["failures"]) for t in dead["tasks"]] == [
        ("dead0", "max_retry_exceeded", 1), ("dead1", "max_retry_exceeded", 1)]
    text = invoke(*base, "--limit", "2")
    assert text.code == 0 and text.output.startswith("shop/default: 5 pending task(s)")
    assert f"--cursor {json.loads(invoke(*base, '--limit', '2', '--format', 'json').output)['next_cursor']}" \
        in text.output
    assert "[max_retry_exceeded] RuntimeError: boom" in invoke(*base, "--state", "archived").output
    bad = invoke(*base, "--cursor", "nonsense")
    assert bad.code == 2 and "invalid cursor" in bad.output


def test_workers_lists_live_workers_and_running_tasks(invoke: Callable[..., InProcess],
                                                      shop: dict[str, Any]) -> None:
    release = threading.Event()
    app = router.Service("shop")
    app.add("shop.order", lambda t: release.wait(20))
    app.add("shop.alert", lambda t: None)
    worker = router.Worker(shop["reg"], app, url=shop["url"], settings=fast_settings())
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        with router.Client(shop["reg"], url=shop["url"]) as c:
            info = c.enqueue("shop.order", {"n": 1})

        def listed() -> Any:
            doc = valid("cli-workers", invoke("workers", "--registry", shop["path"], "--url", shop["url"],
                                              "--service", "shop", "--format", "json").output)
            return doc if doc and doc[0]["running"] else None

        doc = wait_for(listed, 10, "the worker's heartbeat listing its running task")
        assert doc[0]["running"][0]["id"] == info.id and doc[0]["handlers"] == ["shop.alert", "shop.order"]
        text = invoke("workers", "-r", shop["path"], "--url", shop["url"], "-s", "shop").output
        assert text.startswith("1 live worker(s)") and f"running {info.id}  shop.order" in text
    finally:
        release.set()
        worker.stop()
        thread.join(timeout=10)


def test_pause_and_unpause(invoke: Callable[..., InProcess], shop: dict[str, Any]) -> None:
    args = ("shop", "default", "--registry", shop["path"], "--url", shop["url"])
    res = invoke("pause", *args)
    assert (res.code, res.output) == (0, "shop/default: paused\n")
    assert invoke("pause", *args).output == "shop/default: already paused\n"
    assert valid("cli-queues", invoke("queues", *args[2:], "--format", "json").output)[0]["paused"] is True
    assert "(paused)" in invoke("status", *args[2:]).output
    doc = valid("cli-action", invoke("unpause", *args, "--format", "json").output)
    assert (doc["action"], doc["done"]) == ("unpause", 1)
    assert invoke("unpause", *args).output == "shop/default: was not paused\n"
    assert valid("cli-action", invoke("pause", *args, "--format", "json").output)["done"] == 1
    assert shop["r"].exists(shop["q"].paused) == 1


def test_run_and_delete_named_tasks_exit_6_for_the_ones_not_found(invoke: Callable[..., InProcess],
                                                                   shop: dict[str, Any]) -> None:
    _archive(shop, 3)
    args = ("shop", "default", "--registry", shop["path"], "--url", shop["url"])
    res = invoke("run", *args[:2], "dead0", *args[2:])
    assert res.code == 0 and res.output == "shop/default: 1 of 1 task(s) made pending\n  dead0: from archived\n"
    doc = valid("cli-action", invoke("run", *args[:2], "dead1", "ghost", *args[2:], "--state", "archived",
                                     "--format", "json").output)
    assert doc["tasks"] == {"dead1": "archived", "ghost": None} and doc["done"] == 1
    assert invoke("run", *args[:2], "ghost", *args[2:]).code == 6
    assert shop["r"].llen(shop["q"].pending) == 2
    gone = invoke("delete", *args[:2], "dead2", "dead0", *args[2:], "--format", "json")
    assert gone.code == 0 and valid("cli-action", gone.output)["tasks"] == {"dead2": "archived", "dead0": "pending"}
    assert invoke("delete", *args[:2], "dead1", *args[2:], "--state", "archived").code == 6  # it is pending now
    usage = invoke("delete", *args)
    assert usage.code == 2 and "give TASK_IDs or --all" in usage.output
    assert invoke("run", *args, "--all").code == 2  # --all needs --state


def test_run_all_and_delete_all_confirm_and_show_progress(invoke: Callable[..., InProcess],
                                                          shop: dict[str, Any]) -> None:
    _archive(shop, 25)
    args = ("shop", "default", "--registry", shop["path"], "--url", shop["url"])
    declined = invoke("run", *args, "--all", "--state", "archived")  # no answer: not confirmed
    assert declined.code == 2 and "not confirmed" in declined.output and shop["r"].zcard(shop["q"].archived) == 25
    res = CliRunnerInput.run(invoke, ("run", *args, "--all", "--state", "archived", "--batch", "10"), "y\n")
    assert res.code == 0, res.output
    assert "make pending all 25 archived task(s) of shop/default?" in res.output
    assert "shop/default: 25 of 25 task(s) made pending" in res.output
    assert shop["r"].llen(shop["q"].pending) == 25
    doc = valid("cli-action", invoke("delete", *args, "--all", "--state", "pending", "--yes", "--batch", "10",
                                     "--format", "json").output)
    assert (doc["done"], doc["total"], doc["batches"], doc["state"]) == (25, 25, 3, "pending")
    assert shop["r"].hlen(shop["q"].messages) == 0
    assert invoke("delete", *args, "--all", "--state", "archived", "-y").output.endswith("0 of 0 task(s) deleted\n")


class CliRunnerInput:
    """Run the CLI in-process with text on stdin (the confirmation), output and stderr mixed as a user sees."""

    @staticmethod
    def run(invoke: Callable[..., InProcess], args: tuple[str, ...], stdin: str) -> InProcess:
        from click.testing import CliRunner  # noqa: PLC0415

        from router.ops import cli  # noqa: PLC0415

        invoke("--version")  # the fixture patched the process-wide logging set-up away
        return InProcess(CliRunner().invoke(cli.main, list(args), input=stdin), [])


def test_enqueue_goes_through_the_guard(invoke: Callable[..., InProcess], shop: dict[str, Any]) -> None:
    base = ("--registry", shop["path"], "--url", shop["url"])
    res = invoke("enqueue", "shop.order", *base, "--payload", '{"n": 1}', "--format", "json")
    doc = valid("cli-enqueue", res.output)
    assert (doc["service"], doc["queue"], doc["state"]) == ("shop", "default", "pending")
    res = invoke("enqueue", "shop.order", *base, "--payload", '{"n": 2}', "--queue", "critical", "--task-id", "own1",
                 "--max-retry", "4", "--timeout-s", "9", "--process-in", "60")
    assert res.code == 0 and res.output == "enqueued shop.order as own1 on shop/critical (scheduled)\n"
    stored = json.loads(shop["r"].hget(qk(shop["reg"], "shop", "critical").messages, "own1"))
    assert (stored["r"], stored["to"], stored["p"]) == (4, 9, {"n": 2})
    conflict = invoke("enqueue", "shop.order", *base, "--payload", '{"n": 3}', "--queue", "critical",
                      "--task-id", "own1")
    assert conflict.code == 6 and "already exists" in conflict.output
    assert invoke("enqueue", "shop.order", *base, "--payload", "{}").code == 2  # the schema needs n
    assert invoke("enqueue", "shop.ordr", *base, "--payload", "{}").code == 2  # unknown type
    assert invoke("enqueue", "shop.order", *base, "--payload", "{nope").code == 2  # not JSON
    assert invoke("enqueue", "shop.order", *base, "--payload", '{"n": 1}', "--queue", "nope").code == 2
    piped = CliRunnerInput.run(invoke, ("enqueue", "shop.alert", *base, "--payload", "-"), '{"x": 1}')
    assert piped.code == 0 and "on shop/critical (pending)" in piped.output


def test_cron_lists_entries_and_live_schedulers(invoke: Callable[..., InProcess], redis_url: str,
                                                tmp_path: Path) -> None:
    path = write_cron_yaml(tmp_path / "services.yaml", redis_url, [
        {"name": "every-second", "task": "svc.tick", "spec": "* * * * * *", "payload": {"n": 1}},
        {"name": "nightly", "task": "svc.alert", "spec": "0 2 * * *", "timezone": "Europe/Paris",
         "payload": {"n": 2}}])
    idle = valid("cli-cron", invoke("cron", "--registry", str(path), "--url", redis_url, "--format", "json").output)
    assert idle["schedulers"] == [] and {e["name"]: e["schedulers"] for e in idle["entries"]} == {
        "every-second": 0, "nightly": 0}
    scheduler = start_scheduler(path, redis_url, "--heartbeat-s", "0.2")
    try:
        wait_for(lambda: scheduler.find("cron_fired"), 20, "a fire")

        def listed() -> Any:
            doc = valid("cli-cron", invoke("cron", "-r", str(path), "--url", redis_url, "--service", "svc",
                                           "--format", "json").output)
            return doc if doc["schedulers"] else None

        doc = wait_for(listed, 10, "the scheduler's heartbeat")
        entries = {e["name"]: e for e in doc["entries"]}
        assert entries["every-second"]["last_fire_ms"] and entries["every-second"]["schedulers"] == 1
        assert entries["nightly"]["last_fire_ms"] is None and entries["nightly"]["timezone"] == "Europe/Paris"
        assert doc["schedulers"][0]["entries"] == ["every-second", "nightly"]
        text = invoke("cron", "-r", str(path), "--url", redis_url, "-s", "svc").output
        assert text.startswith("2 cron entries") and "1 live scheduler(s)" in text
        assert "(no live scheduler)" not in text
    finally:
        scheduler.signal(signal.SIGTERM)
        scheduler.wait(20)
        scheduler.kill()
    assert "(no live scheduler)" in invoke("cron", "-r", str(path), "--url", redis_url).output


COMMANDS = [
    ("queues",), ("tasks", "shop", "default"), ("workers",), ("cron",), ("pause", "shop", "default"),
    ("unpause", "shop", "default"), ("run", "shop", "default", "t1"), ("delete", "shop", "default", "t1"),
    ("enqueue", "shop.order", "--payload", '{"n": 1}'),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_exit_codes_1_2_and_4(invoke: Callable[..., InProcess], shop: dict[str, Any], command: tuple[str, ...]) -> None:
    broken = shop["tmp"] / "broken.yaml"
    broken.write_text("version: 1\nservices: {shop: {tasks: {x: {queue: nope}}}}\n")
    assert invoke(*command, "--registry", str(broken), "--url", shop["url"]).code == 1
    down = invoke(*command, "--registry", shop["path"], "--url", DOWN)
    assert down.code == 4 and "error:" in down.output and "Traceback" not in down.output
    if command[0] in ("queues", "workers", "cron"):
        unknown = invoke(*command, "--registry", shop["path"], "--url", shop["url"], "--service", "nope")
    elif command[0] == "enqueue":
        unknown = invoke("enqueue", "nope.task", "--payload", "{}", "--registry", shop["path"], "--url", shop["url"])
    else:
        unknown = invoke(command[0], "shop", "nope", *command[3:], "--registry", shop["path"], "--url", shop["url"])
    assert unknown.code == 2 and "nope" in unknown.output


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_router_registry_and_router_redis_url_stand_in_for_the_options(
    invoke: Callable[..., InProcess], shop: dict[str, Any], command: tuple[str, ...]
) -> None:
    env = {"ROUTER_REGISTRY": shop["path"], "ROUTER_REDIS_URL": shop["url"]}
    res = invoke(*command, env=env)
    assert res.code in (0, 6), res.output  # 6: run/delete name a task that does not exist
    assert invoke(*command, env={**env, "ROUTER_REDIS_URL": DOWN}).code == 4
