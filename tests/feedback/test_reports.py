"""`read_report` on every fixture: what kind of report, hard or soft, which status,
and the VERP token that names the message, wherever the format keeps it."""

from __future__ import annotations

import pytest

from engine.deliver import Signer
from engine.feedback import VerpPattern, read_report

from .bounce_fixtures import BOUNCE_ADDRESS, Case, cases, concrete

SIGNER = Signer("feedback-test-secret-0123456789")
VERP = VerpPattern(BOUNCE_ADDRESS)
CUSTOMER = "rahima@example.com"


def verp_for(message_id: int) -> str:
    return f"bounce+{SIGNER.bounce_token(message_id)}@bounces.example.com"


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.file)
def test_each_fixture_reads_as_its_manifest_says(case: Case) -> None:
    report = read_report(concrete(case, verp=verp_for(4711), recipient=CUSTOMER), VERP)
    expect = case.expect
    assert report.kind == expect["kind"], (report.reason, report.diagnostic)
    if expect["kind"] == "bounce":
        assert report.hard is expect["hard"], report.diagnostic
        assert report.status == expect.get("status")
        if expect.get("recipient"):
            assert report.recipient == CUSTOMER
    if expect["kind"] == "complaint":
        assert report.feedback_type == expect.get("feedback_type", "abuse")
    if expect["kind"] in ("bounce", "complaint"):
        # The token names message 4711, however the report kept the address.
        assert report.tokens, "no VERP address found"
        assert SIGNER.verify_bounce(report.tokens[0]) == 4711


def test_the_token_survives_a_mail_system_that_changes_its_case() -> None:
    [case] = [c for c in cases() if c.file == "postfix_hard.eml"]
    upper = verp_for(12).upper()
    report = read_report(concrete(case, verp=upper, recipient=CUSTOMER), VERP)
    assert SIGNER.verify_bounce(report.tokens[0]) == 12


def test_a_report_too_big_is_unreadable_not_parsed() -> None:
    report = read_report(b"Subject: x\r\n\r\n" + b"a" * 2_000_001, VERP)
    assert report.kind == "unreadable" and "larger than" in report.reason


def test_garbage_is_never_an_exception() -> None:
    for data in (
        b"",
        b"\x00\xff" * 100,
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\n",
    ):
        assert read_report(data, VERP).kind in ("ignore", "unreadable")
