"""``router exporter``: serves the fleet's Prometheus gauges (:mod:`router.ops.exporter`) until SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click
import structlog

from router.errors import RouterError, ServeError
from router.ops import cliutil
from router.ops.cliutil import fail_for, load_registry, registry_option, url_option, with_logs
from router.ops.exitcodes import ExitCode
from router.ops.inspector import Inspector
from router.ops.logs import LogFormat

log = structlog.get_logger(__name__)

#: The exporter's default port (workers have none: each gets --metrics-port).
DEFAULT_PORT = 9808


@click.command()
@registry_option
@url_option
@click.option("--service", "-s", default=None, help="Only this service's queues and workers.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port of /metrics (0: any free port, logged as exporter_started).")
@click.option("--addr", default="0.0.0.0", show_default=True, help="Address to listen on.")
@with_logs
def exporter(registry_path: str, url: str | None, service: str | None, port: int, addr: str, log_format: LogFormat,
             log_level: str) -> None:
    """Serve the fleet's queue gauges for Prometheus at /metrics: tasks by state, oldest pending age, paused,
    all-time counters and live workers per queue and service, read from Redis at every scrape. Redis being down
    does not stop it: scrapes then say router_redis_up 0.

    SIGTERM/SIGINT stop it. Exit codes: 0 stopped by a signal; 1 invalid registry; 2 unknown service, or the port
    cannot be listened on.
    """
    cliutil.configure_logs(log_format, log_level)
    from router.ops.exporter import exporter_registry  # noqa: PLC0415 - prometheus_client only when serving
    from router.worker.metrics import serve  # noqa: PLC0415

    registry = load_registry(registry_path)
    try:
        if service is not None:
            registry.service(service)
        inspector = Inspector(registry, url)
    except RouterError as exc:
        fail_for(exc)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            bound = serve(port, addr, exporter_registry(inspector, service))
        except OSError as exc:
            fail_for(ServeError("the exporter", addr, port, exc))
        log.info("exporter_started", addr=addr, port=bound, service=service)
        while not stop.wait(1.0):
            pass
        log.info("exporter_stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        inspector.close()
    raise SystemExit(int(ExitCode.OK))
