"""services.yaml -> frozen :class:`~router.registry.model.Registry`: the only reader of the registry and the
environment.

:func:`load` reads the root file and its includes (:mod:`~router.registry.files`), only inside the registry's tree
(:mod:`~router.registry.containment`), builds the specs while running every semantic check
(:mod:`~router.registry.specs`), and either returns a frozen Registry or raises one
:class:`~router.errors.ConfigError` carrying every problem found, each with file, line and column.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from router.errors import ConfigError, Problem
from router.registry.containment import RegistryTree
from router.registry.files import RegistryFiles
from router.registry.limits import MAX_PROBLEMS, ProblemList, TooManyProblems
from router.registry.model import Registry
from router.registry.specs import SpecBuilder

#: Environment variable: more directories (``os.pathsep``-separated) the registry's includes and ``$ref``s may use.
ROOTS_ENV = "ROUTER_REGISTRY_ROOTS"


def load(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None,
         roots: Iterable[str | os.PathLike[str]] | None = None) -> Registry:
    """Read, check and freeze the registry at ``path`` and every file it includes.

    Includes and payload ``$ref``s must resolve (symlinks followed) inside the directory of ``path``, or inside
    one of ``roots`` or of the directories listed in ``ROUTER_REGISTRY_ROOTS``; the registry cannot widen this.

    Args:
        path: the root services.yaml; problems name files as given here, includes relative to it.
        env: the environment: variables for ``${VAR}`` in the ``redis`` section, and ``ROUTER_REGISTRY_ROOTS``
            (default: the process environment).
        roots: more directories the registry's files may be in (``router validate --allow-dir``).

    Returns:
        The frozen Registry.

    Raises:
        ConfigError: with every problem found, each with file, line, column, code and a fix.
    """
    environment = os.environ if env is None else env
    allowed = [*(roots or ()), *environment.get(ROOTS_ENV, "").split(os.pathsep)]
    problems = ProblemList()
    files = RegistryFiles(problems, RegistryTree(os.fspath(path), allowed))
    registry: Registry | None = None
    with _gc_paused():
        try:
            files.read(os.fspath(path))
            if files.docs:
                registry = SpecBuilder(files.docs, environment, problems, files.tree, files.budget).build()
        except TooManyProblems:
            list.append(problems, Problem(os.fspath(path), 1, 1, f"more than {MAX_PROBLEMS} problems: stopped "
                                          "checking here; fix these and run again", "too-many-problems"))
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
