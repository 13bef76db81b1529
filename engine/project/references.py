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
from .config import Campaign, Paths
from .yamlfile import YamlDoc


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
        if campaign.segment not in segments:
            known = _suggest(campaign.segment, segments)
            problems.append(
                Problem(
                    file,
                    doc.line(("segment",)),
                    "segment",
                    f"no segment named {campaign.segment!r} in {paths.segments}/{known}",
                )
            )
        for suffix in (".html", ".txt"):
            template = root / paths.templates / f"{campaign.template}{suffix}"
            if not template.is_file():
                problems.append(
                    Problem(
                        file,
                        doc.line(("template",)),
                        "template",
                        f"template file {paths.templates}/{campaign.template}{suffix} not found",
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
