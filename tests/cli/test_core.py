"""`lifecycle check`: exit 0 on the shipped files, exit 2 listing every problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from engine.cli import main
from tests.conftest import REPO


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(main, ["check", *args], env={"LIFECYCLE_CONFIG": None, **(env or {})})


def edit(project_dir: Path, file: str, old: str, new: str) -> int:
    path = project_dir / file
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not once in {file}"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


@pytest.fixture
def broken(project_dir: Path) -> tuple[Path, list[str]]:
    """A project with one problem in each of five files, and the lines check must print."""
    delay = edit(project_dir, "campaigns/welcome.yaml", "delay: 10m", "delay: soon")
    segment = edit(project_dir, "campaigns/thank_you.yaml", "segment: everyone", "segment: everyon")
    days = edit(
        project_dir, "campaigns/holiday_preannounce.yaml", "days_before: 3", "days_befor: 3"
    )
    (project_dir / "segments" / "loyal.yaml").write_text(
        "name: loyal\nrules:\n  all:\n    - orderz: {at_least: 5}\n", encoding="utf-8"
    )
    listed = edit(project_dir, "config.yaml", "  - price_drop_refund\n", "  - price_drop_refunds\n")
    expected = [
        f"config.yaml:{listed}: campaigns[3]: no campaign named 'price_drop_refunds' "
        "(did you mean 'price_drop_refund'?)",
        f'campaigns/welcome.yaml:{delay}: trigger.delay: expected a duration like 2h or 3d, got "soon"',
        f"campaigns/thank_you.yaml:{segment}: segment: no segment named 'everyon' in segments/ "
        "(did you mean 'everyone'?)",
        f"campaigns/holiday_preannounce.yaml:{days}: trigger.days_befor: unknown key "
        "(did you mean 'days_before'?)",
        "segments/loyal.yaml:4: rules.all[0].orderz: unknown rule 'orderz'",
    ]
    return project_dir, expected


def test_the_shipped_project_is_valid() -> None:
    result = run("--config", str(REPO / "config.yaml"))
    assert result.exit_code == 0, result.output
    assert "ok: config, campaigns, segments and templates are valid" in result.stdout
    assert result.stderr == ""


def test_every_problem_is_listed_one_per_line(broken: tuple[Path, list[str]]) -> None:
    project_dir, expected = broken
    result = run("--config", str(project_dir / "config.yaml"))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    for want in expected:
        # Each problem is one whole line, however long: file:line jumps work in editors and CI.
        assert any(line.startswith(want) for line in lines), (want, lines)
    assert lines[-1] == f"{len(lines) - 1} problems found"
    assert len(lines) - 1 == len(expected)


def test_json_lists_every_problem(broken: tuple[Path, list[str]]) -> None:
    project_dir, expected = broken
    result = run("--config", str(project_dir / "config.yaml"), "--json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert all(set(e) == {"file", "line", "key", "message"} for e in report["errors"])
    shown = [f"{e['file']}:{e['line']}: {e['key']}: {e['message']}" for e in report["errors"]]
    for want in expected:
        assert any(line.startswith(want) for line in shown), (want, shown)
    delay = next(e for e in report["errors"] if e["file"] == "campaigns/welcome.yaml")
    assert delay["key"] == "trigger.delay"
    assert isinstance(delay["line"], int)
    assert delay["message"] == 'expected a duration like 2h or 3d, got "soon"'


def test_json_when_all_is_well(project_dir: Path) -> None:
    result = run("--config", str(project_dir / "config.yaml"), "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"ok": True, "errors": []}


def test_an_invalid_config_still_lists_the_campaigns_problems(project_dir: Path) -> None:
    zone = edit(project_dir, "config.yaml", "timezone: Asia/Dhaka", "timezone: Asia/Dhakka")
    delay = edit(project_dir, "campaigns/welcome.yaml", "delay: 10m", "delay: soon")
    result = run("--config", str(project_dir / "config.yaml"), "--json")
    assert result.exit_code == 2
    found = {(e["file"], e["line"], e["key"]) for e in json.loads(result.stdout)["errors"]}
    assert found == {
        ("config.yaml", zone, "shop.timezone"),
        ("campaigns/welcome.yaml", delay, "trigger.delay"),
    }


def test_a_missing_config_file(tmp_path: Path) -> None:
    result = run("--config", str(tmp_path / "nowhere.yaml"), "--json")
    assert result.exit_code == 2
    errors = json.loads(result.stdout)["errors"]
    assert errors[0] == {
        "file": "nowhere.yaml",
        "line": None,
        "key": "",
        "message": "file not found",
    }


@pytest.mark.parametrize(
    ("option", "environment", "code"),
    [
        pytest.param("good", "broken", 0, id="option-wins-over-environment"),
        pytest.param(None, "broken", 2, id="environment"),
        pytest.param(None, "good", 0, id="environment-good"),
    ],
)
def test_which_project_is_checked(
    broken: tuple[Path, list[str]],
    tmp_path: Path,
    option: str | None,
    environment: str,
    code: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = tmp_path / "good"
    good.mkdir()
    shutil.copy(REPO / "config.yaml", good / "config.yaml")
    shutil.copy(REPO / "tiers.yaml", good / "tiers.yaml")
    for folder in ("campaigns", "segments", "templates"):
        shutil.copytree(REPO / folder, good / folder)
    configs = {"good": str(good / "config.yaml"), "broken": str(broken[0] / "config.yaml")}
    monkeypatch.chdir(tmp_path)  # neither project is in the working directory
    args = ["--config", configs[option]] if option else []
    result = run(*args, "--json", env={"LIFECYCLE_CONFIG": configs[environment]})
    assert result.exit_code == code, result.output
    assert json.loads(result.stdout)["ok"] is (code == 0)


def test_the_console_script_loads_without_collecting_garbage_and_runs_commands_with_it() -> None:
    import subprocess
    import sys

    script = (
        "import gc, sys\n"
        "import engine\n"
        "from engine.cli import base\n"
        "loading = gc.isenabled()\n"
        "@base.main.command('gc-state')\n"
        "def state():\n"
        "    print(loading, gc.isenabled(), gc.get_freeze_count() > 0)\n"
        "sys.argv = ['lifecycle', 'gc-state']\n"
        "gc.disable()  # as engine.console() leaves it while the modules load\n"
        "engine.console()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # Loaded with collection on here (plain import); the command itself runs with it on,
    # the objects loaded before it set aside.
    assert done.stdout.split() == ["True", "True", "True"]
