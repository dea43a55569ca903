"""The loader reads only regular files inside the registry's directory tree, boundedly: includes and ``$ref``s that
leave the tree (by ``..``, an absolute path or a symlink) are refused unless a directory is allowed by the caller
(``roots=``, ``ROUTER_REGISTRY_ROOTS``, ``router validate --allow-dir``); FIFOs, devices and directories are refused
without blocking or reading them; messages never quote a file that is not what it claims to be."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from loadbox import LoadBox, assert_bounded
from regkit import only, problems, write

import router
from router.ops.cli import main

REF = 'version: 1\nservices:\n  s:\n    tasks:\n      s.t: {{payload: {{$ref: "{ref}"}}}}\n'
SECRET = "SECRET_TOKEN=hunter2 do not print me\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``tmp_path/tree`` holds the registry; ``tmp_path/outside`` a schema and a fragment it must not reach."""
    write(tmp_path, "outside/x.yaml", "services: {o: {}}\n")
    write(tmp_path, "outside/s.json", {"type": "object"})
    write(tmp_path, "outside/secret.txt", SECRET)
    (tmp_path / "tree").mkdir()
    return tmp_path / "tree"


@pytest.fixture(scope="module")
def box() -> Iterator[LoadBox]:
    b = LoadBox()
    yield b
    b.close()


@pytest.mark.parametrize("entry", ["../outside/x.yaml", "{outside}/x.yaml", "link/x.yaml", "x-link.yaml"])
def test_an_include_outside_the_tree_is_refused(tree: Path, entry: str) -> None:
    """Regression (issue 9 item 5): ``include: ../outside/x.yaml`` was followed; so were symlinks out of the tree."""
    os.symlink(tree.parent / "outside", tree / "link")
    os.symlink(tree.parent / "outside" / "x.yaml", tree / "x-link.yaml")
    entry = entry.format(outside=tree.parent / "outside")
    root = write(tree, "services.yaml", f"version: 1\ninclude: ['{entry}']\n")
    problem = only(problems(root), "file-outside")
    assert (problem.file, problem.line, problem.column) == (str(root), 2, 11)
    assert str(tree) in problem.message and "--allow-dir" in problem.message
    assert "ROUTER_REGISTRY_ROOTS" in problem.message


@pytest.mark.parametrize("ref", ["/etc/passwd", "../outside/s.json", "link.json"])
def test_a_payload_ref_outside_the_tree_is_refused(tree: Path, ref: str) -> None:
    """Regression (issue 9 item 5): ``$ref: /etc/passwd`` was opened and parsed."""
    os.symlink(tree.parent / "outside" / "s.json", tree / "link.json")
    root = write(tree, "services.yaml", REF.format(ref=ref))
    problem = only(problems(root), "file-outside")
    assert (problem.line, problem.column) == (5, 29)
    assert "root:" not in problem.message


def test_symlinks_that_stay_inside_the_tree_are_followed(tree: Path) -> None:
    """Containment is about where a file really is, not how it is named."""
    write(tree, "real/s.json", {"type": "object", "required": ["id"]})
    write(tree, "real/t.yaml", "services: {t: {}}\n")
    os.symlink(tree / "real", tree / "alias")
    root = write(tree, "services.yaml", REF.format(ref="alias/s.json") + "include: [alias/t.yaml]\n")
    registry = router.load(root, env={})
    assert registry.tasks["s.t"].payload_schema["required"] == ["id"] and "t" in registry.services


def test_the_caller_widens_the_tree_the_registry_cannot(tree: Path) -> None:
    """``roots=`` and ``ROUTER_REGISTRY_ROOTS`` (from the ``env`` the loader is given) allow more directories."""
    outside = tree.parent / "outside"
    root = write(tree, "services.yaml", REF.format(ref="../outside/s.json") + "include: [../outside/x.yaml]\n")
    assert set(router.load(root, env={}, roots=[outside]).services) == {"s", "o"}
    assert set(router.load(root, env={"ROUTER_REGISTRY_ROOTS": f"/nonexistent-but-harmless{os.pathsep}{outside}"})
               .services) == {"s", "o"}
    assert set(router.load(root, env={"ROUTER_REGISTRY_ROOTS": ""}, roots=[str(outside)]).services) == {"s", "o"}
    # A registry key cannot do it: there is no such key.
    widened = write(tree, "w.yaml", f"version: 1\nroots: ['{outside}']\ninclude: [../outside/x.yaml]\n")
    assert {p.code for p in problems(widened)} == {"unknown-key", "file-outside"}


