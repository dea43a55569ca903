"""Compare a service's handler set with what the registry declares for it (used by the worker at start)."""

from __future__ import annotations

from collections.abc import Mapping

from router.registry import Registry


def handler_mismatches(registry: Registry, service: str, handlers: Mapping[str, object]) -> list[str]:
    """Sentences describing every disagreement between ``handlers`` and the registry for ``service``."""
    declared = {t for t, spec in registry.tasks.items() if spec.service == service}
    problems = [f"no handler for declared task {t!r}" for t in sorted(declared - set(handlers))]
    for t in sorted(set(handlers) - declared):
        owner = registry.tasks.get(t)
        where = f"owned by service {owner.service!r}" if owner else "not declared in services.yaml"
        problems.append(f"handler for {t!r}, which is {where}")
    return problems
