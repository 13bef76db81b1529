"""Unsubscribing from a link in an email: the page, and the change itself.

`unsubscribe` withdraws the customer's marketing consent (through
`engine.shop.set_consent`, which writes the consent log) and records an
`unsubscribe` message event, idempotently: the same link POSTed again changes
nothing. The pages are in the customer's language (Bengali for `bn*` locales,
else English), with every value escaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import col

from .db import session_scope
from .errors import UnknownRecord
from .models import Customer, EventKind, Message, MessageEvent
from .shop import set_consent

SOURCE = "unsubscribe link"


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

    Raises UnknownRecord if there is no such message.
    """
    with session_scope(engine) as session:
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


_TEXT = {
    "en": {
        "lang": "en",
        "title": "Unsubscribe",
        "ask": "Stop marketing emails from {shop} to {email}?",
        "button": "Unsubscribe",
        "done_title": "You are unsubscribed",
        "done": "{email} will get no more marketing emails from {shop}. "
        "You will still get notices about your own orders.",
    },
    "bn": {
        "lang": "bn",
        "title": "আনসাবস্ক্রাইব",
        "ask": "{email} ঠিকানায় {shop}-এর প্রচারমূলক ইমেইল বন্ধ করবেন?",
        "button": "আনসাবস্ক্রাইব করুন",
        "done_title": "আপনি আনসাবস্ক্রাইব করেছেন",
        "done": "{email} ঠিকানায় {shop} আর কোনো প্রচারমূলক ইমেইল পাঠাবে না। "
        "আপনার নিজের অর্ডারের খবর তবুও পাবেন।",
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
    question = words["ask"].format(shop=escape(shop), email=escape(person.email))
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
