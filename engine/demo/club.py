"""The demo's loyalty program: the Nakshi Club began `CLUB_AGE` before the demo was seeded.

`place_in_tiers` runs the program's first tier recomputation as of then, once per
database (never again once the club has placed anyone), so the orders seeded since
(the `club` scenario's second orders, and the orders of others that left the
year's window) move customers up or down at the first planning pass, and the
`tier_changed` campaign has news to send. It returns what moved, counted in a
transaction it rolls back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Engine

from ..plan import recompute_tiers
from ..project import Project
from ..store import Checkpoint

# How long before the first seeding the club placed everyone in their tiers.
CLUB_AGE = timedelta(days=3)


@dataclass(frozen=True)
class ClubPlacement:
    placed: int  # customers placed in a tier `CLUB_AGE` ago (0: placed before)
    up: int  # moves up the first planning pass will make
    down: int

    def line(self) -> str:
        return (
            f"  tier_changed: the Nakshi Club placed {self.placed} customers in tiers "
            f"{CLUB_AGE.days} days ago; since then {self.up} moved up and {self.down} down "
            "(announced at the first planning pass)"
        )


def place_in_tiers(engine: Engine, project: Project, now: datetime) -> ClubPlacement | None:
    """The club's first placement as of `now - CLUB_AGE`; None without tiers.yaml."""
    if project.tiers is None:
        return None
    with engine.begin() as conn:
        began = conn.execute(
            select(Checkpoint.__table__.c.name).where(  # type: ignore[attr-defined]
                Checkpoint.__table__.c.name == "tiers"  # type: ignore[attr-defined]
            )
        ).first()
        placed = 0 if began else recompute_tiers(conn, project, now - CLUB_AGE).start
    with engine.connect() as conn, conn.begin() as transaction:
        moves = recompute_tiers(conn, project, now, force=True)
        transaction.rollback()
    return ClubPlacement(placed, moves.up, moves.down)
