"""`lifecycle import woocommerce` against a WooCommerce REST API v3 on loopback.

The server answers as WooCommerce documents it (tests/fixtures/connectors/README.md,
"REST backfill"): each list a JSON array of resources, paged by `page` and `per_page`,
with `X-WP-Total` and `X-WP-TotalPages`; HTTP Basic with the key, a 401 otherwise. It
serves the webhook fixtures and those of `woocommerce/rest/`, two to a page, and records
every page asked for.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.cli import main
from engine.intake import wcrest
from engine.store.models import Customer, Order, OrderStatus, Product
from tests import store_fixtures

fresh_store = store_fixtures.fresh_store
migrated_store = store_fixtures.migrated_store
SQLITE_ONLY = pytest.mark.parametrize("migrated_store", ["sqlite"], indirect=True)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "connectors" / "woocommerce"
KEY, SECRET = (
    "ck_0f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6",
    "cs_9a8b7c6d5e4f30211203f4e5d6c7b8a9f0e1d2c3",
)
PER_PAGE = 2
ORDERS = ("cod_processing", "bkash_on_hold", "cancelled", "refunded", "failed", "pending")
FILTERS = {"products": {"status": "publish"}, "orders": {"status": "any"}}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def catalogue() -> dict[str, list[dict[str, Any]]]:
    """Three customers, three products and seven orders of every status; the seventh, a
    second order of customer 17, is the only one on the fourth page of orders."""
    orders = [fixture(f"order_{name}.json") for name in ORDERS]
    again = fixture("order_cod_processing.json") | {"id": 1293, "number": "1293"}
    again |= {"date_created_gmt": "2024-10-12T05:00:00", "date_modified_gmt": "2024-10-12T05:00:01"}
    return {
        "customers": [fixture("customer_created.json"), *fixture("rest/customers_page.json")],
        "products": [fixture("product_created.json"), *fixture("rest/products_page.json")],
        "orders": [*orders, again],
    }


@dataclass(frozen=True)
class Answer:
    """An HTTP answer; without `length`, the body ends when the connection closes."""

    status: int
    headers: dict[str, str]
    body: bytes
    length: bool = True


@dataclass
class Shop:
    """What the shop serves, what it was asked, and canned answers that come first."""

    resources: dict[str, list[dict[str, Any]]] = field(default_factory=catalogue)
    asked: list[tuple[str, int]] = field(default_factory=list)
    canned: dict[tuple[str, int], list[Answer]] = field(default_factory=dict)
    per_page: int = PER_PAGE
    url: str = ""

    def answer(self, request: BaseHTTPRequestHandler) -> Answer:
        address = urllib.parse.urlsplit(request.path)
        kind = address.path.removeprefix("/wp-json/wc/v3/")
        query = dict(urllib.parse.parse_qsl(address.query))
        number = int(query.get("page", "1"))
        self.asked.append((kind, number))
        basic = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
        if request.headers.get("Authorization") != basic:
            return Answer(401, {}, (FIXTURES / "rest" / "error_secret_invalid.json").read_bytes())
        expected = {"per_page": str(self.per_page), "orderby": "id", "order": "asc"}
        expected["page"] = str(number)
        if kind not in self.resources or query != expected | FILTERS.get(kind, {}):
            return Answer(
                400, {}, b'{"code": "rest_invalid_param", "message": "Invalid parameter(s)"}'
            )
        if self.canned.get((kind, number)):
            return self.canned[(kind, number)].pop(0)
        return self.page(kind, number)

    def page(self, kind: str, number: int) -> Answer:
        """A page as WooCommerce sends it: the totals, and links to the pages beside."""
        every = sorted(self.resources[kind], key=lambda r: int(r["id"]))
        items = every[(number - 1) * self.per_page : number * self.per_page]
        pages = math.ceil(len(every) / self.per_page)
        headers = {"X-WP-Total": str(len(every)), "X-WP-TotalPages": str(pages)}
        there = f"{self.url}/wp-json/wc/v3/{kind}?page="
        links = [f'<{there}{number - 1}>; rel="prev"'] if 1 < number <= pages + 1 else []
        links += [f'<{there}{number + 1}>; rel="next"'] if number < pages else []
        if links:
            headers["Link"] = ", ".join(links)
        return Answer(200, headers, json.dumps(items).encode())

    def fail(self, kind: str, number: int, answer: Answer, times: int = 1) -> None:
        """Answer page `number` of `kind` so the next `times` it is asked for."""
        self.canned[(kind, number)] = [answer] * times


def serve(shop: Shop) -> tuple[ThreadingHTTPServer, threading.Thread]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer = shop.answer(self)
            self.send_response(answer.status)
            headers = {"Content-Type": "application/json; charset=UTF-8"} | answer.headers
            if answer.length:
                headers["Content-Length"] = str(len(answer.body))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def shop(monkeypatch: pytest.MonkeyPatch) -> Iterator[Shop]:
    """The shop on an ephemeral port of 127.0.0.1, two resources a page, short waits."""
    monkeypatch.setattr(wcrest, "PER_PAGE", PER_PAGE)
    monkeypatch.setattr(wcrest, "BACKOFF_SECONDS", 0.01)
    served = Shop()
    server, thread = serve(served)
    served.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield served
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def config(project_dir: Path, fresh_store: Engine, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped project on the test's store; no key in the environment."""
    url = fresh_store.url.render_as_string(hide_password=False)
    monkeypatch.setenv("LIFECYCLE_DATABASE_URL", url)
    for name in ("LIFECYCLE_WOOCOMMERCE_KEY", "LIFECYCLE_WOOCOMMERCE_API_SECRET"):
        monkeypatch.delenv(name, raising=False)
    return project_dir / "config.yaml"


