"""Benchmark the report on a big purchase history: 700,000 purchases by ~236,000 customers.

    .venv/bin/python bench/report.py                                # SQLite in a temp dir
    .venv/bin/python bench/report.py --quick                        # 20,000 purchases, under a minute
    .venv/bin/python bench/report.py --keep /var/tmp/report-bench   # build the SQLite file there once, reuse it
    .venv/bin/python bench/report.py --postgres postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/report.py --postgres URL --schema bench_report   # keep that schema, reuse it

The targets (2-core machine, SQLite and PostgreSQL, 700,000 purchases):
`lifecycle report --by month` over the whole history at most 3 s, `--by year` at
most 2 s, and each dashboard page at most 3 s (its default period, the last 30
days, by month).

The history has the shape of a public online-retail log: 18 months of purchases
(16 May 2025 to 15 November 2026, days of the shop's timezone, Asia/Dhaka), most
customers buying once (55 %), the others a few times with a long tail (a power law
over 2–300 purchases), more purchases before the two Eids, Pohela Boishakh and at
the end of the year and a shop that grows; 3 % of the orders cancelled; totals
lognormal around 1,200 taka, in whole taka; one delivered order in 40 answered by a
0–10 survey answer. It is generated from a seed (the same rows every time) and
written straight into `customer`, `orders` and `survey_answer` of a migrated
database (executemany on SQLite, COPY on PostgreSQL, the indexes dropped while
loading and made again after). No messages are sent in it: the campaign and queue
sections read empty tables, so the figures are those of the purchase history.
SQLite gets no ANALYZE (the engine never runs one, so a shop's file has no
statistics); PostgreSQL gets a VACUUM ANALYZE, as autovacuum would.

Each round times, one after another in this process: the floor (one plain scan
of `orders`: count, sum and distinct customers of the orders not cancelled),
`build_report` over the whole history by month and by year (what `lifecycle
report --from 2025-05-16 --to 2026-11-15 --by …` computes), the retention section
alone by month, and each dashboard page's sections for the dashboard's default
period at the end of the history. Each figure is printed as median [min–max] of the
rounds, with this process's CPU time and the ratio to the floor's median. The CLI
itself (`lifecycle report --json`, a process of its own: start-up, config loading
and the JSON included) is timed once per grain, beside `lifecycle report --help`
for the start-up alone.

Before the timing, the figures of the whole period (orders, revenue, ordering,
new, repeat customers and the customers active at the end) and of every month
(orders, revenue, ordering and new customers) are compared with those worked out
in Python from the generated purchases; the bench exits non-zero on a difference.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.project.loader import Project, load_project  # noqa: E402
from engine.report.reports import SECTIONS, build_report, period  # noqa: E402
from engine.report.retention import retention  # noqa: E402
from engine.store import session_scope  # noqa: E402
from engine.store.db import make_engine, upgrade  # noqa: E402
from engine.store.models import Checkpoint, Customer, Order, SurveyAnswer  # noqa: E402

ZONE = ZoneInfo("Asia/Dhaka")  # the shipped config.yaml's shop timezone
FIRST, LAST = date(2025, 5, 16), date(2026, 11, 15)  # the history, days of the shop, inclusive
BEGIN = datetime(2025, 5, 16, tzinfo=ZONE).astimezone(UTC)
NOW = datetime(2026, 11, 16, tzinfo=ZONE).astimezone(UTC)  # the end of the history
SPAN_DAYS = (NOW - BEGIN).days
ONE_TIME_SHARE = 0.55
MAX_PURCHASES = 300  # the most purchases of one customer
PER_CUSTOMER = 700_000 / 236_000  # purchases per customer of the log the shape follows
CANCELLED_SHARE = 0.03
SURVEY_EVERY = 40  # one delivered order in 40 gets a survey answer
SEED = 20251
MARK = "bench_report"  # the checkpoint that names a build, so a kept one is reused only if it fits
BUILD_VERSION = 1
FLOOR = (
    "SELECT count(*), sum(total), count(DISTINCT customer_id) FROM orders "
    "WHERE status != 'cancelled'"
)
# The dashboard's pages and the sections each asks build_report for (engine/report/dashboard.py).
PAGES = {
    "overview": ("campaigns", "activity"),
    "retention": ("retention",),
    "rewards": ("rewards",),
    "queue": ("queue",),
}
TARGETS = {"month": 3.0, "year": 2.0, "page": 3.0}

customer_table = Customer.__table__  # type: ignore[attr-defined]
orders_table = Order.__table__  # type: ignore[attr-defined]
survey_table = SurveyAnswer.__table__  # type: ignore[attr-defined]
checkpoint_table = Checkpoint.__table__  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the history


@dataclass
class History:
    """The purchases, in the order they were placed (index + 1 is the order's id).

    Times are whole seconds since BEGIN; totals are paisa; customers are numbered by
    their first purchase (1 is the shop's first customer)."""

    customer: list[int] = field(default_factory=list)
    placed: list[int] = field(default_factory=list)
    total: list[int] = field(default_factory=list)
    cancelled: list[bool] = field(default_factory=list)
    customers: int = 0


def day_weights() -> list[float]:
    """How busy each day of the history is: growth, the weekend, the seasons."""
    weights = []
    for n in range(SPAN_DAYS):
        day = FIRST + timedelta(days=n)
        weight = 1.0 + 0.6 * n / SPAN_DAYS  # the shop grows
        weight *= 1.15 if day.weekday() in (4, 5) else 1.0  # Friday and Saturday
        if day.month in (11, 12):
            weight *= 1.3  # the end of the year, the winter sales
        for feast, before, boost in (
            (date(2025, 6, 7), 14, 1.6),  # Eid al-Adha
            (date(2026, 3, 20), 25, 2.0),  # Eid al-Fitr
            (date(2026, 4, 14), 7, 1.3),  # Pohela Boishakh
            (date(2026, 5, 27), 14, 1.6),  # Eid al-Adha
        ):
            if timedelta(0) <= feast - day <= timedelta(days=before):
                weight *= boost
        weights.append(weight)
    return weights


def purchase_counts(rng: random.Random) -> Callable[[], int]:
    """A draw of one customer's number of purchases: 1 with ONE_TIME_SHARE, else a power
    law over 2..MAX_PURCHASES whose exponent gives PER_CUSTOMER purchases on average."""
    wanted = (PER_CUSTOMER - ONE_TIME_SHARE) / (1 - ONE_TIME_SHARE)
    ks = range(2, MAX_PURCHASES + 1)

    def mean(exponent: float) -> float:
        w = [k**-exponent for k in ks]
        return sum(k * x for k, x in zip(ks, w, strict=True)) / sum(w)

    low, high = 1.0, 4.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if mean(middle) > wanted else (low, middle)
    cumulative, running = [], 0.0
    for k in ks:
        running += k**-low
        cumulative.append(running)

    def draw() -> int:
        if rng.random() < ONE_TIME_SHARE:
            return 1
        return 2 + bisect.bisect_left(cumulative, rng.random() * running)

    return draw


def generate(purchases: int, seed: int = SEED) -> History:
    """The purchase history, the same for the same `purchases` and `seed`."""
    rng = random.Random(seed)
    days = day_weights()
    cumulative, running = [], 0.0
    for w in days:
        running += w
        cumulative.append(running)
    count = purchase_counts(rng)
    median_paisa, spread = math.log(1_200), 0.8

    def moment() -> int:
        day = min(bisect.bisect_left(cumulative, rng.random() * running), SPAN_DAYS - 1)
        return day * 86_400 + rng.randrange(86_400)

    slots: list[list[tuple[int, int, bool]]] = []  # per customer: (placed, paisa, cancelled)
    made = 0
    while made < purchases:
        k = min(count(), purchases - made)
        own = sorted(
            (
                moment(),
                100 * max(150, min(80_000, round(rng.lognormvariate(median_paisa, spread)))),
                rng.random() < CANCELLED_SHARE,
            )
            for _ in range(k)
        )
        slots.append(own)
        made += k
    by_first = sorted(range(len(slots)), key=lambda s: (slots[s][0][0], s))
    flat = []
    for number, slot in enumerate(by_first, start=1):
        flat.extend((at, number, paisa, gone) for at, paisa, gone in slots[slot])
    flat.sort()
    history = History(customers=len(slots))
    for at, number, paisa, gone in flat:
        history.placed.append(at)
        history.customer.append(number)
        history.total.append(paisa)
        history.cancelled.append(gone)
    return history


# ---------------------------------------------------------------- the store's rows


def _stamp(pg: bool) -> Callable[[int | None], Any]:
    """Seconds since BEGIN as the store keeps them: naive UTC (text on SQLite)."""
    begin = BEGIN.replace(tzinfo=None)

    def stamp(seconds: int | None) -> Any:
        if seconds is None:
            return None
        moment = begin + timedelta(seconds=seconds)
        return moment if pg else moment.strftime("%Y-%m-%d %H:%M:%S.%f")

    return stamp


ORDER_COLUMNS = ("id", "external_id", "customer_id", "placed_at", "delivered_at", "status", "total", "recorded_at")  # fmt: skip
CUSTOMER_COLUMNS = (
    "id", "external_id", "email", "name", "locale", "marketing_consent", "created_at", "updated_at",
    "first_order_at", "last_order_at", "orders_count", "total_spent",
)  # fmt: skip
SURVEY_COLUMNS = ("customer_id", "score", "at")
SCORES = list(range(11))
SCORE_WEIGHTS = [2, 1, 1, 2, 2, 4, 6, 10, 18, 24, 30]


def order_rows(history: History, pg: bool) -> Iterator[tuple[Any, ...]]:
    """The orders: cancelled, delivered 1–4 days after, or placed (not delivered by NOW)."""
    stamp = _stamp(pg)
    rng = random.Random(SEED + 1)
    end = SPAN_DAYS * 86_400
    for i, at in enumerate(history.placed):
        delivered = at + rng.randrange(86_400, 4 * 86_400)
        if history.cancelled[i]:
            status, delivered_at = "cancelled", None
        elif delivered < end:
            status, delivered_at = "delivered", delivered
        else:
            status, delivered_at = "placed", None
        yield (i + 1, f"o{i + 1}", history.customer[i], stamp(at), stamp(delivered_at), status,
               history.total[i], stamp(at))  # fmt: skip


def customer_rows(history: History, pg: bool) -> Iterator[tuple[Any, ...]]:
    """Each customer with the order figures the engine keeps (orders not cancelled)."""
    stamp = _stamp(pg)
    rng = random.Random(SEED + 2)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    counted: dict[int, int] = {}
    spent: dict[int, int] = {}
    earliest: dict[int, int] = {}
    for c, at, paisa, gone in zip(history.customer, history.placed, history.total, history.cancelled, strict=True):  # fmt: skip
        earliest.setdefault(c, at)
        if gone:
            continue
        first.setdefault(c, at)
        last[c] = at
        counted[c] = counted.get(c, 0) + 1
        spent[c] = spent.get(c, 0) + paisa
    for c in range(1, history.customers + 1):
        created = max(0, earliest[c] - rng.randrange(0, 3 * 86_400))
        yield (c, f"c{c}", f"c{c}@example.com", f"Customer {c}", "bn_BD" if c % 3 else "en",
               rng.random() < 0.8, stamp(created), stamp(last.get(c, created)),
               stamp(first.get(c)), stamp(last.get(c)), counted.get(c, 0), spent.get(c, 0))  # fmt: skip


def survey_rows(history: History, pg: bool) -> Iterator[tuple[Any, ...]]:
    stamp = _stamp(pg)
    rng = random.Random(SEED + 3)
    end = SPAN_DAYS * 86_400
    for i, at in enumerate(history.placed):
        if i % SURVEY_EVERY == 7 and not history.cancelled[i] and at + 5 * 86_400 < end:
            score = rng.choices(SCORES, SCORE_WEIGHTS)[0]
            yield (history.customer[i], score, stamp(at + 5 * 86_400))


def _chunks(rows: Iterator[tuple[Any, ...]], size: int = 20_000) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def build(engine: Engine, history: History, label: str) -> None:
    """Write the history into the migrated, empty store of `engine`."""
    pg = engine.dialect.name == "postgresql"
    started = time.perf_counter()
    upgrade(engine)
    big = (customer_table, orders_table, survey_table)
    loads = (
        ("customer", CUSTOMER_COLUMNS, customer_rows),
        ("orders", ORDER_COLUMNS, order_rows),
        ("survey_answer", SURVEY_COLUMNS, survey_rows),
    )
    with engine.connect() as conn:
        for table in big:
            for index in table.indexes:
                index.drop(conn)
        if pg:
            conn.exec_driver_sql("SET session_replication_role = replica")  # no FK triggers
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            for name, columns, rows in loads:
                with cursor.copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows(history, pg):
                        copy.write_row(row)
            conn.exec_driver_sql("SET session_replication_role = origin")
        else:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            for name, columns, rows in loads:
                sql = f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"  # fmt: skip
                for chunk in _chunks(rows(history, pg)):
                    conn.exec_driver_sql(sql, chunk)
        conn.execute(
            checkpoint_table.insert().values(name=MARK, value=label, updated_at=datetime.now(UTC))
        )
        conn.commit()
        loaded = time.perf_counter()
        for table in big:
            for index in table.indexes:
                index.create(conn)
        conn.commit()
    if pg:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE customer, orders, survey_answer")
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    print(
        f"built {history.customers:,} customers and {len(history.placed):,} orders in "
        f"{loaded - started:.0f} s (+{time.perf_counter() - loaded:.0f} s indexes"
        f"{' and VACUUM ANALYZE' if pg else ''})",
        flush=True,
    )


def built_label(engine: Engine) -> str | None:
    """The label of the build in the store, or None when it holds none."""
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, "checkpoint"):
            return None
        row = conn.execute(checkpoint_table.select().where(checkpoint_table.c.name == MARK)).first()
        return None if row is None else str(row.value)


# ---------------------------------------------------------------- the expected figures


def expected(history: History, timezone: str) -> dict[str, Any]:
    """The whole history's figures and each month's, worked out from the purchases."""
    months = [BEGIN]
    cursor = datetime(FIRST.year, FIRST.month, 1, tzinfo=ZoneInfo(timezone))
    while True:
        cursor = cursor.replace(year=cursor.year + cursor.month // 12, month=cursor.month % 12 + 1)
        if cursor >= NOW:
            break
        months.append(cursor.astimezone(UTC))
    edges = [int((m - BEGIN).total_seconds()) for m in months]
    a_year_back = NOW.astimezone(ZONE).replace(year=NOW.astimezone(ZONE).year - 1)
    year_start = int((a_year_back.astimezone(UTC) - BEGIN).total_seconds())  # the window
    per_month = [{"orders": 0, "revenue": 0, "ordering": set(), "new": 0} for _ in edges]  # type: list[dict[str, Any]]
    counted: dict[int, int] = {}
    active_at_end = set()
    revenue = 0
    for c, at, paisa, gone in zip(history.customer, history.placed, history.total, history.cancelled, strict=True):  # fmt: skip
        if gone:
            continue
        month = per_month[bisect.bisect_right(edges, at) - 1]
        month["orders"] += 1
        month["revenue"] += paisa
        month["ordering"].add(c)
        if c not in counted:
            month["new"] += 1
        counted[c] = counted.get(c, 0) + 1
        revenue += paisa
        if at >= year_start:
            active_at_end.add(c)
    return {
        "total": {
            "orders": sum(counted.values()),
            "revenue": Decimal(revenue) / 100,
            "ordering_customers": len(counted),
            "new_customers": len(counted),  # the history starts with the period
            "repeat_customers": sum(1 for n in counted.values() if n >= 2),
            "customers_at_end": len(active_at_end),
        },
        "months": [
            {
                "orders": m["orders"],
                "revenue": Decimal(m["revenue"]) / 100,
                "ordering_customers": len(m["ordering"]),
                "new_customers": m["new"],
            }
            for m in per_month
        ],
    }


def check(report: dict[str, Any], want: dict[str, Any], floor_row: tuple[Any, ...]) -> list[str]:
    """Differences between the report's figures, the floor's and the expected ones."""
    problems = []
    total = report["retention"]["total"]
    for key, value in want["total"].items():
        if total[key] != value:
            problems.append(f"total {key}: report {total[key]}, expected {value}")
    orders, paisa, buyers = floor_row
    if (orders, Decimal(paisa) / 100, buyers) != (
        want["total"]["orders"],
        want["total"]["revenue"],
        want["total"]["ordering_customers"],
    ):
        problems.append(f"the floor's scan gives {floor_row}, expected {want['total']}")
    got = report["retention"]["buckets"]
    if len(got) != len(want["months"]):
        problems.append(f"{len(got)} month buckets, expected {len(want['months'])}")
    for bucket, month in zip(got, want["months"], strict=False):
        for key, value in month.items():
            if bucket[key] != value:
                problems.append(f"{bucket['label']} {key}: report {bucket[key]}, expected {value}")
    return problems


# ---------------------------------------------------------------- measuring


@dataclass
class Figure:
    label: str
    target: float | None = None
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def median(self) -> float:
        return statistics.median(self.seconds)


def timed(figure: Figure, run: Callable[[], Any]) -> Any:
    started, cpu = time.perf_counter(), time.process_time()
    result = run()
    figure.seconds.append(time.perf_counter() - started)
    figure.cpu.append(time.process_time() - cpu)
    print(f"  {figure.label}: {figure.seconds[-1]:.3f} s (cpu {figure.cpu[-1]:.3f} s)", flush=True)
    return result


def full_period(project: Project) -> tuple[datetime, datetime]:
    """What `lifecycle report --from FIRST --to LAST` reads."""
    return period(FIRST, LAST, NOW, project.config.shop.timezone)


def rounds(engine: Engine, project: Project, repeat: int) -> list[Figure]:
    start, end = full_period(project)
    timezone = project.config.shop.timezone
    page_start, page_end = period(None, None, NOW, timezone)  # the dashboard's default
    floor = Figure("floor: one scan of orders")
    month = Figure("report --by month, 18 months", TARGETS["month"])
    year = Figure("report --by year, 18 months", TARGETS["year"])
    alone = Figure("retention section alone, by month")
    pages = {name: Figure(f"dashboard {name} page ({', '.join(s)})", TARGETS["page"]) for name, s in PAGES.items()}  # fmt: skip

    def scan() -> Any:
        with engine.connect() as conn:
            return conn.exec_driver_sql(FLOOR).one()

    def section() -> Any:
        with session_scope(engine) as session:
            return retention(session, start, end, by="month", timezone=timezone)

    for number in range(1, repeat + 1):
        print(f"round {number}", flush=True)
        timed(floor, scan)
        timed(month, lambda: build_report(engine, project, start, end, "month", NOW))
        timed(year, lambda: build_report(engine, project, start, end, "year", NOW))
        timed(alone, section)
        for name, sections in PAGES.items():
            timed(
                pages[name],
                lambda s=sections: build_report(
                    engine, project, page_start, page_end, "month", NOW, sections=s
                ),
            )
    return [floor, month, year, alone, *pages.values()]


def cli(url: str, by: str | None) -> tuple[float, float, dict[str, Any] | None]:
    """`lifecycle report --json` for the whole history in its own process (None: --help)."""
    command = [str(ROOT / ".venv" / "bin" / "lifecycle"), "report"]
    if by is None:
        command.append("--help")
    else:
        command += ["--config", str(ROOT / "config.yaml"), "--from", FIRST.isoformat(),
                    "--to", LAST.isoformat(), "--by", by, "--json"]  # fmt: skip
    # PYTHONPATH: the engine next to this script, also when it runs from another checkout.
    env = {**os.environ, "LIFECYCLE_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    return seconds, cpu, None if by is None else json.loads(done.stdout)


def show(figures: list[Figure], cli_runs: list[tuple[str, float, float, float | None]]) -> None:
    floor = figures[0].median()
    print(f"\n{'figure':58} {'median [min–max] s':>22} {'cpu s':>7} {'x floor':>8}  target")
    for f in figures:
        spread = f"{f.median():.3f} [{min(f.seconds):.3f}–{max(f.seconds):.3f}]"
        verdict = ""
        if f.target is not None:
            verdict = f"<= {f.target:g} s " + ("met" if f.median() <= f.target else "MISSED")
        print(
            f"{f.label:58} {spread:>22} {statistics.median(f.cpu):7.3f} "
            f"{f.median() / floor:7.1f}x  {verdict}"
        )
    for label, seconds, cpu, target in cli_runs:
        verdict = "" if target is None else f"<= {target:g} s " + ("met" if seconds <= target else "MISSED")  # fmt: skip
        print(f"{label:58} {seconds:22.3f} {cpu:7.3f} {seconds / floor:7.1f}x  {verdict}")


# ---------------------------------------------------------------- the store


class Store:
    """Where the bench's database lives: a SQLite file or a PostgreSQL schema."""

    def __init__(self, args: argparse.Namespace, purchases: int):
        self.postgres = args.postgres
        self.folder: Path | None = None
        self.schema: str | None = None
        self.drop = False
        if self.postgres:
            self.schema = args.schema or f"bench_report_{uuid.uuid4().hex[:8]}"
            self.drop = not args.schema
            with self._admin() as conn:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            sep = "&" if "?" in self.postgres else "?"
            self.url = f"{self.postgres}{sep}options=-csearch_path%3D{self.schema}"
        else:
            if args.keep:
                self.folder = Path(args.keep)
                self.folder.mkdir(parents=True, exist_ok=True)
            else:
                self.folder = Path(tempfile.mkdtemp(prefix="lifecycle-report-"))
                self.drop = True
            self.url = f"sqlite:///{self.folder / f'report-{purchases}.db'}"

    def _admin(self) -> Any:
        return make_engine(self.postgres).begin()

    def close(self) -> None:
        if not self.drop:
            return
        if self.schema:
            with self._admin() as conn:
                conn.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
        elif self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--purchases", type=int, default=700_000)
    parser.add_argument("--quick", action="store_true", help="20,000 purchases, 2 rounds")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--postgres", help="a PostgreSQL URL (a throwaway schema unless --schema)")
    parser.add_argument("--schema", help="with --postgres: this schema, kept and reused")
    parser.add_argument("--keep", help="a folder for the SQLite file, kept and reused")
    parser.add_argument("--no-cli", action="store_true", help="do not time the CLI")
    args = parser.parse_args()
    purchases = 20_000 if args.quick else args.purchases
    repeat = 2 if args.quick and args.repeat == 3 else args.repeat
    label = f"purchases={purchases} seed={SEED} v{BUILD_VERSION}"
    project = load_project(ROOT / "config.yaml")
    if project.config.shop.timezone != str(ZONE):
        sys.exit(f"config.yaml's shop timezone is {project.config.shop.timezone}, expected {ZONE}")
    store = Store(args, purchases)
    try:
        started = time.perf_counter()
        history = generate(purchases)
        once = sum(1 for n in Counter(history.customer).values() if n == 1)
        print(
            f"generated {len(history.placed):,} purchases by {history.customers:,} customers "
            f"({once / history.customers:.0%} buying once) "
            f"in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        engine = make_engine(store.url)
        found = built_label(engine)
        if found == label:
            print(f"reusing the build in {store.url} ({label})", flush=True)
        elif found is None:
            build(engine, history, label)
        else:
            sys.exit(f"{store.url} holds another build ({found}); expected {label}")
        want = expected(history, project.config.shop.timezone)
        start, end = full_period(project)
        report = build_report(engine, project, start, end, "month", NOW)
        with engine.connect() as conn:
            floor_row = tuple(conn.exec_driver_sql(FLOOR).one())
        problems = check(report, want, floor_row)
        if problems:
            print("\n".join(problems))
            sys.exit("the report's figures differ from the generated history's")
        total = want["total"]
        print(
            f"checked: {total['orders']:,} orders, {total['revenue']:,} taka, "
            f"{total['ordering_customers']:,} ordering and new customers, "
            f"{total['repeat_customers']:,} repeat, {total['customers_at_end']:,} active at the end, "
            f"{len(want['months'])} months: as computed from the purchases",
            flush=True,
        )
        figures = rounds(engine, project, repeat)
        cli_runs: list[tuple[str, float, float, float | None]] = []
        if not args.no_cli:
            seconds, cpu, _ = cli(store.url, None)
            cli_runs.append(("CLI start-up: lifecycle report --help", seconds, cpu, None))
            for by in ("month", "year"):
                seconds, cpu, data = cli(store.url, by)
                assert data is not None
                if data["retention"]["total"]["orders"] != total["orders"]:
                    sys.exit(f"the CLI's --by {by} report counts other orders")
                cli_runs.append((f"CLI: lifecycle report --json --by {by}", seconds, cpu, TARGETS[by]))  # fmt: skip
        show(figures, cli_runs)
        print(
            f"\n{'PostgreSQL' if store.postgres else 'SQLite'}, {purchases:,} purchases, "
            f"{history.customers:,} customers; cpu is this process's (the CLI's: its own); "
            f"load average {os.getloadavg()[0]:.1f}; sections: {', '.join(sorted(SECTIONS))}"
        )
        engine.dispose()
    finally:
        store.close()


if __name__ == "__main__":
    main()
