"""Getting shop data in: customers, products, prices, orders, checkouts and wishes.

Every function validates its input and raises `DataError` naming the field
and the value; nothing is written for invalid input. All functions take an
open session and leave committing to the caller, so a batch of calls is one
transaction. Customers and orders are keyed by the shop's own ids
(`external_id`), checkouts by the shop's cart id; calling again with the same
id updates, never duplicates.

Two facts are kept for the triggers that read them: a product's `created_at`
(when the engine first learnt of it, for "new in your category") and a
`restock` row each time a product's stock goes from nothing to something
(for "back in stock"). A product created with stock is new, not restocked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlmodel import Session, SQLModel, col

from ..errors import DataError, UnknownRecord
from ..project import parse_email, parse_locale, parse_timezone
from ..store import (
    Checkout,
    ConsentChange,
    Customer,
    CustomerTag,
    Order,
    OrderItem,
    OrderStatus,
    PriceChange,
    Product,
    ProductWanted,
    Restock,
    ShopHoliday,
    to_money,
)
from .orderlife import cancel_order as cancel_order  # the order's life, kept here by name too
from .orderlife import mark_delivered as mark_delivered
from .orderlife import order_by_external_id as order_by_external_id
from .orderlife import payment_method, set_order_status, tracking_url
from .orderlife import refresh_order_totals as refresh_order_totals


def _id(row: SQLModel) -> int:
    """The primary key of a flushed row."""
    value = getattr(row, "id", None)
    if value is None:
        raise DataError(f"{type(row).__name__} has no id yet (not flushed)")
    return int(value)


def _require_aware(name: str, value: datetime) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise DataError(f"{name} must be a timezone-aware datetime, got: {value!r}")
    return value


def _checked(name: str, parse: Any, value: Any) -> Any:
    try:
        return parse(value)
    except ValueError as exc:
        raise DataError(f"{name}: {exc}") from exc


def money(name: str, value: Any) -> Decimal:
    """`value` as a non-negative amount with at most two decimals, or DataError."""
    try:
        amount = to_money(value)
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise DataError(f"{name} must be an amount like 120.50, got: {value!r}") from exc
    if amount < 0:
        raise DataError(f"{name} must not be negative, got: {value}")
    if amount != amount.quantize(Decimal("0.01")):
        raise DataError(f"{name} has more than two decimal places, got: {value}")
    return amount.quantize(Decimal("0.01"))


# Every character str.splitlines() breaks at. Names, cities, tags and ids are one
# line: a name goes into the To: header, where a line break makes every email fail.
LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def clean_text(name: str, value: Any, *, required: bool = False, limit: int = 200) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise DataError(f"{name} is required")
        return None
    text = str(value).strip()
    if "\x00" in text:
        raise DataError(f"{name} must not contain a NUL character")
    if not LINE_BREAKS.isdisjoint(text):
        # A name goes into the To: header, where a line break makes every email fail.
        raise DataError(f"{name} must be one line, got a line break")
    if len(text) > limit:
        raise DataError(f"{name} is longer than {limit} characters")
    return text


def upsert_customer(
    session: Session,
    *,
    external_id: str,
    email: str,
    now: datetime,
    name: str | None = None,
    locale: str | None = None,
    timezone: str | None = None,
    city: str | None = None,
    birthday: date | None = None,
    tags: Iterable[str] | None = None,
    marketing_consent: bool | None = None,
    consent_source: str = "api",
    created_at: datetime | None = None,
) -> Customer:
    """Create or update the customer with the shop's id `external_id`.

    Fields left as None keep their stored value. A change of marketing consent
    is written to the consent log with `consent_source`.
    """
    _require_aware("now", now)
    external_id = clean_text("customer id", external_id, required=True, limit=64) or ""
    email = _checked("email", parse_email, email).lower()
    # Every value is checked before the session is touched: invalid input writes nothing.
    if created_at is not None:
        _require_aware("created_at", created_at)
    if birthday is not None and (not isinstance(birthday, date) or isinstance(birthday, datetime)):
        raise DataError(f"birthday must be a date, got: {birthday!r}")
    if name is not None:
        name = clean_text("name", name) or ""
    if locale is not None:
        locale = _checked("locale", parse_locale, locale)
    if timezone is not None:
        timezone = _checked("timezone", parse_timezone, timezone)
    if city is not None:
        city = clean_text("city", city, limit=100)
    wanted_tags = None if tags is None else _clean_tags(tags)
    customer = (
        session.execute(select(Customer).where(col(Customer.external_id) == external_id))
        .scalars()
        .first()
    )
    clash = (
        session.execute(select(col(Customer.external_id)).where(col(Customer.email) == email))
        .scalars()
        .first()
    )
    if clash is not None and clash != external_id:
        raise DataError(f"email {email} already belongs to customer {clash}")
    if customer is None:
        customer = Customer(
            external_id=external_id, email=email, created_at=created_at or now, updated_at=now
        )
        session.add(customer)
    customer.email = email
    customer.updated_at = now
    if name is not None:
        customer.name = name
    if locale is not None:
        customer.locale = locale
    if timezone is not None:
        customer.timezone = timezone
    if city is not None:
        customer.city = city
    if birthday is not None:
        customer.birthday = birthday
    session.flush()
    if wanted_tags is not None:
        set_tags(session, customer, wanted_tags)
    if marketing_consent is not None and marketing_consent != customer.marketing_consent:
        set_consent(session, customer, marketing_consent, source=consent_source, now=now)
    return customer


def _clean_tags(tags: Iterable[str]) -> set[str]:
    if isinstance(tags, str):
        raise DataError(f"tags must be a list of tags, got the text: {tags!r}")
    return {t for t in (clean_text("tag", tag, limit=64) for tag in tags) if t}


def set_tags(session: Session, customer: Customer, tags: Iterable[str]) -> None:
    """Replace the customer's tags."""
    wanted = _clean_tags(tags)
    session.execute(delete(CustomerTag).where(col(CustomerTag.customer_id) == customer.id))
    for tag in sorted(wanted):
        session.add(CustomerTag(customer_id=_id(customer), tag=tag))
    session.flush()