def run(config: Path, shop: Shop | str, *args: str, secret: str = SECRET) -> Result:
    url = shop if isinstance(shop, str) else shop.url
    command = ["import", "woocommerce", "--url", url, "--key", KEY, "--secret", secret]
    return CliRunner().invoke(main, [*command, *args, "--config", str(config)])


def state_file(engine: Engine, config: Path) -> Path:
    """The default: beside the SQLite file, else beside config.yaml."""
    database = engine.url.database
    beside = (
        Path(database).parent if engine.dialect.name == "sqlite" and database else config.parent
    )
    return beside / ".woocommerce-import.json"


def stored(engine: Engine) -> tuple[list[str], list[str], dict[str, OrderStatus]]:
    """The customers' ids, the products' SKUs and each order's status."""
    with Session(engine) as session:
        customers = session.execute(select(col(Customer.external_id))).scalars()
        products = session.execute(select(col(Product.sku))).scalars()
        orders = session.execute(select(col(Order.external_id), col(Order.status))).all()
        return sorted(customers), sorted(products), {o: OrderStatus(s) for o, s in orders}


CUSTOMERS = ["rahima.khatun@example.com", "wc-17", "wc-18", "wc-19"]  # the guest of order 1288
PRODUCTS = ["NK-CUSH-RED", "ORNA-BP-014", "SAREE-HL-001", "wc-312"]  # the cushion: from 1287
PAGES = [("customers", 1), ("customers", 2), ("products", 1), ("products", 2)]
PAGES += [("orders", n) for n in (1, 2, 3, 4)]


