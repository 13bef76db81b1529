"""Benchmark loyalty-tier recomputation on a big shop: 1,000,000 customers, ~3,000,000 orders.

    .venv/bin/python bench/tiers.py                         # SQLite in a temp dir
    .venv/bin/python bench/tiers.py --customers 100000      # a quick run
    .venv/bin/python bench/tiers.py --keep /var/tmp/tiers   # build the SQLite shop there once, reuse it
    .venv/bin/python bench/tiers.py --url postgresql://postgres@127.0.0.1:5432/bench_tiers  # an empty database

The target (rewards): tier recomputation at 1,000,000 customers takes at most
10 s on SQLite. `recompute_tiers` (engine/plan/tiers.py) is timed as the
planner runs it, in a transaction of its own, the commit included, on the shop
of bench/flows.py (1–5 orders per customer over two years, 3 % cancelled) with
the shipped tiers.yaml (silver: 2 orders in 365 days; gold: 10,000 spent in 365
days; diamond: 25,000) and config.yaml's referral grant (10 referrals:
diamond). The bench adds the referral rewards: one customer in 1,000 reached
10 referrals (diamond for good), one in 500 reached only 1 (no tier).

Four recomputations, each beside its floor:

1. **the program's first** (at `DUE`, no tier and no checkpoint before: it places
   every customer in a tier, direction `start`), once;
2. a **first from no tier** (at `DUE`, every customer in no tier but the program
   running: everyone in a tier moves up, the most rows written), `--rounds`
   times; before each (and before 1.) the customers are put back in no tier and
   the history deleted, not timed;
3. the **steady** one, `--steady` times, each `FULL_RESCAN` (15 minutes) after
   the one before (the planner's cadence): next to nothing to change, a few
   customers whose orders just left the window move down;
4. **30 days later** (orders leave the 365-day window: customers move down),
   `--rounds` times, the moves of that moment undone before each.

The floor is one plain SQL scan that groups the orders of the 365 days up to
the same moment by customer (their count and the sum of their totals, orders not
cancelled), the work any recomputation has to do; it is timed in the same
rounds, alternating with the recomputation (the order swapped each round, so a
drift of the shared machine weighs on both alike), and each recomputation is
given as a ratio to it. Inside a recomputation every statement is timed: the
INSERT … SELECT into `tier_change`, the count of the moves, the UPDATE of the
customers who moved; "rest" is the checkpoint and the commit.

After the first ones and the 30-days-later one every customer's tier in
the store is compared with the tier worked out in Python from the same rows (the
orders read one by one, the rules of tiers.yaml read as counts and sums over a
window, the referral grants): the counts per tier are printed beside each other,
and the bench exits non-zero if a single customer differs. The shop is built in a
child process by `bench/flows.py`'s `build` (a few minutes at 1,000,000): with
`--keep DIR` into a SQLite file there, kept and reused by the next run with the
same `--customers`; with `--url`, a database that already holds the shop is
reused. The bench puts the tiers back where it needs them before it measures.
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import delete, event, func, select, update
from sqlalchemy.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flows import DUE, Statement, _Store, bench_project, build, explain, timed  # noqa: E402

from engine.plan.campaignpass import FULL_RESCAN  # noqa: E402
from engine.plan.tiers import CHECKPOINT, TierResult, recompute_tiers  # noqa: E402
from engine.project.loader import Project  # noqa: E402
from engine.store.db import make_engine  # noqa: E402
from engine.store.models import Checkpoint, Customer, ReferralReward, TierChange  # noqa: E402

LATER = DUE + timedelta(days=30)
TARGET = 10.0
MINOR_UNITS = 100  # paisa in a taka: `Money` stores integer minor units
GRANTED_EVERY, REFERRED_EVERY = 1_000, 500  # one customer in 1,000 reached 10 referrals

customer = Customer.__table__  # type: ignore[attr-defined]
tier_change = TierChange.__table__  # type: ignore[attr-defined]
referral_reward = ReferralReward.__table__  # type: ignore[attr-defined]
checkpoint = Checkpoint.__table__  # type: ignore[attr-defined]

# No order of the shop is placed after the moments measured, so the window needs no upper
# end here; written out (`placed_at <= ?`), it makes SQLite, which has no histograms, take
# ix_orders_placed_at and sort the rows for the GROUP BY: 4–5x slower (bench/README.md).
FLOOR = """
SELECT count(*), sum(n), sum(spent) FROM (
    SELECT customer_id, count(*) AS n, sum(total) AS spent FROM orders
    WHERE placed_at >= {since} AND status != {cancelled}
    GROUP BY customer_id
) AS per_customer
"""


# ---------------------------------------------------------------- the shop


def prepare_shop(url: str, customers: int, reuse: bool) -> None:
    """Build the shop in a child process, unless `reuse` and it is there already."""
    if reuse and _customers_in(url) is not None:
        found = _customers_in(url)
        if found != customers:
            sys.exit(f"the database holds {found:,} customers, not --customers {customers:,}")
        print(f"reusing the shop already in the database ({found:,} customers)", flush=True)
        return
    child = multiprocessing.get_context("spawn").Process(target=build, args=(url, customers))
    child.start()
    child.join()
    if child.exitcode != 0:
        sys.exit(f"building the shop failed (exit {child.exitcode})")


def _customers_in(url: str) -> int | None:
    """How many customers the database holds; None when it has no schema yet."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if not engine.dialect.has_table(conn, "customer"):
                return None
            return int(conn.execute(select(func.count()).select_from(customer)).scalar_one())
    finally:
        engine.dispose()


