"""The SMTP mailer against a scripted aiosmtpd on 127.0.0.1, and its outcome rules."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import ssl
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from engine.deliver.mailer import (
    MemoryMailer,
    Outcome,
    SendResult,
    SmtpMailer,
    Stage,
    TokenBucket,
    _response_result,
    _wire_form,
)
from engine.project.loader import Secrets
from tests.delivery_fixtures import project_for
from tests.smtp_servers import Script, self_signed, serving

DATA = b"From: <a@shop.test>\r\nTo: <b@example.com>\r\nSubject: hi\r\n\r\nbody\r\n.leading dot\r\n"


def send_all(project_dir: Path, script: Script, count: int, **sending: Any) -> list[SendResult]:
    async def go() -> list[SendResult]:
        async with serving(script) as port:
            mailer = SmtpMailer(project_for(project_dir, port, **sending).config.sending)
            try:
                return list(
                    await asyncio.gather(
                        *(
                            mailer.send("a@shop.test", f"r{i}@example.com", DATA)
                            for i in range(count)
                        )
                    )
                )
            finally:
                await mailer.close()

    return asyncio.run(go())


def test_sends_prebuilt_bytes_over_reused_connections(project_dir: Path) -> None:
    script = Script()
    results = send_all(project_dir, script, 12, connections=3, recycle_after=100)
    assert [r.outcome for r in results] == [Outcome.SENT] * 12
    assert all(r.code == 250 and "queued" in r.reply for r in results)
    assert script.connections == 3  # reused, not one per message
    assert sorted(script.recipients()) == sorted(f"r{i}@example.com" for i in range(12))
    assert script.received[0].data.replace(b"\r\n", b"\n") == DATA.replace(b"\r\n", b"\n")


def test_the_wire_form_is_what_aiosmtplib_would_send() -> None:
    """Every string of up to 7 bytes of `a . CR LF`: the same bytes as
    aiosmtplib's own line-ending and dot-stuffing rules produce."""
    for length in range(8):
        for chars in itertools.product((b"a", b".", b"\r", b"\n"), repeat=length):
            data = b"".join(chars)
            expected = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data)) + b".\r\n"
            assert _wire_form(data) == expected, data


@pytest.mark.parametrize(
    ("data", "arrives"),
    [
        pytest.param(DATA, DATA, id="crlf"),
        pytest.param(
            b".first\r\n.\r\n..two\r\nlast", b".first\r\n.\r\n..two\r\nlast\r\n", id="dots"
        ),
        pytest.param(
            b"Subject: x\n\nbare\nline feeds\n.\n",
            b"Subject: x\r\n\r\nbare\r\nline feeds\r\n.\r\n",
            id="lf",
        ),
        pytest.param(
            b"Subject: x\r\rlone\rreturns", b"Subject: x\r\n\r\nlone\r\nreturns\r\n", id="cr"
        ),
    ],
)
def test_message_data_arrives_intact(project_dir: Path, data: bytes, arrives: bytes) -> None:
    """A line holding only a dot does not end the message early; line ends arrive as CRLF."""
    script = Script()

    async def go() -> SendResult:
        async with serving(script) as port:
            mailer = SmtpMailer(project_for(project_dir, port).config.sending)
            try:
                return await mailer.send("a@shop.test", "b@example.com", data)
            finally:
                await mailer.close()

    assert asyncio.run(go()).outcome is Outcome.SENT
    [received] = script.received
    assert received.data == arrives


def test_connections_are_recycled(project_dir: Path) -> None:
    script = Script()
    send_all(project_dir, script, 10, connections=1, recycle_after=4)
    assert script.connections == 3 and len(script.received) == 10


def test_the_rate_limit_is_shared_by_the_pool(project_dir: Path) -> None:
    started = time.monotonic()
    send_all(project_dir, Script(), 12, connections=4, rate_per_second=40.0)
    # 4 may go at once, the other 8 at 40 a second: at least 0.2 s.
    assert time.monotonic() - started >= 0.19


def test_token_bucket_waits_only_when_empty() -> None:
    async def go() -> float:
        bucket = TokenBucket(100.0, capacity=5)
        started = time.monotonic()
        for _ in range(15):
            await bucket.take()
        return time.monotonic() - started

    assert 0.09 <= asyncio.run(go()) < 0.5


def test_refused_recipient_and_transient_replies(project_dir: Path) -> None:
    script = Script(
        rcpt_replies={
            "r1@example.com": "550 5.1.1 no such user",
            "r2@example.com": "452 4.2.2 full",
        }
    )
    results = send_all(project_dir, script, 3, connections=1)
    assert results[0].outcome is Outcome.SENT
    assert (results[1].outcome, results[1].code, results[1].enhanced) == (
        Outcome.PERMANENT,
        550,
        "5.1.1",
    )
    assert results[1].bad_mailbox and results[1].stage is Stage.RCPT
    assert results[2].outcome is Outcome.TRANSIENT and not results[2].bad_mailbox
    assert len(script.received) == 1


