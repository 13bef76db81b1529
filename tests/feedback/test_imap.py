"""The bounce mailbox over IMAP with TLS, against a real dovecot on 127.0.0.1:
reports read once and moved aside, a wrong password or an unreachable server said
plainly."""

from __future__ import annotations

import json
import mailbox
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session

from engine.project.loader import load_project
from engine.store.db import make_engine
from engine.store.models import Suppression
from tests.cli.test_delivery import run, script, shop  # noqa: F401 - fixtures
from tests.daemon_fixtures import free_port
from tests.feedback.test_mailbox_cli import dsn, sent  # noqa: F401 - fixtures
from tests.imap_server import ImapServer


def use_imap(config: Path, server: ImapServer) -> None:
    text = config.read_text().replace("  maildir: bounces\n", "")
    config.write_text(
        text
        + f"  imap:\n    host: {server.host}\n    port: {server.port}\n"
        + f"    username: {server.user}\n    ca_file: {server.cafile}\n    timeout: 5s\n"
    )


@pytest.fixture
def over_imap(
    sent: tuple[Path, dict[str, str]],  # noqa: F811
    imap_server: ImapServer,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Path, dict[str, str]]:
    """The shop of `sent` reading its bounces over IMAP, with the right password."""
    config, envelope = sent
    use_imap(config, imap_server)
    monkeypatch.setenv("LIFECYCLE_BOUNCE_PASSWORD", imap_server.password)
    return config, envelope


def hard_bounce(envelope: dict[str, str]) -> bytes:
    return dsn(envelope["c0@example.com"], "c0@example.com", "5.1.1", "550 5.1.1 User unknown")


def test_reports_over_imap_are_applied_once_and_moved_aside(
    over_imap: tuple[Path, dict[str, str]], imap_server: ImapServer
) -> None:
    config, envelope = over_imap
    imap_server.deliver(hard_bounce(envelope))
    imap_server.deliver(
        b"From: someone@example.net\r\nTo: bounce@bounces.nakshighor.example\r\nSubject: hi\r\n\r\nhello\r\n"
    )

    code, out = run(config, "bounces", "--json")
    assert code == 0, out
    counts = json.loads(out)
    assert (counts["read"], counts["hard bounce"], counts["ignored"]) == (2, 1, 1)
    assert counts["suppressed"] == ["c0@example.com"]
    engine = make_engine(load_project(config).database_url())
    with Session(engine) as session:
        assert [s.email for s in session.scalars(select(Suppression))] == ["c0@example.com"]
    engine.dispose()

    box = mailbox.Maildir(imap_server.maildir, create=False)
    assert len(box) == 0
    assert len(box.get_folder("Processed")) == 2

    code, out = run(config, "bounces", "--json")
    assert code == 0 and json.loads(out)["read"] == 0


def test_a_wrong_password_is_said_and_nothing_moves(
    over_imap: tuple[Path, dict[str, str]], imap_server: ImapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, envelope = over_imap
    monkeypatch.setenv("LIFECYCLE_BOUNCE_PASSWORD", "not the password")
    imap_server.deliver(hard_bounce(envelope))
    code, out = run(config, "bounces")
    assert code == 1 and "bounce mailbox" in out and imap_server.user in out
    assert len(mailbox.Maildir(imap_server.maildir, create=False)) == 1


def test_an_unreachable_server_is_said(
    over_imap: tuple[Path, dict[str, str]], imap_server: ImapServer
) -> None:
    config, _ = over_imap
    text = config.read_text()
    config.write_text(text.replace(f"    port: {imap_server.port}\n", f"    port: {free_port()}\n"))
    code, out = run(config, "bounces")
    assert code == 1 and "cannot reach the bounce mailbox" in out


def test_without_the_password_the_command_names_the_variable(
    over_imap: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _ = over_imap
    monkeypatch.delenv("LIFECYCLE_BOUNCE_PASSWORD", raising=False)
    code, out = run(config, "bounces")
    assert code == 2 and "LIFECYCLE_BOUNCE_PASSWORD" in out
