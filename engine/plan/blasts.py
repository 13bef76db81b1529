"""Big marketing sends get a canary: the pass that queues one records it as a `Blast`.

When one pass queues more marketing emails for a campaign than
`sending.canary.min_recipients`, those messages (this pass's `created_at`) become a
blast in state `canary`: only the canary goes out (every n-th message in id order
from the pass's first, n = 100 / share: an even spread over the send), and the rest
waits until the canary's figures are judged (`engine.deliver.canary`). Nothing is
written per message, so a 100,000-email pass costs one more row and one lookup.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection

from ..project import Campaign, Project
from ..store import Blast, BlastState, Message, MessageKind

BLAST: Any = Blast.__table__  # type: ignore[attr-defined]
M: Any = Message.__table__.c  # type: ignore[attr-defined]


def every(share: Decimal) -> int:
    """One message in how many is in the canary, for a share in percent."""
    return max(1, round(100 / share))


def open_blast(
    conn: Connection, project: Project, campaign: Campaign, queued: int, now: datetime
) -> bool:
    """Record this pass's messages of `campaign` as a blast if they are many; True if so."""
    canary = project.config.sending.canary
    if (
        not canary.enabled
        or campaign.kind != MessageKind.MARKETING
        or queued <= canary.min_recipients
    ):
        return False
    first = conn.execute(
        select(func.min(M.id)).where(M.campaign == campaign.name, M.created_at == now)
    ).scalar_one()
    if first is None:  # nothing of it is stored (queued counts what was inserted)
        return False
    conn.execute(
        insert(BLAST).values(
            campaign=campaign.name,
            created_at=now,
            recipients=queued,
            first_message_id=first,
            canary_every=every(canary.share),
            state=BlastState.CANARY.value,
        )
    )
    return True
