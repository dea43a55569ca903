"""Every code block in README.md and docs/*.md runs as written, against a throwaway Redis.

Blocks run in document order from the repository root, with ``REDIS_URL`` and ``ROUTER_REDIS_URL`` pointing at the
test server (the example registry reads ``${REDIS_URL:-...}``):

* ``python``: run with this interpreter; it must exit 0.
* ``sh`` / ``bash``: run with ``bash -e``; it must exit 0.
* ``console``: each ``$ command`` runs; the lines after it are its expected output (stdout and stderr), exactly,
  where a line ``...`` stands for any number of lines.
* ``yaml``: written next to the example registry and loaded with ``router.load``; it must load, unless the block is
  marked ``<!-- doc-test: invalid -->``.
* ``json``: must parse.
* ``text``: not code (synopses, diagrams); not run. A block with no language at all fails: say what it is.

A block preceded by ``<!-- doc-test: skip: <reason> -->`` (or the README's ``<!-- test-command ... -->``, the test
command itself, which would run this suite inside itself) is not run; the marker and its reason are visible in the
Markdown source.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import router

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_BLOCK = re.compile(
    r"(?:<!--\s*(?P<marker>doc-test:[^>]*|test-command[^>]*)-->\s*\n)?^```(?P<lang>[^\n`]*)\n(?P<body>.*?)^```\s*$",
    re.S | re.M,
)
TIMEOUT_S = 120


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    file: Path
    line: int
    lang: str
    body: str
    marker: str

    @property
    def where(self) -> str:
        return f"{self.file.relative_to(REPO)}:{self.line} ({self.lang or 'no language'})"


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of ``path``, in order."""
    text = path.read_text()
    return [
        Block(path, text.count("\n", 0, m.start("body")), m.group("lang").strip(), m.group("body"),
              (m.group("marker") or "").strip())
        for m in _BLOCK.finditer(text)
    ]


def _env(redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["REDIS_URL"] = env["ROUTER_REDIS_URL"] = redis_url
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), env.get("PYTHONPATH", "")] if p)
    env.pop("ROUTER_REGISTRY", None)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def _matches(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` lines fit ``expected``, where ``...`` matches any number of lines."""
    if not expected:
        return not actual
    if expected[0] == "...":
        return any(_matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and expected[0] == actual[0] and _matches(expected[1:], actual[1:])


def _console(block: Block, env: dict[str, str]) -> None:
    steps: list[tuple[str, list[str]]] = []
    for line in block.body.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps and line.strip():
            steps[-1][1].append(line.rstrip())
    assert steps, f"{block.where}: a console block needs '$ command' lines"
    for command, expected in steps:
        done = _run(["bash", "-c", command], env)
        actual = [line.rstrip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        shown, printed = "\n".join(expected), "\n".join(actual)
        assert _matches(expected, actual), f"{block.where}: `{command}` printed\n{printed}\n\nthe doc shows\n{shown}"


def _yaml(block: Block, tmp_path: Path) -> None:
    # Next to the example registry, so its includes and $refs resolve as the doc says.
    target = REPO / f".doc-example-{tmp_path.name}.yaml"
    target.write_text(block.body)
    try:
        if block.marker.startswith("doc-test: invalid"):
            with pytest.raises(router.ConfigError):
                router.load(target, env={})
        else:
            router.load(target, env={})
    finally:
        target.unlink()


def run_block(block: Block, env: dict[str, str], tmp_path: Path) -> None:
    """Run one block as the module docstring says; fail with its location."""
    if block.lang == "python":
        done = _run([sys.executable, "-c", block.body], env)
        assert done.returncode == 0, f"{block.where} failed:\n{done.stdout}\n{done.stderr}"
    elif block.lang in ("sh", "bash"):
        done = _run(["bash", "-e", "-c", block.body], env)
        assert done.returncode == 0, f"{block.where} failed:\n{done.stdout}\n{done.stderr}"
    elif block.lang == "console":
        _console(block, env)
    elif block.lang == "yaml":
        _yaml(block, tmp_path)
    elif block.lang == "json":
        json.loads(block.body)
    elif block.lang != "text":
        pytest.fail(f"{block.where}: tag the block (python, sh, console, yaml, json, or text if it is not code)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_code_block_runs(doc: Path, redis_url: str, tmp_path: Path) -> None:
    env = _env(redis_url)
    for block in blocks(doc):
        if block.marker.startswith("test-command"):
            continue
        if block.marker.startswith("doc-test: skip"):
            assert block.marker.removeprefix("doc-test: skip").strip(" :"), f"{block.where}: give the skip a reason"
            continue
        run_block(block, env, tmp_path)


def test_the_block_parser_sees_every_fence() -> None:
    """Each opening fence yields one block (a parser that missed blocks would make the test above vacuous)."""
    for doc in DOCS:
        fences = sum(1 for line in doc.read_text().splitlines() if line.startswith("```"))
        assert fences == 2 * len(blocks(doc)), doc


def test_console_matching_is_strict() -> None:
    assert _matches(["a", "...", "z"], ["a", "b", "c", "z"])
    assert not _matches(["a", "z"], ["a", "b", "z"])
    assert not _matches(["a"], ["a", "extra"])