def set_consent(
    session: Session,
    customer: Customer,
    consent: bool,
    *,
    source: str,
    now: datetime,
    detail: str | None = None,
) -> bool:
    """Record a marketing-consent change; return False if it was already so."""
    if customer.marketing_consent == consent and customer.consent_at is not None:
        return False
    customer.marketing_consent = consent
    customer.consent_at = now
    customer.consent_source = source[:100]
    session.add(
        ConsentChange(
            customer_id=_id(customer), consent=consent, at=now, source=source[:100], detail=detail
        )
    )
    session.flush()
    return True


def upsert_product(
    session: Session,
    *,
    sku: str,
    name: str,
    price: Any,
    now: datetime,
    stock: int | None = None,
    category: str | None = None,
    name_bn: str | None = None,
) -> Product:
    """Create or update a product by SKU; a new price is recorded in its price history.

    A new product's `created_at` is `now`. Stock going from zero (or less) to
    more than zero on a stored product writes a `restock` row at `now`.
    """
    _require_aware("now", now)
    sku = clean_text("sku", sku, required=True, limit=64) or ""
    name = clean_text("name", name, required=True) or ""
    amount = money("price", price)
    if stock is not None:
        _check_stock(stock)
    if category is not None:
        category = clean_text("category", category, limit=100)
    if name_bn is not None:
        name_bn = clean_text("name_bn", name_bn)
    product = session.execute(select(Product).where(col(Product.sku) == sku)).scalars().first()
    if product is None:
        product = Product(
            sku=sku, name=name, price=amount, stock=stock or 0, updated_at=now, created_at=now
        )
        session.add(product)
        session.flush()
        session.add(PriceChange(product_id=_id(product), price=amount, changed_at=now))
    else:
        _change_price(session, product, amount, at=now, now=now)
        if stock is not None:
            set_stock(session, product, stock, at=now)
    product.name = name
    product.updated_at = now
    if category is not None:
        product.category = category
    if name_bn is not None:
        product.name_bn = name_bn
    session.flush()
    return product


