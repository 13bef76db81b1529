"""Bounce processing: reports read from a Maildir, parsed and applied per second,
beside a plain parse of the same files.

The shop: `--reports` customers with one sent email each, in a fresh SQLite file (or a
fresh PostgreSQL schema with `--postgres`). The mailbox: one report per email, made
from the fixtures in tests/fixtures/bounces (every format: RFC 3464 from Postfix,
Gmail and Exchange, Exim's and Yahoo's text, RFC 5965 and JMRP complaints,
auto-replies, a malformed report), each addressed to its email's own VERP address,
so every one names a real message; one in 20 carries a forged token instead.

Timed, in this one process and run: `read_maildir` over the whole Maildir (read each
file, parse it, check its token, record the event and any suppression, commit, move
it to Processed or Unmatched: what `lifecycle bounces` does), and beside it a plain
`email.message_from_bytes` of the same files, the floor for reading them at all.
The target: at least 500 reports a second.

    .venv/bin/python bench/bounces.py                    # 10,000 reports, SQLite
    .venv/bin/python bench/bounces.py --reports 2000
    .venv/bin/python bench/bounces.py --postgres postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import email
import json
import mailbox
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, insert, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.deliver import Signer  # noqa: E402
from engine.feedback import Processor, VerpPattern, read_maildir  # noqa: E402
from engine.project import Bounces  # noqa: E402
from engine.store import Customer, Message, MessageEvent, Suppression  # noqa: E402
from engine.store.db import make_engine, upgrade  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "bounces"
BOUNCE = "bounce@bounces.example.com"
SECRET = "bench-bounces-secret-0123456789"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
TARGET = 500  # reports a second
FORGED_EVERY = 20


def shop(url: str, count: int) -> list[tuple[int, str]]:
    """`count` customers with one sent email each; (message id, address) of each."""
    engine = make_engine(url)
    upgrade(engine)
    customers = [
        {
            "external_id": f"c{n}", "email": f"customer{n}@example.com", "name": f"Customer {n}",
            "locale": "en", "marketing_consent": True, "created_at": NOW, "updated_at": NOW,
            "orders_count": 0, "total_spent": 0,
        }
        for n in range(count)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(Customer.__table__), customers)  # type: ignore[attr-defined]
        ids = dict(conn.execute(select(Customer.external_id, Customer.id)).all())  # type: ignore[call-overload]
        conn.execute(
            insert(Message.__table__),  # type: ignore[attr-defined]
            [
                {
                    "dedupe_key": f"newsletter:{ids[f'c{n}']}:1", "campaign": "newsletter",
                    "kind": "marketing", "customer_id": ids[f"c{n}"], "occurrence": "1",
                    "status": "sent", "created_at": NOW, "send_after": NOW, "sent_at": NOW,
                    "attempts": 1,
                }
                for n in range(count)
            ],
        )  # fmt: skip
        rows = conn.execute(
            select(Message.id, Customer.email).join(Customer, Customer.id == Message.customer_id)  # type: ignore[arg-type]
        ).all()
    engine.dispose()
    return [(int(mid), str(address)) for mid, address in rows]


def fill_maildir(path: Path, messages: list[tuple[int, str]], signer: Signer) -> Counter[str]:
    """One report per message, the fixtures in turn; what kinds they are."""
    cases = json.loads((FIXTURES / "cases.json").read_text("utf-8"))
    raws = [((FIXTURES / c["file"]).read_text("utf-8"), c["expect"]["kind"]) for c in cases]
    box = mailbox.Maildir(path, create=True)
    kinds: Counter[str] = Counter()
    for n, (message_id, address) in enumerate(messages):
        raw, kind = raws[n % len(raws)]
        token = signer.bounce_token(message_id)
        if n % FORGED_EVERY == FORGED_EVERY - 1:
            token = f"{message_id}-aaaaaaaaaaaaaaaa"
            kind = "forged" if kind in ("bounce", "complaint") else kind
        data = (
            raw.replace("@@VERP@@", f"bounce+{token}@bounces.example.com")
            .replace("@@RCPT@@", address)
            .replace("@@MSGID@@", f"<{message_id}.bench@shop.example>")
            .replace("@@FROM@@", "hello@shop.example")
        )
        box.add(data.encode("utf-8"))
        kinds[kind] += 1
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reports", type=int, default=10_000)
    parser.add_argument("--postgres", help="a PostgreSQL URL (a fresh schema, dropped after)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-bounces-"))
    schema = None
    try:
        if args.postgres:
            schema = f"bench_bounces_{uuid.uuid4().hex[:8]}"
            admin = make_engine(args.postgres)
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            admin.dispose()
            sep = "&" if "?" in args.postgres else "?"
            url = f"{args.postgres}{sep}options=-csearch_path%3D{schema}"
        else:
            url = f"sqlite:///{folder / 'bench.db'}"
        messages = shop(url, args.reports)
        signer = Signer(SECRET)
        maildir = folder / "Maildir"
        kinds = fill_maildir(maildir, messages, signer)
        print(
            f"{args.reports:,} reports in {maildir}: "
            + ", ".join(f"{n:,} {k}" for k, n in sorted(kinds.items()))
        )

        files = [p for p in (maildir / "new").iterdir()]
        started, cpu = time.perf_counter(), time.process_time()
        for path in files:
            email.message_from_bytes(path.read_bytes())
        floor_wall, floor_cpu = time.perf_counter() - started, time.process_time() - cpu

        engine = make_engine(url)
        processor = Processor(engine, signer, VerpPattern(BOUNCE), Bounces(), lambda: NOW)
        started, cpu = time.perf_counter(), time.process_time()
        runs = [read_maildir(processor, maildir)]  # at most bounces.max_per_run a run
        while runs[-1].read:
            runs.append(read_maildir(processor, maildir))
        wall, used = time.perf_counter() - started, time.process_time() - cpu
        tally = runs[0]
        for more in runs[1:]:
            tally.suppressed += more.suppressed
            for name, count in more.counts.items():
                tally.counts[name] = tally.counts.get(name, 0) + count
        with engine.connect() as conn:
            events = conn.execute(select(func.count()).select_from(MessageEvent)).scalar_one()
            suppressed = conn.execute(select(func.count()).select_from(Suppression)).scalar_one()
        engine.dispose()
        box = mailbox.Maildir(maildir, create=False)
        left = len(box)
        moved = len(box.get_folder("Processed")) + len(box.get_folder("Unmatched"))

        print(
            f"read_maildir, {len(runs)} runs of at most {Bounces().max_per_run:,}: {tally.summary()}"
        )
        print(
            f"  {events:,} events recorded, {suppressed:,} addresses suppressed, {left} left in INBOX, {moved:,} moved aside"
        )
        rate = tally.read / wall
        print()
        print(f"{'':38}{'wall s':>9}{'cpu s':>9}{'reports/s':>11}")
        print(
            f"{'plain email parse (the floor)':38}{floor_wall:9.2f}{floor_cpu:9.2f}{len(files) / floor_wall:11,.0f}"
        )
        print(f"{'read_maildir (parse, apply, move)':38}{wall:9.2f}{used:9.2f}{rate:11,.0f}")
        print(f"{'ratio to the floor':38}{wall / floor_wall:9.1f}x")
        print(
            f"target >= {TARGET}/s: {'met' if rate >= TARGET else 'MISSED'}; load average {os.getloadavg()[0]:.1f}"
        )
        if left or moved != tally.read or tally.read != args.reports:
            sys.exit("not every report was read and moved once")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if schema:
            admin = make_engine(args.postgres)
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


if __name__ == "__main__":
    main()
