"""Events API ingestion: customer.upserted events per second over HTTP, beside the CSV import.

The server is the real tracking app (`engine.track.app.create_app`) under uvicorn as the
daemon configures it (`engine.track.httpserver.server_config`), in its own process on
127.0.0.1, writing to a fresh SQLite file (or a fresh PostgreSQL schema). This process
posts `--customers` new customers in batches of `--batch` events, one request after
the other, and reports the rate; it then posts them all again (every event a
duplicate, so that is the cost of the check alone, nothing written). Beside it, the
same customers as a CSV file go through `engine.intake.importer.import_csv` into another
fresh database, in this same run, for the CSV import's rate.

With `--orders N`, the same server then takes N orders one request each over
`--connections` keep-alive connections (as a platform delivers, several at once),
twice: as WooCommerce `order.created` webhooks (signed, each order of a new
customer, `POST /webhooks/woocommerce`), and as the engine's own events (the
customer and the order in one request to `POST /api/events`). For the webhooks it
prints the rate at which they were kept (answered 200: in the store, safe from a
crash) against the target of 1,000 a second, and the rate at which the app then
applied them (the inbox emptied); for the events API, the rate of orders applied.

    .venv/bin/python bench/events.py [--customers 6000] [--batch 1000] [--orders 2000]
    .venv/bin/python bench/events.py --postgres postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

KEY = "bench-api-key-0123456789abcdef"
SECRET = "benchmark-secret-0123456789abcdef"
WEBHOOK_SECRET = "bench-woocommerce-secret"
SKU = "BENCH-TEA"


def customer(n: int) -> dict[str, Any]:
    return {
        "id": f"C{n:06d}",
        "email": f"customer{n}@example.com",
        "name": f"Customer {n}",
        "city": ["Dhaka", "Chattogram", "Khulna", "Sylhet"][n % 4],
        "locale": "bn_BD" if n % 2 else "en",
        "timezone": "Asia/Dhaka",
        "tags": [["vip"], [], ["wholesale", "vip"]][n % 3],
        "marketing_consent": n % 2 == 0,
    }


def event(n: int) -> dict[str, Any]:
    return {"id": f"e-{n}", "type": "customer.upserted", "customer": customer(n)}


def serve(url: str, port: int) -> None:
    """The server process: the tracking app on 127.0.0.1:`port` until stdin closes."""
    import threading

    import uvicorn

    from engine.project.loader import Secrets, load_project
    from engine.store.db import make_engine, upgrade
    from engine.track.app import create_app
    from engine.track.httpserver import server_config

    engine = make_engine(url)
    upgrade(engine)
    project = load_project(ROOT / "config.yaml")
    journal = Path(tempfile.mkdtemp()) / "unsubscribes"
    secrets = Secrets(secret=SECRET, api_key=KEY, woocommerce_secret=WEBHOOK_SECRET)
    app = create_app(engine, lambda: project, secrets, unsubscribe_journal=journal)
    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=port, log_level="warning"))

    def watch_stdin() -> None:
        sys.stdin.read()
        server.should_exit = True

    threading.Thread(target=watch_stdin, daemon=True).start()
    server.run()


def post_all(base: str, total: int, batch: int) -> float:
    """Seconds to post `total` events in batches of `batch`; every answer must be 200."""
    bodies = [
        json.dumps([event(n) for n in range(start, min(start + batch, total))]).encode()
        for start in range(0, total, batch)
    ]
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    with httpx.Client(base_url=base, timeout=120) as client:
        began = time.perf_counter()
        for body in bodies:
            response = client.post("/api/events", content=body, headers=headers)
            if response.status_code != 200:
                raise SystemExit(f"the server answered {response.status_code}: {response.text}")
        return time.perf_counter() - began


def woocommerce_order(n: int) -> dict[str, Any]:
    """An `order.created` payload in WooCommerce's REST v3 shape, cash on delivery."""
    return {
        "id": 500_000 + n,
        "status": "processing",
        "currency": "BDT",
        "date_created_gmt": "2026-11-20T08:22:10",
        "customer_id": 900_000 + n,
        "payment_method": "cod",
        "billing": {"first_name": "Buyer", "last_name": str(n), "city": "Dhaka",
                    "email": f"buyer{n}@example.com"},
        "line_items": [{"id": n, "name": "Tea", "product_id": 7, "variation_id": 0,
                        "quantity": 2, "subtotal": "900.00", "total": "900.00", "sku": SKU,
                        "price": 450}],
        "coupon_lines": [],
        "meta_data": [],
    }  # fmt: skip