def test_a_shop_is_imported_page_by_page_and_again_changes_nothing(
    shop: Shop, config: Path, fresh_store: Engine
) -> None:
    first = run(config, shop)
    assert first.exit_code == 0, first.output
    assert shop.asked == PAGES
    customers, products, orders = stored(fresh_store)
    assert (customers, products) == (CUSTOMERS, PRODUCTS)
    assert orders == {
        "1287": OrderStatus.PLACED,
        "1288": OrderStatus.PLACED,
        "1293": OrderStatus.PLACED,
    }
    assert first.stdout.splitlines() == [
        f"{shop.url}: 8 pages imported",
        "customers: 3 applied, 0 already imported",
        "products: 3 applied, 0 already imported",
        # cancelled, refunded and failed before the engine knew them, and pending
        "orders: 3 applied, 0 already imported, 4 with nothing to apply",
        "0 problems",
    ]
    assert "orders page 4 of 4: 1 applied, 0 already imported" in first.stderr
    state = state_file(fresh_store, config)
    assert json.loads(state.read_text()) == {
        "url": shop.url, "kind": "orders", "page": 4, "finished": True,
    }  # fmt: skip
    again = run(config, shop, "--json")
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert (report["ok"], report["resumed_after"], report["pages"]) == (True, None, 8)
    assert report["customers"] == {
        "fetched": 3,
        "applied": 0,
        "duplicates": 3,
        "nothing_to_apply": 0,
    }
    assert report["orders"] == {"fetched": 7, "applied": 0, "duplicates": 3, "nothing_to_apply": 4}
    assert (report["problems"], report["problem_count"]) == ([], 0)
    assert stored(fresh_store) == (customers, products, orders)


def test_an_order_changed_in_the_shop_is_applied_on_the_next_run(
    shop: Shop, config: Path, fresh_store: Engine
) -> None:
    assert run(config, shop).exit_code == 0
    completed = fixture("order_cod_completed.json")  # 1287, a later date_modified_gmt
    shop.resources["orders"][0] = completed
    again = run(config, shop)
    assert again.exit_code == 0, again.output
    assert "orders: 1 applied, 2 already imported, 4 with nothing to apply" in again.stdout
    with Session(fresh_store) as session:
        order = session.execute(select(Order).where(col(Order.external_id) == "1287")).scalar_one()
    assert (order.status, order.delivered_at.isoformat()) == (
        OrderStatus.DELIVERED,
        "2024-10-08T11:40:05+00:00",  # date_completed_gmt
    )


def test_an_interrupted_import_goes_on_after_the_last_page_it_applied(
    shop: Shop, config: Path, fresh_store: Engine, tmp_path: Path
) -> None:
    state = tmp_path / "progress.json"
    oops = b'{"code":"internal_server_error","message":"Oops"}'
    shop.fail("orders", 2, Answer(500, {}, oops), times=3)
    stopped = run(config, shop, "--state", str(state))
    assert stopped.exit_code == 1
    assert f"page 2 of orders from {shop.url}/wp-json/wc/v3/orders?page=2" in stopped.stderr
    assert "HTTP 500 internal_server_error: Oops (3 tries)" in stopped.stderr
    assert "run again to go on" in stopped.stderr
    assert shop.asked == [*PAGES[:5], ("orders", 2), ("orders", 2), ("orders", 2)]
    assert json.loads(state.read_text()) == {
        "url": shop.url, "kind": "orders", "page": 1, "finished": False,
    }  # fmt: skip
    assert set(stored(fresh_store)[2]) == {"1287", "1288"}
    shop.asked.clear()
    resumed = run(config, shop, "--state", str(state))
    assert resumed.exit_code == 0, resumed.output
    assert shop.asked == [("orders", 2), ("orders", 3), ("orders", 4)]
    assert resumed.stdout.startswith(
        f"{shop.url}: 3 pages imported, continuing after orders page 1"
    )
    assert set(stored(fresh_store)[2]) == {"1287", "1288", "1293"}
    assert json.loads(state.read_text())["finished"] is True


