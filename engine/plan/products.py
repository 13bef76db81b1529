"""Triggers on the catalogue: a new product, a product back in stock.

- `product_added`: a product the engine learnt of (`product.created_at`, indexed)
  within the lookback, in stock, optionally in one of `categories`. For
  `audience: buyers` it goes to customers who bought in the product's category
  (read from the orders of those categories only); for `audience: segment`, to
  the campaign's segment. Occurrence `product-<id>`: each product once.
- `back_in_stock`: a restock (stock from 0 to more, `restock.at`, indexed) of a
  product still in stock, to customers who asked to be told (`product_wanted`)
  and/or who bought it. Occurrence `restock-<restock id>`: each restock once, so
  a product sold out and restocked again is news again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import literal, select, true, union

from ..project import BackInStock, ProductAdded
from ..store import is_purchase
from .campaignpass import DEFAULT_LOOKBACK, CampaignPass
from .plansql import (
    as_text,
    customer,
    found_table,
    order_item,
    orders,
    product,
    product_wanted,
    restock,
)


def _window(run: CampaignPass, event: Any) -> list[Any]:
    """The range of event times this pass looks at (its lookback, or since the previous
    pass), as a cheap first filter: a pass with nothing new reads no order."""
    latest = run.now - run.delay
    earliest = latest - (run.expires_after or DEFAULT_LOOKBACK)
    if run.since is not None:
        earliest = max(earliest, run.since - run.delay)
    return [event > earliest, event <= latest]


def plan_product_added(run: CampaignPass, trigger: ProductAdded) -> None:
    new = [product.c.created_at.is_not(None), product.c.stock > 0]
    if trigger.categories:
        new.append(product.c.category.in_(trigger.categories))
    if trigger.audience == "buyers":
        fresh = select(product.c.category).where(*new, *_window(run, product.c.created_at))
        bought, item, sold = product.alias("bought"), order_item.alias("item"), orders.alias("sold")
        if run.conn.execute(fresh.limit(1)).first() is None:
            return
        bought_by = (
            select(bought.c.category, sold.c.customer_id)
            .distinct()
            .select_from(
                item.join(bought, bought.c.id == item.c.product_id).join(
                    sold, sold.c.id == item.c.order_id
                )
            )
            .where(bought.c.category.in_(fresh), is_purchase(sold.c.status))
        )
        # Written down first, so the database knows how many buyers there are (it
        # guessed a thousand for 300,000, and looked each one up in turn).
        buyers = found_table(run.conn, "plan_buyers", bought_by)
        if run.sql.pg:
            run.conn.exec_driver_sql("ANALYZE plan_buyers")
        select_from: Any = product.join(buyers, buyers.c.category == product.c.category).join(
            customer, customer.c.id == buyers.c.customer_id
        )
    else:
        select_from = product.join(customer, true())
    occurrence = literal("product-") + as_text(product.c.id)
    extra = {"context": run.sql.json_object(literal("product_id"), product.c.id)}
    rows = run.timed(select_from, new, product.c.created_at, occurrence, extra)
    if rows is not None:
        run.queue(rows)
    if trigger.audience == "buyers":
        run.conn.exec_driver_sql("DROP TABLE IF EXISTS plan_buyers")


def plan_back_in_stock(run: CampaignPass, trigger: BackInStock) -> None:
    restocked = select(restock.c.product_id).where(*_window(run, restock.c.at))
    audiences = []
    if "wanted" in trigger.audience:
        audiences.append(
            select(product_wanted.c.product_id, product_wanted.c.customer_id).where(
                product_wanted.c.product_id.in_(restocked)
            )
        )
    if "bought" in trigger.audience:
        sold = orders.alias("sold")
        audiences.append(
            select(order_item.c.product_id, sold.c.customer_id)
            .select_from(order_item.join(sold, sold.c.id == order_item.c.order_id))
            .where(order_item.c.product_id.in_(restocked), is_purchase(sold.c.status))
        )
    audience = (union(*audiences) if len(audiences) > 1 else audiences[0].distinct()).subquery(
        "told"
    )
    select_from = (
        restock.join(product, product.c.id == restock.c.product_id)
        .join(audience, audience.c.product_id == restock.c.product_id)
        .join(customer, customer.c.id == audience.c.customer_id)
    )
    occurrence = literal("restock-") + as_text(restock.c.id)
    extra = {
        "context": run.sql.json_object(
            literal("product_id"), product.c.id, literal("restock_id"), restock.c.id
        )
    }
    rows = run.timed(select_from, [product.c.stock > 0], restock.c.at, occurrence, extra)
    if rows is not None:
        run.queue(rows)
