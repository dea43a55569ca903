"""docs/tested.md stays true: every option, environment variable and documented exit code of every ``router`` command
has a row naming tests that exist (and, for options and variables, mention them), and no row names something gone.

The truth it is compared with is the command line itself: click's parameters of ``router.ops.cli.main`` and its
subcommands, the "Exit codes:" sentence of each command's ``--help`` (which must agree with docs/cli.md), and
``router.ops.exitcodes`` (whose table docs/cli.md reproduces)."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import click
import pytest

from router.ops import cli
from router.ops.exitcodes import MEANINGS, ExitCode
from router.ops.localredis import ENV_BINARY

REPO = Path(__file__).resolve().parent.parent
TABLE = REPO / "docs" / "tested.md"
CLI_DOC = REPO / "docs" / "cli.md"
_TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::([\w:]+)`")


# --- what the command line defines --------------------------------------------------------------------------------


def commands() -> dict[str, click.Command]:
    """Every command by its full name ("router", "router worker", ...), groups walked recursively."""
    found: dict[str, click.Command] = {}

    def walk(name: str, command: click.Command) -> None:
        found[name] = command
        if isinstance(command, click.Group):
            for sub_name, sub in command.commands.items():
                walk(f"{name} {sub_name}", sub)

    walk("router", cli.main)
    return found


def param_key(param: click.Parameter) -> str:
    """How the table names a parameter: its first long flag, or an argument's name in capitals."""
    if isinstance(param, click.Argument):
        return param.human_readable_name.upper()
    longs = [o for o in param.opts if o.startswith("--")]
    return (longs or param.opts)[0]


def cli_options() -> set[tuple[str, str]]:
    return {(name, param_key(p)) for name, c in commands().items() for p in c.params}


def cli_variables() -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for name, command in commands().items():
        for p in command.params:
            envvars = [p.envvar] if isinstance(p.envvar, str) else list(p.envvar or ())
            out.update((name, v) for v in envvars)
    out.add(("router demo", ENV_BINARY))  # the throwaway redis-server's binary (router.ops.localredis)
    return out


def exit_codes_in(text: str) -> set[int]:
    """The codes of an "Exit codes: 0 ...; 1 ..., 2 ..." sentence (asides in brackets ignored)."""
    match = re.search(r"Exit codes:(.*?)(?:\n\s*\n|\Z)", text, re.S)
    if match is None:
        return set()
    sentence = re.sub(r"\([^()]*\)", "", " ".join(match.group(1).split()))
    return {int(m.group(1)) for clause in re.split(r"[;,]", sentence) if (m := re.match(r"\s*(\d+)\b", clause))}


def documented_exit_codes() -> set[tuple[str, int]]:
    """(command, code) for every code a subcommand's --help documents."""
    return {(name, code) for name, c in commands().items() if name != "router" for code in exit_codes_in(c.help or "")}


# --- what docs/tested.md says -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    section: str
    command: str
    subject: str  # option, variable or exit code, as written
    tests: tuple[tuple[str, str], ...]  # (file, test name)
    line: int


