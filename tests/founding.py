"""The shipped project running only the four founding campaigns, with the one-email welcome.

Tests written about those campaigns (the daemon, the dispatcher, the edges of the
config) override their module's `project_dir` with `founding_project` so the flows the
shipped config also runs do not change what they count.
"""

from __future__ import annotations

import re
from pathlib import Path

FOUNDING = ("welcome", "thank_you", "holiday_preannounce", "price_drop_refund")


def founding_project(project_dir: Path) -> Path:
    """Rewrite the copy's config.yaml to run just the founding campaigns."""
    config = project_dir / "config.yaml"
    listed = "".join(f"  - {name}\n" for name in FOUNDING)
    text, found = re.subn(
        r"\ncampaigns:\n(?:(?:  .*)?\n)*", f"\ncampaigns:\n{listed}\n", config.read_text()
    )
    assert found == 1, "config.yaml has no campaigns: list"
    config.write_text(text)
    return project_dir
