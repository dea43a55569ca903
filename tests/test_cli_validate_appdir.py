"""`router validate --import --app-dir DIR`: service code is imported from DIR (default: the registry's directory),
so the check passes where the worker will find the code and fails where it will not."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from clikit import write_fleet

from router.ops.cli import main


def validate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validate", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_import_looks_beside_the_registry_by_default(tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path / "fleet")
    code, out = validate(str(fleet.registry), "--import")
    assert code == 0, out
    assert out.strip() == f"{fleet.registry}: valid (1 services, 1 task types, 0 cron entries)"


def test_app_dir_names_where_service_code_lives(tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path / "fleet", code_dir=tmp_path / "code")
    code, out = validate(str(fleet.registry), "--import")
    assert code == 1
    assert f"No module named '{fleet.module}'" in out
    code, out = validate(str(fleet.registry), "--import", "--app-dir", str(fleet.code_dir))
    assert code == 0, out
    # The directory must exist: a typo is a usage error, not a silent fallback.
    code, out = validate(str(fleet.registry), "--import", "--app-dir", str(tmp_path / "nope"))
    assert code == 2 and "'--app-dir'" in out
