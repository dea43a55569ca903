"""Tracing: a trace crosses two services (producer span, consumer span linked to it, the handler's own enqueue, the
second service's consumer span) with OpenTelemetry's in-memory exporter; the traceparent travels in the envelope and
is decoded strictly; without OpenTelemetry a worker runs and never imports it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import jsonschema
import pytest
from enginekit import REPO, build_registry, fast_settings, qk, raw_client, subprocess_env, task
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import router
from router.storage.envelope import MalformedMessage, decode, encode_new

SERVICES = {
    "front": {"queues": {"default": 1}, "tasks": {"front.order": task(max_retry=0)}},
    "back": {"queues": {"default": 1}, "tasks": {"back.ship": task()}},
}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_a_trace_crosses_two_services(target: tuple[str, Any], spans: tuple[TracerProvider, InMemorySpanExporter]
                                      ) -> None:
    url, r = target
    provider, exporter = spans
    reg = build_registry(url, SERVICES)
    front, back = router.Service("front"), router.Service("back")
    shipped: list[str] = []
    with router.Client(reg, url=url, tracer_provider=provider) as handler_client:

        def order(t: router.Task) -> None:  # front's handler hands the work on to back
            handler_client.enqueue("back.ship", {"order": t.payload["order"]})

        front.add("front.order", order)
        back.add("back.ship", lambda t: shipped.append(t.payload["order"]))
        with router.Client(reg, url=url, tracer_provider=provider) as c:
            info = c.enqueue("front.order", {"order": 42})
        stored = json.loads(r.hget(qk(reg, "front").messages, info.id))
        assert stored["tp"].startswith("00-")
        for app in (front, back):
            router.Worker(reg, app, url=url, settings=fast_settings(), tracer_provider=provider).run(burst=True)
    assert shipped == [42]
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    assert set(by_name) == {"send front.order", "process front.order", "send back.ship", "process back.ship"}
    send1, proc1 = by_name["send front.order"], by_name["process front.order"]
    send2, proc2 = by_name["send back.ship"], by_name["process back.ship"]
    assert len({s.context.trace_id for s in by_name.values()}) == 1, "one trace from the first enqueue to the end"
    assert (send1.kind, proc1.kind, send2.kind, proc2.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER,
                                                                SpanKind.PRODUCER, SpanKind.CONSUMER)
    assert proc1.parent.span_id == send1.context.span_id and [x.context.span_id for x in proc1.links] == [
        send1.context.span_id]
    assert send2.parent.span_id == proc1.context.span_id  # the handler's enqueue is inside its consumer span
    assert proc2.parent.span_id == send2.context.span_id and proc2.links[0].context.span_id == send2.context.span_id
    assert send1.attributes["messaging.message.id"] == info.id
    assert send1.attributes["messaging.destination.name"] == "front/default"
    assert proc2.attributes["messaging.system"] == "router"
    assert proc2.attributes["messaging.destination.name"] == "back/default"
    assert proc1.attributes["router.task.type"] == "front.order"


def test_a_failing_handler_marks_its_span_and_a_batch_shares_one_producer_span(
    redis_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    reg = build_registry(redis_url, SERVICES)
    app = router.Service("front")

    def order(t: router.Task) -> None:
        raise RuntimeError("no stock")

    app.add("front.order", order)
    with router.Client(reg, url=redis_url, tracer_provider=provider) as c:
        c.enqueue_many([("front.order", {"order": n}) for n in range(3)])
    router.Worker(reg, app, url=redis_url, settings=fast_settings(), tracer_provider=provider).run(burst=True)
    found = exporter.get_finished_spans()
    [send] = [s for s in found if s.kind is SpanKind.PRODUCER]
    assert send.name == "send batch" and send.attributes["messaging.batch.message_count"] == 3
    processed = [s for s in found if s.kind is SpanKind.CONSUMER]
    assert len(processed) == 3 and all(s.parent.span_id == send.context.span_id for s in processed)
    assert all(s.status.status_code is StatusCode.ERROR and "no stock" in (s.status.description or "")
               for s in processed)
    assert all(e.name == "exception" for s in processed for e in s.events)


def test_without_a_configured_sdk_or_with_tracing_off_nothing_is_written(redis_url: str) -> None:
    reg = build_registry(redis_url, SERVICES)
    r = raw_client(redis_url)
    with router.Client(reg, url=redis_url) as c:  # the API is installed, no tracer provider is set
        plain = c.enqueue("front.order", {"order": 1})
    provider = TracerProvider()
    with router.Client(reg, url=redis_url, tracing=False, tracer_provider=provider) as c:
        off = c.enqueue("front.order", {"order": 2})
    for task_id in (plain.id, off.id):
        assert "tp" not in json.loads(r.hget(qk(reg, "front").messages, task_id))
    worker = router.Worker(reg, router.Service("front"), url=redis_url, tracing=False, allow_handler_mismatch=True)
    assert worker._middleware == ()
    r.close()


def test_the_traceparent_field_is_decoded_strictly_and_documented() -> None:
    ok = encode_new("t.x", "{}", 1, {"tp": TRACEPARENT})
    assert decode(ok).traceparent == TRACEPARENT
    schema = json.loads((REPO / "schemas" / "task-envelope.schema.json").read_text())
    jsonschema.validate(json.loads(ok), schema)
    for bad in ("00-xyz", TRACEPARENT.upper(), "ff" + TRACEPARENT[2:], 7, TRACEPARENT + "-01"):
        with pytest.raises(MalformedMessage, match="'tp'"):
            decode(encode_new("t.x", "{}", 1, {"tp": bad}))
        if isinstance(bad, str):
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate(json.loads(encode_new("t.x", "{}", 1, {"tp": bad})), schema)


BLOCKED_WORKER = textwrap.dedent("""
    import importlib.abc, json, sys

    asked = []

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                asked.append(name)
                raise ModuleNotFoundError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, Block())
    import router
    from router import tracing
    from enginekit import build_registry, fast_settings, task

    url = sys.argv[1]
    reg = build_registry(url, {"front": {"queues": {"default": 1}, "tasks": {"front.order": task()}}})
    done = []
    app = router.Service("front")
    app.add("front.order", lambda t: done.append(t.payload["n"]))
    with router.Client(reg, url=url) as c:
        c.enqueue_many([("front.order", {"n": n}) for n in range(5)])
        c.enqueue("front.order", {"n": 5})
    router.Worker(reg, app, url=url, settings=fast_settings()).run(burst=True)
    print(json.dumps({"done": sorted(done), "available": tracing.available(),
                      "imported": sorted(m for m in sys.modules if m.startswith("opentelemetry"))}))
""")


def test_a_worker_without_opentelemetry_runs_and_never_imports_it(redis_url: str) -> None:
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), env["PYTHONPATH"]])  # enginekit
    done = subprocess.run([sys.executable, "-c", BLOCKED_WORKER, redis_url], capture_output=True, text=True,
                          timeout=60, env=env, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"done": [0, 1, 2, 3, 4, 5], "available": False, "imported": []}
    r = raw_client(redis_url)
    assert r.hlen(qk(build_registry(redis_url, SERVICES), "front").messages) == 0  # completed, none traced
    r.close()
