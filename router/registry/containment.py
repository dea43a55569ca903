"""Which files a registry may read, and reading them without blocking, without following them out of the registry's
tree, and without reading more than a bound.

A registry is its root file plus the includes and payload ``$ref`` files it names. Those must resolve (symlinks
followed, with ``realpath``) inside the root file's directory tree, or inside a directory the *caller* allows: the
``roots`` argument of :func:`router.load`, ``ROUTER_REGISTRY_ROOTS``, ``router validate --allow-dir``. The registry
itself can never widen its tree, so a services.yaml under review cannot make CI read ``/etc/passwd`` or a secret
elsewhere on the machine and quote it back in an error.

Every file, the root included, must be a regular file: it is ``stat``-ed before it is opened (a device is never
opened at all: opening some has side effects), opened with ``O_NONBLOCK`` (a FIFO swapped in meanwhile cannot stall
the load), checked again with ``fstat`` on the open descriptor (what is checked is what is read), and read up to the
size bound (a character device reports size 0 and never ends).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from router.quoting import quote

#: Longest path an ``include:`` or ``$ref`` may name; longer ones are refused before touching the file system.
MAX_PATH_CHARS = 4096
ALLOW_HINT = "`router validate --allow-dir DIR` or the ROUTER_REGISTRY_ROOTS environment variable"

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


class FileRefused(Exception):
    """A file the loader will not read; ``code`` is the Problem code, ``reason`` completes "<file> ..."."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class RegistryTree:
    """The directories a registry's files may live in: the root file's directory, plus any the caller allows."""

    def __init__(self, root_file: str, allowed: Iterable[str | os.PathLike[str]] = ()) -> None:
        self.home = _real(os.path.dirname(os.path.abspath(root_file)))
        extra = [_real(os.fspath(d)) for d in allowed if os.fspath(d)]
        self.dirs = (self.home, *extra)

    def check(self, path: str) -> None:
        """Raise FileRefused unless ``path`` (after resolving every symlink) lies inside the tree."""
        if len(path) > MAX_PATH_CHARS:
            raise FileRefused("file-unreadable", f"is a path of {len(path)} characters; paths are at most "
                                                 f"{MAX_PATH_CHARS}")
        if "\0" in path:  # the OS cannot name such a file; realpath and stat would raise ValueError
            raise FileRefused("file-unreadable", "is a path with a NUL character; remove it")
        real = os.path.realpath(path)
        if any(_within(real, d) for d in self.dirs):
            return
        widened = f" (or the allowed {', '.join(map(repr, self.dirs[1:]))})" if len(self.dirs) > 1 else ""
        raise FileRefused("file-outside", f"resolves to {quote(real, 200)}, outside the registry's directory "
                                          f"{self.home!r}{widened}; move the file under it, or allow its directory "
                                          f"with {ALLOW_HINT}")


def _real(path: str) -> str:
    try:
        return os.path.realpath(path)
    except ValueError:  # a NUL in the path: nothing can be found under it anyway
        return os.path.abspath(path.replace("\0", ""))


def _within(real: str, directory: str) -> bool:
    return real == directory or real.startswith(directory.rstrip(os.sep) + os.sep)


def read_regular_file(path: str, limit: int) -> bytes:
    """The bytes of the regular file at ``path``; raises FileRefused when it is missing, unreadable, not a regular
    file, or over ``limit`` bytes."""
    try:
        before = os.stat(path)
        _require_regular(before, limit)
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise FileRefused("file-missing", "is not found") from None
    except OSError as exc:
        raise FileRefused("file-unreadable", f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    except ValueError:  # a NUL in the path
        raise FileRefused("file-unreadable", "is a path with a NUL character; remove it") from None
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
            raise FileRefused("file-unreadable", "changed while it was being opened; try again")
        _require_regular(opened, limit)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:  # the file may have grown since fstat: never read past the bound
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise FileRefused("file-unreadable", f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    finally:
        os.close(fd)
    if size > limit:
        raise FileRefused("file-too-large", f"is over the {limit}-byte limit for a registry file")
    return b"".join(chunks)


def _require_regular(st: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise FileRefused("file-not-regular", f"is {kind}, not a regular file; registries read regular files only")
    if st.st_size > limit:
        raise FileRefused("file-too-large", f"is {st.st_size} bytes, over the {limit}-byte limit for a registry "
                                            "file")
