"""What a dispatch pass reports, and what it keeps of each message in flight.

`DispatchReport` counts each outcome per campaign, keeps the first
MAX_ERRORS_KEPT errors and says whether the pass paused and why; `as_dict` is
its JSON form. A `Claim` is what the pass knows of one claimed row, a `Letter`
that row composed and ready for the SMTP server. `default_worker_id` names
the process that holds the leases.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

MAX_ERRORS_KEPT = 100
LEASE_LOST = "lease_lost"  # the count of rows another dispatcher took before they were sent


@dataclass
class DispatchReport:
    """What one pass did: counts per outcome and per campaign, errors, pause."""

    worker_id: str
    dry_run: bool = False
    claimed: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    campaigns: dict[str, Counter[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    swept_in_doubt: int = 0
    swept_resend: int = 0
    swept_requeued: int = 0
    suppressed_addresses: int = 0
    paused: bool = False
    pause_reason: str | None = None
    stopped: bool = False
    seconds: float = 0.0

    def count(self, campaign: str, outcome: str) -> None:
        self.counts[outcome] += 1
        self.campaigns.setdefault(campaign, Counter())[outcome] += 1

    def error(self, message_id: int, text: str) -> None:
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(f"message {message_id}: {text}")

    @property
    def handled(self) -> int:
        return sum(n for key, n in self.counts.items() if key not in ("released", LEASE_LOST))

    def pause(self, reason: str) -> None:
        if not self.paused:
            self.paused, self.pause_reason = True, reason
            log.error("sending paused: %s", reason)

    def as_dict(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "dry_run": self.dry_run,
            "claimed": self.claimed,
            "counts": dict(self.counts),
            "campaigns": {name: dict(c) for name, c in sorted(self.campaigns.items())},
            "swept_in_doubt": self.swept_in_doubt,
            "swept_resend": self.swept_resend,
            "swept_requeued": self.swept_requeued,
            "suppressed_addresses": self.suppressed_addresses,
            "paused": self.paused,
            "pause_reason": self.pause_reason,
            "stopped": self.stopped,
            "errors": list(self.errors),
            "seconds": round(self.seconds, 3),
        }


@dataclass(slots=True)
class Claim:
    """What the dispatcher keeps about one claimed message while it is in flight."""

    id: int
    campaign: str
    attempts: int
    send_after: datetime
    resend_in_doubt: bool
    batch_size: int


@dataclass
class Letter:
    claim: Claim
    sender: str
    recipient: str
    data: bytes
    header_message_id: str
    handed: bool = False


def default_worker_id() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
