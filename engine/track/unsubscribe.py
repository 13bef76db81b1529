"""Unsubscribing from a link in an email: the page, and the change itself.

`unsubscribe` withdraws the customer's marketing consent (through
`engine.intake.shop.set_consent`, which writes the consent log) and records an
`unsubscribe` message event, idempotently: the same link POSTed again changes
nothing. The pages are in the customer's language (Bengali for `bn*` locales,
else English), with every value escaped.

`PendingUnsubscribes` is how the tracking server takes a one-click POST
without waiting on the database: the request is appended (and fsynced) to a
journal file first, then applied; while the database is locked or down it is
retried in the background, and the journal keeps it across a restart until it
is applied. It is never lost once accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col

from ..errors import StoreError, UnknownRecord
from ..intake import set_consent
from ..store import Customer, EventKind, Message, MessageEvent, session_scope
from .lockwait import short_lock_wait

SOURCE = "unsubscribe link"
JOURNAL = ".lifecycle-unsubscribes"  # beside config.yaml: accepted, not yet applied
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipient:
    """Who a message went to, as the unsubscribe page needs it."""

    email: str
    locale: str
    subscribed: bool


def recipient(engine: Engine, message_id: int) -> Recipient:
    """The customer `message_id` went to; raise UnknownRecord if there is no such message."""
    with session_scope(engine) as session:
        customer = session.execute(
            select(Customer)
            .join(Message, col(Message.customer_id) == col(Customer.id))
            .where(col(Message.id) == message_id)
        ).scalar_one_or_none()
        if customer is None:
            raise UnknownRecord(f"unknown message {message_id}")
        return Recipient(customer.email, customer.locale, customer.marketing_consent)


def unsubscribe(
    engine: Engine, message_id: int, *, now: datetime, user_agent: str | None = None
) -> Recipient:
    """Withdraw consent for the customer of `message_id`; a repeat changes nothing.

    Waits at most `lockwait.WRITE_WAIT_SECONDS` for a lock (the caller retries).
    Raises UnknownRecord if there is no such message.
    """
    with session_scope(engine) as session, short_lock_wait(session.connection()):
        message = session.get(Message, message_id)
        if message is None:
            raise UnknownRecord(f"unknown message {message_id}")
        customer = session.get(Customer, message.customer_id, with_for_update=True)
        assert customer is not None  # a foreign key guarantees it
        done = session.execute(
            select(col(MessageEvent.id)).where(
                col(MessageEvent.message_id) == message_id,
                col(MessageEvent.kind) == EventKind.UNSUBSCRIBE,
            )
        ).first()
        if done is None:
            if customer.marketing_consent:
                set_consent(
                    session, customer, False, source=SOURCE, now=now, detail=f"message {message_id}"
                )
            session.add(
                MessageEvent(
                    message_id=message_id,
                    customer_id=message.customer_id,
                    kind=EventKind.UNSUBSCRIBE,
                    at=now,
                    user_agent=(user_agent or None) and user_agent[:500],
                )
            )
        return Recipient(customer.email, customer.locale, False)


@dataclass(frozen=True)
class Wanted:
    """One accepted unsubscribe request, as it arrived."""

    message_id: int
    at: datetime
    user_agent: str | None = None

    def line(self) -> str:
        data = {"message_id": self.message_id, "at": self.at.isoformat(), "ua": self.user_agent}
        return json.dumps(data) + "\n"

    @classmethod
    def from_line(cls, line: str) -> Wanted:
        data = json.loads(line)
        return cls(int(data["message_id"]), datetime.fromisoformat(data["at"]), data.get("ua"))


UNKNOWN = object()  # the outcome for a message that does not exist


class PendingUnsubscribes:
    """Unsubscribes accepted and not yet applied: in memory and in a journal file.

    `accept` writes the journal (no database); `apply` writes what it can to the
    database and rewrites the journal with the rest; `run` retries in the
    background; `settle` lets a request wait a little for its own outcome.
    """

    def __init__(self, engine: Engine, journal: Path | None, *, interval: float = 1.0):
        self.engine = engine
        self.journal = journal
        self.interval = interval
        self._pending: dict[int, Wanted] = {}
        self._outcomes: dict[int, object] = {}  # message id -> Recipient or UNKNOWN
        self._file_lock = threading.Lock()
        self._applying: asyncio.Future[bool] | None = None
        self._failing = False
        for wanted in self._read_journal():
            self._pending.setdefault(wanted.message_id, wanted)
        if self._pending:
            log.info("unsubscribes: %d accepted before a restart wait to be applied", self.pending)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def accept(self, wanted: Wanted) -> None:
        """Keep `wanted` durably (the journal is fsynced) until it is applied."""
        with self._file_lock:
            if self.journal is not None:
                with self.journal.open("a", encoding="utf-8") as out:
                    out.write(wanted.line())
                    out.flush()
                    os.fsync(out.fileno())
            self._pending.setdefault(wanted.message_id, wanted)

    def apply(self) -> bool:
        """Apply what is pending, in order; stop at a database failure. True if none is left."""
        for wanted in list(self._pending.values()):
            try:
                person: object = unsubscribe(
                    self.engine, wanted.message_id, now=wanted.at, user_agent=wanted.user_agent
                )
            except UnknownRecord:
                person = UNKNOWN
                log.warning("unsubscribes: message %s does not exist", wanted.message_id)
            except (SQLAlchemyError, StoreError) as exc:
                if not self._failing:
                    log.error("unsubscribes: %d wait for the database: %s", self.pending, exc)
                self._failing = True
                break
            self._pending.pop(wanted.message_id, None)
            if len(self._outcomes) > 10_000:
                self._outcomes.clear()
            self._outcomes[wanted.message_id] = person
        else:
            if self._failing:
                log.info("unsubscribes: applied the ones that waited")
            self._failing = False
        self._write_journal()
        return not self._pending

    def _read_journal(self) -> list[Wanted]:
        if self.journal is None or not self.journal.exists():
            return []
        found = []
        for number, line in enumerate(self.journal.read_text("utf-8").splitlines(), 1):
            try:
                found.append(Wanted.from_line(line))
            except (ValueError, KeyError, TypeError):
                log.error("unsubscribes: %s:%d is not a request, skipped", self.journal, number)
        return found

    def _write_journal(self) -> None:
        if self.journal is None:
            return
        with self._file_lock:
            if not self._pending:
                self.journal.unlink(missing_ok=True)
                return
            fresh = self.journal.with_name(self.journal.name + ".new")
            with fresh.open("w", encoding="utf-8") as out:
                out.writelines(w.line() for w in self._pending.values())
                out.flush()
                os.fsync(out.fileno())
            os.replace(fresh, self.journal)

    def _kick(self) -> asyncio.Future[bool]:
        """The apply under way, or a new one in a worker thread: never two at once."""
        if self._applying is None or self._applying.done():
            self._applying = asyncio.ensure_future(asyncio.to_thread(self.apply))
        return self._applying

    async def settle(self, message_id: int, timeout: float) -> object | None:
        """Wait up to `timeout` seconds for `message_id` to be applied: its Recipient,
        UNKNOWN, or None while it still waits (it will be applied later)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while message_id in self._pending:
            left = deadline - loop.time()
            if left <= 0:
                return None
            done, _ = await asyncio.wait({self._kick()}, timeout=left)
            if done and message_id in self._pending:
                await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))
        return self._outcomes.pop(message_id, None)

    async def run(self, stop: asyncio.Event) -> None:
        """Retry what is pending every `interval` seconds until `stop`; then once more."""
        while not stop.is_set():
            if self._pending:
                await asyncio.wait({self._kick()})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
        if self._applying is not None:
            await asyncio.wait({self._applying})
        if self._pending and not await asyncio.to_thread(self.apply):
            log.error(
                "unsubscribes: %d not applied at shutdown; kept in %s for the next start",
                self.pending,
                self.journal,
            )


