"""Read the bounce mailbox: each report once, then moved aside.

The reports arrive in a mailbox the engine reads: a local Maildir (`bounces.maildir`,
e.g. where the bounce domain's Postfix delivers) or an IMAP mailbox over implicit
TLS (`bounces.imap`, the password in LIFECYCLE_BOUNCE_PASSWORD). A run reads at most
`bounces.max_per_run` reports. Each is applied and committed on its own
(`engine.feedback.apply`), then moved to the `processed_folder` (bounces,
complaints, auto-replies) or the `unmatched_folder` (reports that name no message of
ours or cannot be read, for a person to look at). A crash between the commit and
the move reads that report again next time, which records nothing twice.

Both readers block (files, sockets); the daemon runs them in a worker thread.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import mailbox
import os
import re
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from ..deliver import Signer
from ..errors import ConfigError, EngineError, Problem
from ..project import Bounces, Project, Secrets
from ..store import session_scope
from .apply import Applied, Outcome, Tally, apply_reports
from .reports import MAX_REPORT_BYTES, VerpPattern, read_report

log = logging.getLogger(__name__)

MISPLACED = (Outcome.UNMATCHED, Outcome.UNREADABLE)


class MailboxError(EngineError):
    """The bounce mailbox could not be read (unreachable, refused, not a mailbox)."""


@dataclass
class Processor:
    """Applies one report at a time, each in its own transaction."""

    engine: Engine
    signer: Signer
    verp: VerpPattern
    policy: Bounces
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    @classmethod
    def for_project(cls, engine: Engine, project: Project, secrets: Secrets) -> Processor:
        bounce_address = project.config.sending.bounce_address
        if bounce_address is None:
            raise ConfigError(
                [
                    Problem(
                        "config.yaml",
                        None,
                        "sending.bounce_address",
                        "is not set: bounces cannot be matched to their messages without it",
                    )
                ]
            )
        if not secrets.secret:
            raise ConfigError(
                [
                    Problem(
                        "environment",
                        None,
                        "LIFECYCLE_SECRET",
                        "is not set: bounce tokens cannot be checked",
                    )
                ]
            )
        return cls(
            engine, Signer(secrets.secret), VerpPattern(bounce_address), project.config.bounces
        )

    def handle(self, data: bytes) -> Applied:
        """Apply one report, in a transaction of its own."""
        [applied] = self.handle_many([data])
        return applied

    def handle_many(self, reports: list[bytes]) -> list[Applied]:
        """Apply `reports` in one transaction (all recorded, or none)."""
        read = [read_report(data, self.verp) for data in reports]
        now = self.clock()
        with session_scope(self.engine) as session:
            done = apply_reports(session, read, self.signer, self.policy, now)
        for report, applied in zip(read, done, strict=True):
            if applied.outcome in MISPLACED:
                log.info(
                    "bounce mailbox: %s report %s: %s",
                    applied.outcome,
                    report.report_id,
                    applied.why,
                )
            elif applied.suppressed:
                log.info(
                    "bounce mailbox: %s for message %s suppressed %s",
                    applied.outcome,
                    applied.message_id,
                    applied.suppressed,
                )
        return done


def read_mailbox(processor: Processor, project: Project, secrets: Secrets) -> Tally:
    """Read the configured mailbox once (MailboxError if it cannot be read)."""
    bounces = project.config.bounces
    if bounces.maildir:
        return read_maildir(processor, project.root / bounces.maildir)
    if bounces.imap:
        return read_imap(processor, project, secrets)
    raise ConfigError(
        [
            Problem(
                "config.yaml",
                None,
                "bounces",
                "names no mailbox: set bounces.maildir or bounces.imap",
            )
        ]
    )


def read_maildir(processor: Processor, path: Path) -> Tally:
    """Apply the reports in the Maildir at `path` (`new/`, then `cur/`), `BATCH` to a
    transaction, then move each file into a subfolder's `cur/` by renaming it: no copy,
    and a report is in exactly one place at any moment."""
    if not (path / "new").is_dir() or not (path / "cur").is_dir():
        raise MailboxError(f"{path} is not a Maildir (it needs new/ and cur/ folders)")
    policy = processor.policy
    box = mailbox.Maildir(path, factory=None, create=False)
    folders = {
        False: _maildir_folder(box, path, policy.processed_folder),
        True: _maildir_folder(box, path, policy.unmatched_folder),
    }
    tally = Tally()
    waiting = _first(_maildir_files(path), policy.max_per_run)
    for start in range(0, len(waiting), BATCH):
        batch: list[tuple[Path, bytes]] = []
        for file in waiting[start : start + BATCH]:
            try:
                with file.open("rb") as handle:
                    batch.append((file, handle.read(MAX_REPORT_BYTES + 1)))
            except FileNotFoundError:  # taken by another reader meanwhile
                continue
        done = processor.handle_many([data for _, data in batch])
        for (file, _), applied in zip(batch, done, strict=True):
            tally.add(applied)
            name = file.name if ":2," in file.name else f"{file.name}:2,S"
            target = folders[applied.outcome in MISPLACED] / "cur" / name
            with contextlib.suppress(FileNotFoundError):  # moved by another reader
                os.rename(file, target)
    return tally


BATCH = 100  # reports applied in one transaction


def _maildir_folder(box: mailbox.Maildir, path: Path, name: str) -> Path:
    """The path of the Maildir++ subfolder `name` of `box` at `path` (made when missing)."""
    if name not in box.list_folders():
        box.add_folder(name)
    return path / f".{name}"


def _maildir_files(path: Path) -> Iterator[Path]:
    for sub in ("new", "cur"):
        with os.scandir(path / sub) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_file() and not entry.name.startswith("."):
                    yield Path(entry.path)


def _first(items: Iterator[Path], most: int) -> list[Path]:
    chosen: list[Path] = []
    for item in items:
        if len(chosen) >= most:
            break
        chosen.append(item)
    return chosen


# ---------------------------------------------------------------- IMAP

_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


def read_imap(processor: Processor, project: Project, secrets: Secrets) -> Tally:
    """Apply the reports in the IMAP folder, moving each into a folder beside it."""
    imap = project.config.bounces.imap
    assert imap is not None
    if not secrets.bounce_password:
        raise ConfigError(
            [
                Problem(
                    "environment",
                    None,
                    "LIFECYCLE_BOUNCE_PASSWORD",
                    "is not set: the bounce mailbox needs its password",
                )
            ]
        )
    context = ssl.create_default_context(
        cafile=str(project.root / imap.ca_file) if imap.ca_file else None
    )
    where = f"{imap.username}@{imap.host}:{imap.port}"
    try:
        client = imaplib.IMAP4_SSL(
            imap.host, imap.port, ssl_context=context, timeout=imap.timeout.total_seconds()
        )
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailboxError(f"cannot reach the bounce mailbox {where}: {exc}") from exc
    try:
        client.login(imap.username, secrets.bounce_password)
        return _read_folder(client, processor, imap.folder, where)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailboxError(f"the bounce mailbox {where} failed: {exc}") from exc
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            client.logout()


def _read_folder(client: imaplib.IMAP4, processor: Processor, folder: str, where: str) -> Tally:
    policy = processor.policy
    _ok(client.select(_quoted(folder)), f"cannot open folder {folder!r} of {where}")
    for name in (policy.processed_folder, policy.unmatched_folder):
        client.create(_quoted(name))  # "already exists" is a NO, which is fine
    _, found = client.uid("SEARCH", "ALL")
    uids = (found[0] or b"").split()[: policy.max_per_run]
    moves = b"MOVE" in client.capabilities or "MOVE" in client.capabilities
    tally = Tally()
    for uid in uids:
        data = _fetch(client, uid)
        if data is None:
            continue  # gone meanwhile
        applied = processor.handle(data)
        tally.add(applied)
        target = _quoted(
            policy.unmatched_folder if applied.outcome in MISPLACED else policy.processed_folder
        )
        if moves:
            _ok(client.uid("MOVE", uid.decode(), target), f"cannot move a report to {target}")
        else:
            _ok(client.uid("COPY", uid.decode(), target), f"cannot copy a report to {target}")
            client.uid("STORE", uid.decode(), "+FLAGS.SILENT", r"(\Deleted)")
    if not moves and uids:
        client.expunge()
    return tally


def _fetch(client: imaplib.IMAP4, uid: bytes) -> bytes | None:
    """The report's bytes (a too-big one: its first MAX_REPORT_BYTES + 1, so it reads
    as too big), without marking it seen."""
    _, sized = client.uid("FETCH", uid.decode(), "(RFC822.SIZE)")
    match = _SIZE.search(b" ".join(p if isinstance(p, bytes) else b" ".join(p) for p in sized if p))
    if match is None:
        return None
    size = int(match.group(1))
    part = "BODY.PEEK[]" if size <= MAX_REPORT_BYTES else f"BODY.PEEK[]<0.{MAX_REPORT_BYTES + 1}>"
    _, fetched = client.uid("FETCH", uid.decode(), f"({part})")
    for piece in fetched:
        if isinstance(piece, tuple) and len(piece) == 2:
            return bytes(piece[1])
    return None


def _ok(answer: tuple[str, list[Any]], what: str) -> None:
    if answer[0] != "OK":
        raise MailboxError(f"{what}: {answer[1]!r}"[:300])


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
