"""Helpers for tests that start real `lifecycle run` processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.engine import Engine

from engine.intake.shop import Line, record_order, upsert_customer, upsert_product
from engine.project.loader import load_project
from engine.store.db import session_scope

LIFECYCLE = str(Path(sys.executable).parent / "lifecycle")
SECRET = "daemon-test-secret-0123456789abcdef"
API_KEY = "daemon-test-api-key-0123456789"


SLOW_MARK = "{# check me slowly #}"


def slow_check_env() -> dict[str, str]:
    """The environment of a daemon whose check of a project with a template that holds
    SLOW_MARK hangs, as one of a template that runs away would (tests/slowcheck)."""
    slow = str(Path(__file__).parent / "slowcheck")
    path = os.pathsep.join([slow, *filter(None, [os.environ.get("PYTHONPATH")])])
    return {"PYTHONPATH": path, "SLOW_CHECK_MARK": SLOW_MARK}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def configure(
    project_dir: Path, *, smtp_port: int, http_port: int, database: str, **extra: str
) -> Path:
    """Point the copied project at loopback ports and `database`; tick every second;
    send at any hour; welcome at once. `extra` adds `sending:` keys (e.g. lease='2s')."""
    config = project_dir / "config.yaml"
    text = config.read_text()
    text = text.replace("port: 8025", f"port: {smtp_port}").replace(
        "port: 8000", f"port: {http_port}"
    )
    text = text.replace(
        "base_url: http://127.0.0.1:8000", f"base_url: http://127.0.0.1:{http_port}"
    )
    text = text.replace("tick_seconds: 60", "tick_seconds: 1")
    text = re.sub(r"database: .*", f"database: {database}", text, count=1)
    text = text.replace(
        'window: {start: "09:00", end: "20:00"}', 'window: {start: "00:00", end: "23:59"}'
    )
    text = text.replace("frequency_cap: {max: 3, per: 7d}", "frequency_cap: {max: 50, per: 1d}")
    extra = {"connections": "4"} | extra
    settings = "".join(f"  {key}: {value}\n" for key, value in extra.items())
    text = text.replace("  connections: 4\n", settings)
    config.write_text(text)
    welcome = project_dir / "campaigns" / "welcome.yaml"
    welcome.write_text(welcome.read_text().replace("delay: 10m", "delay: 0s"))
    project = load_project(config)  # the shipped files changed shape if this fails
    settings_now = project.config
    assert (settings_now.sending.smtp.port, settings_now.tracking.port) == (smtp_port, http_port)
    assert settings_now.tick_seconds == 1 and settings_now.sending.window.start.hour == 0
    assert project.campaigns["welcome"].trigger.delay == timedelta(0)
    return config


@dataclass
class Daemon:
    """A `lifecycle run` subprocess, its output in a file."""

    config: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    command: str = "run"

    def start(self, name: str = "run") -> Daemon:
        self.log = self.config.parent / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIFECYCLE_")}
        env |= {"LIFECYCLE_SECRET": SECRET, "LIFECYCLE_API_KEY": API_KEY} | self.env
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [LIFECYCLE, self.command, "--config", str(self.config), *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.config.parent,
                start_new_session=True,  # its children are found by session, even orphaned
            )
        return self

    def descendants(self) -> dict[int, str]:
        """The live processes it started (and theirs), even those it left behind."""
        assert self.process is not None
        return session_processes(self.process.pid, but=self.process.pid)

    def left_behind(self, timeout: float = 5) -> dict[int, str]:
        """`descendants()` still running `timeout` seconds after it ended (none, we hope)."""
        assert self.process is not None and self.process.poll() is not None
        deadline = time.monotonic() + timeout
        while (left := self.descendants()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return left

    def output(self) -> str:
        return self.log.read_text() if self.log and self.log.exists() else ""

    def wait_for(self, what: Callable[[], Any], timeout: float = 30, why: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = what()
            if result:
                return result
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited {self.process.returncode}:\n{self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {why or what}:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def session_processes(session: int, *, but: int = 0) -> dict[int, str]:
    """pid -> command line of every live (not zombie) process in `session`, except `but`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == but:
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # it ended while we looked
        state, _ppid, _group, sid = stat.rsplit(")", 1)[1].split()[:4]
        if int(sid) == session and state != "Z":
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return found


class SlowSink:
    """An aiosmtpd server in its own thread that takes `delay` seconds per message
    and holds every DATA while `slow` is set.

    `started` lists the recipients of every DATA the server got (before answering);
    `accepted` those it answered 250 to.
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay  # seconds every DATA takes, even when not held
        self.slow = threading.Event()
        self.started: list[str] = []
        self.accepted: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            self.loop.create_server(lambda: SMTP(self, hostname="slow.test"), "127.0.0.1", 0)
        )
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()
        server.close()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        recipients = list(envelope.rcpt_tos)
        self.started.extend(recipients)
        await asyncio.sleep(self.delay)
        deadline = time.monotonic() + 60
        while self.slow.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.accepted.extend(recipients)
        return "250 2.0.0 Ok"

    def close(self) -> None:
        self.slow.clear()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def seed_first_orders(engine: Engine, now: datetime, count: int, *, prefix: str = "c") -> list[str]:
    """`count` consenting customers, each with a first order a minute before `now`."""
    emails = []
    with session_scope(engine) as session:
        for sku in ("TEA-500G", "JUTE-BAG-01", "SARI-JAM-01"):  # the holiday offers' products
            upsert_product(session, sku=sku, name=sku, price="450.00", now=now - timedelta(days=9))
        for i in range(count):
            address = f"{prefix}{i}@example.com"
            upsert_customer(
                session,
                external_id=f"{prefix}{i}",
                email=address,
                now=now - timedelta(days=1),
                name=f"Customer {i}",
                marketing_consent=True,
            )
            record_order(
                session,
                external_id=f"{prefix}-o{i}",
                customer_id=f"{prefix}{i}",
                items=[Line("TEA-500G", 1)],
                placed_at=now - timedelta(minutes=1),
            )
            emails.append(address)
    return emails
