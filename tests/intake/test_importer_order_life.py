"""The orders CSV and the order life: payment method, tracking page, shipped to returned."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from engine.intake.importer import ImportRejected, ImportResult
from engine.store.models import Order, OrderStatus
from tests.intake import test_importer as importer
from tests.intake.test_importer import customer, dump, rows

# The import tests' fixtures: a store with their sample files imported, on both databases.
fresh_store, migrated_store = importer.fresh_store, importer.migrated_store
now, csv_file, run, shop = importer.now, importer.csv_file, importer.run, importer.shop
empty_file, shop_file, sqlite_shop = importer.empty_file, importer.shop_file, importer.sqlite_shop

HEAD = "order_id,customer_id,placed_at,delivered_at,status,sku,quantity,payment_method,tracking_url"
TRACK = "https://courier.example.com/t/2001"


def stored(engine: Engine) -> dict[str, tuple[object, ...]]:
    return {
        o.external_id: (o.status, o.payment_method, o.tracking_url, o.delivered_at is not None)
        for o in rows(engine, Order, Order.external_id.startswith("20"))  # type: ignore[attr-defined]
    }


def test_new_orders_keep_their_status_payment_and_tracking_page(
    shop: Engine, csv_file: Callable[..., Path], run: Callable[..., ImportResult]
) -> None:
    text = f"""{HEAD}
2001,C2,2026-11-10T10:00:00,,shipped,TEA-500G,1,COD,{TRACK}
2001,C2,2026-11-10T10:00:00,,shipped,JUTE-BAG-01,1,COD,{TRACK}
2002,C2,2026-11-11T10:00:00,,refused,TEA-500G,1,cod,
2003,C2,2026-11-12T10:00:00,2026-11-13T10:00:00,,TEA-500G,2,bKash,
2004,C2,2026-11-12T10:00:00,,Out for delivery,TEA-500G,2,,
"""
    result = run(shop, "orders", csv_file("orders.csv", text))
    assert result.created == 4
    assert stored(shop) == {
        "2001": (OrderStatus.SHIPPED, "cod", TRACK, False),
        "2002": (OrderStatus.REFUSED, "cod", None, False),
        "2003": (OrderStatus.DELIVERED, "bkash", None, True),
        "2004": (OrderStatus.OUT_FOR_DELIVERY, None, None, False),
    }
    # Karim's free card (1004), 2001, 2003 and 2004 count; the refused 2002 does not.
    assert customer(shop, "C2").orders_count == 4
    # A file says nothing of when: no shipping or return email waits on these.
    assert [o.shipped_at for o in rows(shop, Order, Order.shipped_at.is_not(None))] == []  # type: ignore[union-attr]


def test_a_stored_order_moves_on_and_ends_as_the_file_says(
    shop: Engine, csv_file: Callable[..., Path], run: Callable[..., ImportResult]
) -> None:
    run(
        shop,
        "orders",
        csv_file("a.csv", f"{HEAD}\n2001,C2,2026-11-10T10:00:00,,,TEA-500G,1,cod,\n"),
    )
    assert customer(shop, "C2").orders_count == 2
    moved = run(
        shop,
        "orders",
        csv_file("b.csv", f"{HEAD}\n2001,C2,2026-11-10T10:00:00,,shipped,TEA-500G,1,cod,\n"),
    )
    assert (moved.updated, stored(shop)["2001"][0]) == (1, OrderStatus.SHIPPED)
    # An older status again does not move it back.
    again = run(
        shop,
        "orders",
        csv_file("c.csv", f"{HEAD}\n2001,C2,2026-11-10T10:00:00,,confirmed,TEA-500G,1,cod,\n"),
    )
    assert (again.unchanged, stored(shop)["2001"][0]) == (1, OrderStatus.SHIPPED)
    ended = run(
        shop,
        "orders",
        csv_file("d.csv", f"{HEAD}\n2001,C2,2026-11-10T10:00:00,,refused,TEA-500G,1,cod,\n"),
    )
    assert (ended.cancelled, stored(shop)["2001"][0]) == (1, OrderStatus.REFUSED)
    assert customer(shop, "C2").orders_count == 1
    # Delivered after it was refused: refused, named, nothing written.
    before = dump(shop)
    with pytest.raises(ImportRejected) as caught:
        run(
            shop,
            "orders",
            csv_file(
                "e.csv",
                f"{HEAD}\n2001,C2,2026-11-10T10:00:00,2026-11-12T10:00:00,,TEA-500G,1,cod,\n",
            ),
        )
    assert [str(b) for b in caught.value.bad] == [
        "e.csv:2: delivered_at: order 2001 is refused and cannot be delivered"
    ]
    assert dump(shop) == before  # fmt: skip


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("2009,C2,2026-11-10T10:00:00,,lost,TEA-500G,1,cod,",
         'status: expected one of placed, confirmed, shipped, out_for_delivery, delivered, '
         'refused, returned, cancelled, got "lost"'),
        ("2009,C2,2026-11-10T10:00:00,2026-11-11T10:00:00,shipped,TEA-500G,1,cod,",
         "status: is shipped, but delivered_at is given"),
        ("2009,C2,2026-11-10T10:00:00,,,TEA-500G,1,cash; or not,",
         "payment_method: expected a word of letters, digits and _ like cod, bkash or card "
         "(up to 32), got 'cash; or not'"),
        ("2009,C2,2026-11-10T10:00:00,,,TEA-500G,1,cod,javascript:alert(1)",
         "tracking_url: expected an http:// or https:// address of at most 500 characters, "
         "got 'javascript:alert(1)'"),
    ],
)  # fmt: skip
def test_a_bad_status_payment_or_tracking_page_is_named(
    sqlite_shop: Engine,
    csv_file: Callable[..., Path],
    run: Callable[..., ImportResult],
    line: str,
    message: str,
) -> None:
    with pytest.raises(ImportRejected) as caught:
        run(sqlite_shop, "orders", csv_file("orders.csv", f"{HEAD}\n{line}\n"))
    assert [str(b) for b in caught.value.bad] == [f"orders.csv:2: {message}"]