def set_stock(session: Session, product: Product, stock: int, *, at: datetime) -> None:
    """Set a stored product's stock; from nothing to something is a restock at `at`."""
    _require_aware("at", at)
    _check_stock(stock)
    if product.stock <= 0 < stock:
        session.add(Restock(product_id=_id(product), stock=stock, at=at))
    product.stock = stock
    session.flush()


def _check_stock(stock: Any) -> None:
    if not isinstance(stock, int) or isinstance(stock, bool) or stock < 0:
        raise DataError(f"stock must be a whole number of zero or more, got: {stock!r}")


def set_price(
    session: Session, sku: str, price: Any, *, now: datetime, at: datetime | None = None
) -> Product:
    """Set a product's price from `at` (default: `now`) on, in its price history.

    The product's price is the one in effect at `now`: a price dated ahead
    changes it only from its time on (`apply_due_prices`), and a price dated
    before a later one does not undo that one.
    """
    _require_aware("now", now)
    at = now if at is None else _require_aware("at", at)
    product = product_by_sku(session, sku)
    _change_price(session, product, money("price", price), at=at, now=now)
    session.flush()
    return product


def _change_price(
    session: Session, product: Product, amount: Decimal, *, at: datetime, now: datetime
) -> None:
    if amount == price_when(session, _id(product), at):
        return
    session.add(PriceChange(product_id=_id(product), price=amount, changed_at=at))
    session.flush()
    current = price_when(session, _id(product), now, before_any=False)
    if current is not None and current != product.price:
        product.price = current
        product.updated_at = now


def price_when(
    session: Session, product_id: int, at: datetime, *, before_any: bool = True
) -> Decimal | None:
    """The product's price in effect at `at`, from its price history.

    Before its first recorded price, that first price (`before_any`) or None.
    """
    history = select(col(PriceChange.price)).where(col(PriceChange.product_id) == product_id)
    latest = history.where(col(PriceChange.changed_at) <= at).order_by(
        col(PriceChange.changed_at).desc(), col(PriceChange.id).desc()
    )
    price = session.execute(latest.limit(1)).scalars().first()
    if price is None and before_any:
        first = history.order_by(col(PriceChange.changed_at), col(PriceChange.id))
        price = session.execute(first.limit(1)).scalars().first()
    return price


