"""The development mail sink: real aiosmtplib client → MailSink on 127.0.0.1."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path

import aiosmtplib
import pytest

from engine.deliver.sink import MailSink, start_sink
from engine.errors import DeliveryError

SUBJECT = "=?utf-8?b?4Kaq4KeN4Kaw4Kal4Kau?= order"  # "প্রথম order", RFC 2047 encoded


def message(n: int) -> bytes:
    return (
        f"From: <shop@shop.test>\r\nTo: <c{n}@example.com>\r\nSubject: {SUBJECT} {n}\r\n"
        f"Message-ID: <{n}@shop.test>\r\n\r\nHello {n}\r\n"
    ).encode()


def test_sink_keeps_each_message_as_an_eml_file(tmp_path: Path) -> None:
    lines: list[str] = []
    fixed = datetime(2026, 11, 22, 6, 0, 1, tzinfo=UTC)

    async def go() -> int:
        sink = await start_sink(
            "127.0.0.1", 0, tmp_path / "outbox", echo=lines.append, clock=lambda: fixed
        )
        try:
            for n in range(3):
                await aiosmtplib.send(
                    message(n),
                    sender="shop@shop.test",
                    recipients=[f"c{n}@example.com"],
                    hostname="127.0.0.1",
                    port=sink.port,
                    local_hostname="test.local",
                )
        finally:
            await sink.stop()
        return sink.count

    assert asyncio.run(go()) == 3
    files = sorted((tmp_path / "outbox").iterdir())
    assert [f.name for f in files] == [f"20261122T060001.000000Z-00000{n}.eml" for n in (1, 2, 3)]
    assert message_from_bytes(files[1].read_bytes())["Message-ID"] == "<1@shop.test>"
    assert lines[0] == "06:00:01  to c0@example.com  প্রথম order 0"
    assert not list((tmp_path / "outbox").glob(".*"))  # no partial files left behind


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    async def go() -> None:
        async with MailSink(tmp_path, port=0, echo=None) as first:
            with pytest.raises(DeliveryError, match=f"cannot listen on 127.0.0.1:{first.port}"):
                await MailSink(tmp_path, port=first.port, echo=None).start()

    asyncio.run(go())
