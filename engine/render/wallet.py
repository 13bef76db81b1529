"""`customer.credit_balance`: each customer's store credit, read for a whole batch.

`load_balances` reads the balances at `now` of every customer of a batch with one
grouped query per `CHUNK` customers (the balance as `engine.intake.wallet`
defines it: the entries not expired at `now`), never one query per message. A
customer without credit has 0.00. Templates show it with the `money` filter.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from sqlmodel import Session

from ..intake import balances
from .contextload import CHUNK

NONE = Decimal("0.00")


def load_balances(
    session: Session, customer_ids: Iterable[int], now: datetime
) -> dict[int, Decimal]:
    """Each customer's store-credit balance at `now`, 0.00 for one without credit."""
    wanted = sorted(set(customer_ids))
    found = dict.fromkeys(wanted, NONE)
    for start in range(0, len(wanted), CHUNK):
        found.update(balances(session, wanted[start : start + CHUNK], now))
    return found
