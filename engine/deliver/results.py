"""What happens to a message once the SMTP server has answered for it.

A `Recorder` turns each send result into a status change in the `Ledger`:
a 250 is sent; a 4xx or a network error retries with `backoff` until
`max_attempts` or `max_age`, then fails; a cut-off after DATA is `in_doubt`
(or retried, for campaigns with `resend_in_doubt`); a refusal of one
recipient (5.1.x, 5.2.x, "no such user") fails that message (and suppresses
a bad mailbox) and nothing else.

A message that could not be composed (`unsendable`) fails for good when the
fault is its own (an invalid address, a line break in a name). A template
error is the engine's: the message is released to retry with `backoff`
(counted as an attempt, the error in `last_error`) however many attempts it
took, so it goes out once a good template is loaded (a reload the check
accepts). One whose template never renders stops at its `expires_at` (marked
`expired` when next claimed); one with no expiry gives up, failed, once it is
`max_age` past its `send_after`, like a message the SMTP server keeps refusing.

The circuit breaker pauses the run (`DispatchReport.pause`) on an auth
failure, a refusal of the sender, an SMTP server unreachable from every
connection, or the same permanent refusal for several messages in a row to
more than one domain: no new claims, the rows not yet sent released, nobody
suppressed.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ..project import Sending
from ..store import MessageStatus
from .dispatchreport import Claim, DispatchReport, Letter
from .mailer import Outcome, SendResult
from .outbox import FINAL_ROW, RELEASE_ROW, RETRY_ROW, Ledger, handed

log = logging.getLogger(__name__)

RETRY_BASE = timedelta(minutes=2)
RETRY_CAP = timedelta(hours=6)
SAME_REFUSAL_STREAK = 5  # identical permanent refusals in a row that pause the run …
STREAK_DOMAINS = 2  # … when they are for at least this many recipients' domains


def backoff(attempt: int, rng: random.Random | None = None) -> timedelta:
    """Delay before retry number `attempt` (1-based): doubling from 2 min, capped at
    6 h, with jitter (a random half to all of it) so retries do not arrive together."""
    ceiling = min(RETRY_BASE * 2 ** max(0, attempt - 1), RETRY_CAP)
    return ceiling * (rng or random).uniform(0.5, 1.0)


class Recorder:
    """Records the outcome of each message of one pass in its `ledger`, counts it
    in its `report`, and holds a streak of identical refusals until it is judged."""

    def __init__(
        self,
        ledger: Ledger,
        report: DispatchReport,
        sending: Sending,
        concurrency: int,
        worker_id: str,
        clock: Callable[[], datetime],
    ):
        self.ledger, self.report, self.sending, self.clock = ledger, report, sending, clock
        self.concurrency = concurrency
        self.worker_id = worker_id
        self.handed = handed(worker_id)
        self.streak: list[tuple[Letter, SendResult]] = []
        self.connect_failures = 0

    def record(self, letter: Letter, result: SendResult) -> None:
        """Turn one send result into a status change (and maybe a pause)."""
        if result.outcome is Outcome.PERMANENT:
            self._permanent(letter, result)
            return
        self.end_streak()
        if result.outcome is Outcome.SENT:
            self.connect_failures = 0
            self.ledger.sent_one(letter.claim.campaign, letter.claim.id, result.code)
        elif result.outcome is Outcome.SYSTEMIC:
            self.report.pause(f"the SMTP server refuses all mail: {result.describe()}")
            self.release(letter)
        elif result.outcome is Outcome.IN_DOUBT:
            self._in_doubt(letter, result)
        else:
            self._transient(letter, result)

    def unsendable(self, row: Any, reason: str, *, retry: bool) -> None:
        """Record a claimed row that could not be composed (`row`: id, campaign,
        attempts, send_after, expires_at); `retry` for a template error."""
        if not retry:
            self.final(row.id, row.campaign, MessageStatus.FAILED, reason, tried=0)
            return
        now = self.clock()
        attempts = row.attempts + 1
        if row.expires_at is None and now - row.send_after >= self.sending.max_age:
            reason = f"gave up after {attempts} attempts: {reason}"
            self.final(row.id, row.campaign, MessageStatus.FAILED, reason, 1, owner=self.worker_id)
            return
        self.report.error(row.id, f"waits for a good template: {reason}")
        log.warning("message %s waits for a good template: %s", row.id, reason)
        self._retry(row.id, row.campaign, self.worker_id, now + backoff(attempts), None, reason, 1)

    def _transient(self, letter: Letter, result: SendResult) -> None:
        self._retry_or_fail(letter.claim, result.describe(), result.code, tried=1)
        if result.stage == "connect":
            self.connect_failures += 1
            if self.connect_failures >= self.concurrency:
                smtp = self.sending.smtp
                self.report.pause(
                    f"SMTP server {smtp.host}:{smtp.port} unreachable: {result.describe()}"
                )

    def _in_doubt(self, letter: Letter, result: SendResult) -> None:
        claim = letter.claim
        reason = f"cut off after DATA, may have been delivered: {result.describe()}"
        if claim.resend_in_doubt:
            self._retry_or_fail(claim, reason, result.code, tried=1)
        else:
            self.final(claim.id, claim.campaign, MessageStatus.IN_DOUBT, reason, tried=1)

    def _permanent(self, letter: Letter, result: SendResult) -> None:
        """A refusal of this recipient fails this message alone. Other refusals are
        held while they repeat: the same one five times in a row (or a whole small
        batch) for more than one domain means the server refuses everyone, so
        nobody is blamed and the run pauses."""
        if result.per_recipient:
            self._refused(letter, result)
            return
        if self.report.paused:
            self.release(letter)
            return
        if self.streak and _signature(self.streak[0][1]) != _signature(result):
            self.end_streak()
        self.streak.append((letter, result))
        threshold = max(3, min(SAME_REFUSAL_STREAK, letter.claim.batch_size))
        if len(self.streak) < threshold:
            return
        if len({_domain(held.recipient) for held, _ in self.streak}) < STREAK_DOMAINS:
            self._refused(*self.streak.pop(0))  # one domain's verdict, not everyone's
            return
        self.report.pause(
            f"the SMTP server refused {len(self.streak)} messages in a row "
            f"with the same reply: {result.describe()}"
        )
        for held, _ in self.streak:
            self.release(held)
        self.streak.clear()

    def end_streak(self) -> None:
        for letter, result in self.streak:
            self._refused(letter, result)
        self.streak.clear()

    def _refused(self, letter: Letter, result: SendResult) -> None:
        """Fail a permanently refused message; suppress its address if the mailbox is bad."""
        claim = letter.claim
        self.final(claim.id, claim.campaign, MessageStatus.FAILED, result.describe(), 1, result)
        if result.bad_mailbox:
            reason = f"smtp {result.code} {result.enhanced or ''}: {result.reply.strip()}"
            self.ledger.suppress[letter.recipient.lower()] = reason[:200]

    def _retry_or_fail(self, claim: Claim, reason: str, code: int | None, tried: int) -> None:
        now = self.clock()
        attempts = claim.attempts + tried
        if attempts >= self.sending.max_attempts or now - claim.send_after >= self.sending.max_age:
            reason = f"gave up after {attempts} attempts: {reason}"
            self.final(claim.id, claim.campaign, MessageStatus.FAILED, reason, tried)
            return
        self._retry(
            claim.id, claim.campaign, self.handed, now + backoff(attempts), code, reason, tried
        )

    def _retry(
        self,
        message_id: int,
        campaign: str,
        owner: str,
        next_at: datetime,
        code: int | None,
        reason: str,
        tried: int,
    ) -> None:
        """Put a message back for another try at `next_at`, with why."""
        self.ledger.add(
            RETRY_ROW,
            campaign,
            MessageStatus.RETRY,
            b_id=message_id,
            b_owner=owner,
            b_next=next_at,
            b_code=code,
            b_error=reason[:1000],
            b_tried=tried,
        )

    def final(
        self,
        message_id: int,
        campaign: str,
        status: MessageStatus,
        reason: str,
        tried: int,
        result: SendResult | None = None,
        *,
        owner: str | None = None,
    ) -> None:
        """Record the last status of a message (`tried`: 1 if it counts as an attempt;
        `owner`: its lease owner, by default this worker's, "+smtp" if it was tried)."""
        if status in (MessageStatus.FAILED, MessageStatus.IN_DOUBT):
            self.report.error(message_id, f"{status}: {reason}")
            log.warning("message %s %s: %s", message_id, status, reason)
        self.ledger.add(
            FINAL_ROW,
            campaign,
            status,
            b_id=message_id,
            b_owner=owner or (self.handed if tried else self.worker_id),
            b_status=status.value,
            b_code=result.code if result else None,
            b_error=reason[:1000],
            b_tried=tried,
        )

    def release(self, letter: Letter) -> None:
        """Give the row back to the queue, unsent (its lease is released)."""
        owner = self.handed if letter.handed else self.worker_id
        self.ledger.add(
            RELEASE_ROW, letter.claim.campaign, "released", b_id=letter.claim.id, b_owner=owner
        )


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _signature(result: SendResult) -> tuple[Any, ...]:
    text = re.sub(r"<[^>]*>|\S+@\S+", "", result.reply).strip().lower()
    return result.code, result.enhanced, text
