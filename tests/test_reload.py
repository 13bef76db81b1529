"""Hot reload: edits are picked up between ticks; an invalid edit keeps the last good project."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from engine.loader import load_project
from engine.reload import ProjectWatcher


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
