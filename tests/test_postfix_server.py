"""The Postfix the bounce tests send through: a message to an unknown user is accepted,
then bounced with a DSN to its envelope sender, delivered to the bounce Maildir or
relayed to a listener (again on flush when the listener deferred it); a client that does
not trust the test CA is refused at STARTTLS."""

from __future__ import annotations

import smtplib
import ssl
import time
from email.message import EmailMessage, Message

import pytest

from tests.postfix_server import BounceDestination, PostfixServer

SENDER = "bounce+abc@bounces.test"
MESSAGE_ID = "<welcome-1@shop.test>"


def welcome(recipient: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Shop <hello@shop.test>"
    message["To"] = recipient
    message["Subject"] = "Welcome to the shop"
    message["Message-ID"] = MESSAGE_ID
    message.set_content("Thanks for your first order.\n")
    return message


def send(server: PostfixServer, recipient: str) -> None:
    """Send the welcome to `recipient` over STARTTLS, trusting only the test CA."""
    context = ssl.create_default_context(cafile=server.cafile)
    with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
        smtp.starttls(context=context)
        refused = smtp.send_message(welcome(recipient), from_addr=SENDER, to_addrs=[recipient])
    assert refused == {}


def delivery_status(dsn: Message) -> list[Message]:
    """The per-recipient fields of a DSN (RFC 3464), after checking its shape."""
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    [status] = [part for part in dsn.walk() if part.get_content_type() == "message/delivery-status"]
    blocks = status.get_payload()  # the per-message fields, then one block per recipient
    assert isinstance(blocks, list)
    return [block for block in blocks[1:] if isinstance(block, Message)]


def assert_unknown_user_dsn(dsn: Message, recipient: str) -> None:
    [fields] = delivery_status(dsn)
    assert fields["Final-Recipient"] == f"rfc822; {recipient}"
    assert fields["Action"] == "failed"
    assert fields["Status"] == "5.1.1"
    assert MESSAGE_ID in dsn.as_string()  # the returned original, or its headers


def test_an_unknown_user_is_bounced_to_the_bounce_maildir(
    postfix_server: PostfixServer,
) -> None:
    recipient = f"nosuchuser@{postfix_server.domain}"

    send(postfix_server, recipient)

    [dsn] = postfix_server.wait_for_maildir(1)
    assert dsn["To"] == SENDER
    assert dsn["Return-Path"] == "<>"  # a bounce, which must never be bounced itself
    assert_unknown_user_dsn(dsn, recipient)


@pytest.mark.parametrize("postfix_server", [BounceDestination.RELAY], indirect=True)
def test_an_unknown_user_is_bounced_to_the_relay(
    postfix_server: PostfixServer,
) -> None:
    recipient = f"nosuchuser@{postfix_server.domain}"

    send(postfix_server, recipient)

    [relayed] = postfix_server.wait_for_relay(1)
    assert (relayed.sender, relayed.recipients) == ("<>", [SENDER])  # a bounce
    assert_unknown_user_dsn(relayed.message, recipient)


@pytest.mark.parametrize("postfix_server", [BounceDestination.RELAY], indirect=True)
def test_a_dsn_the_relay_deferred_is_sent_again_on_flush(
    postfix_server: PostfixServer,
) -> None:
    relay = postfix_server.relay
    assert relay is not None
    relay.rcpt_replies[SENDER] = "451 4.3.0 try again later"
    send(postfix_server, f"nosuchuser@{postfix_server.domain}")
    deadline = time.monotonic() + 10
    while "try again later" not in postfix_server.queue():  # the DSN waits in the queue
        assert time.monotonic() < deadline, postfix_server.output()
        time.sleep(0.05)
    del relay.rcpt_replies[SENDER]

    postfix_server.flush()  # else Postfix would try again in 5 minutes

    [relayed] = postfix_server.wait_for_relay(1)
    assert relayed.recipients == [SENDER]


def test_a_client_that_does_not_trust_the_test_ca_is_refused(
    postfix_server: PostfixServer,
) -> None:
    system_trust = ssl.create_default_context()
    with (
        smtplib.SMTP(postfix_server.host, postfix_server.port, timeout=10) as smtp,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        smtp.starttls(context=system_trust)
