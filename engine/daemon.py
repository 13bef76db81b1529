"""`lifecycle run`: the scheduler and the tracking server in one event loop.

APScheduler 3 (`AsyncIOScheduler`, UTC, a `MemoryJobStore`: the database is
the source of truth) runs one interval job every `tick_seconds`, coalesced,
never two at once, however late, the first one at start. Each tick reads the
clock once, picks up edited files (`engine.reload`: the edited project is
checked in a process of its own, so a template that runs away cannot stall
the loop; a tick waits `RELOAD_WAIT_SECONDS` for the verdict, then goes on
with the last good project), takes the planner lock if it can
(`engine.store.locks`), plans (in a worker thread, so the tracking server keeps
answering) and sends, then forwards detractors' survey comments to the shop's
support address (`engine.deliver.detractors`); with `--demo`, before that, the demo's
visitors act on what the tick sent (`engine.demo`: a few customers answer their survey
email through the tracking server's pages, over HTTP). uvicorn serves the tracking app on a loop and thread of
its own (`engine.track.httpserver.serve_in_thread`): no tick holds up a pixel.
While more than `POOL_FROM` emails are due, one composer process
(`engine.deliver.composepool`) renders them beside the sending loop; it is stopped
when the rush is over, and restarted after an edit (it holds the project).

SIGTERM or SIGINT stops it gracefully: no new claims (the `stop` event the
dispatcher watches), in-flight SMTP transactions finish, unsent leases are
released, a check of an edit still running is killed, the last opens and
clicks are written, the planner lock is freed, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets as random_secrets
import signal
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import uvicorn
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from .deliver import (
    POOL_FROM,
    DetractorForwarder,
    count_due,
    start_compose_pool,
    stop_compose_pool,
)
from .errors import ConfigError, EngineError
from .feedback import MailboxPoller
from .project import Project, Secrets
from .reload import ProjectWatcher
from .store import Customer, Message, MessageStatus, PlannerLock
from .track import serve_in_thread

log = logging.getLogger("engine.daemon")

SECRET_FILE = ".lifecycle-secret"
OUTBOX = "outbox"
SHUTDOWN_GRACE_SECONDS = 60
RELOAD_WAIT_SECONDS = 10  # a tick waits this long for the check of an edit, then sends
POOL_STOP_SECONDS = 5  # a composer process still busy this long after its stop is killed


# What one of the demo's customers does after a tick: (engine, project, now) -> None.
Visitor = Callable[[Engine, Project, datetime], Awaitable[None]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def configure_logging(level: int = logging.INFO) -> None:
    """One concise line per event: time, level, where, what."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        force=True,
    )
    for noisy in ("alembic", "uvicorn.error", "aiosmtpd", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # "skipped: maximum number of running instances reached" is the coalescing we asked for.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)


def demo_secret(config_dir: Path) -> str:
    """The demo's tracking secret: made once, kept in `.lifecycle-secret` (mode 0600).

    `lifecycle demo` and `lifecycle run --demo` make it; the other commands read it
    (`stored_demo_secret`) when LIFECYCLE_SECRET is not set.
    """
    path = config_dir / SECRET_FILE
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(random_secrets.token_urlsafe(32) + "\n")
    os.chmod(path, 0o600)
    return _read_secret(path)


def stored_demo_secret(config_dir: Path) -> str | None:
    """The demo's secret if `.lifecycle-secret` is beside config.yaml, else None.

    Raises EngineError when the file is there but holds no usable secret.
    """
    path = config_dir / SECRET_FILE
    return _read_secret(path) if path.is_file() else None


def _read_secret(path: Path) -> str:
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise EngineError(f"{path}: cannot read the demo's secret: {exc}") from exc
    if len(secret) < 16:
        raise EngineError(f"{path} holds no usable secret: delete it and run again")
    return secret


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon installs its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening socket for the tracking server; EngineError if the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise EngineError(
            f"the tracking server cannot listen on {host}:{port}: {exc.strerror} "
            "(change tracking.port in config.yaml, or stop what uses it)"
        ) from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@dataclass
class Daemon:
    """The running engine. `serve()` runs until a stop signal; `tick_once()` is one tick."""

    config_file: Path
    engine: Engine
    secrets: Secrets
    watcher: ProjectWatcher
    lock: PlannerLock
    demo: bool = False
    clock: Callable[[], datetime] = _utcnow
    worker_id: str = ""
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    mailer: Any = None
    composer: Any = None
    scheduler: AsyncIOScheduler | None = None
    ticks: int = 0
    leader: bool = False
    pool_from: int = 0  # composing gets a process of its own above this many due (0: default)
    compose_pool: Executor | None = None
    waiting_said: list[str] | None = None  # what `waiting` said last; None: not yet
    forward_detractors: DetractorForwarder = field(default_factory=DetractorForwarder)
    read_bounces: MailboxPoller = field(default_factory=MailboxPoller)
    bounce_listener: Any = None  # the bounce domain's SMTP listener (`bounces.listen`)
    # --demo: the demo's customers, acting on each tick's sends (`demo_visitors`).
    visitors: list[Visitor] = field(default_factory=list)

    def __post_init__(self) -> None:
        from .deliver import default_worker_id

        self.worker_id = self.worker_id or default_worker_id()
        self.pool_from = self.pool_from or POOL_FROM
        self._tick_lock = asyncio.Lock()
        self._tick_task: asyncio.Task[Any] | None = None
        self._reload_check: asyncio.Task[Project | None] | None = None

    @property
    def project(self) -> Project:
        return self.watcher.current()

    # ------------------------------------------------------------ one tick

    async def tick_once(self) -> Any:
        """Reload if edited, plan if the planner, send; return the TickReport (None if stopped)."""
        if self.stop.is_set():
            return None
        async with self._tick_lock:
            self._tick_task = asyncio.current_task()
            try:
                return await self._tick()
            except Exception:  # one failing tick never stops the daemon
                log.exception("tick failed; the next one runs as scheduled")
                return None
            finally:
                self._tick_task = None

    async def _tick(self) -> Any:
        from .plan import plan
        from .tick import tick

        now = self.clock()
        await self._reload()
        leader = await asyncio.to_thread(self.lock.try_acquire)
        if leader != self.leader:
            log.info("this daemon %s the planner", "is now" if leader else "is no longer")
            self.leader = leader
        project = self.project
        planned = await asyncio.to_thread(plan, self.engine, project, now) if leader else None
        pool = await self._pool_for(project, now)
        report = await tick(
            self.engine,
            project,
            self.secrets,
            self.mailer,
            now,
            plan=False,
            worker_id=self.worker_id,
            composer=self.composer,
            stop=self.stop,
            compose_pool=pool,
        )
        report.plan = planned
        release = getattr(self.mailer, "release_idle", None)
        if release is not None:  # the shop's SMTP connections, for the other daemons
            await release()
        self.ticks += 1
        for line in describe(report):
            if line.startswith("error "):
                log.error(line.removeprefix("error "))
            else:
                log.info(line)
        await self._say_waiting(project, now)
        await self._demo_visits(project, now)
        await self.forward_detractors(self.engine, project, self.mailer, now)
        if leader:  # one daemon reads the bounce mailbox: the planner
            await self.read_bounces(self.engine, project, self.secrets, now)
        return report

    async def _demo_visits(self, project: Project, now: datetime) -> None:
        """The demo's customers act on what this tick sent (none without --demo)."""
        for visitor in self.visitors:
            await visitor(self.engine, project, now)

    async def _say_waiting(self, project: Project, now: datetime) -> None:
        """Log what waits for its send window at the first tick, then when it changes."""
        try:
            lines = await asyncio.to_thread(waiting, self.engine, project, now)
        except Exception:  # a summary that cannot be counted never fails the tick
            log.exception("could not count the emails waiting for a later time")
            return
        if lines != self.waiting_said:
            for line in lines or ["nothing queued waits for a later time"]:
                log.info(line)
            self.waiting_said = lines

    async def _pool_for(self, project: Project, now: datetime) -> Executor | None:
        """A composer process while more than `pool_from` emails are due, so composing
        and sending use both cores; none, and none kept, otherwise."""
        due = await asyncio.to_thread(count_due, self.engine, now)
        if due <= self.pool_from:
            await self._stop_pool()
            return None
        if self.compose_pool is None:
            log.info("%d emails due: composing in a process of its own", due)
            self.compose_pool = start_compose_pool(self.engine, project, self.secrets)
        return self.compose_pool

    async def _stop_pool(self) -> None:
        if self.compose_pool is not None:
            pool, self.compose_pool = self.compose_pool, None
            await asyncio.to_thread(stop_compose_pool, pool, POOL_STOP_SECONDS)

    async def _reload(self) -> None:
        before = self.project
        new = await self._edited_project()
        if new is None:
            return
        try:
            self.composer = _composer(new, self.secrets)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload: %s", problem)
            self.watcher.project = before
            return
        await self._stop_pool()  # its composers hold the old project
        if new.config.sending != before.config.sending and self.mailer is not None:
            await self.mailer.close()  # between ticks: nothing is in flight
            self.mailer = _mailer(new, self.secrets, self.engine)
        if new.config.tick_seconds != before.config.tick_seconds and self.scheduler:
            self.scheduler.reschedule_job(
                "tick", trigger="interval", seconds=new.config.tick_seconds
            )
            log.info("ticking every %d s from now on", new.config.tick_seconds)
        for what in ("database", "tracking"):
            if getattr(new.config, what) != getattr(before.config, what):
                log.warning("config: a change of %s takes effect at the next restart", what)

    async def _edited_project(self) -> Project | None:
        """The edited project once checked and valid; None if nothing changed, the edit
        is invalid, or its check (in its own process) is still running after
        `RELOAD_WAIT_SECONDS`: a later tick takes its verdict."""
        if self._reload_check is None:
            self._reload_check = asyncio.create_task(self.watcher.poll_aside(self.stop))
        done, _ = await asyncio.wait([self._reload_check], timeout=RELOAD_WAIT_SECONDS)
        if not done:
            log.info("still checking the edited project; sending with the last good version")
            return None
        check, self._reload_check = self._reload_check, None
        return check.result()

    async def _stop_reload_check(self) -> None:
        if self._reload_check is not None:
            check, self._reload_check = self._reload_check, None
            check.cancel()  # kills the checking process
            with contextlib.suppress(asyncio.CancelledError):
                await check

    # ------------------------------------------------------------ the process

    async def serve(self) -> int:
        """Run until SIGTERM/SIGINT; return the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        config = self.project.config
        sink = await self._start_sink() if self.demo else None
        self.bounce_listener = await self._start_bounce_listener()
        sock = listen(config.tracking.host, config.tracking.port)
        self.mailer = _mailer(self.project, self.secrets, self.engine)
        self.composer = _composer(self.project, self.secrets)
        server = _server(self, sock)
        web = asyncio.create_task(serve_in_thread(server, [sock]))  # a loop of its own
        self.scheduler = _scheduler(self.tick_once, config.tick_seconds)
        self.scheduler.start()
        log.info(
            "running: tick every %d s, tracking on http://%s:%d, worker %s",
            config.tick_seconds,
            config.tracking.host,
            sock.getsockname()[1],
            self.worker_id,
        )
        if sink is not None:
            _print_demo(self, sink, sock.getsockname()[1])
        await asyncio.wait(
            [asyncio.ensure_future(self.stop.wait()), web], return_when=asyncio.FIRST_COMPLETED
        )
        crashed = web.done() and not self.stop.is_set()
        if crashed:
            log.error("the tracking server stopped by itself; stopping the daemon")
        await self._shutdown(server, web, sink)
        return 1 if crashed else 0

    async def _shutdown(self, server: _Server, web: asyncio.Task[Any], sink: Any) -> None:
        self.stop.set()
        assert self.scheduler is not None
        self.scheduler.pause()  # shutting it down now would cancel the running tick
        try:  # the running tick finishes its in-flight sends and releases its leases
            await asyncio.wait_for(self._tick_lock.acquire(), SHUTDOWN_GRACE_SECONDS)
        except TimeoutError:
            log.error("the running tick did not end in %d s; cancelling it", SHUTDOWN_GRACE_SECONDS)
            if self._tick_task is not None:
                self._tick_task.cancel()
        self.scheduler.shutdown(wait=False)
        await self._stop_reload_check()
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await web  # the app's lifespan writes the last opens and clicks
        await self.mailer.close()
        await self._stop_pool()
        await asyncio.to_thread(self.lock.release)
        if sink is not None:
            await sink.stop()
        if self.bounce_listener is not None:
            await self.bounce_listener.stop()
        log.info("stopped")

    def _on_signal(self, sig: int) -> None:
        if not self.stop.is_set():
            log.info("%s: stopping; in-flight sends finish first", signal.Signals(sig).name)
            self.stop.set()
        elif self._tick_task is not None:
            log.warning("%s again: cancelling the running tick", signal.Signals(sig).name)
            self._tick_task.cancel()

    async def _start_bounce_listener(self) -> Any:
        """The SMTP listener for the bounce domain, when `bounces.listen` is set."""
        from .feedback import BounceListener, Processor

        config = self.project.config
        listen_at = config.bounces.listen
        if listen_at is None:
            return None
        processor = Processor.for_project(self.engine, self.project, self.secrets)
        assert config.sending.bounce_address is not None  # for_project checked it
        listener = BounceListener(
            processor, config.sending.bounce_address, listen_at.host, listen_at.port
        )
        await listener.start()
        log.info("bounce reports accepted over SMTP on %s:%d", listen_at.host, listener.port)
        return listener

    async def _start_sink(self) -> Any:
        from .deliver import start_sink

        smtp = self.project.config.sending.smtp
        outbox = self.config_file.parent / OUTBOX
        return await start_sink(smtp.host, smtp.port, outbox, echo=None)


def _mailer(project: Project, secrets: Secrets, engine: Engine) -> Any:
    from .deliver import SmtpMailer

    return SmtpMailer.from_project(project, secrets, engine)  # the shop's rate, shared


def _composer(project: Project, secrets: Secrets) -> Any:
    from .deliver import Composer

    return Composer(project, secrets)


def _server(daemon: Daemon, sock: socket.socket) -> _Server:
    from .track import create_app, server_config

    app = create_app(daemon.engine, daemon.watcher.current, daemon.secrets)
    return _Server(server_config(app))


def _scheduler(job: Callable[[], Any], seconds: int) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone=UTC, jobstores={"default": MemoryJobStore()})
    scheduler.add_job(
        job,
        "interval",
        seconds=seconds,
        id="tick",
        next_run_time=_utcnow(),
        coalesce=True,
        max_instances=1,
        misfire_grace_time=None,
    )
    return scheduler


def _print_demo(daemon: Daemon, sink: Any, port: int) -> None:
    tracking = daemon.project.config.tracking
    print(f"demo: emails land in {sink.directory}/ (the mail sink on {sink.host}:{sink.port})")
    print(f"demo: tracking server on http://{tracking.host}:{port} (links use {tracking.base_url})")
    if daemon.secrets.dashboard_password:
        print(f"demo: dashboard at http://{tracking.host}:{port}/dashboard")
    print("demo: Ctrl-C stops it", flush=True)


def describe(report: Any) -> list[str]:
    """Log lines for one tick: one per campaign that did something, plus errors."""
    lines = []
    plan = report.plan.as_dict() if report.plan is not None else {"campaigns": {}}
    for name, result in plan["campaigns"].items():
        if result.get("error"):
            lines.append(f"error campaign {name}: planning failed: {result['error']}")
        elif result["queued"]:
            skipped = ", ".join(
                f"{k} {v}" for k, v in result.items() if k.startswith("skipped") and v
            )
            lines.append(
                f"campaign {name}: queued {result['queued']}" + (f" ({skipped})" if skipped else "")
            )
    sent = report.dispatch
    for name, counts in sorted(sent.campaigns.items()):
        lines.append(
            f"campaign {name}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        )
    if sent.swept_in_doubt or sent.swept_resend:
        lines.append(
            f"expired leases: {sent.swept_in_doubt} in doubt, {sent.swept_resend} queued again"
        )
    lines.extend(f"error {line}" for line in sent.errors)
    if sent.paused:
        lines.append(f"error sending paused: {sent.pause_reason}")
    return lines


def waiting(engine: Engine, project: Project, now: datetime) -> list[str]:
    """Log lines on the queued emails not yet due at `now`: those whose customers'
    clocks read outside the send window, and those due later in it (a campaign's
    delay or hour); each with how many per campaign and when the first goes, in
    the shop's time. Empty when nothing waits."""
    shop_zone = ZoneInfo(project.config.shop.timezone)
    window = project.config.sending.window
    query = (
        select(
            col(Message.campaign),
            col(Customer.timezone),
            func.count(),
            func.min(col(Message.send_after)),
        )
        .join(Customer, col(Customer.id) == col(Message.customer_id))
        .where(
            col(Message.status) == MessageStatus.QUEUED,
            col(Message.send_after) > now,
            col(Message.expires_at).is_(None) | (col(Message.expires_at) > now),
        )
        .group_by(col(Message.campaign), col(Customer.timezone))
    )
    closed: Counter[str] = Counter()
    later: Counter[str] = Counter()
    firsts: dict[bool, datetime] = {}
    with engine.connect() as conn:
        for campaign, zone_name, count, first in conn.execute(query):
            zone = _zone(zone_name, shop_zone)
            outside = not _in_window(now.astimezone(zone).time(), window.start, window.end)
            (closed if outside else later)[campaign] += count
            firsts[outside] = min(first, firsts.get(outside, first))
    hours = f"{window.start:%H:%M}-{window.end:%H:%M}"
    lines = []
    if closed:
        lines.append(
            f"waiting for the send window ({hours} in each customer's own time): "
            f"{_counted(closed)}; the next window opens {_shop_time(firsts[True], shop_zone)}"
        )
    if later:
        lines.append(
            f"waiting for a campaign's delay or hour: {_counted(later)}; "
            f"the first goes {_shop_time(firsts[False], shop_zone)}"
        )
    return lines


def _zone(name: str | None, shop_zone: ZoneInfo) -> ZoneInfo:
    """The customer's zone as the planner reads it: the shop's when unset or invalid."""
    try:
        return ZoneInfo(name) if name else shop_zone
    except (ZoneInfoNotFoundError, ValueError):
        return shop_zone


def _in_window(clock: time, start: time, end: time) -> bool:
    return start <= clock < end if start < end else (clock >= start or clock < end)


def _counted(per_campaign: Counter[str]) -> str:
    each = ", ".join(f"{name} {n}" for name, n in sorted(per_campaign.items()))
    return f"{per_campaign.total()} queued ({each})"


def _shop_time(at: datetime, shop_zone: ZoneInfo) -> str:
    return f"at {at.astimezone(shop_zone):%Y-%m-%d %H:%M} {shop_zone.key}"


def demo_visitors(config_dir: Path) -> list[Visitor]:
    """The demo's customers: a few answer the survey emails that land in the outbox."""
    from .demo import SurveyVisitor

    return [SurveyVisitor(config_dir / OUTBOX)]


def run_daemon(
    config_file: Path, project: Project, engine: Engine, secrets: Secrets, *, demo: bool
) -> int:
    """Build the daemon and run it until a stop signal. Raises LockHeld if another has the database."""
    from .store import planner_lock

    if demo:
        secrets = replace(secrets, secret=secrets.secret or demo_secret(config_file.parent))
    lock = planner_lock(engine)

    async def main() -> int:
        daemon = Daemon(
            config_file, engine, secrets, ProjectWatcher(project, config_file), lock, demo=demo
        )
        if demo:
            daemon.visitors = demo_visitors(config_file.parent)
        return await daemon.serve()

    try:
        return asyncio.run(main())
    finally:
        lock.release()
        engine.dispose()
