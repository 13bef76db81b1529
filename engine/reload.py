"""Hot reload: pick up edits to config.yaml, campaigns, segments and templates.

`ProjectWatcher.poll()` is called between ticks. It compares the files'
modification times and sizes with the last look (a few `stat` calls: cheap,
no extra dependency). When something changed it re-validates the whole
project with `engine.check.check_project`; a valid project is returned and
becomes current, an invalid one is refused: each problem is logged with its
file and line, once per change, and the last good project stays in force.

The daemon calls `poll_aside()` instead: the check (which test-renders every
template, and an edited template may run away) runs in a process of its own,
so the event loop keeps serving; it is killed, and the edit refused, after
`CHECK_SECONDS`, and killed at once when the daemon stops.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from .check import check_project
from .errors import Problem
from .project import Project

log = logging.getLogger(__name__)

CHECK_SECONDS = 60.0  # the longest a check of an edited project may take in `poll_aside`

Snapshot = dict[str, tuple[int, int]]
Checked = tuple[Project | None, list[Problem]]
Check = Callable[[Path], Checked]


def _check(path: Path) -> tuple[Project | None, list[Problem]]:
    return check_project(path)


def snapshot(project: Project, config_file: Path) -> Snapshot:
    """(mtime_ns, size) of every file the project is made of."""
    folders = (
        project.root / project.config.paths.campaigns,
        project.root / project.config.paths.segments,
        project.templates_dir,
    )
    files = [config_file]
    for folder in folders:
        if folder.is_dir():
            files.extend(p for p in folder.rglob("*") if not p.name.startswith("."))
    seen: Snapshot = {}
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue  # removed while we looked: the next poll sees it gone
        if not path.is_dir():
            seen[str(path)] = (stat.st_mtime_ns, stat.st_size)
    return seen


class ProjectWatcher:
    """Holds the current (last good) project and swaps it when the files change."""

    def __init__(
        self,
        project: Project,
        config_file: str | os.PathLike[str],
        *,
        check: Check = _check,
        check_seconds: float = CHECK_SECONDS,
    ):
        self.project = project
        self.config_file = Path(config_file).resolve()
        self.check = check  # module-level, so a spawned process can run it
        self.check_seconds = check_seconds
        self._seen = snapshot(project, self.config_file)
        self.refused = 0

    def current(self) -> Project:
        return self.project

    def poll(self) -> Project | None:
        """The new project if the files changed and are valid, else None.

        The check runs in this thread; the daemon uses `poll_aside`."""
        look = self._look()
        if look is None:
            return None
        return self._take(*self.check(self.config_file), look)

    async def poll_aside(self, stop: asyncio.Event | None = None) -> Project | None:
        """`poll()`, with the check in a process of its own: the loop keeps running.

        A check that takes longer than `check_seconds` is killed and the edit refused.
        If `stop` is set meanwhile, the check is killed and None returned at once.
        Only one `poll_aside` at a time.
        """
        look = self._look()
        if look is None:
            return None
        log.info("checking the edited project (%s)", ", ".join(look[1]))
        checked = await check_aside(self.check, self.config_file, self.check_seconds, stop)
        if checked is None:
            self._seen = {}  # stopped before an answer: the next poll checks again
            return None
        return self._take(*checked, look)

    def _look(self) -> tuple[Snapshot, list[str]] | None:
        """The files now and the names of those changed, or None if none changed."""
        now = snapshot(self.project, self.config_file)
        if now == self._seen:
            return None
        changed = _changed(self._seen, now)
        self._seen = now
        return now, changed

    def _take(
        self,
        project: Project | None,
        problems: list[Problem],
        look: tuple[Snapshot, list[str]],
    ) -> Project | None:
        before, changed = look
        if project is None or problems:
            self.refused += 1
            log.error(
                "reload refused: %d problem%s; still running the last good version",
                len(problems),
                "" if len(problems) == 1 else "s",
            )
            for problem in problems:
                log.error("reload: %s", problem)
            return None
        self.project = project
        # A new config may watch new folders; a file saved during the check is still news.
        self._seen = {
            name: before.get(name, seen)
            for name, seen in snapshot(project, self.config_file).items()
        }
        log.info("reloaded the project%s", f" ({', '.join(changed)})" if changed else "")
        return project


def _changed(before: Snapshot, after: Snapshot) -> list[str]:
    names = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    return sorted(Path(name).name for name in names)[:5]


async def check_aside(
    check: Check, config_file: Path, seconds: float, stop: asyncio.Event | None = None
) -> Checked | None:
    """`check(config_file)` in a spawned process that dies with this one.

    After `seconds` the process is killed and a problem says so; if `stop` is set
    first, it is killed and None returned.
    """
    context = multiprocessing.get_context("spawn")
    answers, answer = context.Pipe(duplex=False)
    child = context.Process(
        target=_check_in_child,
        args=(os.getpid(), check, config_file, answer),
        name="lifecycle-reload-check",
        daemon=True,
    )
    child.start()
    answer.close()
    try:
        if not await _readable(answers, seconds, stop):
            if stop is not None and stop.is_set():
                return None
            return _refused(config_file, f"took more than {seconds:g} s: does a template run away?")
        try:
            checked: Checked = answers.recv()
            return checked
        except EOFError:
            child.join(1)
            return _refused(config_file, f"ended with exit code {child.exitcode}")
    finally:
        answers.close()
        if child.is_alive():
            child.kill()
        child.join()


async def _readable(connection: Connection, seconds: float, stop: asyncio.Event | None) -> bool:
    """Wait until `connection` has an answer (or its end closed): True; or `seconds`
    pass or `stop` is set: False."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[object] = loop.create_future()

    def answered() -> None:
        if not ready.done():
            ready.set_result(True)

    loop.add_reader(connection.fileno(), answered)
    waits: list[asyncio.Future[object]] = [ready]
    if stop is not None:
        waits.append(asyncio.ensure_future(stop.wait()))
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        return ready.done()
    finally:
        loop.remove_reader(connection.fileno())
        for waiting in waits:
            waiting.cancel()


def _check_in_child(parent_pid: int, check: Check, config_file: Path, answer: Connection) -> None:
    from .children import die_with_parent

    die_with_parent(parent_pid)
    try:
        checked = check(config_file)
    except Exception as exc:  # a bug in a checker: refuse the edit, say why
        checked = _refused(config_file, f"failed: {type(exc).__name__}: {exc}")
    answer.send(checked)
    answer.close()


def _refused(config_file: Path, why: str) -> Checked:
    return None, [Problem(config_file.name, None, "", f"checking the edited project {why}")]