def test_validate_allow_dir_widens_the_tree(tree: Path) -> None:
    """``router validate --allow-dir DIR`` (repeatable) is the command-line form."""
    root = write(tree, "services.yaml", REF.format(ref="../outside/s.json"))
    refused = CliRunner().invoke(main, ["validate", str(root)])
    assert refused.exit_code == 1 and "[file-outside]" in refused.output
    allowed = CliRunner().invoke(main, ["validate", str(root), "--allow-dir", str(tree.parent / "outside"),
                                        "--allow-dir", str(tree)])
    assert allowed.exit_code == 0, allowed.output
    env = CliRunner().invoke(main, ["validate", str(root)], env={"ROUTER_REGISTRY_ROOTS": str(tree.parent)})
    assert env.exit_code == 0, env.output


def test_special_files_are_refused_without_blocking(tree: Path, box: LoadBox) -> None:
    """Regression (issue 9 item 4): an include or ``$ref`` to a FIFO blocked forever; so did a FIFO as the root."""
    os.mkfifo(tree / "fifo.yaml")
    os.mkfifo(tree / "fifo.json")
    (tree / "dir.json").mkdir()
    cases = {
        "include: [fifo.yaml]": write(tree, "a.yaml", "version: 1\ninclude: [fifo.yaml]\n"),
        "$ref: fifo.json": write(tree, "b.yaml", REF.format(ref="fifo.json")),
        "$ref: dir.json": write(tree, "c.yaml", REF.format(ref="dir.json")),
        "root fifo": tree / "fifo.yaml",
    }
    for name, path in cases.items():
        outcome = box.load(path)
        assert_bounded(outcome)
        assert "file-not-regular" in {p.code for p in outcome.problems}, (name, outcome.describe())


def test_a_character_device_is_never_read(tree: Path, box: LoadBox) -> None:
    """Regression (issue 9 item 4): ``$ref`` to /dev/zero read until memory ran out (its size reads as 0).
    Allowed by ROUTER_REGISTRY_ROOTS here, so the regular-file check is what refuses it."""
    root = write(tree, "services.yaml", REF.format(ref="/dev/zero") + "include: [/dev/zero]\n")
    for path in (root, Path("/dev/zero")):
        outcome = box.load(path, env={"ROUTER_REGISTRY_ROOTS": "/dev"})
        assert_bounded(outcome)
        assert "file-not-regular" in {p.code for p in outcome.problems}, outcome.describe()


def test_messages_never_quote_a_file_that_is_not_what_it_claims(tree: Path) -> None:
    """Regression (issue 9 item 5): an included non-registry file was quoted in the message ("not the string
    'root:x:0:0:...'"); a ``$ref`` to a non-JSON file must not echo it either."""
    write(tree, "notes.txt", SECRET * 3)
    write(tree, "notes.json", "{\"a\": " + SECRET)
    write(tree, "list.yaml", "- " + SECRET)
    root = write(tree, "services.yaml", REF.format(ref="notes.json") + "include: [notes.txt, list.yaml]\n")
    found = problems(root)
    assert {p.code for p in found} >= {"payload-schema", "schema-type"}
    for p in found:
        assert "hunter2" not in p.message and "SECRET" not in p.message, p


def test_regular_files_over_the_size_limit_are_not_read(tree: Path) -> None:
    """A sparse 5 MiB schema file is refused from its size, before any byte is read."""
    with open(tree / "big.json", "wb") as fh:
        fh.truncate(5 * 1024 * 1024)
    root = write(tree, "services.yaml", REF.format(ref="big.json"))
    problem = only(problems(root), "payload-schema")
    assert "bytes" in problem.message and (problem.line, problem.column) == (5, 29)


def test_a_path_with_a_nul_is_a_problem_not_a_crash(tree: Path) -> None:
    """Found by the fuzz: a NUL in an include or $ref path (JSON-style YAML can write one) made realpath and stat
    raise ValueError out of router.load."""
    root = tree / "services.yaml"
    root.write_text('{"version": 1, "include": ["a\\u0000b.yaml"], "services": {"s": {"tasks": {"s.t": '
                    '{"payload": {"$ref": "x\\u0000.json"}}}}}}\n', encoding="utf-8")
    found = problems(root)
    assert {p.code for p in found} == {"include-missing", "payload-schema"}
    assert all("NUL" in p.message for p in found)


def test_status_honours_the_environment_variable(tree: Path) -> None:
    """`router status` (like `router worker`) has no --allow-dir: ROUTER_REGISTRY_ROOTS widens its tree. Refused
    without it (exit 1, before Redis is touched); allowed with it, it goes on to Redis (here unreachable: exit 4)."""
    root = write(tree, "services.yaml", REF.format(ref="../outside/s.json"))
    args = ["status", "--registry", str(root), "--url", "redis://127.0.0.1:1/0"]
    refused = CliRunner().invoke(main, args, env={"ROUTER_REGISTRY_ROOTS": ""})
    assert refused.exit_code == 1 and "file-outside" not in refused.output and "outside the registry" in \
        refused.output, refused.output
    allowed = CliRunner().invoke(main, args, env={"ROUTER_REGISTRY_ROOTS": str(tree.parent / "outside")})
    assert allowed.exit_code == 4, allowed.output