def test_nobody_listening_is_transient(project_dir: Path) -> None:
    async def go() -> SendResult:
        mailer = SmtpMailer(project_for(project_dir, 1).config.sending)
        try:
            return await mailer.send("a@shop.test", "b@example.com", DATA)
        finally:
            await mailer.close()

    result = asyncio.run(go())
    assert result.outcome is Outcome.TRANSIENT and result.stage is Stage.CONNECT
    assert result.unreachable
    assert result.reply == (
        "cannot connect to the mail server at 127.0.0.1:1: connection refused "
        "(no mail server is listening there)"
    )


def test_a_server_that_never_greets_is_named_with_the_wait(project_dir: Path) -> None:
    async def go() -> SendResult:
        held: list[asyncio.StreamWriter] = []  # kept open, never written to
        silent = await asyncio.start_server(lambda _, w: held.append(w), "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        smtp = {"timeout": timedelta(seconds=0.2)}
        mailer = SmtpMailer(project_for(project_dir, port, smtp=smtp).config.sending)
        try:
            return await mailer.send("a@shop.test", "b@example.com", DATA)
        finally:
            await mailer.close()
            silent.close()

    result = asyncio.run(go())
    assert result.unreachable and result.outcome is Outcome.TRANSIENT
    assert result.reply.startswith("cannot connect to the mail server at 127.0.0.1:")
    assert result.reply.endswith(": no answer within 0.2s")


def test_an_address_with_a_line_break_never_reaches_the_wire(project_dir: Path) -> None:
    script = Script()
    results = asyncio.run(_one(project_dir, script, "b@example.com\r\nRCPT TO:<x@evil.test>"))
    assert results.outcome is Outcome.PERMANENT and script.received == []


def test_a_drop_before_the_data_goes_out_is_transient_and_one_after_is_in_doubt(
    project_dir: Path,
) -> None:
    """Before the server's 354 it cannot hold the message: retry. After the data: in doubt."""
    before = asyncio.run(
        _one(project_dir, Script(drop_after_rcpt={"b@example.com"}), "b@example.com")
    )
    assert (before.outcome, before.stage) == (Outcome.TRANSIENT, Stage.DATA)
    after = asyncio.run(
        _one(project_dir, Script(drop_after_data={"b@example.com"}), "b@example.com")
    )
    assert (after.outcome, after.stage) == (Outcome.IN_DOUBT, Stage.DATA)


async def _one(project_dir: Path, script: Script, recipient: str) -> SendResult:
    async with serving(script) as port:
        mailer = SmtpMailer(project_for(project_dir, port).config.sending)
        try:
            return await mailer.send("a@shop.test", recipient, DATA)
        finally:
            await mailer.close()


@pytest.mark.parametrize(
    ("code", "reply", "stage", "outcome"),
    [
        pytest.param(550, "5.1.1 user unknown", Stage.RCPT, Outcome.PERMANENT, id="bad-mailbox"),
        pytest.param(552, "5.2.2 mailbox full", Stage.DATA, Outcome.PERMANENT, id="full"),
        pytest.param(451, "4.3.0 try later", Stage.MAIL, Outcome.TRANSIENT, id="greylisted"),
        pytest.param(421, "4.7.0 closing", Stage.RCPT, Outcome.TRANSIENT, id="closing"),
        pytest.param(535, "5.7.8 bad credentials", Stage.AUTH, Outcome.SYSTEMIC, id="auth"),
        pytest.param(550, "5.7.1 relaying denied", Stage.RCPT, Outcome.SYSTEMIC, id="policy"),
        pytest.param(553, "sender not allowed", Stage.MAIL, Outcome.SYSTEMIC, id="sender"),
        pytest.param(554, "no service", Stage.CONNECT, Outcome.SYSTEMIC, id="greeting"),
    ],
)
def test_replies_are_classified(code: int, reply: str, stage: Stage, outcome: Outcome) -> None:
    assert _response_result(code, reply, stage).outcome is outcome


@pytest.mark.parametrize(
    ("code", "reply", "per_recipient", "bad_mailbox"),
    [
        pytest.param(550, "5.1.1 <a@x.test>: user unknown", True, True, id="5.1.1"),
        pytest.param(553, "5.1.3 bad address syntax", True, True, id="5.1.3"),
        pytest.param(550, "Mailbox unavailable", True, True, id="550-mailbox-unavailable"),
        pytest.param(550, "<a@x.test>: User unknown in local table", True, True, id="550-unknown"),
        pytest.param(550, "No such user here", True, True, id="550-no-such-user"),
        pytest.param(551, "User not local; recipient does not exist", True, True, id="551"),
        pytest.param(552, "5.2.2 mailbox full", True, False, id="5.2.2-full"),
        pytest.param(550, "5.2.1 mailbox disabled", True, False, id="5.2.1-disabled"),
        pytest.param(550, "message refused, sender is on a block list", False, False, id="block"),
        pytest.param(554, "5.6.0 message content rejected", False, False, id="content"),
        pytest.param(554, "5.3.0 relaying refused", False, False, id="relay"),
        pytest.param(550, "5.7.1 mailbox unavailable: policy", False, False, id="5.7-wins"),
    ],
)
def test_refusals_of_one_recipient_are_told_apart(
    code: int, reply: str, per_recipient: bool, bad_mailbox: bool
) -> None:
    result = _response_result(code, reply, Stage.RCPT)
    assert (result.per_recipient, result.bad_mailbox) == (per_recipient, bad_mailbox)


def test_memory_mailer_keeps_what_it_accepts() -> None:
    def respond(sender: str, recipient: str, data: bytes) -> SendResult:
        if recipient.startswith("no"):
            return SendResult(Outcome.PERMANENT, Stage.RCPT, 550, "5.1.1 nope")
        return SendResult(Outcome.SENT, Stage.DATA, 250, "ok")

    mailer = MemoryMailer(respond)
    results = asyncio.run(_both(mailer))
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.PERMANENT]
    assert mailer.sent == [("a@shop.test", "yes@example.com", DATA)] and mailer.closed


