"""Hot reload: edits are picked up between ticks; an invalid edit keeps the last good project."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest

from engine.check import check_project
from engine.project.loader import Project, load_project
from engine.reload import Checked, ProjectWatcher


def touch_later(path: Path) -> None:
    """Make sure the change is visible even on a coarse-mtime filesystem."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


@pytest.fixture
def watcher(project_dir: Path) -> ProjectWatcher:
    return ProjectWatcher(load_project(project_dir / "config.yaml"), project_dir / "config.yaml")


def test_nothing_changed_means_no_reload(watcher: ProjectWatcher):
    assert watcher.poll() is None
    assert watcher.poll() is None


def test_a_campaign_edit_is_picked_up(watcher: ProjectWatcher, project_dir: Path):
    path = project_dir / "campaigns" / "welcome.yaml"
    path.write_text(path.read_text().replace("delay: 10m", "delay: 20m"))
    touch_later(path)
    new = watcher.poll()
    assert new is not None
    assert new.campaigns["welcome"].trigger.delay.total_seconds() == 1200
    assert watcher.current() is new
    assert watcher.poll() is None


def test_config_and_template_edits_are_picked_up(watcher: ProjectWatcher, project_dir: Path):
    config = project_dir / "config.yaml"
    config.write_text(config.read_text().replace("tick_seconds: 60", "tick_seconds: 30"))
    touch_later(config)
    assert watcher.poll().config.tick_seconds == 30
    template = project_dir / "templates" / "emails" / "welcome.txt"
    template.write_text(template.read_text() + "\nSee you soon.\n")
    touch_later(template)
    assert watcher.poll() is not None


def test_an_invalid_edit_keeps_the_last_good_project_and_logs_once(
    watcher: ProjectWatcher, project_dir: Path, caplog: pytest.LogCaptureFixture
):
    good = watcher.current()
    path = project_dir / "segments" / "regulars.yaml"
    path.write_text("name: regulars\nrulez: {}\n")
    touch_later(path)
    with caplog.at_level(logging.ERROR, logger="engine.reload"):
        assert watcher.poll() is None
        assert watcher.poll() is None  # the same broken files: not logged again
    assert watcher.current() is good
    problems = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reload: ")]
    assert problems == [
        "reload: segments/regulars.yaml:2: rulez: unknown key (did you mean 'rules'?)"
    ]
    assert sum("reload refused" in r.getMessage() for r in caplog.records) == 1
    # Fixed: the next poll switches.
    path.write_text("name: regulars\nrules:\n  all:\n    - orders: {at_least: 2, within: 90d}\n")
    touch_later(path)
    assert watcher.poll() is not None


def test_a_broken_template_is_refused(
    watcher: ProjectWatcher, project_dir: Path, caplog: pytest.LogCaptureFixture
):
    template = project_dir / "templates" / "emails" / "thank_you.html"
    template.write_text(template.read_text() + "{% if %}")
    touch_later(template)
    with caplog.at_level(logging.ERROR, logger="engine.reload"):
        assert watcher.poll() is None
    assert any("thank_you.html" in r.getMessage() for r in caplog.records)


def test_a_removed_campaign_file_is_a_change(watcher: ProjectWatcher, project_dir: Path):
    config = project_dir / "config.yaml"
    config.write_text(config.read_text().replace("  - price_drop_refund\n", ""))
    (project_dir / "campaigns" / "price_drop_refund.yaml").unlink()
    touch_later(config)
    new = watcher.poll()
    assert new is not None and "price_drop_refund" not in new.campaigns


# ---------------------------------------------------------------- the check in a process


def hanging_check(config_file: Path) -> Checked:
    """A check that never ends (as one of a template that runs away), leaving its pid."""
    (config_file.parent / "check.pid").write_text(str(os.getpid()))
    time.sleep(600)
    return check_project(config_file)


def checking_pid(project_dir: Path, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while not (pid := project_dir / "check.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return int(pid.read_text())


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def spawned_children() -> list[int]:
    """Live processes this one spawned through multiprocessing (its resource tracker aside)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            spawned = b"spawn_main" in (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if spawned and int(ppid) == os.getpid() and state != "Z":
            found.append(int(entry.name))
    return found


def edit_welcome(project_dir: Path) -> None:
    path = project_dir / "campaigns" / "welcome.yaml"
    path.write_text(path.read_text().replace("delay: 10m", "delay: 20m"))
    touch_later(path)


def test_the_check_aside_takes_a_valid_edit_and_refuses_a_broken_one(
    watcher: ProjectWatcher, project_dir: Path, caplog: pytest.LogCaptureFixture
):
    edit_welcome(project_dir)
    new = asyncio.run(watcher.poll_aside())
    assert new is not None and watcher.current() is new
    assert new.campaigns["welcome"].trigger.delay.total_seconds() == 1200
    template = project_dir / "templates" / "emails" / "thank_you.html"
    template.write_text(template.read_text() + "{% if %}")
    touch_later(template)
    with caplog.at_level(logging.ERROR, logger="engine.reload"):
        assert asyncio.run(watcher.poll_aside()) is None
    assert watcher.current() is new
    assert any("thank_you.html" in r.getMessage() for r in caplog.records)


def test_a_check_that_runs_too_long_is_killed_and_the_edit_refused(
    project_dir: Path, caplog: pytest.LogCaptureFixture
):
    config = project_dir / "config.yaml"
    watcher = ProjectWatcher(load_project(config), config, check=hanging_check, check_seconds=1)
    good = watcher.current()
    edit_welcome(project_dir)
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="engine.reload"):
        assert asyncio.run(watcher.poll_aside()) is None
    assert time.monotonic() - started < 3
    assert watcher.current() is good
    assert not spawned_children()
    assert caplog.records[-1].getMessage() == (
        "reload: config.yaml: checking the edited project took more than 1 s: "
        "does a template run away?"
    )
    assert watcher.poll() is None  # the same files: refused once, not checked again


def test_stopping_kills_a_running_check_at_once(project_dir: Path):
    config = project_dir / "config.yaml"
    watcher = ProjectWatcher(load_project(config), config, check=hanging_check)
    good = watcher.current()
    edit_welcome(project_dir)

    async def scenario() -> tuple[Project | None, int, float]:
        stop = asyncio.Event()
        polling = asyncio.create_task(watcher.poll_aside(stop))
        pid = await asyncio.to_thread(checking_pid, project_dir)
        stop.set()
        started = time.monotonic()
        return await asyncio.wait_for(polling, 5), pid, time.monotonic() - started

    new, pid, took = asyncio.run(scenario())
    assert new is None and watcher.current() is good
    assert gone(pid) and took < 2
    assert not spawned_children()


def test_a_file_saved_during_the_check_is_picked_up_next(project_dir: Path):
    config = project_dir / "config.yaml"
    template = project_dir / "templates" / "emails" / "welcome.txt"

    def check_while_saving(path: Path) -> Checked:
        checked = check_project(path)
        template.write_text(template.read_text() + "\nSaved while the edit was checked.\n")
        touch_later(template)
        return checked

    watcher = ProjectWatcher(load_project(config), config, check=check_while_saving)
    edit_welcome(project_dir)
    assert watcher.poll() is not None
    assert watcher.poll() is not None  # the template saved meanwhile is news
