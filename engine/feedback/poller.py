"""The daemon's reading of the bounce mailbox: every `bounces.every`, in a worker thread.

`MailboxPoller` is called on every tick and reads the mailbox when it is due (never
when no mailbox or no `sending.bounce_address` is configured). A mailbox that
cannot be read is said once in the log, then retried with a growing wait (twice
`bounces.every` after each failure, at most an hour); the daemon goes on, and the
first read that works again is said too.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from ..errors import EngineError
from ..project import Project, Secrets
from .apply import Tally
from .mailboxes import Processor, read_mailbox

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=1)


@dataclass
class MailboxPoller:
    due: datetime | None = None  # the next read; None: at the next call
    failures: int = 0
    last: Tally | None = None  # what the last read did

    def configured(self, project: Project) -> bool:
        bounces = project.config.bounces
        has_mailbox = bool(bounces.maildir or bounces.imap)
        return has_mailbox and project.config.sending.bounce_address is not None

    async def __call__(
        self, engine: Engine, project: Project, secrets: Secrets, now: datetime
    ) -> Tally | None:
        """Read the mailbox if it is due; what the read did (None: not read)."""
        if not self.configured(project) or (self.due is not None and now < self.due):
            return None
        every = project.config.bounces.every
        try:
            processor = Processor.for_project(engine, project, secrets)
            tally = await asyncio.to_thread(read_mailbox, processor, project, secrets)
        except EngineError as exc:
            self.failures += 1
            wait = min(every * 2**self.failures, MAX_BACKOFF)
            if self.failures == 1:
                log.warning("bounce mailbox not read: %s (retrying, next in %s)", exc, wait)
            self.due = now + wait
            return None
        if self.failures:
            log.info("bounce mailbox read again after %d failed tries", self.failures)
        self.failures = 0
        self.due = now + every
        self.last = tally
        if tally.read:
            log.info("bounce mailbox: %s", tally.summary())
        return tally
