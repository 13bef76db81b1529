"""The IMAP server the bounce tests read from: a client that trusts its certificate logs
in, finds what the test delivered, files it in a folder; the wrong password and an
untrusted certificate are refused."""

from __future__ import annotations

import imaplib
import mailbox
import ssl
from email import message_from_bytes
from email.message import EmailMessage

import pytest

from tests.imap_server import Dovecot, ImapServer

MESSAGE_ID = "<bounce-1@mx.example.net>"


def bounce() -> bytes:
    message = EmailMessage()
    message["From"] = "MAILER-DAEMON@mx.example.net"
    message["To"] = "bounces@shop.test"
    message["Subject"] = "Undelivered Mail Returned to Sender"
    message["Message-ID"] = MESSAGE_ID
    message.set_content("<ada@example.com>: host mx.example.com said: 550 5.1.1 no such user\n")
    return message.as_bytes()


def connect(server: ImapServer) -> imaplib.IMAP4_SSL:
    context = ssl.create_default_context(cafile=server.cafile)
    return imaplib.IMAP4_SSL(server.host, server.port, ssl_context=context, timeout=10)


def find_bounce(imap: imaplib.IMAP4_SSL) -> list[str]:
    """The UIDs of the bounce in the selected mailbox."""
    status, data = imap.uid("SEARCH", "HEADER", "Message-ID", f'"{MESSAGE_ID}"')
    assert status == "OK", data
    return data[0].decode().split()


def subjects(box: mailbox.Maildir) -> list[str]:
    return [message["Subject"] for message in box]


def test_a_delivered_message_is_found_and_fetched(imap_server: ImapServer) -> None:
    imap_server.deliver(bounce())
    with connect(imap_server) as imap:
        imap.login(imap_server.user, imap_server.password)
        status, count = imap.select("INBOX")
        assert (status, count) == ("OK", [b"1"])
        [uid] = find_bounce(imap)
        status, data = imap.uid("FETCH", uid, "(RFC822)")
        assert status == "OK", data
    fetched = message_from_bytes(data[0][1])
    assert fetched["Subject"] == "Undelivered Mail Returned to Sender"
    assert "550 5.1.1 no such user" in fetched.get_payload()


def test_a_message_moved_to_a_new_folder_lands_in_its_maildir(imap_server: ImapServer) -> None:
    imap_server.deliver(bounce())
    with connect(imap_server) as imap:
        imap.login(imap_server.user, imap_server.password)
        assert imap.create("Processed")[0] == "OK"
        imap.select("INBOX")
        [uid] = find_bounce(imap)
        status, data = imap.uid("MOVE", uid, "Processed")
        assert status == "OK", data
        assert find_bounce(imap) == []
    inbox = mailbox.Maildir(imap_server.maildir, create=False)
    assert subjects(inbox) == []
    assert subjects(inbox.get_folder("Processed")) == ["Undelivered Mail Returned to Sender"]


def test_a_message_delivered_to_a_folder_is_in_that_folder(imap_server: ImapServer) -> None:
    imap_server.deliver(bounce(), folder="Later")
    with connect(imap_server) as imap:
        imap.login(imap_server.user, imap_server.password)
        assert imap.select("INBOX") == ("OK", [b"0"])
        assert imap.select("Later") == ("OK", [b"1"])
        assert len(find_bounce(imap)) == 1


def test_each_test_starts_with_an_empty_mailbox(imap_server: ImapServer, dovecot: Dovecot) -> None:
    imap_server.deliver(bounce())
    imap_server.deliver(bounce(), folder="Later")
    fresh = dovecot.mailbox()
    with connect(fresh) as imap:
        imap.login(fresh.user, fresh.password)
        assert imap.select("INBOX") == ("OK", [b"0"])
        status, folders = imap.list()
    assert status == "OK"
    assert folders == [b'(\\HasNoChildren) "." INBOX']


def test_a_wrong_password_is_refused(imap_server: ImapServer) -> None:
    with (
        connect(imap_server) as imap,
        pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"),
    ):
        imap.login(imap_server.user, "not the password")


def test_a_client_that_does_not_trust_the_certificate_is_refused(
    imap_server: ImapServer,
) -> None:
    context = ssl.create_default_context()  # the system's CAs only
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL(imap_server.host, imap_server.port, ssl_context=context, timeout=10)