def add_referral_rewards(engine: Engine, customers: int) -> int:
    """One customer in 1,000 with the 10-referral reward (a diamond grant), one in 500 with
    the 1-referral one (no tier); kept when the shop is reused."""
    store = _Store(engine.dialect.name == "postgresql")
    at = store.at(DUE - timedelta(days=40))
    rows = [{"customer_id": cid, "threshold": 10, "at": at} for cid in range(7, customers + 1, GRANTED_EVERY)]  # fmt: skip
    rows += [{"customer_id": cid, "threshold": 1, "at": at} for cid in range(3, customers + 1, REFERRED_EVERY)]  # fmt: skip
    with engine.begin() as conn:
        if conn.execute(select(func.count()).select_from(referral_reward)).scalar_one() == 0:
            conn.exec_driver_sql(
                "INSERT INTO referral_reward (customer_id, threshold, at) VALUES (%s, %s, %s)"
                if store.pg
                else "INSERT INTO referral_reward (customer_id, threshold, at) VALUES (?, ?, ?)",
                [(r["customer_id"], r["threshold"], r["at"]) for r in rows],
            )
        granted: int = conn.execute(
            select(func.count()).where(referral_reward.c.threshold == 10)
        ).scalar_one()
    return granted


def no_tiers(engine: Engine, *, first_ever: bool) -> None:
    """Every customer in no tier and no history; with `first_ever` no checkpoint either, so
    the next recomputation is the program's first (it places customers: `start`), otherwise
    one after it (everyone in a tier moves up)."""
    with engine.begin() as conn:
        conn.execute(
            update(customer).where(customer.c.tier.is_not(None)).values(tier=None, tier_since=None)
        )
        conn.execute(delete(tier_change))
        if first_ever:
            conn.execute(delete(checkpoint).where(checkpoint.c.name == CHECKPOINT))
    _settle(engine)


def undo(engine: Engine, at: datetime) -> None:
    """Take back the moves of the recomputation at `at`: each customer back where it came from."""
    mine = tier_change.c.at == at
    earlier = tier_change.alias("earlier")
    with engine.begin() as conn:
        came_from = (
            select(tier_change.c.from_tier)
            .where(tier_change.c.customer_id == customer.c.id, mine)
            .scalar_subquery()
        )
        since = (
            select(func.max(earlier.c.at))
            .where(earlier.c.customer_id == customer.c.id, earlier.c.at < at)
            .scalar_subquery()
        )
        moved = select(tier_change.c.customer_id).where(mine)
        conn.execute(
            update(customer)
            .where(customer.c.id.in_(moved))
            .values(tier=came_from, tier_since=since)
        )
        conn.execute(delete(tier_change).where(mine))
    _settle(engine)


