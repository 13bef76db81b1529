"""Benchmark coupon minting in a holiday pass: 100,000 pre-announcements, with and without a coupon.

    .venv/bin/python bench/coupons.py                       # SQLite in a temp dir
    .venv/bin/python bench/coupons.py --recipients 20000    # a quick run
    .venv/bin/python bench/coupons.py --url postgresql://postgres@127.0.0.1:5432/bench_coupons  # an empty database

The target: minting coupons for a 100,000-recipient holiday campaign adds at
most 20 % to that planning pass. The shop is built so that the shipped
`holiday_preannounce` campaign (campaigns/holiday_preannounce.yaml: the
regulars, three days before each holiday at 10:00 local) queues exactly
`--recipients` emails at 10:00 in Dhaka three days before Black Friday: that
many regulars (3–5 orders in the last 180 days) with consent in the shop's
timezone, beside customers it must pass over (`--customers`, by default a
quarter more: one in 200 of all customers with a suppressed address, as in
bench/plan.py, the rest in turn without consent, with fewer orders, or in a
timezone whose 10:00 has not come) and sent newsletters older than the
frequency cap's week.

In one run, alternating (the order swapped each round, so a drift of the
shared machine weighs on both alike), the campaign's due pass is timed alone
without a coupon and with `coupon: {percent: 10%, min_order: 500,
expires_after: 30d, prefix: EID}`; between passes the campaign's messages,
coupons and checkpoints (`plan:` and `plan-full:`) are deleted (on PostgreSQL
then `VACUUM ANALYZE`d), so every pass is the campaign's first, full one. A
first pass, not timed, warms the caches.
Inside the pass with a coupon, `mint_coupons` is timed, and within it the
full pass's look for older waiting messages without a coupon (`_catch_up`).
After it every message's coupon is read back as the renderer reads it
(`message_coupons`, codes derived from the messages): one per queued message,
each code distinct, and no coupon row stored. Peak memory is the planning
process's `ru_maxrss`. The shop is built in a child process with Core
`executemany` in chunks of 50,000.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import column, delete, event, func, select, table, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flows import _Store, timed  # noqa: E402  (bench/ is the script's folder)

from engine.intake import code_key, message_coupons  # noqa: E402
from engine.plan import coupons as minting  # noqa: E402
from engine.plan import planner  # noqa: E402
from engine.project.campaigns import CouponSpec  # noqa: E402
from engine.project.loader import Project, load_project  # noqa: E402
from engine.store.db import make_engine, upgrade  # noqa: E402
from engine.store.models import (  # noqa: E402
    Blast,
    Checkpoint,
    Coupon,
    CouponIssue,
    Customer,
    Message,
    Order,
    Suppression,
)

CAMPAIGN = "holiday_preannounce"
COUPON = {"percent": "10%", "min_order": 500, "expires_after": "30d", "prefix": "EID"}
# 10:00 in Dhaka three days before Black Friday (27 November 2026, config.yaml).
DUE = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)
D = timedelta(days=1)
CHUNK = 50_000
TARGET = 0.20

# Who the pass must pass over: (role, consent, timezone).
OTHERS = [
    ("no consent", False, None),
    ("not a regular", True, None),
    ("suppressed", True, "Asia/Dhaka"),
    ("not yet 10:00", True, "America/New_York"),
]

tables = {m.__tablename__: m.__table__ for m in (Customer, Order, Message, Suppression, Coupon, CouponIssue, Checkpoint, Blast)}  # type: ignore[union-attr]  # fmt: skip


# ---------------------------------------------------------------- building the shop


def _raw(name: str) -> Any:
    """The table without column types: the loader hands in values already in store format."""
    return table(name, *(column(c.name) for c in tables[name].columns))


def build(url: str, recipients: int, customers: int, seed: int = 7) -> None:
    """Create the schema and load the shop (runs in a child process)."""
    engine = make_engine(url)
    upgrade(engine)
    rng = random.Random(seed)
    big = [tables[name] for name in ("customer", "orders", "message")]
    started = time.perf_counter()
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":  # rows arrive parents first; skip the checks
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        for big_table in big:
            for index in big_table.indexes:
                index.drop(conn)
        store = _Store(engine.dialect.name == "postgresql")
        roles = ["audience"] * recipients + _others(customers - recipients, customers // 200)
        rng.shuffle(roles)
        orders = _load_customers_and_orders(conn, rng, roles, store)
        suppressed = [cid for cid, role in enumerate(roles, start=1) if role == "suppressed"]
        conn.execute(tables["suppression"].insert(), [
            {"email": f"c{cid}@example.com", "reason": "bounce", "source": "bench", "created_at": DUE - 9 * D}
            for cid in suppressed
        ])  # fmt: skip
        history = _load_history(conn, rng, customers, store)
        conn.commit()
    loaded = time.perf_counter()
    with engine.begin() as conn:
        for big_table in big:
            for index in big_table.indexes:
                index.create(conn)
        conn.execute(text("ANALYZE"))
    print(
        f"built {customers:,} customers ({recipients:,} in the audience), {orders:,} orders, "
        f"{history:,} past messages in {loaded - started:.0f} s "
        f"(+{time.perf_counter() - loaded:.0f} s indexes)",
        flush=True,
    )
    engine.dispose()


def _others(count: int, suppressed: int) -> list[str]:
    """The roles of the customers the pass passes over: one in 200 of all suppressed (as in
    bench/plan.py), the rest in turn without consent, not regular, or in New York."""
    suppressed = min(suppressed, count)
    rest = [role for role, _, _ in OTHERS if role != "suppressed"]
    return ["suppressed"] * suppressed + [rest[i % len(rest)] for i in range(count - suppressed)]


def _load_customers_and_orders(
    conn: Any, rng: random.Random, roles: list[str], store: _Store
) -> int:
    """A regular has 3–5 orders in the last 180 days; one who is not has 1–2 (and older ones)."""
    settings = {role: (consent, zone) for role, consent, zone in OTHERS}
    settings["audience"] = (True, None)
    buffers: dict[str, list[dict[str, Any]]] = {"customer": [], "orders": []}
    order_id = 0
    for cid, role in enumerate(roles, start=1):
        recent = rng.randint(1, 2) if role == "not a regular" else rng.randint(3, 5)
        placed = sorted(
            [DUE - timedelta(seconds=rng.randrange(3600, 175 * 86400)) for _ in range(recent)]
            + [DUE - timedelta(days=rng.randrange(200, 700)) for _ in range(rng.randint(0, 2))]
        )
        for at in placed:
            order_id += 1
            delivered: datetime | None = at + timedelta(hours=rng.randint(20, 120))
            if delivered is not None and delivered > DUE - timedelta(hours=1):
                delivered = None
            buffers["orders"].append({"id": order_id, "external_id": f"o{order_id}", "customer_id": cid,
                                      "placed_at": store.at(at), "delivered_at": store.at(delivered),
                                      "status": "delivered" if delivered else "placed",
                                      "total": rng.randrange(50_000, 900_000), "recorded_at": store.at(at)})  # fmt: skip
        consent, zone = settings[role]
        created = placed[0] - timedelta(days=rng.randint(0, 30))
        buffers["customer"].append({
            "id": cid, "external_id": f"c{cid}", "email": f"c{cid}@example.com", "name": f"Customer {cid}",
            "locale": "bn_BD" if cid % 3 else "en", "timezone": zone, "marketing_consent": consent,
            "created_at": store.at(created), "updated_at": store.at(created),
            "first_order_at": store.at(placed[0]), "last_order_at": store.at(placed[-1]),
            "orders_count": len(placed), "total_spent": 0,
        })  # fmt: skip
        if len(buffers["orders"]) >= CHUNK or len(buffers["customer"]) >= CHUNK:
            for name in ("customer", "orders"):  # parents first
                conn.execute(_raw(name).insert(), buffers[name])
                buffers[name] = []
    for name in ("customer", "orders"):
        if buffers[name]:
            conn.execute(_raw(name).insert(), buffers[name])
    return order_id


def _load_history(conn: Any, rng: random.Random, customers: int, store: _Store) -> int:
    """Sent newsletters 8–60 days back (dedupe and cap look-ups; none within the cap's week)."""
    total = customers // 2
    for start in range(0, total, CHUNK):
        rows = []
        for i in range(start, min(start + CHUNK, total)):
            at = store.at(DUE - timedelta(seconds=rng.randrange(8 * 86400, 60 * 86400)))
            rows.append({"dedupe_key": f"newsletter:{i}", "campaign": "newsletter", "kind": "marketing",
                         "customer_id": rng.randint(1, customers), "occurrence": str(i), "status": "sent",
                         "created_at": at, "send_after": at, "sent_at": at, "attempts": 1})  # fmt: skip
        conn.execute(_raw("message").insert(), rows)
    return total


# ---------------------------------------------------------------- the projects


def projects() -> tuple[Project, Project]:
    """The shipped project with only the holiday campaign enabled: without, and with a coupon."""
    shipped = load_project(ROOT / "config.yaml")
    config = shipped.config.model_copy(update={"campaigns": [CAMPAIGN]})
    plain = replace(shipped, config=config)
    campaign = shipped.campaigns[CAMPAIGN]
    assert campaign.coupon is None, "the shipped holiday campaign has a coupon of its own"
    with_coupon = campaign.model_copy(update={"coupon": CouponSpec.model_validate(COUPON)})
    return plain, replace(plain, campaigns={**shipped.campaigns, CAMPAIGN: with_coupon})


# ---------------------------------------------------------------- measuring


@dataclass
class Minting:
    """`mint_coupons` in one pass: its parts, in seconds, and its statements."""

    total: float = 0.0
    catch_up: float = 0.0  # the full pass's look for older messages without a coupon
    statements: int = 0  # every statement minting ran


class MintClock:
    """Times `mint_coupons` as the planner calls it, and its `_catch_up`.

    The planner's own reference to it is wrapped, and so is the step, so what
    is timed is the code the planner runs, nothing re-implemented here.
    """

    def __init__(self, engine: Engine):
        self.last = Minting()
        self._inside = False
        self._mint = minting.mint_coupons
        planner.mint_coupons = self._timed_mint
        minting._catch_up = self._timing(minting._catch_up, "catch_up")
        event.listen(engine, "before_cursor_execute", self._statement)

    def _statement(self, *_: Any) -> None:
        if self._inside:
            self.last.statements += 1

    def _timing(self, step: Callable[..., Any], part: str) -> Callable[..., Any]:
        def timed_step(*args: Any) -> Any:
            started = time.perf_counter()
            result = step(*args)
            setattr(self.last, part, getattr(self.last, part) + time.perf_counter() - started)
            return result

        return timed_step

    def _timed_mint(self, run: Any) -> int:
        self.last, self._inside = Minting(), True
        started = time.perf_counter()
        try:
            minted: int = self._mint(run)
        finally:
            self._inside = False
        self.last.total = time.perf_counter() - started
        return minted


def reset(engine: Engine) -> None:
    """Delete the campaign's messages, coupons, big-send records and checkpoints: the
    next pass is its first."""
    message, coupon, checkpoint = tables["message"], tables["coupon"], tables["checkpoint"]
    blast, issue = tables["blast"], tables["coupon_issue"]
    with engine.begin() as conn:
        conn.execute(delete(blast).where(blast.c.campaign == CAMPAIGN))
        conn.execute(delete(issue).where(issue.c.campaign == CAMPAIGN))
        conn.execute(delete(coupon).where(coupon.c.campaign == CAMPAIGN))
        conn.execute(delete(message).where(message.c.campaign == CAMPAIGN))
        names = [f"plan:{CAMPAIGN}", f"plan-full:{CAMPAIGN}"]
        conn.execute(delete(checkpoint).where(checkpoint.c.name.in_(names)))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if engine.dialect.name == "postgresql":  # the dead rows gone, the statistics as before
            conn.exec_driver_sql("VACUUM ANALYZE message, coupon, coupon_issue")
        else:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


@dataclass
class Check:
    messages: int
    coupons: int  # read back as the renderer reads them
    codes: int  # distinct codes among them
    without_coupon: int
    rows: int  # coupon rows stored (none: a coupon is derived until redeemed)
    issues: int  # coupon_issue rows of the campaign
    sample: str

    @property
    def one_each(self) -> bool:
        return self.messages == self.coupons == self.codes and not self.without_coupon and not self.rows  # fmt: skip


def check_coupons(engine: Engine) -> Check:
    """Read every message's coupon back as the renderer does: one each, every code distinct."""
    message, coupon, issue = tables["message"], tables["coupon"], tables["coupon_issue"]
    with Session(engine) as session:
        ids = session.execute(select(message.c.id).where(message.c.campaign == CAMPAIGN)).scalars().all()  # fmt: skip
        found: dict[int, Any] = {}
        for start in range(0, len(ids), 5000):
            found.update(message_coupons(session, ids[start : start + 5000]))
        rows = session.execute(select(func.count()).where(coupon.c.campaign == CAMPAIGN)).scalar_one()  # fmt: skip
        issues = session.execute(select(func.count()).where(issue.c.campaign == CAMPAIGN)).scalar_one()  # fmt: skip
    codes = {c.code for c in found.values()}
    without = sum(1 for i in ids if i not in found)
    return Check(len(ids), len(found), len(codes), without, rows, issues, min(codes, default="-"))


@dataclass
class Round:
    number: int
    queued: int = 0
    without: float = 0.0
    with_coupon: float = 0.0
    mint: Minting = field(default_factory=Minting)
    check: Check | None = None

    @property
    def added(self) -> float:
        return self.with_coupon / self.without - 1


def holiday_pass(engine: Engine, project: Project, label: str) -> tuple[float, int, int]:
    """The campaign's due pass, timed; (seconds, queued, coupons minted)."""
    seconds, report = timed(label, lambda: planner.plan(engine, project, DUE))
    result = report.campaigns[CAMPAIGN]
    if result.error:
        sys.exit(f"the holiday pass failed: {result.error}")
    skipped = (result.skipped_consent, result.skipped_suppressed, result.skipped_cap)
    print(f"    queued {result.queued:,}, coupons {result.coupons:,}; skipped (consent, suppressed, cap) {skipped}")  # fmt: skip
    return seconds, result.queued, result.coupons


def run_round(engine: Engine, clock: MintClock, plain: Project, coupon: Project, number: int) -> Round:  # fmt: skip
    """One pass without and one with the coupon, the order swapped every other round."""
    row = Round(number)
    order = [False, True] if number % 2 else [True, False]
    for with_coupon in order:
        reset(engine)
        if with_coupon:
            row.with_coupon, queued, minted = holiday_pass(engine, coupon, f"round {number}, with coupon")  # fmt: skip
            row.mint, row.check = clock.last, check_coupons(engine)
            m = row.mint
            print(f"    minting {m.total:.4f} s, of which the catch-up {m.catch_up:.4f} s "
                  f"({m.statements} statements)")  # fmt: skip
            c = row.check
            print(f"    coupons read back {c.coupons:,} for {c.messages:,} messages: {c.codes:,} distinct codes, "
                  f"{c.without_coupon:,} without one, {c.rows:,} coupon rows, {c.issues} issue row(s) "
                  f"({'one each' if c.one_each else 'NOT one each'}; e.g. {c.sample})", flush=True)  # fmt: skip
            if minted != queued:
                print(f"    MINTED {minted:,} FOR {queued:,} QUEUED", flush=True)
        else:
            row.without, queued, _ = holiday_pass(engine, plain, f"round {number}, without coupon")
        if row.queued and queued != row.queued:
            print(f"    QUEUED {queued:,}, THE OTHER PASS {row.queued:,}", flush=True)
        row.queued = queued
    return row


def codes_alone(engine: Engine, count: int) -> float:
    """The time to derive `count` codes from message ids, and nothing else (the
    renderer's share, one email at a time; the pass derives none)."""
    with Session(engine) as session:
        key = code_key(session)
    assert key is not None
    started = time.perf_counter()
    for message_id in range(1, count + 1):
        key.code(message_id, "EID")
    return time.perf_counter() - started


def report_rounds(rounds: list[Round], recipients: int, peak_mb: float, codes_s: float) -> None:
    print(f"\n{'round':>5} {'queued':>9} {'without':>9} {'with':>9} {'added':>8} {'minting':>8} "
          f"{'catch-up':>8}  one coupon each  target (added <= {TARGET:.0%})")  # fmt: skip
    for r in rounds:
        m, c = r.mint, r.check
        ok = "yes" if c is not None and c.one_each else "NO"
        print(f"{r.number:>5} {r.queued:9,} {r.without:8.3f}s {r.with_coupon:8.3f}s {r.added:+8.1%} "
              f"{m.total:7.4f}s {m.catch_up:7.4f}s  {ok:15}  "
              f"{'met' if r.added <= TARGET else 'MISSED'}")  # fmt: skip
    without = sum(r.without for r in rounds)
    with_coupon = sum(r.with_coupon for r in rounds)
    added = with_coupon / without - 1
    median = statistics.median(r.added for r in rounds)
    print(f"{'all':>5} {'':9} {without:8.3f}s {with_coupon:8.3f}s {added:+8.1%} "
          f"{sum(r.mint.total for r in rounds):7.3f}s  (median of the rounds {median:+.1%})  "
          f"{'met' if added <= TARGET else 'MISSED'}")  # fmt: skip
    print(f"codes alone: {recipients:,} derived in {codes_s:.3f} s ({codes_s / recipients * 1e6:.2f} µs each, at render time)")  # fmt: skip
    print(f"peak memory of the planning process: {peak_mb:.0f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000, help="emails the holiday pass queues")  # fmt: skip
    parser.add_argument("--customers", type=int, help="in all (default: recipients + 25 %%, the rest passed over)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="passes without and with a coupon, each")  # fmt: skip
    parser.add_argument("--url", help="an empty database (default: SQLite in a temp dir)")
    args = parser.parse_args()
    customers = max(args.customers or args.recipients * 5 // 4, args.recipients)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got: {args.rounds}")
    workdir = Path(tempfile.mkdtemp(prefix="lifecycle-bench-"))
    url = args.url or f"sqlite:///{workdir / 'bench.db'}"
    try:
        child = multiprocessing.get_context("spawn").Process(
            target=build, args=(url, args.recipients, customers)
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            sys.exit(f"building the shop failed (exit {child.exitcode})")
        plain, coupon = projects()
        engine = make_engine(url)
        clock = MintClock(engine)
        print("warming up (a pass without coupon, not counted)")
        reset(engine)
        holiday_pass(engine, plain, "warm-up pass")
        print(f"the holiday pass of {CAMPAIGN}, without and with coupon {COUPON}")
        rounds = [run_round(engine, clock, plain, coupon, n) for n in range(1, args.rounds + 1)]
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        codes_s = codes_alone(engine, args.recipients)
        report_rounds(rounds, args.recipients, peak_mb, codes_s)
        if any(r.queued != args.recipients for r in rounds):
            print(f"NOTE: a pass queued other than the {args.recipients:,} recipients built")
        engine.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
