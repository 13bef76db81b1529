"""`customer.credit_balance` and when credit expires: each customer's store credit,
read for a whole batch.

`load_balances` reads the balances at `now` of every customer of a batch with one
grouped query per `CHUNK` customers (the balance as `engine.intake.wallet`
defines it: the entries not expired at `now`), never one query per message. A
customer without credit has 0.00. Templates show it with the `money` filter.

`load_expiries` reads, for the customers of a batch with a balance, when their
first credit with something left expires and how much of it is left
(`customer.credit_expires_at`, shown with the `date` filter in the customer's zone
and language, and `customer.credit_expiring`): one query per `CHUNK` of them, none
for a batch whose customers have no credit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal

from sqlmodel import Session

from ..intake import balances, soonest_expiries
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


def load_expiries(
    session: Session, balances: Mapping[int, Decimal], now: datetime
) -> dict[int, tuple[datetime, Decimal]]:
    """For each customer with a balance above 0 at `now`: when their first credit with
    something left expires, and how much of it is left. Absent: none of it expires."""
    wanted = sorted(customer for customer, balance in balances.items() if balance > 0)
    found: dict[int, tuple[datetime, Decimal]] = {}
    for start in range(0, len(wanted), CHUNK):
        found.update(soonest_expiries(session, wanted[start : start + CHUNK], now))
    return found