def _settle(engine: Engine) -> None:
    """The dead rows gone and the statistics fresh (PostgreSQL); the WAL folded in (SQLite)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("VACUUM ANALYZE customer, tier_change")
        else:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


# ---------------------------------------------------------------- measuring


class StatementLog:
    """Every statement run while `on`, with its seconds."""

    def __init__(self, engine: Engine):
        self.on = False
        self.statements: list[Statement] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def start(self) -> None:
        self.on, self.statements = True, []

    def _before(self, conn: Any, cursor: Any, sql: str, *_: Any) -> None:
        conn.info["bench_started"] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, sql: str, parameters: Any, *_: Any) -> None:
        started = conn.info.pop("bench_started", None)
        if self.on and started is not None:
            self.statements.append(Statement(time.perf_counter() - started, sql, parameters))


@dataclass
class Run:
    """One recomputation: its seconds, in parts, and what it moved."""

    seconds: float
    result: TierResult
    insert: float = 0.0  # INSERT … SELECT INTO tier_change
    counts: float = 0.0  # the moves counted by direction
    update: float = 0.0  # UPDATE customer
    statements: int = 0

    @property
    def rest(self) -> float:
        return self.seconds - self.insert - self.counts - self.update


@dataclass
class Kind:
    """One kind of recomputation, over its rounds, with the floor beside it."""

    label: str
    runs: list[Run] = field(default_factory=list)
    floors: list[float] = field(default_factory=list)
    slowest: Statement | None = None
    floor_sql: tuple[str, Any] | None = None


def recompute(engine: Engine, log: StatementLog, project: Project, now: datetime, label: str) -> Run:  # fmt: skip
    """`recompute_tiers` in its own transaction, timed with its commit, and each statement."""

    def run() -> TierResult:
        with engine.begin() as conn:
            return recompute_tiers(conn, project, now, force=True)

    log.start()
    seconds, result = timed(label, run)
    log.on = False
    row = Run(seconds, result, statements=len(log.statements))
    for statement in log.statements:
        head = " ".join(statement.sql.split()[:3]).upper()
        if head.startswith("INSERT INTO TIER_CHANGE"):
            row.insert += statement.seconds
        elif head.startswith("UPDATE CUSTOMER"):
            row.update += statement.seconds
        elif "tier_change.direction" in statement.sql and "count(" in statement.sql:
            row.counts += statement.seconds
    moved = result.as_dict()
    print(f"    {moved['up']:,} up, {moved['down']:,} down, {moved.get('start', 0):,} placed at the start; "
          f"INSERT {row.insert:.3f} s, "
          f"counts {row.counts:.3f} s, UPDATE {row.update:.3f} s, rest {row.rest:.3f} s "
          f"({row.statements} statements)", flush=True)  # fmt: skip
    if not result.ran:
        sys.exit(f"the recomputation at {now.isoformat()} did not run")
    return row


def floor(engine: Engine, now: datetime, label: str) -> tuple[float, tuple[str, Any]]:
    """One plain scan: the orders of the 365 days before `now`, grouped by customer."""
    store = _Store(engine.dialect.name == "postgresql")
    mark = "%s" if store.pg else "?"
    sql = FLOOR.format(since=mark, cancelled=mark)
    parameters = (store.at(now - timedelta(days=365)), "cancelled")

    def run() -> Any:
        with engine.connect() as conn:
            return conn.exec_driver_sql(sql, parameters).one()

    seconds, (buyers, orders, spent) = timed(label, run)
    print(f"    {buyers:,} customers with {orders:,} orders in the window, {spent or 0:,} paisa")
    return seconds, (sql, parameters)


def measure(
    engine: Engine, log: StatementLog, project: Project, kind: Kind,
    moments: list[datetime], before: Callable[[], None] | None,
) -> None:  # fmt: skip
    """A recomputation and the floor at each moment, alternating, the order swapped each round."""
    for number, now in enumerate(moments, start=1):
        if before is not None:
            before()
        first_floor = number % 2 == 0
        for part in ("floor", "recompute") if first_floor else ("recompute", "floor"):
            label = f"{kind.label}, round {number}"
            if part == "floor":
                seconds, kind.floor_sql = floor(engine, now, f"{label}: floor")
                kind.floors.append(seconds)
            else:
                kind.runs.append(recompute(engine, log, project, now, f"{label}: recompute"))
                slowest = max(log.statements, key=lambda s: s.seconds, default=None)
                if slowest and (kind.slowest is None or slowest.seconds > kind.slowest.seconds):
                    kind.slowest = slowest


# ---------------------------------------------------------------- checking


_UNITS = {"d": timedelta(days=1), "h": timedelta(hours=1), "w": timedelta(weeks=1)}


class Unchecked(Exception):
    """A rule this check does not read (only counts and sums over a window)."""


def _window(text_: str) -> timedelta:
    found = re.fullmatch(r"(\d+)([dhw])", str(text_).strip())
    if not found:
        raise Unchecked(f"a window {text_!r}")
    return int(found.group(1)) * _UNITS[found.group(2)]


def _meets(rule: dict[str, Any], figures: dict[str, tuple[int, int]]) -> bool:
    """`figures`: window → (orders, paisa spent) of one customer."""
    met = True
    for key, options in rule.items():
        if key not in ("orders", "spent") or "within" not in options:
            raise Unchecked(f"the condition {key}: {options!r}")
        orders, paisa = figures.get(options["within"], (0, 0))
        if key == "orders":
            value, low, high = orders, options.get("at_least"), options.get("at_most")
        else:
            value = paisa
            low, high = (
                None if options.get(b) is None else Decimal(str(options[b])) * MINOR_UNITS
                for b in ("at_least", "at_most")
            )
        met = met and (low is None or value >= low) and (high is None or value <= high)
    return met


def python_tiers(engine: Engine, project: Project, now: datetime) -> dict[int, str]:
    """Every customer's tier, worked out in Python from the rows: the orders one by one."""
    assert project.tiers is not None
    tiers = project.tiers.tiers
    figures = _windowed(engine, tiers, now)
    granted = _granted(engine, project)
    out: dict[int, str] = {}
    for customer_id in figures.keys() | granted.keys():
        own = {w: (n, s) for w, (n, s) in figures.get(customer_id, {}).items()}
        best = max((i for i, t in enumerate(tiers) if _meets(t.rule, own)), default=-1)
        best = max(best, granted.get(customer_id, -1))
        if best >= 0:
            out[customer_id] = tiers[best].id
    return out