@SQLITE_ONLY
def test_problems_are_listed_the_first_hundred_and_all_counted(
    shop: Shop, config: Path, fresh_store: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """101 customers without an email address, at WooCommerce's hundred a page."""
    monkeypatch.setattr(wcrest, "PER_PAGE", 100)
    shop.per_page = 100
    nameless = fixture("customer_created.json") | {"email": ""}
    shop.resources["customers"] = [nameless | {"id": 100 + n} for n in range(101)]
    done = run(config, shop)
    assert done.exit_code == 0, done.output
    assert "customers: 0 applied, 0 already imported, 101 with nothing to apply" in done.stdout
    assert "101 problems" in done.stdout
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings[0] == "warning: customer 100 has no email address: not recorded"
    assert (len(warnings), done.stderr.splitlines()[-1]) == (100, "… and 1 more problem")
    report = json.loads(run(config, shop, "--json").stdout)
    assert (len(report["problems"]), report["problem_count"]) == (100, 101)
    assert stored(fresh_store)[0] == ["rahima.khatun@example.com", "wc-17"]  # the orders' buyers


@SQLITE_ONLY
def test_restart_reads_every_page_again(shop: Shop, config: Path, tmp_path: Path) -> None:
    state = tmp_path / "progress.json"
    shop.fail("products", 1, Answer(503, {}, b""), times=3)
    assert run(config, shop, "--state", str(state)).exit_code == 1
    shop.asked.clear()
    assert run(config, shop, "--state", str(state), "--restart").exit_code == 0
    assert shop.asked == PAGES
    shop.fail("orders", 1, Answer(503, {}, b""), times=3)
    assert run(config, shop, "--state", str(state)).exit_code == 1
    shop.asked.clear()
    resumed = run(config, shop, "--state", str(state))
    assert resumed.stdout.startswith(f"{shop.url}: 4 pages imported, continuing from the orders")


@SQLITE_ONLY
def test_a_refused_key_exits_2_saying_so_and_writes_nothing(
    shop: Shop, config: Path, fresh_store: Engine
) -> None:
    refused = run(config, shop, secret="cs_wrong")
    assert refused.exit_code == 2
    assert refused.stderr.startswith(
        "error: WooCommerce refused the key: 401 woocommerce_rest_authentication_error: "
        "Consumer secret is invalid."
    )
    assert "cs_wrong" not in refused.output and SECRET not in refused.output
    assert shop.asked == [("customers", 1)]  # not tried again
    assert stored(fresh_store) == ([], [], {})
    assert not state_file(fresh_store, config).exists()


@SQLITE_ONLY
def test_the_key_comes_from_the_environment_and_a_flag_wins(
    shop: Shop, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIFECYCLE_WOOCOMMERCE_KEY", KEY)
    monkeypatch.setenv("LIFECYCLE_WOOCOMMERCE_API_SECRET", "cs_wrong")
    command = ["import", "woocommerce", "--url", shop.url, "--config", str(config)]
    assert CliRunner().invoke(main, command).exit_code == 2
    assert CliRunner().invoke(main, [*command, "--secret", SECRET]).exit_code == 0


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("http://shop.example", "is plain http, which would send the key in clear", id="http"),
        pytest.param("http://10.0.0.7:8080", "is plain http", id="http-lan"),
        pytest.param("shop.example", "must be the shop's address, like https://shop.example", id="bare"),
        pytest.param("ftp://shop.example", "must be the shop's address", id="ftp"),
        pytest.param("https://shop.example/?p=1", "must be the shop's address", id="query"),
        pytest.param("https://admin:pw@shop.example", "must not carry a user or password", id="user"),
    ],
)  # fmt: skip
def test_a_url_that_is_not_usable_is_refused_before_anything(
    url: str, message: str, config: Path, fresh_store: Engine
) -> None:
    refused = run(config, url)
    assert refused.exit_code == 2
    assert message in refused.stderr and ":pw@" not in refused.stderr
    assert not state_file(fresh_store, config).exists()


