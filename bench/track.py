"""Tracking server throughput: recorded opens per second against a no-op endpoint.

The server is the real tracking app (`engine.track.app.create_app`, the real
`HitBuffer` writing to a real SQLite file in WAL mode) under uvicorn as the
daemon configures it (`engine.track.httpserver.server_config`; `--http httptools`
runs uvicorn's stock protocol instead, to compare), in its own process on
127.0.0.1, with one bench-only route, `GET /bench/noop`, that
answers 204 and does nothing. A second process drives it with a small
raw-socket HTTP/1.1 client: `--connections` keep-alive connections, each
sending its next request when the last answer arrived. Per endpoint it runs
for `--seconds` (or `--requests`, whichever ends first) and reports the rate
and the p50 / p99 latency; for opens it then counts the rows in the database
once the buffer has flushed, so the figure is opens recorded durably.

    .venv/bin/python bench/track.py [--seconds 8] [--connections 32] [--rounds 3]

Loopback only; both processes exit by themselves within a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "benchmark-secret-0123456789abcdef"
MESSAGES = 2000
AGENT = "Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 Chrome/120 Mobile Safari/537.36"
LOAD_BEFORE = ""
SERVER_LIFETIME = 600  # seconds: the server exits by itself after this


# ---------------------------------------------------------------- the server process


def serve(database: str, port: int, http: str) -> None:
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from engine.project.loader import Secrets, load_project
    from engine.store.db import make_engine
    from engine.track.app import create_app
    from engine.track.httpserver import server_config

    async def noop(request: Request) -> Response:
        return Response(status_code=204)

    project = load_project(ROOT / "config.yaml")
    engine = make_engine(database)
    app = create_app(
        engine,
        lambda: project,
        Secrets(secret=SECRET),
        extra_routes=[Route("/bench/noop", noop)],
    )

    async def main() -> None:
        options = {} if http == "engine" else {"http": http}
        config = server_config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            backlog=2048,
            **options,
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        await asyncio.wait([task], timeout=SERVER_LIFETIME)
        server.should_exit = True
        await task

    asyncio.run(main())


# ---------------------------------------------------------------- the client process


async def _connection(
    port: int, requests: list[bytes], deadline: float, budget: list[int], latencies: list[float]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = random.randrange(len(requests))
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            started = time.perf_counter()
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status not in (200, 204):
                raise RuntimeError(f"unexpected status {status}")
    finally:
        writer.close()


async def _drive(
    port: int, requests: list[bytes], connections: int, seconds: float, limit: int
) -> dict:
    latencies: list[float] = []
    budget = [limit]
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(_connection(port, requests, deadline, budget, latencies) for _ in range(connections))
    )
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "rate": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "started": started,
    }


def drive(port: int, paths: list[str], connections: int, seconds: float, limit: int) -> None:
    requests = [
        f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: {AGENT}\r\n\r\n".encode()
        for p in paths
    ]
    result = asyncio.run(_drive(port, requests, connections, seconds, limit))
    print(json.dumps(result))


# ---------------------------------------------------------------- orchestration


def prepare(directory: Path) -> str:
    from sqlmodel import Session

    from engine.store.db import make_engine, upgrade
    from engine.store.models import Customer, Message, MessageStatus

    now = datetime.now(UTC)
    url = f"sqlite:///{directory / 'track.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session:
        customer = Customer(
            external_id="bench", email="bench@example.com", created_at=now, updated_at=now
        )
        session.add(customer)
        session.flush()
        session.add_all(
            Message(
                dedupe_key=f"bench:{i}",
                campaign="welcome",
                customer_id=customer.id,
                occurrence=str(i),
                status=MessageStatus.SENT,
                created_at=now - timedelta(hours=2),
                send_after=now - timedelta(hours=2),
                sent_at=now - timedelta(hours=1),
            )
            for i in range(MESSAGES)
        )
        session.commit()
    engine.dispose()
    return url


def count_opens(url: str) -> int:
    from sqlalchemy import func, select
    from sqlmodel import Session

    from engine.store.db import make_engine
    from engine.store.models import MessageEvent

    engine = make_engine(url)
    with Session(engine) as session:
        count = session.execute(select(func.count()).select_from(MessageEvent)).scalar_one()
    engine.dispose()
    return int(count)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_client(port: int, paths: list[str], args: argparse.Namespace) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--drive",
            str(port),
            "--connections",
            str(args.connections),
            "--seconds",
            str(args.seconds),
            "--requests",
            str(args.requests),
            "--paths",
            json.dumps(paths),
        ],
        capture_output=True,
        text=True,
        timeout=args.seconds + 120,
        check=True,
    )
    return json.loads(out.stdout)


def wait_until_recorded(url: str, expected: int, timeout: float = 30) -> tuple[int, float]:
    """Rows in the database once they reach `expected` (or the timeout), and when."""
    deadline = time.perf_counter() + timeout
    while True:
        rows = count_opens(url)
        if rows >= expected or time.perf_counter() > deadline:
            return rows, time.perf_counter()
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--http", default="engine", choices=["engine", "httptools", "h11"])
    parser.add_argument("--serve", nargs=2, metavar=("DATABASE", "PORT"))
    parser.add_argument("--drive", type=int, metavar="PORT")
    parser.add_argument("--paths")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.http)
        return
    if args.drive:
        drive(args.drive, json.loads(args.paths), args.connections, args.seconds, args.requests)
        return

    from engine.deliver.tokens import Signer

    signer = Signer(SECRET)
    pixels = [f"/o/{signer.open_token(i)}.gif" for i in range(1, MESSAGES + 1)]
    global LOAD_BEFORE
    LOAD_BEFORE = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    with tempfile.TemporaryDirectory() as directory:
        url = prepare(Path(directory))
        from tests.daemon_fixtures import free_port

        port = free_port()
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", url, str(port), "--http", args.http]
        )
        try:
            _wait_for_port(port)
            results = {"noop": [], "open": []}
            for _ in range(args.rounds):
                cpu = cpu_seconds(server.pid)
                noop = run_client(port, ["/bench/noop"], args)
                noop["server_cpu_us"] = 1e6 * (cpu_seconds(server.pid) - cpu) / noop["requests"]
                results["noop"].append(noop)
                before, cpu = count_opens(url), cpu_seconds(server.pid)
                opened = run_client(port, pixels, args)
                rows, durable_at = wait_until_recorded(url, before + opened["requests"])
                opened["server_cpu_us"] = 1e6 * (cpu_seconds(server.pid) - cpu) / opened["requests"]
                opened["recorded"] = rows - before
                opened["durable_rate"] = opened["recorded"] / (durable_at - opened["started"])
                results["open"].append(opened)
        finally:
            server.terminate()
            server.wait(30)
    report(results, args)


def _wait_for_port(port: int) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit("the server did not start")


def report(results: dict, args: argparse.Namespace) -> None:
    def median(rows: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    noop, opens = results["noop"], results["open"]
    print(
        f"tracking server on 127.0.0.1, {args.connections} keep-alive connections, "
        f"{args.seconds:g} s x {args.rounds} rounds, {os.cpu_count()} cores, server and client share them"
    )
    print(f"load average when it started: {LOAD_BEFORE}")
    print(
        f"{'endpoint':<26}{'req/s median [min-max]':>24}{'p50 ms':>8}{'p99 ms':>8}{'server CPU':>12}"
    )
    for name, rows in (("GET /bench/noop (no-op)", noop), ("GET /o/<token>.gif", opens)):
        rates = [r["rate"] for r in rows]
        spread = f"{median(rows, 'rate'):,.0f} [{min(rates):,.0f}-{max(rates):,.0f}]"
        print(
            f"{name:<26}{spread:>24}{median(rows, 'p50_ms'):>8.2f}{median(rows, 'p99_ms'):>8.2f}"
            f"{median(rows, 'server_cpu_us'):>9,.0f} us"
        )
    durable = [r["durable_rate"] for r in opens]
    recorded = sum(r["recorded"] for r in opens)
    answered = sum(r["requests"] for r in opens)
    print(
        f"opens recorded durably: {statistics.median(durable):,.0f}/s median "
        f"[{min(durable):,.0f}-{max(durable):,.0f}]; {recorded:,} rows for {answered:,} pixels served"
    )
    noop_rate = median(noop, "rate")
    print(
        f"recorded opens vs no-op: {statistics.median(durable) / noop_rate:.0%} of the no-op rate "
        f"(answered pixels: {median(opens, 'rate') / noop_rate:.0%}); "
        f"one server core would answer {1e6 / median(opens, 'server_cpu_us'):,.0f} opens/s"
    )


if __name__ == "__main__":
    main()
