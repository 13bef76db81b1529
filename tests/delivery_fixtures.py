"""Helpers for delivery tests: an outbox filler, project tweaks, a plain composer.

`PlainComposer` has the shape of engine.deliver.compose.Composer (`prepare(session,
messages)` → one `PlainOutgoing` or `PlainUnsendable` per message, in order) and
builds valid RFC 5322 bytes without templates, so the dispatcher's own tests do
not depend on the shop's templates. Integration tests use the real Composer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.project.loader import Project, load_project
from engine.store.models import Customer, Message, MessageKind, MessageStatus


def project_for(project_dir: Path, port: int = 1, **sending: Any) -> Project:
    """The shipped project with SMTP on 127.0.0.1:`port`, a 1 s timeout, and
    `sending` settings (`smtp=` takes a dict of SMTP settings)."""
    project = load_project(project_dir / "config.yaml")
    config = project.config
    smtp = config.sending.smtp.model_copy(
        update={"host": "127.0.0.1", "port": port, "timeout": timedelta(seconds=1)}
        | sending.pop("smtp", {})
    )
    sending = {"smtp": smtp, "rate_per_second": 10_000.0} | sending
    config = config.model_copy(update={"sending": config.sending.model_copy(update=sending)})
    return dataclasses.replace(project, config=config)


def with_campaign(project: Project, name: str, **changes: Any) -> Project:
    campaigns = dict(project.campaigns)
    campaigns[name] = campaigns[name].model_copy(update=changes)
    return dataclasses.replace(project, campaigns=campaigns)


class Outbox:
    """Writes customers and queued messages straight into the store."""

    def __init__(self, engine: Engine, now: datetime):
        self.engine = engine
        self.now = now
        self.serial = 0

    def customer(
        self, email: str | None = None, *, name: str = "Rahima Khatun", consent: bool = True
    ) -> int:
        self.serial += 1
        email = email or f"customer{self.serial}@example.com"
        with self.engine.begin() as conn:
            return conn.execute(
                insert(Customer.__table__).returning(Customer.__table__.c.id),
                {
                    "external_id": f"c{self.serial}",
                    "email": email,
                    "name": name,
                    "locale": "en",
                    "marketing_consent": consent,
                    "created_at": self.now,
                    "updated_at": self.now,
                    "orders_count": 0,
                    "total_spent": 0,
                },
            ).scalar_one()

    def message(self, customer_id: int, campaign: str = "welcome", **values: Any) -> int:
        self.serial += 1
        row = self._row(customer_id, self.serial, {"campaign": campaign} | values)
        with self.engine.begin() as conn:
            return conn.execute(
                insert(Message.__table__).returning(Message.__table__.c.id), row
            ).scalar_one()

    def queue(self, count: int, **values: Any) -> list[int]:
        """`count` customers with one due message each (customer N+1's address is
        customerN+1@example.com, as if made one by one); return the message ids."""
        first = self.serial
        customers = [
            {
                "external_id": f"c{first + 2 * k + 1}",
                "email": f"customer{first + 2 * k + 1}@example.com",
                "name": "Rahima Khatun",
                "locale": "en",
                "marketing_consent": True,
                "created_at": self.now,
                "updated_at": self.now,
                "orders_count": 0,
                "total_spent": 0,
            }
            for k in range(count)
        ]
        self.serial += 2 * count
        table = Customer.__table__
        with self.engine.begin() as conn:
            conn.execute(insert(table), customers)
            ids = dict(
                conn.execute(
                    select(table.c.external_id, table.c.id).where(
                        table.c.external_id.in_([c["external_id"] for c in customers])
                    )
                ).all()
            )
            messages = [
                self._row(ids[c["external_id"]], first + 2 * k + 2, values)
                for k, c in enumerate(customers)
            ]
            conn.execute(insert(Message.__table__), messages)
            keys = [m["dedupe_key"] for m in messages]
            found = dict(
                conn.execute(
                    select(Message.__table__.c.dedupe_key, Message.__table__.c.id).where(
                        Message.__table__.c.dedupe_key.in_(keys)
                    )
                ).all()
            )
        return [found[k] for k in keys]

    def _row(self, customer_id: int, serial: int, values: dict[str, Any]) -> dict[str, Any]:
        campaign = values.get("campaign", "welcome")
        return {
            "dedupe_key": f"{campaign}:{customer_id}:{serial}",
            "campaign": campaign,
            "kind": MessageKind.MARKETING,
            "customer_id": customer_id,
            "occurrence": str(serial),
            "status": MessageStatus.QUEUED,
            "created_at": self.now - timedelta(minutes=10),
            "send_after": self.now - timedelta(minutes=1),
            "attempts": 0,
        } | values

    def rows(self) -> dict[int, Message]:
        with Session(self.engine) as session:
            return {m.id: m for m in session.scalars(select(Message)) if m.id is not None}

    def statuses(self) -> dict[int, str]:
        return {i: str(m.status) for i, m in self.rows().items()}


@dataclass(frozen=True)
class PlainOutgoing:
    message_id: int
    sender: str
    recipient: str
    data: bytes
    header_message_id: str


@dataclass(frozen=True)
class PlainUnsendable:
    message_id: int
    reason: str


class PlainComposer:
    sender = "hello@shop.test"

    def __init__(self) -> None:
        self.calls = 0

    def prepare(
        self, session: Session, messages: Sequence[Message], *, now: datetime
    ) -> list[PlainOutgoing | PlainUnsendable]:
        self.calls += 1
        ids = [m.customer_id for m in messages]
        customers = {c.id: c for c in session.scalars(select(Customer).where(Customer.id.in_(ids)))}
        return [self._one(m, customers[m.customer_id]) for m in messages]

    def _one(self, message: Message, customer: Customer) -> PlainOutgoing | PlainUnsendable:
        assert message.id is not None
        if any(ch in customer.name for ch in "\r\n"):
            return PlainUnsendable(
                message.id, f"customer name contains a line break: {customer.name!r}"
            )
        email = EmailMessage()
        header_id = f"<{message.id}.{message.dedupe_key.replace(':', '.')}@shop.test>"
        email["From"] = f"Shop <{self.sender}>"
        email["To"] = f"{customer.name} <{customer.email}>"
        email["Subject"] = f"{message.campaign} for {customer.name}"
        email["Message-ID"] = header_id
        email.set_content(f"Hello {customer.name}, this is message {message.id}.\n")
        return PlainOutgoing(message.id, self.sender, customer.email, email.as_bytes(), header_id)


class BrokenComposer(PlainComposer):
    """Fails any batch holding the message with occurrence "4", and that message alone."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def prepare(self, session: Session, messages: Sequence[Message], *, now: datetime) -> Any:
        self.attempts += 1
        if any(m.occurrence == "4" for m in messages):
            if len(messages) > 1:
                raise RuntimeError("boom for the batch")
            raise ValueError("cannot render message with occurrence 4")
        return super().prepare(session, messages, now=now)