@SQLITE_ONLY
@pytest.mark.parametrize("length", ["sent", "absent"])
def test_a_page_larger_than_allowed_is_refused(
    length: str, shop: Shop, config: Path, fresh_store: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wcrest, "MAX_PAGE_BYTES", 2000)
    body = json.dumps(fixture("rest/customers_page.json")).encode()  # about 2,600 bytes
    shop.fail("customers", 1, Answer(200, {}, body, length=length == "sent"))
    refused = run(config, shop)
    assert refused.exit_code == 1
    assert "page 1 of customers from" in refused.stderr
    assert "more than a page may be (2000 bytes)" in refused.stderr
    assert stored(fresh_store) == ([], [], {})


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"<!DOCTYPE html><html>Maintenance</html>", "is not JSON", id="html"),
        pytest.param(b'{"id": 301}', "is not a list of products but a JSON dict", id="object"),
    ],
)
def test_a_page_that_is_not_a_json_list_is_named(
    body: bytes, message: str, shop: Shop, config: Path, fresh_store: Engine
) -> None:
    shop.fail("products", 1, Answer(200, {"Content-Type": "text/html; charset=UTF-8"}, body))
    failed = run(config, shop, "--json")
    assert failed.exit_code == 1
    report = json.loads(failed.stdout)
    assert report["ok"] is False
    query = "page=1&per_page=2&orderby=id&order=asc&status=publish"
    assert report["error"].startswith(
        f"page 1 of products from {shop.url}/wp-json/wc/v3/products?{query} {message}"
    )
    assert stored(fresh_store)[0] == CUSTOMERS[1:]  # the customers went in before


@SQLITE_ONLY
def test_too_many_requests_waits_as_told_up_to_the_cap(
    shop: Shop, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wcrest, "RETRY_AFTER_CAP", 1.0)  # the backoff is 0.01 s
    shop.fail("orders", 1, Answer(429, {"Retry-After": "3600"}, b""))
    started = time.monotonic()
    done = run(config, shop)
    assert done.exit_code == 0, done.output
    assert shop.asked.count(("orders", 1)) == 2
    assert 1.0 <= time.monotonic() - started < 10


@SQLITE_ONLY
def test_without_the_total_pages_an_empty_page_ends_the_list(shop: Shop, config: Path) -> None:
    customers = fixture("rest/customers_page.json")
    for number, page in enumerate((customers[:1], customers[1:], []), start=1):
        shop.fail("customers", number, Answer(200, {}, json.dumps(page).encode()))
    done = run(config, shop)
    assert done.exit_code == 0, done.output
    assert shop.asked[:4] == [("customers", 1), ("customers", 2), ("customers", 3), ("products", 1)]
    assert "customers: 2 applied" in done.stdout


@SQLITE_ONLY
def test_a_shop_that_ignores_the_page_is_stopped(shop: Shop, config: Path) -> None:
    same = json.dumps(fixture("rest/customers_page.json")).encode()
    shop.fail("customers", 1, Answer(200, {}, same))
    shop.fail("customers", 2, Answer(200, {}, same))
    stopped = run(config, shop)
    assert stopped.exit_code == 1
    assert "page 2 of customers repeats the page before" in stopped.stderr


@pytest.mark.parametrize(
    ("url", "taken"),
    [
        pytest.param("https://shop.example/", "https://shop.example", id="https"),
        pytest.param("https://shop.example/store/", "https://shop.example/store", id="folder"),
        pytest.param("http://localhost:8080", "http://localhost:8080", id="localhost"),
        pytest.param("http://127.3.2.1/", "http://127.3.2.1", id="127/8"),
        pytest.param("http://[::1]:9000/wp", "http://[::1]:9000/wp", id="ipv6"),
    ],
)
def test_plain_http_is_taken_for_this_machine_only(url: str, taken: str) -> None:
    assert wcrest.shop_url(url) == taken


@SQLITE_ONLY
def test_a_redirect_is_not_followed_with_the_key(shop: Shop, config: Path) -> None:
    elsewhere = "https://www.shop.example/wp-json/wc/v3/customers?page=1"
    shop.fail("customers", 1, Answer(301, {"Location": elsewhere}, b""))
    refused = run(config, shop)
    assert refused.exit_code == 1
    assert f"redirected (301) to {elsewhere}: give that as --url" in refused.stderr
    assert shop.asked == [("customers", 1)]


@SQLITE_ONLY
def test_a_failing_database_exits_1(
    shop: Shop, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIFECYCLE_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing")
    failed = run(config, shop)
    assert failed.exit_code == 1
    assert failed.stderr.startswith("error: ")
    assert shop.asked == []