def own_events(n: int) -> list[dict[str, Any]]:
    """The same order as the engine's events: its customer, then the order."""
    buyer = {"id": f"B{n}", "email": f"own{n}@example.com", "name": f"Buyer {n}"}
    order = {"id": f"own-{n}", "customer_id": f"B{n}", "placed_at": "2026-11-20T08:22:10Z",
             "items": [{"sku": SKU, "quantity": 2, "unit_price": "450.00"}]}  # fmt: skip
    return [
        {"id": f"own-c-{n}", "type": "customer.upserted", "customer": buyer},
        {"id": f"own-o-{n}", "type": "order.placed", "order": order},
    ]


def post_orders(base: str, url: str, total: int, connections: int) -> tuple[float, float, float]:
    """Seconds until `total` signed WooCommerce order webhooks were kept, until they were
    applied, and for the same number of orders through the events API; one request
    each, over `connections` keep-alive connections."""
    import base64
    import hashlib
    import hmac
    from concurrent.futures import ThreadPoolExecutor

    product = {"id": "p", "type": "product.upserted",
               "product": {"sku": SKU, "name": "Tea", "price": "450.00", "stock": 10**6}}  # fmt: skip
    auth = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    webhooks = []
    for n in range(total):
        body = json.dumps(woocommerce_order(n)).encode()
        mac = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).digest()
        headers = {
            "content-type": "application/json",
            "x-wc-webhook-topic": "order.created",
            "x-wc-webhook-delivery-id": f"d{n}",
            "x-wc-webhook-signature": base64.b64encode(mac).decode(),
        }
        webhooks.append((body, headers))
    own = [json.dumps(own_events(n)).encode() for n in range(total)]

    def send(path: str, requests: list[tuple[bytes, dict[str, str]]]) -> None:
        with httpx.Client(base_url=base, timeout=120) as client:
            for body, headers in requests:
                answer = client.post(path, content=body, headers=headers)
                if answer.status_code != 200 or answer.json().get("duplicate"):
                    raise SystemExit(f"{path} answered {answer.status_code}: {answer.text}")

    def spread(path: str, requests: list[tuple[bytes, dict[str, str]]]) -> float:
        began = time.perf_counter()
        with ThreadPoolExecutor(connections) as pool:
            parts = [requests[k::connections] for k in range(connections)]
            list(pool.map(lambda part: send(path, part), parts))
        return time.perf_counter() - began

    with httpx.Client(base_url=base, timeout=120) as client:
        if client.post("/api/events", content=json.dumps(product), headers=auth).status_code != 200:
            raise SystemExit("the product could not be created")
    began = time.perf_counter()
    kept = spread("/webhooks/woocommerce", webhooks)
    applied = wait_applied(url, total) - began
    own_seconds = spread("/api/events", [(body, auth) for body in own])
    return kept, applied, own_seconds


def wait_applied(url: str, total: int) -> float:
    """The moment the inbox holds no pending delivery, all `total` applied without a problem."""
    from sqlalchemy import func, select

    from engine.store.db import make_engine
    from engine.store.models import WebhookDelivery

    engine = make_engine(url)
    status = WebhookDelivery.status
    try:
        while True:
            with engine.connect() as conn:
                counts = dict(conn.execute(select(status, func.count()).group_by(status)).all())
            if not counts.get("pending") and sum(counts.values()) >= total:
                if counts.get("applied") != total:
                    raise SystemExit(f"the deliveries were not all applied: {counts}")
                return time.perf_counter()
            time.sleep(0.05)
    finally:
        engine.dispose()


