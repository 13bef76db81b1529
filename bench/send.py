"""Sending throughput: the engine's path against aiosmtplib's own limit and the naive path.

Measured in one run, against the same cheap sink (bench/sink_counter.py) in its
own process, all on 127.0.0.1:

(a) engine: N queued welcome messages (real rows in a SQLite file, queued by the
    real planner) → dispatcher → real Composer → SmtpMailer pool → sink.
(b) client limit: aiosmtplib `sendmail(bytes)` of the engine's own prebuilt
    messages over the same number of reused connections.
(b2) the engine's own `SmtpMailer` sending those same prebuilt bytes. It
    skips work `sendmail` does for every message (address parsing, two
    regular-expression passes over the data), so it is faster than (b); a/b2
    is the share of the mailer's own rate the whole engine path keeps.
(c) naive: Jinja render + premailer per email + `email.message.EmailMessage` +
    one connection, on a subset.

    .venv/bin/python bench/send.py [--messages 20000] [--naive 1000] [--connections 16]

Prints the figures, the ratios and the peak memory of this process; the sink
is asked to stop at the end and exits by itself after 15 minutes regardless.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
from sqlalchemy import insert, select, update
from sqlmodel import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.deliver.compose import Composer  # noqa: E402
from engine.deliver.composepool import compose_in_worker, start_compose_pool  # noqa: E402
from engine.deliver.dispatcher import dispatch  # noqa: E402
from engine.deliver.mailer import SendResult, SmtpMailer  # noqa: E402
from engine.plan.planner import plan  # noqa: E402
from engine.project.loader import Secrets, load_project  # noqa: E402
from engine.render.context import load_contexts  # noqa: E402
from engine.render.inlining import inline_css  # noqa: E402
from engine.render.renderer import Renderer  # noqa: E402
from engine.store.db import make_engine, upgrade  # noqa: E402
from engine.store.models import Customer, Message, MessageStatus, Order, OrderItem, Product  # noqa: E402

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)  # noon in Dhaka: inside the send window
SECRETS = Secrets(secret="benchmark-secret-0123456789abcdef")
TIME_CAP = 300.0  # seconds per measurement, whatever the count


CPU: dict[str, tuple[float, float]] = {}  # variant → (this process, composer processes) seconds


def pool_cpu(pool: object) -> float:
    """CPU seconds used so far by the processes of a ProcessPoolExecutor."""
    total = 0.0
    for pid in getattr(pool, "_processes", None) or {}:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start_sink() -> tuple[subprocess.Popen[str], int]:
    sink = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "sink_counter.py"), "--max-seconds", "900"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout is not None
    return sink, int(sink.stdout.readline())


async def sink_count(port: int, stop: bool = False) -> int:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname="bench.local")
    await client.connect()
    reply = await client.execute_command(b"XCOUNT")
    if stop:
        await client.execute_command(b"XSTOP")
    client.close()
    return int(reply.message)


def fill_store(url: str, count: int) -> None:
    """`count` customers, each with a first order 30 minutes before NOW."""
    engine = make_engine(url)
    upgrade(engine)
    placed = NOW - timedelta(minutes=30)
    with engine.begin() as conn:
        product = conn.execute(
            insert(Product.__table__).returning(Product.__table__.c.id),
            {
                "sku": "JUTE-BAG-01",
                "name": "Jute bag",
                "price": 350,
                "stock": 40,
                "updated_at": NOW,
            },
        ).scalar_one()
        for start in range(0, count, 5000):
            ids = range(start + 1, min(count, start + 5000) + 1)
            conn.execute(
                insert(Customer.__table__),
                [
                    {
                        "id": i,
                        "external_id": f"c{i}",
                        "email": f"customer{i}@example.com",
                        "name": f"Nusrat Jahan {i}",
                        "locale": "bn_BD" if i % 2 else "en",
                        "timezone": "Asia/Dhaka",
                        "marketing_consent": True,
                        "consent_at": NOW - timedelta(days=1),
                        "created_at": placed,
                        "updated_at": placed,
                        "first_order_at": placed,
                        "last_order_at": placed,
                        "orders_count": 1,
                        "total_spent": 700,
                    }
                    for i in ids
                ],
            )
            conn.execute(
                insert(Order.__table__),
                [
                    {
                        "id": i,
                        "external_id": f"o{i}",
                        "customer_id": i,
                        "placed_at": placed,
                        "status": "placed",
                        "total": 700,
                    }
                    for i in ids
                ],
            )
            conn.execute(
                insert(OrderItem.__table__),
                [
                    {"order_id": i, "product_id": product, "quantity": 2, "unit_price": 350}
                    for i in ids
                ],
            )
    engine.dispose()


class Keeping(SmtpMailer):
    """The real mailer, also keeping a sample of what it sends for (b) and (c)."""

    sample: list[tuple[str, str, bytes]]

    async def send(self, sender: str, recipient: str, data: bytes) -> SendResult:
        if len(self.sample) < 200:
            self.sample.append((sender, recipient, data))
        return await super().send(sender, recipient, data)


async def engine_path(url: str, project, count: int, processes: int) -> tuple[float, int, list]:  # type: ignore[no-untyped-def]
    """Queue `count` welcomes with the planner, then time one dispatch of them all."""
    engine = make_engine(url)
    queued = plan(engine, project, NOW)
    if queued.campaigns["welcome"].queued == 0:  # planned by the run before: queue them again
        with engine.begin() as conn:
            conn.execute(
                update(Message.__table__).values(
                    status=MessageStatus.QUEUED, attempts=0, sent_at=None, message_id=None,
                    smtp_code=None, lease_owner=None, lease_until=None,
                )
            )  # fmt: skip
    else:
        assert queued.campaigns["welcome"].queued == count, queued.as_dict()
    composer = Composer(project, SECRETS)
    pool = start_compose_pool(engine, project, SECRETS, processes) if processes else None
    with Session(engine) as session:  # compile the templates before timing
        first = session.scalars(select(Message).limit(1)).all()
        composer.prepare(session, first, now=NOW)
        if pool is not None:
            for _ in range(processes):
                await asyncio.get_running_loop().run_in_executor(
                    pool, compose_in_worker, [first[0].id], NOW
                )
    mailer = Keeping(project.config.sending)
    mailer.sample = []
    workers_before = pool_cpu(pool)
    cpu = time.process_time()
    started = time.perf_counter()
    report = await dispatch(
        engine, project, SECRETS, mailer, NOW, composer=composer, worker_id="bench",
        compose_pool=pool,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    CPU["a" if processes else "a1"] = (time.process_time() - cpu, pool_cpu(pool) - workers_before)
    await mailer.close()
    if pool is not None:
        pool.shutdown()
    with engine.connect() as conn:
        sent = conn.execute(
            select(Message.__table__.c.id).where(Message.__table__.c.status == MessageStatus.SENT)
        ).all()
    engine.dispose()
    assert report.counts.get("sent") == len(sent) == count, report.as_dict()
    return seconds, len(sent), mailer.sample


async def client_limit(port: int, sample: list, count: int, connections: int) -> tuple[float, int]:  # type: ignore[type-arg]
    clients = [
        aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname="bench.local")
        for _ in range(connections)
    ]
    await asyncio.gather(*(c.connect() for c in clients))
    sent = 0
    deadline = time.perf_counter() + TIME_CAP

    async def worker(client: aiosmtplib.SMTP) -> None:
        nonlocal sent
        while sent < count and time.perf_counter() < deadline:
            sender, recipient, data = sample[sent % len(sample)]
            sent += 1
            await client.sendmail(sender, [recipient], data)

    cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in clients))
    seconds = time.perf_counter() - started
    CPU["b"] = (time.process_time() - cpu, 0.0)
    await asyncio.gather(*(c.quit() for c in clients))
    return seconds, sent


async def mailer_limit(project, sample: list, count: int) -> tuple[float, int]:  # type: ignore[no-untyped-def,type-arg]
    """(b2): the engine's own SmtpMailer sending the prebuilt bytes, nothing else."""
    mailer = SmtpMailer(project.config.sending)
    sent = 0
    deadline = time.perf_counter() + TIME_CAP

    async def worker() -> None:
        nonlocal sent
        while sent < count and time.perf_counter() < deadline:
            sender, recipient, data = sample[sent % len(sample)]
            sent += 1
            result = await mailer.send(sender, recipient, data)
            assert result.outcome == "sent", result

    await mailer.send(*sample[0])  # open the connections before timing
    await asyncio.gather(*(mailer.send(*sample[0]) for _ in range(mailer.concurrency)))
    cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(mailer.concurrency)))
    seconds = time.perf_counter() - started
    CPU["b2"] = (time.process_time() - cpu, 0.0)
    await mailer.close()
    return seconds, sent