async def _both(mailer: MemoryMailer) -> list[SendResult]:
    results = [
        await mailer.send("a@shop.test", "yes@example.com", DATA),
        await mailer.send("a@shop.test", "no@example.com", DATA),
    ]
    await mailer.close()
    return results


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server certificate for 127.0.0.1 that the client trusts (SSL_CERT_FILE)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    context, cert = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    return context


def send_secure(
    project_dir: Path, script: Script, security: str, tls: ssl.SSLContext | None
) -> SendResult:
    async def go() -> SendResult:
        async with serving(script, tls) as port:
            smtp = {"security": security, "username": "shop"}
            sending = project_for(project_dir, port, smtp=smtp).config.sending
            mailer = SmtpMailer(sending, password="right-password")
            try:
                return await mailer.send("a@shop.test", "b@example.com", DATA)
            finally:
                await mailer.close()

    return asyncio.run(go())


def test_starttls_then_login(project_dir: Path, tls: ssl.SSLContext) -> None:
    script = Script(starttls=tls)
    result = send_secure(project_dir, script, "starttls", None)
    assert result.outcome is Outcome.SENT and script.logins == 1 and len(script.received) == 1


def test_implicit_tls_then_login(project_dir: Path, tls: ssl.SSLContext) -> None:
    script = Script()
    result = send_secure(project_dir, script, "tls", tls)
    assert result.outcome is Outcome.SENT and script.logins == 1 and len(script.received) == 1


def test_a_server_that_requires_starttls_refuses_everyone(
    project_dir: Path, tls: ssl.SSLContext
) -> None:
    script = Script(starttls=tls)
    result = send_secure(project_dir, script, "none", None)
    assert result.outcome is Outcome.SYSTEMIC and script.received == []


def test_a_relay_signed_by_a_private_authority_is_trusted_through_ca_file(
    project_dir: Path, tmp_path: Path
) -> None:
    """sending.smtp.ca_file: the relay's certificate checks out against the shop's own
    authority (here the self-signed certificate itself), without touching the system's."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    context, cert = self_signed(tmp_path)
    (project_dir / "relay-ca.pem").write_bytes(cert.read_bytes())

    async def go(ca_file: str | None) -> SendResult:
        script = Script(starttls=context)
        async with serving(script) as port:
            smtp = {"security": "starttls", "username": "shop", "ca_file": ca_file}
            project = project_for(project_dir, port, smtp=smtp)
            mailer = SmtpMailer.from_project(project, Secrets(smtp_password="right-password"))
            try:
                return await mailer.send("a@shop.test", "b@example.com", DATA)
            finally:
                await mailer.close()

    assert asyncio.run(go("relay-ca.pem")).outcome is Outcome.SENT
    refused = asyncio.run(go(None))  # the system's authorities do not know it
    assert refused.outcome is not Outcome.SENT and "certificate" in refused.describe().lower()
