"""Backfill from a WooCommerce shop: its customers, products and orders, read through its
REST API (`wcrest`), each applied as a webhook delivery of it would be.

`import_woocommerce` reads customers, then products, then orders, page after page until
the page `X-WP-TotalPages` names or an empty one, and hands each resource to
`connector.take_delivery` with `woocommerce.translate`, as topic `<kind>.updated` (an
order the engine lacks is recorded as a new one), under a delivery id made of its kind,
id and `date_modified_gmt`: importing again changes nothing the shop did not change, and
applies what it did. After each page the state file records the last page done, so a
run that stopped continues after it; a finished run starts over the next time.

Raises what the pages raise (`wcrest`), `ImportStateError` (the state file) and
`StoreError` (the database); the pages done before stay applied. What a resource cannot
give is a problem, counted and listed in the result, and never stops the import.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..errors import EngineError, StoreError
from ..project import Holidays
from . import woocommerce
from .connector import Delivery, take_delivery
from .wcrest import Page, ShopApiError

log = logging.getLogger(__name__)

KINDS = ("customers", "products", "orders")
TOPICS = {"customers": "customer.updated", "products": "product.updated", "orders": "order.updated"}
SOURCE = "woocommerce-import"  # the prefix of the ids of the events applied
STATE_FILE_NAME = ".woocommerce-import.json"
MAX_PROBLEMS = 100


class ImportStateError(EngineError, ValueError):
    """The state file cannot be read or written."""


class ShopApi(Protocol):
    """Where the pages come from: `wcrest.WooCommerceApi`, or a fake."""

    url: str

    def page(self, kind: str, number: int) -> Page: ...


@dataclass
class ImportTally:
    """What became of one kind's resources."""

    fetched: int = 0
    applied: int = 0  # something applied
    duplicates: int = 0  # imported before, unchanged since
    nothing_to_apply: int = 0  # nothing the engine records (a pending order) or a problem

    def add(self, other: ImportTally) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


@dataclass(frozen=True)
class PageDone:
    """One page applied: shown as the import goes."""

    kind: str
    page: int
    total_pages: int | None
    tally: ImportTally


@dataclass(frozen=True)
class Place:
    """The last page done of `kind` (0: none yet)."""

    kind: str
    page: int


@dataclass
class WooCommerceImport:
    """What one run did: per kind, and the problems (the first MAX_PROBLEMS, all counted)."""

    url: str
    state_file: str
    resumed_after: Place | None = None
    pages: int = 0
    tallies: dict[str, ImportTally] = field(
        default_factory=lambda: {k: ImportTally() for k in KINDS}
    )
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    def as_dict(self) -> dict[str, Any]:
        resumed = asdict(self.resumed_after) if self.resumed_after else None
        return {
            "url": self.url,
            "state_file": self.state_file,
            "resumed_after": resumed,
            "pages": self.pages,
            **{kind: asdict(tally) for kind, tally in self.tallies.items()},
            "problems": self.problems,
            "problem_count": self.problem_count,
        }


def import_woocommerce(
    engine: Engine,
    api: ShopApi,
    state_file: Path,
    *,
    now: datetime,
    holidays: Holidays | None = None,
    restart: bool = False,
    progress: Callable[[PageDone], None] | None = None,
) -> WooCommerceImport:
    """Apply every customer, product and order of the shop, continuing after the last
    page the state file records unless `restart`. Raises ShopKeyRefused, ShopApiError,
    ImportStateError or StoreError; the pages done before stay applied and recorded."""
    start = None if restart else read_state(state_file, api.url)
    result = WooCommerceImport(api.url, str(state_file), resumed_after=start)
    run = _Run(engine, api, state_file, now, holidays, progress, result)
    for kind in KINDS[KINDS.index(start.kind) :] if start else KINDS:
        last = run.pages_of(kind, start.page + 1 if start and start.kind == kind else 1)
        following = KINDS.index(kind) + 1
        if following < len(KINDS):
            write_state(state_file, api.url, Place(KINDS[following], 0))
        else:
            write_state(state_file, api.url, Place(kind, last), finished=True)
    return result


