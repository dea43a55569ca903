"""`router validate` as a user runs it (a real process) on every nasty input the loader must survive: exit 1 or 2,
each problem one located line, never a traceback, never a hang, within the budget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from regkit import write

REF = 'version: 1\nservices:\n  s:\n    tasks:\n      s.t: {{payload: {{$ref: "{ref}"}}}}\n'
CRON = "cron:\n  - {name: c, task: s.t, spec: '* * * * *'}\n"


def nasty_inputs(tree: Path) -> dict[str, Path]:
    """Every kind of input that once crashed, hung or blew up the loader, as files under ``tree``."""
    write(tree.parent, "outside/x.yaml", "services: {}\n")
    os.mkfifo(tree / "fifo.yaml")
    os.symlink("/etc/passwd", tree / "passwd.json")
    (tree / "dir.yaml").mkdir()
    big = "a" * 1_000_000
    return {
        "huge integer": write(tree, "int.yaml", f"version: 1\ndefaults: {{max_retry: {'9' * 400}}}\n"),
        "unreadable integer": write(tree, "int2.yaml", f"version: 1\ndefaults: {{timeout_s: {'9' * 5000}}}\n"),
        "not a number": write(tree, "nan.yaml", "version: 1\ndefaults: {timeout_s: .nan}\n"),
        "self reference": write(tree, "rec.yaml", REF.format(ref="#") + CRON),
        "nested loop": write(tree, "loop.yaml", 'version: 1\nservices:\n  s:\n    tasks:\n      s.t: '
                                                '{payload: {properties: {a: {$ref: "#/properties/a"}}}}\n' + CRON),
        "dynamic ref": write(tree, "dyn.yaml", 'version: 1\nservices:\n  s:\n    tasks:\n      s.t: '
                                               '{payload: {$dynamicRef: "#meta"}}\n'),
        "include outside": write(tree, "out.yaml", "version: 1\ninclude: [../outside/x.yaml]\n"),
        "ref /etc/passwd": write(tree, "passwd.yaml", REF.format(ref="/etc/passwd")),
        "ref symlink out": write(tree, "link.yaml", REF.format(ref="passwd.json")),
        "include fifo": write(tree, "fifo-inc.yaml", "version: 1\ninclude: [fifo.yaml]\n"),
        "include directory": write(tree, "dir-inc.yaml", "version: 1\ninclude: [dir.yaml]\n"),
        "ref /dev/zero": write(tree, "zero.yaml", REF.format(ref="/dev/zero")),
        "alias-repeated big scalar": write(tree, "alias.yaml", "\n".join(
            ["version: 1", "services:", "  s:", f"    app: &big {big}", "    tasks:"]
            + [f"      s.t{i}: {{queue: *big}}" for i in range(200)]) + "\n"),
        "not UTF-8": _write_bytes(tree / "latin1.yaml", "version: 1\n# caf\xe9\n".encode("latin-1")),
        "root is a fifo": tree / "fifo.yaml",
        "root is /dev/zero": Path("/dev/zero"),
    }


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tree = tmp_path_factory.mktemp("nasty") / "tree"
    tree.mkdir()
    return nasty_inputs(tree)


NAMES = ["huge integer", "unreadable integer", "not a number", "self reference", "nested loop", "dynamic ref",
         "include outside", "ref /etc/passwd", "ref symlink out", "include fifo", "include directory", "ref /dev/zero",
         "alias-repeated big scalar", "not UTF-8", "root is a fifo", "root is /dev/zero"]


@pytest.mark.parametrize("name", NAMES)
def test_validate_never_prints_a_traceback(inputs: dict[str, Path], name: str) -> None:
    """Regression (issue 9 items 4-5): `router validate` printed tracebacks, hung or ran out of memory on these."""
    path = inputs[name]
    env = {k: v for k, v in os.environ.items() if k != "ROUTER_REGISTRY_ROOTS"}
    try:
        done = subprocess.run([sys.executable, "-m", "router", "validate", str(path)], capture_output=True, text=True,
                              check=False,
                              timeout=15, env=env, cwd=path.parent)
    except subprocess.TimeoutExpired:
        pytest.fail(f"router validate {path} did not finish in 15 s")
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output[-3000:]
    assert done.returncode in (1, 2), (done.returncode, output[-3000:])
    lines = output.strip().splitlines()
    assert lines[-1].startswith(f"{path}: invalid") or lines[-1].startswith("error:"), lines[-1][:300]
    for line in lines[:-1]:  # every problem line is `file:line:col: message [code]`, and short
        file, _, rest = line.partition(":")
        line_no, column = rest.split(":", 2)[:2]
        assert file and line_no.isdigit() and column.isdigit() and line.endswith("]"), line[:300]
        assert len(line) < 1000, line[:300]
