"""What the ``router`` commands share: the common options, failing with an exit code of
:mod:`router.ops.exitcodes`, and opening the Inspector with Redis errors mapped to exit code 4.

The commands live in :mod:`router.ops.cli` (the group, validate, worker, status, demo) and in one module per area
(:mod:`router.ops.cli_inspect`, :mod:`router.ops.cli_exporter`), which import only this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import click
from redis.exceptions import RedisError

from router.errors import RouterError
from router.ops.exitcodes import ExitCode, exit_code_for
from router.ops.inspector import Inspector
from router.ops.logs import configure as configure_logs
from router.registry.loader import load
from router.registry.model import Registry

__all__ = ["DEFAULT_REGISTRY", "configure_logs", "fail", "fail_for", "format_option", "inspecting",
           "registry_option", "url_option", "with_logs"]

DEFAULT_REGISTRY = "services.yaml"

F = TypeVar("F", bound=Callable[..., Any])


def fail(code: ExitCode, message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(int(code))


def fail_for(error: RouterError) -> NoReturn:
    """Exit with the code of ``error`` (see router.ops.exitcodes); an unmapped one is a bug, so it propagates."""
    code = exit_code_for(error)
    if code is None:
        raise error
    fail(code, str(error))


registry_option = click.option(
    "--registry", "-r", "registry_path", envvar="ROUTER_REGISTRY", default=DEFAULT_REGISTRY, show_default=True,
    type=click.Path(dir_okay=False), help="The services.yaml to load (env ROUTER_REGISTRY).",
)
url_option = click.option(
    "--url", envvar="ROUTER_REDIS_URL", default=None,
    help="Redis URL (env ROUTER_REDIS_URL; default: the registry's redis.url). Use redis+cluster://host:port "
         "for Redis Cluster, redis+sentinel://host:port[,host:port]/master for Sentinel.",
)


def format_option(json_shape: str) -> Callable[[F], F]:
    """``--format text|json``; ``json_shape`` names what the JSON is (and its schema in schemas/)."""
    return click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
                        show_default=True, help=f"text: for people; json: {json_shape}.")


def with_logs(func: F) -> F:
    """``--log-format`` and ``--log-level``."""
    func = click.option("--log-level", default="INFO", show_default=True,
                        help="DEBUG, INFO, WARNING or ERROR.")(func)
    return click.option("--log-format", type=click.Choice(["auto", "json", "console"]), default="auto",
                        show_default=True, help="auto: console in a terminal, JSON lines otherwise.")(func)


def load_registry(registry_path: str) -> Registry:
    """The registry, or exit 1 (invalid) / 2 (unreadable) as every command does."""
    try:
        return load(registry_path)
    except RouterError as exc:
        fail_for(exc)


@contextlib.contextmanager
def inspecting(registry_path: str, url: str | None) -> Iterator[Inspector]:
    """An Inspector on the registry's Redis (or ``url``); inside the block, a Redis that cannot be reached exits 4
    and an error a user can cause exits with its code."""
    registry = load_registry(registry_path)
    try:
        inspector = Inspector(registry, url)
        try:
            yield inspector
        finally:
            inspector.close()
    except RedisError as exc:
        fail(ExitCode.REDIS, f"cannot reach Redis: {exc}")
    except RouterError as exc:
        fail_for(exc)