_TEXT = {
    "en": {
        "lang": "en",
        "title": "Unsubscribe",
        "ask": "Stop marketing emails from {shop} to {email}?",
        "button": "Unsubscribe",
        "done_title": "You are unsubscribed",
        "done": "{email} will get no more marketing emails from {shop}. "
        "You will still get notices about your own orders.",
        "ask_any": "Stop marketing emails from {shop} to this address?",
        "queued_title": "Your request is received",
        "queued": "This address will get no more marketing emails from {shop}: "
        "the change takes effect within a few minutes.",
    },
    "bn": {
        "lang": "bn",
        "title": "আনসাবস্ক্রাইব",
        "ask": "{email} ঠিকানায় {shop}-এর প্রচারমূলক ইমেইল বন্ধ করবেন?",
        "button": "আনসাবস্ক্রাইব করুন",
        "done_title": "আপনি আনসাবস্ক্রাইব করেছেন",
        "done": "{email} ঠিকানায় {shop} আর কোনো প্রচারমূলক ইমেইল পাঠাবে না। "
        "আপনার নিজের অর্ডারের খবর তবুও পাবেন।",
        "ask_any": "এই ঠিকানায় {shop}-এর প্রচারমূলক ইমেইল বন্ধ করবেন?",
        "queued_title": "আপনার অনুরোধ পেয়েছি",
        "queued": "এই ঠিকানায় {shop} আর কোনো প্রচারমূলক ইমেইল পাঠাবে না: "
        "কয়েক মিনিটের মধ্যে পরিবর্তনটি কার্যকর হবে।",
    },
}

_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>body{{font-family:system-ui,'Noto Sans Bengali',sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.5}}
button{{font-size:1rem;padding:.6rem 1.2rem}}</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


def _words(locale: str) -> dict[str, str]:
    return _TEXT["bn" if locale.lower().startswith("bn") else "en"]


def ask_page(person: Recipient, shop: str) -> str:
    """The GET page: a question and a button that POSTs to the same URL."""
    words = _words(person.locale)
    asked = words["ask"] if person.email else words["ask_any"]
    question = asked.format(shop=escape(shop), email=escape(person.email))
    form = (
        '<form method="post">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        f'<button type="submit">{escape(words["button"])}</button></form>'
    )
    return _PAGE.format(
        lang=words["lang"], title=escape(words["title"]), body=f"<p>{question}</p>{form}"
    )


def done_page(person: Recipient, shop: str) -> str:
    """The answer to the POST: a plain confirmation, no redirect."""
    words = _words(person.locale)
    text = words["done"].format(shop=escape(shop), email=escape(person.email))
    return _PAGE.format(
        lang=words["lang"], title=escape(words["done_title"]), body=f"<p>{text}</p>"
    )


def queued_page(locale: str, shop: str) -> str:
    """The answer to a POST taken while the database is busy: received, applied soon."""
    words = _words(locale)
    text = words["queued"].format(shop=escape(shop))
    return _PAGE.format(
        lang=words["lang"], title=escape(words["queued_title"]), body=f"<p>{text}</p>"
    )
