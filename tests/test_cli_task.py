"""``router task`` and ``router cancel``, and the lifecycle options of ``router enqueue``: every option, the
environment variables, every exit code, and the JSON output validated against its published schema."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from clikit import InProcess, make_invoker
from enginekit import REPO, build_registry, fast_settings, qk, raw_client, task, write_registry_yaml

import router
from router.ops.views import CancelJSON, TaskDetailJSON
from router.registry.model import AggregateSpec, UniquePolicy

SERVICES: dict[str, Any] = {
    "shop": {
        "queues": {"default": 1, "critical": 1},
        "tasks": {
            "shop.order": task(retention_s=60),
            "shop.once": task(unique_s=60, unique_policy=UniquePolicy.UNTIL_FINISHED),
            "shop.line": task(aggregate=AggregateSpec("shop.lines", 60, 600, 100)),
            "shop.lines": task(),
        },
    },
}
DOWN = "redis://127.0.0.1:1/0"


def valid(name: str, text: str) -> Any:
    doc = json.loads(text)
    jsonschema.Draft202012Validator(json.loads((REPO / "schemas" / f"{name}.schema.json").read_text())).validate(doc)
    return doc


@pytest.fixture
def invoke(monkeypatch: pytest.MonkeyPatch) -> Callable[..., InProcess]:
    return make_invoker(monkeypatch)


@pytest.fixture
def shop(redis_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    path = write_registry_yaml(tmp_path / "services.yaml", SERVICES, DOWN)
    reg = build_registry(redis_url, SERVICES)
    r = raw_client(redis_url)
    yield {"path": str(path), "url": redis_url, "reg": reg, "r": r, "tmp": tmp_path,
           "base": ("--registry", str(path), "--url", redis_url)}
    r.close()


def test_the_schemas_match_the_typeddicts() -> None:
    from importlib import resources  # noqa: PLC0415

    for name, typed, props in (("cli-task", TaskDetailJSON, lambda d: d["properties"]),
                               ("cli-cancel", CancelJSON, lambda d: d["items"]["properties"])):
        doc = json.loads((REPO / "schemas" / f"{name}.schema.json").read_text())
        jsonschema.Draft202012Validator.check_schema(doc)
        assert json.loads(resources.files("router").joinpath(f"schemas/{name}.schema.json").read_text()) == doc
        assert set(props(doc)) == set(typed.__annotations__), name


def test_task_shows_a_task_in_text_and_json(invoke: Callable[..., InProcess], shop: dict[str, Any]) -> None:
    with router.Client(shop["reg"], url=shop["url"]) as c:
        info = c.enqueue("shop.order", {"n": 7}, queue="critical")
    text = invoke("task", "shop", info.id, "--registry", shop["path"], "--url", shop["url"])
    assert text.code == 0, text.output
    assert "state      pending" in text.output and "where      shop/critical" in text.output
    assert 'payload    {"n": 7}' in text.output
    app = router.Service("shop")
    app.add("shop.order", lambda t: {"total": 14})
    app.add("shop.once", lambda t: None)
    app.add("shop.lines", lambda t: None)
    router.Worker(shop["reg"], app, url=shop["url"], settings=fast_settings()).run(burst=True)
    doc = valid("cli-task", invoke("task", "shop", info.id, "--queue", "critical", *shop["base"],
                                   "--format", "json").output)
    assert (doc["state"], doc["result"], doc["result_kept"], doc["finished"]) == ("completed", {"total": 14}, True,
                                                                                 True)
    short = invoke("task", "shop", info.id, "-q", "critical", *shop["base"])
    assert "result     {\"total\": 14}" in short.output


def test_task_exit_codes(invoke: Callable[..., InProcess], shop: dict[str, Any]) -> None:
    missing = invoke("task", "shop", "ghost", *shop["base"])
    assert missing.code == 6 and "no task 'ghost'" in missing.output
    with router.Client(shop["reg"], url=shop["url"]) as c:
        c.enqueue("shop.order", {}, task_id="twice")
        c.enqueue("shop.order", {}, task_id="twice", queue="critical")
    ambiguous = invoke("task", "shop", "twice", *shop["base"])
    assert ambiguous.code == 2 and "shop/default, shop/critical" in ambiguous.output
    assert invoke("task", "shop", "twice", "--queue", "nope", *shop["base"]).code == 2
    assert invoke("task", "nope", "twice", *shop["base"]).code == 2
    broken = shop["tmp"] / "broken.yaml"
    broken.write_text("version: 1\nservices: {shop: {tasks: {x: {queue: nope}}}}\n")
    assert invoke("task", "shop", "twice", "--registry", str(broken), "--url", shop["url"]).code == 1
    down = invoke("task", "shop", "twice", "--registry", shop["path"], "--url", DOWN)
    assert down.code == 4 and "Traceback" not in down.output


def test_cancel_reports_each_outcome_and_exits_6_for_the_unknown(invoke: Callable[..., InProcess],
                                                                   shop: dict[str, Any]) -> None:
    with router.Client(shop["reg"], url=shop["url"]) as c:
        later = c.enqueue("shop.order", {}, process_in=600)
        line = c.enqueue("shop.line", {"x": 1}, group="g")
    res = invoke("cancel", "shop", later.id, line.id, "--registry", shop["path"], "--url", shop["url"], "--format",
                 "json")
    assert res.code == 0, res.output
    doc = valid("cli-cancel", res.output)
    assert [(d["outcome"], d["state_before"]) for d in doc] == [("cancelled", "scheduled"),
                                                               ("cancelled", "aggregating")]
    again = invoke("cancel", "shop", later.id, "ghost", "-q", "default", *shop["base"])
    assert again.code == 6 and f"{later.id}: already_cancelled (shop/default, was cancelled)" in again.output
    assert "ghost: unknown" in again.output and "1 task(s) unknown or already finished: ghost" in again.output
    assert invoke("cancel", "nope", "x", *shop["base"]).code == 2
    assert invoke("cancel", "shop", "x", "--registry", shop["path"], "--url", DOWN).code == 4
    broken = shop["tmp"] / "broken.yaml"
    broken.write_text("version: 1\nservices: {shop: {tasks: {x: {queue: nope}}}}\n")
    assert invoke("cancel", "shop", "x", "--registry", str(broken), "--url", shop["url"]).code == 1
    assert invoke("cancel", "shop", "x", "--queue", "nope", *shop["base"]).code == 2


def test_enqueue_lifecycle_options(invoke: Callable[..., InProcess], shop: dict[str, Any]) -> None:
    base = shop["base"]
    res = invoke("enqueue", "shop.order", *base, "--payload", "{}", "--deadline-in", "60", "--format", "json")
    doc = valid("cli-enqueue", res.output)
    stored = json.loads(shop["r"].hget(qk(shop["reg"], "shop").messages, doc["id"]))
    assert stored["dl"] > stored["e"]
    first = invoke("enqueue", "shop.once", *base, "--payload", '{"a": 1}', "--unique-key", "k1")
    assert first.code == 0, first.output
    dup = invoke("enqueue", "shop.once", *base, "--payload", '{"a": 2}', "--unique-key", "k1")
    assert dup.code == 6 and "already holds its lock" in dup.output
    grouped = invoke("enqueue", "shop.line", *base, "--payload", "{}", "--group", "g1", "--format", "json")
    assert valid("cli-enqueue", grouped.output)["state"] == "aggregating"
    assert invoke("enqueue", "shop.line", *base, "--payload", "{}").code == 2  # a member needs --group


@pytest.mark.parametrize("command", [("task", "shop", "x"), ("cancel", "shop", "x")], ids=lambda c: c[0])
def test_router_registry_and_router_redis_url_stand_in_for_the_options(
    invoke: Callable[..., InProcess], shop: dict[str, Any], command: tuple[str, ...]
) -> None:
    env = {"ROUTER_REGISTRY": shop["path"], "ROUTER_REDIS_URL": shop["url"]}
    assert invoke(*command, env=env).code == 6  # found nowhere: the registry and URL were read
    assert invoke(*command, env={**env, "ROUTER_REDIS_URL": DOWN}).code == 4