def apply_due_prices(session: Session, now: datetime) -> int:
    """Give each product the price its history has in effect at `now`; return how many changed.

    A price dated ahead (`set_price(at=...)`) becomes the product's price here,
    once its time has come: call this before reading prices, once per tick.
    """
    _require_aware("now", now)
    current = (
        select(col(PriceChange.price))
        .where(col(PriceChange.product_id) == col(Product.id), col(PriceChange.changed_at) <= now)
        .order_by(col(PriceChange.changed_at).desc(), col(PriceChange.id).desc())
        .limit(1)
        .scalar_subquery()
    )
    result = session.execute(
        update(Product)
        .where(current.is_not(None), current != col(Product.price))
        .values(price=current, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    session.expire_all()
    return int(getattr(result, "rowcount", 0) or 0)


def product_by_sku(session: Session, sku: str) -> Product:
    product = session.execute(select(Product).where(col(Product.sku) == sku)).scalars().first()
    if product is None:
        raise UnknownRecord(f"unknown product sku {sku!r}")
    return product


def customer_by_external_id(session: Session, external_id: str) -> Customer:
    customer = (
        session.execute(select(Customer).where(col(Customer.external_id) == external_id))
        .scalars()
        .first()
    )
    if customer is None:
        raise UnknownRecord(f"unknown customer {external_id!r}")
    return customer


@dataclass(frozen=True)
class Line:
    """One line of an order: a product, how many, and the unit price paid."""

    sku: str
    quantity: int
    unit_price: Any = None  # None: the product's price when the order was placed


def record_order(
    session: Session,
    *,
    external_id: str,
    customer_id: str,
    items: Sequence[Line],
    placed_at: datetime,
    delivered_at: datetime | None = None,
    cancelled: bool = False,
    now: datetime | None = None,
    cart_id: str | None = None,
    payment: str | None = None,
    status: OrderStatus | None = None,
    tracking: str | None = None,
    payable: Any = None,
    moved_at: datetime | None = None,
) -> Order:
    """Record an order once; recording the same id again returns the stored order.

    Recording a stored order again as `cancelled` cancels it (`cancel_order`,
    at `now`, default `placed_at`). `status` (placed, confirmed, shipped…) moves a
    new or stored order along its life (`orderlife.set_order_status`, at `now`);
    `payment` is how it is paid (`cod`, `bkash`…), `tracking` the courier's page,
    `payable` what the shop charged (after discounts, with delivery). The status was
    reached at `moved_at` (default `now`, else `placed_at`). A line without a unit price is charged the
    product's price in effect at `placed_at`. The order's `recorded_at` is `now`
    (None when not given: unknown). `cart_id` is the checkout the order
    completed: the stored checkout of that cart, if any, gets the order. Keeps
    the customer's first_order_at, last_order_at, orders_count and total_spent
    up to date (cancelled orders do not count).
    """
    _require_aware("placed_at", placed_at)
    if delivered_at is not None:
        _require_aware("delivered_at", delivered_at)
        if delivered_at < placed_at:
            raise DataError(f"order {external_id}: delivered_at is before placed_at")
    external_id = clean_text("order id", external_id, required=True, limit=64) or ""
    cart_id = clean_text("cart_id", cart_id, limit=64)
    existing = (
        session.execute(select(Order).where(col(Order.external_id) == external_id))
        .scalars()
        .first()
    )
    if now is not None:
        _require_aware("now", now)
    payment = payment_method(payment)
    tracking = tracking_url(tracking)
    charged = None if payable is None else money("payable", payable)
    moved_at = moved_at or now or placed_at
    if existing is not None:
        if cancelled:
            return cancel_order(session, external_id, now=now or placed_at)
        return _moved(session, existing, status, tracking, moved_at)
    customer = customer_by_external_id(session, customer_id)
    if not items:
        raise DataError(f"order {external_id} has no items")
    lines = [_order_line(session, external_id, line, placed_at) for line in items]
    total = sum((price * quantity for _, quantity, price in lines), Decimal("0"))
    order = Order(
        external_id=external_id,
        customer_id=_id(customer),
        placed_at=placed_at,
        delivered_at=delivered_at,
        status=OrderStatus.DELIVERED if delivered_at else OrderStatus.PLACED,
        total=total,
        recorded_at=now,
        cart_id=cart_id,
        payment_method=payment,
        tracking_url=tracking,
        payable=charged,
    )
    session.add(order)
    session.flush()
    for product, quantity, price in lines:
        session.add(
            OrderItem(
                order_id=_id(order), product_id=_id(product), quantity=quantity, unit_price=price
            )
        )
    session.flush()
    if cart_id is not None:
        session.execute(
            update(Checkout)
            .where(col(Checkout.cart_id) == cart_id, col(Checkout.order_id).is_(None))
            .values(order_id=_id(order))
        )
    refresh_order_totals(session, [_id(customer)])
    if cancelled:
        return cancel_order(session, external_id, now=now or placed_at)
    return _moved(session, order, status, None, moved_at)


def _moved(
    session: Session, order: Order, status: OrderStatus | None, tracking: str | None, at: datetime
) -> Order:
    """The order moved to `status` (None: where it is), with its tracking address."""
    if status is None or status == order.status:
        if tracking is not None and tracking != order.tracking_url:
            order.tracking_url = tracking
            session.flush()
        return order
    return set_order_status(
        session, order.external_id, status, at=max(at, order.placed_at), tracking=tracking
    )


def _order_line(
    session: Session, order_id: str, line: Line, placed_at: datetime
) -> tuple[Product, int, Decimal]:
    quantity = line.quantity
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise DataError(
            f"order {order_id}: quantity of {line.sku} must be a whole number of 1 or more, got: {quantity!r}"
        )
    product = product_by_sku(session, line.sku)
    if line.unit_price is not None:
        price = money(f"order {order_id}: unit price of {line.sku}", line.unit_price)
    else:
        # An order reported late owes the price of its day, not the one after a drop.
        owed = price_when(session, _id(product), placed_at)
        price = product.price if owed is None else owed
    return product, quantity, price


@dataclass(frozen=True)
class CartLine:
    """One line of a checkout's cart, as the shop gave it."""

    sku: str
    quantity: int
    unit_price: Any = None  # None: the product's price when the checkout started
    name: str | None = None  # None: the product's name


def start_checkout(
    session: Session,
    *,
    cart_id: str,
    customer_id: str,
    items: Sequence[CartLine],
    amount: Any,
    started_at: datetime,
    now: datetime,
) -> Checkout:
    """Record a checkout the shop saw start, keyed by its cart id.

    The same cart id again replaces the items and the amount and keeps the
    first `started_at`. A stored order carrying the cart id completes it
    (`order_id`). Raises DataError naming the field (`cart_id`, `amount`,
    `items[i].sku`, ...) and UnknownRecord for an unknown customer.
    """
    _require_aware("started_at", started_at)
    _require_aware("now", now)
    cart_id = clean_text("cart_id", cart_id, required=True, limit=64) or ""
    total = money("amount", amount)
    if not items:
        raise DataError(f"items of checkout {cart_id} must hold at least one line")
    lines = [_cart_line(session, f"items[{i}]", line, started_at) for i, line in enumerate(items)]
    customer = customer_by_external_id(session, customer_id)
    checkout = (
        session.execute(select(Checkout).where(col(Checkout.cart_id) == cart_id)).scalars().first()
    )
    if checkout is None:
        checkout = Checkout(
            cart_id=cart_id, customer_id=_id(customer), started_at=started_at, recorded_at=now
        )
        session.add(checkout)
    checkout.items = lines
    checkout.amount = total
    if checkout.order_id is None:
        completed = select(func.min(col(Order.id))).where(col(Order.cart_id) == cart_id)
        checkout.order_id = session.execute(completed).scalar_one()
    session.flush()
    return checkout


def _cart_line(session: Session, field: str, line: CartLine, at: datetime) -> dict[str, Any]:
    """The stored form of a cart line: names and prices filled in from the product."""
    quantity = line.quantity
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise DataError(f"{field}.quantity must be a whole number of 1 or more, got: {quantity!r}")
    sku = clean_text(f"{field}.sku", line.sku, required=True, limit=64) or ""
    try:
        product = product_by_sku(session, sku)
    except UnknownRecord as exc:
        raise DataError(f"{field}.sku: unknown product sku {sku!r}") from exc
    if line.unit_price is not None:
        price = money(f"{field}.unit_price", line.unit_price)
    else:
        owed = price_when(session, _id(product), at)
        price = product.price if owed is None else owed
    name = clean_text(f"{field}.name", line.name) or product.name
    return {"sku": sku, "name": name, "quantity": quantity, "unit_price": str(price)}


def want_product(session: Session, *, customer_id: str, sku: str, at: datetime) -> bool:
    """Record that a customer wants to hear when a product is back; False if already so.

    Raises UnknownRecord for an unknown customer or product sku.
    """
    _require_aware("at", at)
    customer = customer_by_external_id(session, customer_id)
    product = product_by_sku(session, sku)
    known = select(col(ProductWanted.id)).where(
        col(ProductWanted.customer_id) == _id(customer),
        col(ProductWanted.product_id) == _id(product),
    )
    if session.execute(known).first() is not None:
        return False
    session.add(ProductWanted(customer_id=_id(customer), product_id=_id(product), at=at))
    session.flush()
    return True


def add_holiday(
    session: Session,
    *,
    holiday_id: str,
    day: date,
    name: str,
    now: datetime,
    name_bn: str | None = None,
) -> ShopHoliday:
    """Add or move a sale or occasion of the shop's own; holiday campaigns may name its id."""
    from ..project import parse_slug

    _require_aware("now", now)
    holiday_id = _checked("holiday id", parse_slug, holiday_id)
    if not isinstance(day, date) or isinstance(day, datetime):
        raise DataError(f"holiday {holiday_id}: day must be a date, got: {day!r}")
    name = clean_text("name", name, required=True) or ""
    name_bn = clean_text("name_bn", name_bn)
    row = session.get(ShopHoliday, holiday_id)
    if row is None:
        row = ShopHoliday(id=holiday_id, name=name, date=day, created_at=now)
        session.add(row)
    row.name = name
    row.name_bn = name_bn
    row.date = day
    session.flush()
    return row