def rows() -> list[Row]:
    out: list[Row] = []
    section = ""
    for number, line in enumerate(TABLE.read_text().splitlines(), 1):
        if line.startswith("## "):
            section = line[3:].strip()
        if not line.startswith("|") or set(line) <= set("|- ") or line.startswith("| command"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 3, f"docs/tested.md:{number}: a row has three cells: {line}"
        command = cells[0].strip("`")
        subject = re.match(r"`?([^`,]+)", cells[1]).group(1).strip()  # type: ignore[union-attr]
        tests = tuple(_TEST_REF.findall(cells[2]))
        assert tests, f"docs/tested.md:{number}: name at least one test as `tests/file.py::test_name`"
        out.append(Row(section, command, subject, tests, number))
    return out


def in_section(section: str) -> list[Row]:
    found = [r for r in rows() if r.section == section]
    assert found, f"docs/tested.md has no rows under '## {section}'"
    return found


@cache
def sources_of_tests(file: str) -> dict[str, str]:
    """Test name (``test_x`` or ``Class::test_x``) -> its code, decorators included and comments left out."""
    path = REPO / file
    out: dict[str, str] = {}

    def add(prefix: str, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        if node.name.startswith("test"):
            out[prefix + node.name] = ast.unparse(node)

    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            add("", node)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    add(f"{node.name}::", item)
    return out


def mentions(source: str, word: str) -> bool:
    """Whether ``word`` (a flag or a variable) is in ``source`` as a whole token: ``-r`` is not in ``--registry``."""
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", source) is not None


def _unique(found: list[Row]) -> set[tuple[str, str]]:
    keys = [(r.command, r.subject) for r in found]
    duplicates = {k for k in keys if keys.count(k) > 1}
    assert not duplicates, f"docs/tested.md: rows given twice: {sorted(duplicates)}"
    return set(keys)


# --- the comparisons --------------------------------------------------------------------------------------------


def test_every_option_has_a_row_and_every_row_an_option() -> None:
    table = _unique(in_section("Options"))
    actual = cli_options()
    assert not actual - table, f"options without a row in docs/tested.md (add one naming a test): " \
                               f"{sorted(actual - table)}"
    assert not table - actual, f"docs/tested.md rows for options that do not exist: {sorted(table - actual)}"


def test_every_environment_variable_has_a_row_and_every_row_a_variable() -> None:
    table = _unique(in_section("Environment"))
    actual = cli_variables()
    assert not actual - table, f"variables without a row in docs/tested.md: {sorted(actual - table)}"
    assert not table - actual, f"docs/tested.md rows for variables nothing reads: {sorted(table - actual)}"


def test_every_documented_exit_code_has_a_row_per_command() -> None:
    table = {(c, int(s)) for c, s in _unique(in_section("Exit codes"))}
    documented = documented_exit_codes()
    assert {c for c, _ in documented} == set(commands()) - {"router"}, "every command's --help says its exit codes"
    assert not documented - table, f"exit codes without a row in docs/tested.md: {sorted(documented - table)}"
    assert not table - documented, f"docs/tested.md rows for codes no --help documents: {sorted(table - documented)}"
    assert {code for _, code in table} == {int(c) for c in ExitCode}, "every ExitCode is shown by some test"


@pytest.mark.parametrize("section", ["Options", "Environment", "Exit codes"])
def test_every_named_test_exists_and_mentions_its_subject(section: str) -> None:
    problems: list[str] = []
    params = {(name, param_key(p)): p for name, c in commands().items() for p in c.params}
    for row in in_section(section):
        sources = []
        for file, name in row.tests:
            if not (REPO / file).is_file():
                problems.append(f"docs/tested.md:{row.line}: no file {file}")
                continue
            source = sources_of_tests(file).get(name)
            if source is None:
                problems.append(f"docs/tested.md:{row.line}: no test {name} in {file}")
            else:
                sources.append(source)
        param = params.get((row.command, row.subject))
        if section == "Exit codes" or isinstance(param, click.Argument) or not sources:
            continue
        words = list(param.opts) if param is not None else [row.subject]
        if not any(mentions(source, w) for w in words for source in sources):
            problems.append(f"docs/tested.md:{row.line}: none of the tests named for {row.command} {row.subject} "
                            f"mentions {' or '.join(words)}")
    assert problems == [], "\n".join(problems)


def test_exit_codes_in_help_and_in_docs_cli_agree() -> None:
    text = CLI_DOC.read_text()
    sections = re.split(r"^## ", text, flags=re.M)
    for name, command in commands().items():
        if name == "router":
            continue
        [section] = [s for s in sections if s.startswith(f"`{name}`")]
        assert exit_codes_in(section) == exit_codes_in(command.help or ""), f"{name}: docs/cli.md vs --help"


def test_docs_cli_exit_code_table_is_router_ops_exitcodes() -> None:
    """docs/cli.md's table under its ``exit-codes`` marker is ExitCode with MEANINGS, word for word."""
    text = CLI_DOC.read_text().split("<!-- exit-codes:", 1)[1]
    table = re.findall(r"^\| (\d+) \| (.*) \|$", text.split("\n\n", 1)[0], re.M)
    assert [(int(c), m) for c, m in table] == [(int(c), MEANINGS[c]) for c in ExitCode]


def test_the_checks_can_fail() -> None:
    """The parsers find what they must, so the comparisons above are not vacuous."""
    assert exit_codes_in("Exit codes: 0 ok; 1 bad (or 5 crashes, 7); 4 gone, or worse.\n\nExit codes: 9") == {0, 1, 4}
    assert exit_codes_in("no codes here") == set()
    assert ("router worker", "--lease-s") in cli_options() and ("router validate", "PATH") in cli_options()
    assert ("router worker", "ROUTER_REDIS_URL") in cli_variables()
    assert ("router worker", 5) in documented_exit_codes()
    assert "test_the_checks_can_fail" in sources_of_tests("tests/test_coverage_table.py")
    assert len(rows()) >= len(cli_options()) + len(documented_exit_codes())
    assert mentions('args = ["-r", path]', "-r") and not mentions('"--registry"', "-r")
    assert mentions("env={'ROUTER_REGISTRY': p}", "ROUTER_REGISTRY")
    assert not mentions("ROUTER_REGISTRY_X", "ROUTER_REGISTRY")
