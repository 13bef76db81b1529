"""What the project's files point at must exist: segments, templates, enabled campaigns.

Each problem names the file, line and key that points nowhere, with the closest
known name as a hint (or every known name when none is close). Nothing here reads
a file: it only looks whether each template file exists.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Set
from pathlib import Path
from typing import Any

from ..errors import Problem
from .campaigns import Campaign
from .config import Paths
from .yamlfile import KeyPath, YamlDoc, dotted


def check_references(
    campaigns: Mapping[str, Campaign],
    campaign_files: Mapping[str, str],
    segments: Set[str],
    root: Path,
    paths: Paths,
    docs: Mapping[str, YamlDoc],
) -> list[Problem]:
    """Each campaign's segment and template files must exist (a broken file is reported once).

    `segments` names every segment file, the ones that failed to load too.
    """
    problems: list[Problem] = []
    for name, campaign in campaigns.items():
        file = campaign_files[name]
        doc = docs[file]
        named: list[tuple[KeyPath, str]] = [(("segment",), campaign.segment)]
        named += [
            (("steps", i, "segment"), s.segment) for i, s in enumerate(campaign.steps) if s.segment
        ]
        named += [(("exit", i), e.segment) for i, e in enumerate(campaign.exit) if e.segment]
        for path, segment in named:
            if segment not in segments:
                problems.append(
                    Problem(
                        file,
                        doc.line(path),
                        dotted(path),
                        f"no segment named {segment!r} in {paths.segments}/{_suggest(segment, segments)}",
                    )
                )
        templates: list[tuple[KeyPath, str]] = (
            [(("steps", i, "template"), s.template) for i, s in enumerate(campaign.steps)]
            if campaign.steps
            else [(("template",), campaign.template or "")]
        )
        for path, template in templates:
            for suffix in (".html", ".txt"):
                if not (root / paths.templates / f"{template}{suffix}").is_file():
                    problems.append(
                        Problem(
                            file,
                            doc.line(path),
                            dotted(path),
                            f"template file {paths.templates}/{template}{suffix} not found"
                            + (
                                _suggest(template, _templates(root / paths.templates))
                                if suffix == ".html"
                                else ""
                            ),
                        )
                    )
    return problems


def check_enabled(
    names: list[Any], known: set[str], broken: set[str] | frozenset[str], doc: YamlDoc
) -> list[Problem]:
    """Every campaign config.yaml enables must have a file."""
    problems = []
    for i, name in enumerate(names):
        if isinstance(name, str) and name not in known and name not in broken:
            hint = _suggest(name, known | broken)
            problems.append(
                Problem(
                    doc.file,
                    doc.line(("campaigns", i)),
                    f"campaigns[{i}]",
                    f"no campaign named {name!r}{hint}",
                )
            )
    return problems


def _suggest(name: str, known: Iterable[str]) -> str:
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(names) or 'none'})"


def _templates(folder: Path) -> set[str]:
    """The names of the email templates in `folder` (welcome for welcome.html)."""
    if not folder.is_dir():
        return set()
    return {p.name.removesuffix(".html") for p in folder.glob("*.html") if "." not in p.stem}