def csv_rate(url: str, total: int, folder: Path) -> float:
    """Seconds to import the same customers from a CSV file."""
    from engine.intake.importer import import_csv
    from engine.store.db import make_engine, upgrade

    path = folder / "customers.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        rows = csv.writer(out)
        rows.writerow(["id", "email", "name", "city", "locale", "timezone", "tags", "marketing_consent"])  # fmt: skip
        for n in range(total):
            c = customer(n)
            rows.writerow(
                [
                    c["id"], c["email"], c["name"], c["city"], c["locale"], c["timezone"],
                    ";".join(c["tags"]), "yes" if c["marketing_consent"] else "no",
                ]
            )  # fmt: skip
    engine = make_engine(url)
    upgrade(engine)
    began = time.perf_counter()
    import_csv(engine, "customers", path, now=datetime.now(UTC), shop_timezone="Asia/Dhaka")
    seconds = time.perf_counter() - began
    engine.dispose()
    return seconds


def database(folder: Path, postgres: str | None, name: str) -> str:
    if not postgres:
        return f"sqlite:///{folder / name}.db"
    from sqlalchemy import text

    from engine.store.db import make_engine

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(postgres)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    SCHEMAS.append(schema)
    sep = "&" if "?" in postgres else "?"
    return f"{postgres}{sep}options=-csearch_path%3D{schema}"


SCHEMAS: list[str] = []


def drop_schemas(postgres: str | None) -> None:
    if not postgres or not SCHEMAS:
        return
    from sqlalchemy import text

    from engine.store.db import make_engine

    admin = make_engine(postgres)
    with admin.begin() as connection:
        for schema in SCHEMAS:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--postgres", help="a PostgreSQL URL (a fresh schema is used)")
    parser.add_argument("--orders", type=int, default=0, help="orders, one request each")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections")
    parser.add_argument("--serve", nargs=2, metavar=("URL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    import socket

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            url = database(folder, args.postgres, "events")
            server = subprocess.Popen(
                [sys.executable, __file__, "--serve", url, str(port)],
                stdin=subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.1)
            try:
                first = post_all(base, args.customers, args.batch)
                again = post_all(base, args.customers, args.batch)
                orders = (
                    post_orders(base, url, args.orders, args.connections) if args.orders else None
                )
            finally:
                assert server.stdin is not None
                server.stdin.close()
                server.wait(30)
            imported = csv_rate(database(folder, args.postgres, "csv"), args.customers, folder)
        finally:
            drop_schemas(args.postgres)
    n = args.customers
    store = "PostgreSQL" if args.postgres else "SQLite"
    print(f"{n} customers on {store}, batches of {args.batch}")
    print(f"events API, new customers:   {first:6.2f} s  {n / first:8,.0f} events/s")
    print(f"events API, all duplicates:  {again:6.2f} s  {n / again:8,.0f} events/s")
    print(f"CSV import, same customers:  {imported:6.2f} s  {n / imported:8,.0f} rows/s")
    if orders:
        kept, applied, own = orders
        rate = args.orders / kept
        verdict = "met" if rate >= 1000 else "MISSED"
        print(f"{args.orders} orders, one request each, {args.connections} keep-alive connections:")
        print(
            f"WooCommerce webhooks kept:    {kept:6.2f} s  {rate:8,.0f} orders/s  (>= 1,000: {verdict})"
        )
        print(
            f"the same, applied:            {applied:6.2f} s  {args.orders / applied:8,.0f} orders/s"
        )
        print(f"events API, same orders:      {own:6.2f} s  {args.orders / own:8,.0f} orders/s")


if __name__ == "__main__":
    main()