def _windowed(engine: Engine, tiers: list[Any], now: datetime) -> dict[int, dict[str, list[int]]]:
    """customer → window of a rule → [orders, paisa spent], orders not cancelled."""
    windows = {o["within"] for t in tiers for o in t.rule.values() if isinstance(o, dict) and "within" in o}  # fmt: skip
    starts = {w: (now - _window(w)).replace(tzinfo=None) for w in windows}
    end = now.replace(tzinfo=None)
    figures: dict[int, dict[str, list[int]]] = {}
    pg = engine.dialect.name == "postgresql"
    with engine.connect().execution_options(stream_results=True, yield_per=50_000) as conn:
        rows = conn.exec_driver_sql("SELECT customer_id, placed_at, status, total FROM orders")
        for customer_id, placed_at, status, total in rows:
            if status == "cancelled":
                continue
            placed = placed_at if pg else datetime.fromisoformat(placed_at)
            for window, start in starts.items():
                if start <= placed <= end:
                    counted = figures.setdefault(customer_id, {}).setdefault(window, [0, 0])
                    counted[0] += 1
                    counted[1] += int(total)
    return figures


def _granted(engine: Engine, project: Project) -> dict[int, int]:
    """customer → the index of the highest tier a referral reward granted them."""
    assert project.tiers is not None
    rank = {t.id: i for i, t in enumerate(project.tiers.tiers)}
    with engine.connect() as conn:
        reached = conn.exec_driver_sql("SELECT customer_id, threshold FROM referral_reward").all()
    granted: dict[int, int] = {}
    for reward in project.config.referrals.rewards:
        if reward.tier is None:
            continue
        for customer_id, threshold in reached:
            if threshold == reward.at:
                granted[customer_id] = max(granted.get(customer_id, -1), rank[reward.tier])
    return granted


def check(engine: Engine, project: Project, now: datetime, label: str) -> bool:
    """The store's tier of every customer against Python's; prints both counts per tier."""
    started = time.perf_counter()
    try:
        expected = python_tiers(engine, project, now)
    except Unchecked as exc:
        print(f"  check {label}: not checked, tiers.yaml has {exc} (counts and sums over a window only)")  # fmt: skip
        return True
    with engine.connect() as conn:
        stored = {cid: tier for cid, tier in conn.execute(select(customer.c.id, customer.c.tier))}
    wrong = [cid for cid in stored if stored[cid] != expected.get(cid)]
    wrong += [cid for cid in expected if cid not in stored]
    in_store, in_python = Counter(stored.values()), Counter(expected.get(cid) for cid in stored)
    names = [None] + [t.id for t in project.tiers.tiers] if project.tiers else [None]
    counts = ", ".join(f"{n or 'none'} {in_store[n]:,}/{in_python[n]:,}" for n in names)
    verdict = "the same" if not wrong else f"{len(wrong):,} DIFFER"
    print(f"  check {label}: customers per tier, store/Python: {counts}; "
          f"every customer compared: {verdict} ({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
    for cid in wrong[:5]:
        print(f"    customer {cid}: store {stored.get(cid)!r}, Python {expected.get(cid)!r}")
    return not wrong


# ---------------------------------------------------------------- the report


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.3f}s [{min(values):.3f}–{max(values):.3f}]"


def _counts(values: list[int]) -> str:
    """The distinct counts of the rounds: 0, or 3/4/5."""
    return "/".join(f"{v:,}" for v in values)


