"""services.yaml -> frozen :class:`~router.registry.model.Registry`: the only reader of the registry and the
environment.

:func:`load` reads the root file and its includes (:mod:`~router.registry.files`), builds the specs while running
every semantic check (:mod:`~router.registry.specs`), and either returns a frozen Registry or raises one
:class:`~router.errors.ConfigError` carrying every problem found, each with file, line and column.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from router.errors import ConfigError, Problem
from router.registry.files import RegistryFiles
from router.registry.model import Registry
from router.registry.specs import SpecBuilder


def load(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Registry:
    """Read, check and freeze the registry at ``path`` and every file it includes.

    Args:
        path: the root services.yaml; problems name files as given here, includes relative to it.
        env: variables for ``${VAR}`` in the ``redis`` section (default: the process environment).

    Returns:
        The frozen Registry.

    Raises:
        ConfigError: with every problem found, each with file, line, column, code and a fix.
    """
    problems: list[Problem] = []
    with _gc_paused():
        files = RegistryFiles(problems)
        files.read(os.fspath(path))
        registry = SpecBuilder(files.docs, os.environ if env is None else env, problems).build() if files.docs \
            else None
    if problems or registry is None:
        order = {doc.file: i for i, doc in enumerate(files.docs)}
        raise ConfigError(sorted(problems, key=lambda p: (order.get(p.file, -1), p.line, p.column)))
    return registry


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC during a load: it builds ~10^5 acyclic containers, and the collections their
    allocation triggers find nothing to free while costing about a fifth of the load time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
