"""The templates a project holds in memory: read at load, bounded, refused as from disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ConfigError, RenderError
from engine.project import templatesources
from engine.project.loader import load_project
from engine.render.renderer import Renderer


def test_a_project_renders_the_templates_it_loaded_even_once_the_files_are_gone(
    project_dir: Path,
) -> None:
    project = load_project(project_dir / "config.yaml")
    emails = project_dir / "templates" / "emails"
    for page in emails.glob("welcome*"):
        page.unlink()
    (emails / "_base.html").write_text("{% if %}")
    renderer = Renderer.for_project(project)
    assert renderer.variant("welcome", "html", "bn_BD") == "welcome.bn.html"
    assert not renderer.html_template("welcome.bn.html").inline_per_email
    assert project.templates is not None and "_base.html" in project.templates.files


def test_a_templates_folder_over_the_total_bound_is_a_problem(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(templatesources, "MAX_TEMPLATES_CHARS", 1_000)
    with pytest.raises(ConfigError) as raised:
        load_project(project_dir / "config.yaml")
    [problem] = raised.value.problems
    assert problem.file == "templates/emails"
    assert "more than 1,000 characters" in problem.message and "in memory" in problem.message


def test_a_symlink_out_of_the_folder_is_refused_as_from_disk(project_dir: Path) -> None:
    secret = project_dir / "secret.txt"
    secret.write_text("password")
    (project_dir / "templates" / "emails" / "leak.txt").symlink_to(secret)
    project = load_project(project_dir / "config.yaml")
    assert project.templates is not None and "leak.txt" not in project.templates.files
    renderer = Renderer.for_project(project)
    with pytest.raises(RenderError, match="leads outside the templates folder"):
        renderer.render_file("leak.txt", {})