def report(kinds: list[Kind]) -> None:
    print(f"\n{'recomputation':24} {'n':>2} {'median [min–max]':>25} {'up':>9} {'down':>9} {'start':>9} "
          f"{'INSERT':>8} {'counts':>7} {'UPDATE':>8} {'rest':>7} {'floor median [min–max]':>25} "
          f"{'ratio':>6}  target (<= {TARGET:g} s)")  # fmt: skip
    for kind in kinds:
        runs = kind.runs
        seconds = [r.seconds for r in runs]
        median = statistics.median(seconds)
        moved = {d: sorted({r.result.as_dict().get(d, 0) for r in runs}) for d in ("up", "down", "start")}  # fmt: skip
        print(f"{kind.label:24} {len(runs):>2} {_spread(seconds):>25} "
              f"{_counts(moved['up']):>9} {_counts(moved['down']):>9} {_counts(moved['start']):>9} "
              f"{statistics.median(r.insert for r in runs):7.3f}s "
              f"{statistics.median(r.counts for r in runs):6.3f}s "
              f"{statistics.median(r.update for r in runs):7.3f}s "
              f"{statistics.median(r.rest for r in runs):6.3f}s "
              f"{_spread(kind.floors):>25} {median / statistics.median(kind.floors):5.1f}x  "
              f"{'met' if median <= TARGET else 'MISSED'}")  # fmt: skip
    print("(ratio: median recomputation / median floor)")


def show_plans(engine: Engine, kinds: list[Kind]) -> None:
    for kind in kinds:
        if kind.slowest is not None:
            s = kind.slowest
            print(f"\n---- {kind.label}: its slowest statement ({s.seconds:.3f} s)\n{s.sql}\n"
                  f"-- parameters: {s.parameters!r}")  # fmt: skip
            try:
                print(f"-- plan:\n{explain(engine, s)}", flush=True)
            except Exception as exc:  # the figures above still stand
                print(f"-- no plan: {type(exc).__name__}: {exc}", flush=True)
    last = kinds[-1].floor_sql
    if last is not None:
        print(f"\n---- the floor\n{last[0]}\n-- parameters: {last[1]!r}")
        print(f"-- plan:\n{explain(engine, Statement(0.0, *last))}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="first and 30-days-later recomputations, each")  # fmt: skip
    parser.add_argument("--steady", type=int, default=7, help="steady recomputations, 15 minutes apart")  # fmt: skip
    parser.add_argument("--url", help="a database: empty, or holding this bench's shop of --customers (reused)")  # fmt: skip
    parser.add_argument("--keep", type=Path, help="SQLite: build the shop in this folder and keep it; reuse it if there")  # fmt: skip
    parser.add_argument("--explain", action="store_true", help="show the plans of the slowest statements and the floor")  # fmt: skip
    args = parser.parse_args()
    if args.rounds < 1 or args.steady < 1:
        parser.error("--rounds and --steady must be at least 1")
    if args.url and args.keep:
        parser.error("--keep is for SQLite; with --url the database itself is kept")
    workdir = Path(tempfile.mkdtemp(prefix="lifecycle-bench-"))
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    folder = args.keep or workdir
    url = args.url or f"sqlite:///{folder / f'tiers-{args.customers}.db'}"
    try:
        prepare_shop(url, args.customers, reuse=bool(args.url or args.keep))
        project, _ = bench_project()
        engine = make_engine(url)
        granted = add_referral_rewards(engine, args.customers)
        print(f"{granted:,} customers with a diamond grant (10 referrals)", flush=True)
        log = StatementLog(engine)
        kinds = [Kind("the program's first"), Kind("first (from no tier)"),
                 Kind("steady (15 min after)"), Kind("30 days later")]  # fmt: skip
        ok = True
        first_ever = partial(no_tiers, engine, first_ever=True)
        measure(engine, log, project, kinds[0], [DUE], first_ever)
        ok = check(engine, project, DUE, "at DUE, the program's first") and ok
        again = partial(no_tiers, engine, first_ever=False)
        measure(engine, log, project, kinds[1], [DUE] * args.rounds, again)
        ok = check(engine, project, DUE, "at DUE") and ok
        steady = [DUE + n * FULL_RESCAN for n in range(1, args.steady + 1)]
        measure(engine, log, project, kinds[2], steady, None)
        measure(engine, log, project, kinds[3], [LATER] * args.rounds, partial(undo, engine, LATER))
        ok = check(engine, project, LATER, "30 days later") and ok
        report(kinds)
        if args.explain:
            show_plans(engine, kinds)
        engine.dispose()
        if not ok:
            sys.exit("the tiers in the store differ from those worked out in Python")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