@dataclass
class _Run:
    """One run of the import: where pages come from and go, and what became of them."""

    engine: Engine
    api: ShopApi
    state_file: Path
    now: datetime
    holidays: Holidays | None
    progress: Callable[[PageDone], None] | None
    result: WooCommerceImport

    def pages_of(self, kind: str, number: int) -> int:
        """Apply the pages of `kind` from page `number` on; the last page done."""
        last_id: int | None = None
        while True:
            page = self.api.page(kind, number)
            if not page.items:
                return number - 1
            last_id = _check_paging(page, kind, number, last_id)
            tally = ImportTally()
            for item in page.items:
                self.apply(kind, item, tally)
            self.result.tallies[kind].add(tally)
            self.result.pages += 1
            write_state(self.state_file, self.api.url, Place(kind, number))
            if self.progress:
                self.progress(PageDone(kind, number, page.total_pages, tally))
            if page.total_pages is not None and number >= page.total_pages:
                return number
            number += 1

    def apply(self, kind: str, item: Any, tally: ImportTally) -> None:
        """Apply one resource as its webhook delivery; count it and its problems."""
        tally.fetched += 1
        if not isinstance(item, dict):
            self.result.problem(f"{kind}: an item that is not a JSON object: not applied")
            tally.nothing_to_apply += 1
            return
        delivery = self.deliver(kind, item)
        if delivery.applied:
            tally.applied += 1
        elif delivery.duplicates:
            tally.duplicates += 1
        else:
            tally.nothing_to_apply += 1
        name = kind.removesuffix("s")
        for problem in delivery.problems:
            named = (
                problem if problem.startswith(f"{name} ") else f"{name} {item.get('id')}: {problem}"
            )
            log.warning("WooCommerce import: %s", named)
            self.result.problem(named)

    def deliver(self, kind: str, item: dict[str, Any]) -> Delivery:
        """`take_delivery` of one resource; raises StoreError when the database fails."""
        topic = TOPICS[kind]
        body = json.dumps(item).encode()
        try:
            return take_delivery(
                self.engine,
                SOURCE,
                woocommerce.translate,
                topic,
                delivery_id(kind, item),
                body,
                now=self.now,
                holidays=self.holidays,
            )
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot apply WooCommerce {topic} {item.get('id')}: {exc}") from exc
        except StoreError:
            raise
        except Exception as exc:  # a resource the connector trips on must not stop the others
            log.exception("WooCommerce import: %s %s could not be applied", kind, item.get("id"))
            return Delivery(topic, problems=[f"could not be applied: {type(exc).__name__}: {exc}"])


def _check_paging(page: Page, kind: str, number: int, last_id: int | None) -> int | None:
    """The page's highest id; without X-WP-TotalPages, a page that does not move past
    the one before (a shop ignoring `page`) raises ShopApiError rather than loop."""
    ids = [i["id"] for i in page.items if isinstance(i, dict) and isinstance(i.get("id"), int)]
    if page.total_pages is None and ids and last_id is not None and max(ids) <= last_id:
        raise ShopApiError(
            f"page {number} of {kind} repeats the page before, and the shop sends no "
            "X-WP-TotalPages: it seems to ignore paging (a caching plugin?)"
        )
    return max(ids) if ids else last_id


def delivery_id(kind: str, item: dict[str, Any]) -> str:
    """`order-1042-2026-11-20T09:00:00`: the resource as of its last change (without a
    `date_modified_gmt`, a digest of its JSON stands for it)."""
    version = item.get("date_modified_gmt")
    if not isinstance(version, str) or not version:
        canonical = json.dumps(item, sort_keys=True).encode()
        version = hashlib.sha256(canonical).hexdigest()[:16]
    return f"{kind.removesuffix('s')}-{item.get('id')}-{version[:40]}"


# ---------------------------------------------------------------- the state file


def read_state(path: Path, url: str) -> Place | None:
    """Where a run stopped at `url`: None when there is no state, when the last run
    finished or was for another shop. Raises ImportStateError for a file that is not one."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ImportStateError(f"cannot read the state file {path}: {exc}; use --restart") from None
    try:
        place = Place(str(state["kind"]), int(state["page"]))
        finished, same_shop = bool(state["finished"]), state["url"] == url
    except (TypeError, KeyError, ValueError) as exc:
        raise ImportStateError(
            f"{path} is not an import's state ({exc!r}); use --restart"
        ) from None
    if place.kind not in KINDS or place.page < 0:
        raise ImportStateError(f"{path}: no kind {place.kind!r} page {place.page}; use --restart")
    return None if finished or not same_shop else place


def write_state(path: Path, url: str, place: Place, *, finished: bool = False) -> None:
    """Record `place` at once and whole: a new file replaces the old."""
    state = {"url": url, "kind": place.kind, "page": place.page, "finished": finished}
    try:
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=path.parent, prefix=path.name, suffix=".tmp", delete=False
        ) as out:
            json.dump(state, out)
            out.write("\n")
        try:
            os.replace(out.name, path)
        except OSError:
            os.unlink(out.name)
            raise
    except OSError as exc:
        raise ImportStateError(f"cannot write the state file {path}: {exc}") from exc