async def naive_path(url: str, project, port: int, count: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Render with Jinja, premailer per email, EmailMessage, one connection."""
    engine = make_engine(url)
    renderer = Renderer(project.templates_dir)
    html_env = renderer._html_env  # the same sandboxed environment, without precompiling
    text_env = renderer._text_env
    sender = project.config.sending.sender
    with Session(engine) as session:
        messages = session.scalars(select(Message).limit(count)).all()
        contexts = load_contexts(session, project, messages, lambda i: {
            "unsubscribe_url": f"http://127.0.0.1:8000/u/{i}", "pixel_url": f"http://127.0.0.1:8000/o/{i}.gif",
            "survey_url": f"http://127.0.0.1:8000/s/{i}"})  # fmt: skip
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname="bench.local")
    await client.connect()
    cpu = time.process_time()
    started = time.perf_counter()
    done = 0
    for context in contexts:
        assert isinstance(context, dict), context
        html = inline_css(html_env.get_template("welcome.html").render(context))
        text = text_env.get_template("welcome.txt").render(context)
        email = EmailMessage()
        email["From"] = f"{sender.name} <{sender.email}>"
        email["To"] = context["customer"]["email"]
        email["Subject"] = f"Welcome to {context['shop']['name']}"
        email.set_content(text)
        email.add_alternative(html, subtype="html")
        await client.send_message(email)
        done += 1
        if time.perf_counter() - started > TIME_CAP:
            break
    seconds = time.perf_counter() - started
    CPU["c"] = (time.process_time() - cpu, 0.0)
    await client.quit()
    engine.dispose()
    return seconds, done


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="lifecycle-bench-"))
    url = f"sqlite:///{folder / 'bench.db'}"
    fill_store(url, args.messages)
    sink, port = start_sink()
    try:
        base = load_project(ROOT / "config.yaml")
        sending = base.config.sending.model_copy(
            update={
                "smtp": base.config.sending.smtp.model_copy(
                    update={"port": port, "host": "127.0.0.1"}
                ),
                "connections": args.connections,
                "rate_per_second": 1e9,
                "recycle_after": 100_000,
                "batch_size": args.batch,
                # Throughput, not the brake: a send this big would go out as a canary first.
                "canary": base.config.sending.canary.model_copy(update={"enabled": False}),
            }
        )
        # The one-email welcome alone (the shipped config runs the welcome series).
        config = base.config.model_copy(update={"sending": sending, "campaigns": ["welcome"]})
        project = dataclasses.replace(base, config=config)

        a1_seconds, a1_sent, _ = await engine_path(url, project, args.messages, 0)
        after_a1 = await sink_count(port)
        a_seconds, a_sent, sample = await engine_path(url, project, args.messages, 1)
        a_peak = peak_mb()
        after_a = await sink_count(port) - after_a1
        b_seconds, b_sent = await client_limit(port, sample, args.messages, args.connections)
        after_b = await sink_count(port)
        b2_seconds, b2_sent = await mailer_limit(project, sample, args.messages)
        warm = 1 + args.connections  # the warm-up sends before timing
        after_b2 = await sink_count(port)
        c_seconds, c_sent = await naive_path(url, project, port, args.naive)
        after_c = await sink_count(port, stop=True)
    finally:
        try:
            sink.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sink.terminate()
    assert after_a1 == a1_sent and after_a == a_sent
    assert after_b - after_a - after_a1 == b_sent and after_b2 - after_b == b2_sent + warm
    assert after_c - after_b2 == c_sent
    size = sum(len(d) for _, _, d in sample) / len(sample)
    a1, a, b, c = a1_sent / a1_seconds, a_sent / a_seconds, b_sent / b_seconds, c_sent / c_seconds
    b2 = b2_sent / b2_seconds
    print(f"messages: {a_sent} (a and b), {c_sent} (c); average size {size / 1024:.1f} KB; "
          f"{args.connections} connections; batch {args.batch}")  # fmt: skip
    print(f"(a) engine, composing in a process:  {a:8.0f} emails/s  ({a_seconds:.1f} s)")
    print(f"(a1) engine, all in one loop:        {a1:8.0f} emails/s  ({a1_seconds:.1f} s)")
    print(f"(b) aiosmtplib prebuilt bytes:       {b:8.0f} emails/s  ({b_seconds:.1f} s)")
    print(f"(b2) engine's SmtpMailer, same bytes: {b2:8.0f} emails/s  ({b2_seconds:.1f} s)")
    print(f"(c) naive premailer+EmailMessage:    {c:8.0f} emails/s  ({c_seconds:.1f} s)")
    print(f"a/b = {a / b:.0%} (target ≥ 80%)   a/c = {a / c:.1f}× (target ≥ 20×)")
    print(
        f"a/b2 = {a / b2:.0%} (what rendering, composing and bookkeeping leave of the mailer's own rate)"
    )
    print(f"a1/b = {a1 / b:.0%}   a1/c = {a1 / c:.1f}×")
    print(
        f"peak memory of this process: {max(a_peak, peak_mb()):.0f} MB after (a): {a_peak:.0f} MB (target ≤ 200 MB)"
    )
    print(f"sink counted {after_c} messages in all, as sent")
    for name, n in (("a", a_sent), ("a1", a1_sent), ("b", b_sent), ("b2", b2_sent), ("c", c_sent)):
        own, composer = CPU[name]
        extra = f" + {composer / n * 1e6:.0f} µs in the composer process" if composer else ""
        print(f"CPU per email ({name}): {own / n * 1e6:.0f} µs in the sending process{extra}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--naive", type=int, default=1_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--batch", type=int, default=500)
    asyncio.run(main(parser.parse_args()))
