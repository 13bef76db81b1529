"""Composed emails, parsed back with the standard library and held to the RFCs."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import re
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import dkim
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.deliver.compose import Composer, Outgoing, Unsendable
from engine.deliver.tokens import Purpose, Signer
from engine.errors import ConfigError, DataError, UnknownRecord
from engine.project.loader import Project, Secrets, load_project
from engine.render.renderer import Renderer
from engine.store.models import Customer, Message, Product
from tests.render.test_context import NOW, ShopData, fill_shop, holiday, queue, refund

REPO = Path(__file__).resolve().parents[2]
SECRET = "a-test-secret-of-32-characters!!"
SIGNER = Signer(SECRET)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    """The shipped templates, compiled once for the whole module."""
    return Renderer(REPO / "templates" / "emails")


@pytest.fixture
def project(project_dir: Path) -> Project:
    return load_project(project_dir / "config.yaml")


@pytest.fixture
def composer(project: Project, renderer: Renderer) -> Composer:
    return Composer(project, Secrets(secret=SECRET), renderer=renderer)


@pytest.fixture
def session(sqlite_store: Engine) -> Iterator[Session]:
    with Session(sqlite_store, expire_on_commit=False) as session:
        yield session
        session.rollback()


@pytest.fixture
def data(session: Session) -> ShopData:
    return fill_shop(session)


def parse(outgoing: Outgoing | Unsendable) -> EmailMessage:
    assert isinstance(outgoing, Outgoing), outgoing
    message = email.message_from_bytes(outgoing.data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert not message.defects
    return message


def header_block(data: bytes) -> list[str]:
    return data.split(b"\r\n\r\n", 1)[0].decode("ascii").split("\r\n")


def set_column(session: Session, model: Any, row_id: int, **values: Any) -> None:
    """Write values the shop API would refuse, as a bad import might have."""
    session.execute(update(model).where(col(model.id) == row_id).values(**values))


def prepare_one(composer: Composer, session: Session, message: Message) -> Outgoing | Unsendable:
    [result] = composer.prepare(session, [message], now=NOW)
    return result


# ---------------------------------------------------------------- the whole email


def test_bengali_marketing_email(composer: Composer, session: Session, data: ShopData) -> None:
    message = queue(session, "welcome", data.rahima, order_id=data.order_bn)
    result = prepare_one(composer, session, message)
    parsed = parse(result)
    assert isinstance(result, Outgoing)
    assert (result.message_id, result.sender, result.recipient) == (
        message.id, "hello@nakshighor.example", "rahima@example.com",
    )  # fmt: skip

    assert parsed["Subject"] == "Nakshi Ghor-এ স্বাগতম, রহিমা"
    raw_subject = next(h for h in header_block(result.data) if h.startswith("Subject:"))
    assert raw_subject.startswith("Subject: =?utf-8?b?")
    [to] = parsed["To"].addresses
    assert (to.display_name, to.addr_spec) == ("রহিমা খাতুন", "rahima@example.com")
    [sender] = parsed["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Nakshi Ghor", "hello@nakshighor.example")
    assert parsed["Reply-To"].addresses[0].addr_spec == "help@nakshighor.example"
    assert parsedate_to_datetime(parsed["Date"]) == NOW
    assert parsed["Message-ID"] == result.header_message_id
    assert re.fullmatch(r"<[0-9a-f]{32}@nakshighor\.example>", result.header_message_id)
    # Not worked out from the dedupe key alone (which anyone can guess), but the same
    # every time the message is built, so a retry keeps it.
    guessable = hashlib.sha256(message.dedupe_key.encode()).hexdigest()[:32]
    assert guessable not in result.header_message_id
    again = prepare_one(composer, session, message)
    assert isinstance(again, Outgoing) and again.header_message_id == result.header_message_id
    assert parsed["Feedback-ID"] == "welcome:marketing:Nakshi-Ghor"

    assert parsed.get_content_type() == "multipart/alternative"
    text, html = parsed.iter_parts()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert text.get_content_charset() == html.get_content_charset() == "utf-8"
    body = text.get_content()
    assert body.startswith("স্বাগতম, রহিমা!")
    assert "(NG-1)" in body and "২০১৯ সালে ধানমন্ডির" in body
    page = html.get_content()
    assert '<html lang="bn">' in page and "আমাদের গল্প" in page
    assert "House 12, Road 5, Dhanmondi, Dhaka 1205, Bangladesh" in page
    assert "প্রথম অর্ডারের জন্য ধন্যবাদ। আমাদের গল্পটা বলি।" in page  # the preheader

    # RFC 5322: CRLF only, no line over 998 octets, folded headers under 78 columns.
    assert b"\n" not in result.data.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in result.data.split(b"\r\n"))
    for line in header_block(result.data):
        if not line.startswith("List-Unsubscribe:"):
            assert len(line) <= 78, line


def test_marketing_emails_carry_one_click_unsubscribe(
    composer: Composer, session: Session, data: ShopData
) -> None:
    message = queue(session, "thank_you", data.sam, order_id=data.order_en)
    parsed = parse(prepare_one(composer, session, message))
    unsubscribe = parsed["List-Unsubscribe"]
    match = re.fullmatch(
        r"<http://127\.0\.0\.1:8000/u/([^>]+)>, "
        r"<mailto:unsubscribe@nakshighor\.example\?subject=unsubscribe>",
        str(unsubscribe),
    )
    assert match, unsubscribe
    assert SIGNER.verify(match.group(1), Purpose.UNSUBSCRIBE).message_id == message.id
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = parsed.get_body(("plain",))
    assert text is not None and f"/u/{match.group(1)}" in text.get_content()


def test_without_an_unsubscribe_mailbox_the_header_has_the_link_only(
    project: Project, renderer: Renderer, session: Session, data: ShopData
) -> None:
    sending = project.config.sending.model_copy(update={"unsubscribe_mailto": None})
    config = project.config.model_copy(update={"sending": sending})
    composer = Composer(replace(project, config=config), Secrets(secret=SECRET), renderer=renderer)
    message = queue(session, "welcome", data.sam, order_id=data.order_en)
    parsed = parse(prepare_one(composer, session, message))
    assert re.fullmatch(r"<http://127\.0\.0\.1:8000/u/[^>]+>", str(parsed["List-Unsubscribe"]))


def test_transactional_notice_has_no_list_unsubscribe_but_keeps_the_address(
    composer: Composer, session: Session, data: ShopData
) -> None:
    parsed = parse(prepare_one(composer, session, refund(session, data)))
    assert parsed["List-Unsubscribe"] is None and parsed["List-Unsubscribe-Post"] is None
    assert parsed["Subject"] == "The price of Sylhet tea dropped: we credited you ৳0.30"
    html = parsed.get_body(("html",))
    text = parsed.get_body(("plain",))
    assert html is not None and text is not None
    assert "Dhaka 1205, Bangladesh" in html.get_content()
    body = text.get_content()
    for line in (
        "Order: NG-2",
        "Product: Sylhet tea",
        "You paid (each): ৳10.10",
        "New price (each): ৳10.00",
        "Quantity: 3",
        "Credited to your account: ৳0.30",
    ):
        assert line in body
    assert "Turn off our marketing emails: http://127.0.0.1:8000/u/" in body


def test_links_are_tracked_and_the_pixel_is_signed(
    composer: Composer, session: Session, data: ShopData
) -> None:
    message = queue(session, "thank_you", data.rahima, order_id=data.order_bn)
    html = parse(prepare_one(composer, session, message)).get_body(("html",))
    assert html is not None
    page = html.get_content()
    clicks = re.findall(r'href="http://127\.0\.0\.1:8000/c/([^"]+)"', page)
    assert len(clicks) == 2  # the shop's name in the header, the button
    for token in clicks:
        claim = SIGNER.verify(token, Purpose.CLICK)
        assert (claim.message_id, claim.url) == (message.id, "https://nakshighor.example")
    [pixel] = re.findall(r'src="http://127\.0\.0\.1:8000/o/([^"]+)\.gif"', page)
    assert SIGNER.verify(pixel, Purpose.OPEN).message_id == message.id
    [unsubscribe] = re.findall(r'href="http://127\.0\.0\.1:8000/u/([^"]+)"', page)
    assert SIGNER.verify(unsubscribe, Purpose.UNSUBSCRIBE).message_id == message.id
    assert 'href="https://nakshighor.example"' not in page


def test_holiday_email_lists_the_offers(
    composer: Composer, session: Session, data: ShopData
) -> None:
    parsed = parse(prepare_one(composer, session, holiday(session, data.rahima)))
    assert parsed["Subject"] == "ব্ল্যাক ফ্রাইডে: আমাদের অফার আগেভাগে দেখুন"
    text = parsed.get_body(("plain",))
    assert text is not None
    body = text.get_content()
    assert "২৭ নভেম্বর, ২০২৬ তারিখে ব্ল্যাক ফ্রাইডে" in body
    assert "- পাটের ব্যাগ: ৪৫০.০০৳-এর বদলে ৩৬০.০০৳ (২০% ছাড়), স্টকে আছে ১২টি" in body
    assert "- Sylhet tea: ১০.১০৳-এর বদলে ৯.০৯৳ (১০% ছাড়), আপাতত স্টক শেষ" in body
    assert "- জামদানি শাড়ি: ৮,৫০০.০০৳-এর বদলে ৭,২২৫.০০৳ (১৫% ছাড়), স্টকে আছে ৩টি" in body


def test_an_empty_batch_asks_nothing(composer: Composer, session: Session) -> None:
    assert composer.prepare(session, [], now=NOW) == []


def test_the_same_message_builds_the_same_bytes(
    composer: Composer, session: Session, data: ShopData
) -> None:
    message = queue(session, "welcome", data.sam, order_id=data.order_en)
    first, second = composer.prepare(session, [message, message], now=NOW)
    assert isinstance(first, Outgoing) and isinstance(second, Outgoing)
    assert first.data == second.data


# ---------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        pytest.param(
            "Sam\r\nBcc: evil@example.com", "customer name contains a line break", id="crlf"
        ),
        pytest.param("Sam\nBcc: evil@example.com", "customer name contains a line break", id="lf"),
        pytest.param("Sam\rX", "customer name contains a line break", id="cr"),
        pytest.param("Sam\x00", "customer name contains a NUL character", id="nul"),
    ],
)
def test_line_breaks_in_names_never_reach_a_header(
    composer: Composer, session: Session, data: ShopData, name: str, reason: str
) -> None:
    set_column(session, Customer, data.sam, name=name)
    bad = queue(session, "thank_you", data.sam, order_id=data.order_en)
    good = queue(session, "thank_you", data.rahima, order_id=data.order_bn)
    results = composer.prepare(session, [bad, good], now=NOW)
    assert results[0] == Unsendable(bad.id or 0, reason)
    assert isinstance(results[1], Outgoing)


def test_line_break_in_a_rendered_subject_is_unsendable(
    composer: Composer, session: Session, data: ShopData
) -> None:
    session.execute(
        update(Product).where(col(Product.sku) == "TEA-500G").values(name="Tea\r\nBcc: x@y.z")
    )
    message = refund(session, data)
    result = prepare_one(composer, session, message)
    assert result == Unsendable(message.id or 0, "subject contains a line break (after rendering)")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param('O\'Brien, "Jr." \\ <x@y.z>', id="specials"),
        pytest.param("=?utf-8?q?fake?=", id="looks-encoded"),
        pytest.param("Tab\there", id="tab"),
        pytest.param("মোহাম্মদ " * 12 + "রহমান", id="long-bengali"),
        pytest.param("Abdullah " * 12 + "Khan", id="long-ascii"),
        pytest.param("ফাতেমা <script>alert(1)</script>", id="markup"),
    ],
)
def test_awkward_names_round_trip(
    composer: Composer, session: Session, data: ShopData, name: str
) -> None:
    set_column(session, Customer, data.sam, name=name)
    result = prepare_one(
        composer, session, queue(session, "welcome", data.sam, order_id=data.order_en)
    )
    parsed = parse(result)
    [to] = parsed["To"].addresses
    assert to.addr_spec == "sam@example.com"
    if len(name) < 20 and "\t" not in name:
        assert to.display_name == name
    else:  # Python's phrase parser keeps the folding space between encoded words
        assert " ".join(to.display_name.split()) == " ".join(name.split())
    assert all(
        len(line) <= 78 for line in header_block(result.data) if line.startswith(("To:", " "))
    )
    html = parsed.get_body(("html",))
    assert html is not None and "<script>" not in html.get_content()


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("not-an-address", id="no-at"),
        pytest.param("sam@localhost", id="no-domain-dot"),
        pytest.param("ünïcode@example.com", id="non-ascii"),
        pytest.param("sam@example.com\r\nBcc: x@y.z", id="crlf"),
        pytest.param("<sam@example.com>", id="angle"),
    ],
)
def test_invalid_recipient_is_unsendable_before_smtp(
    composer: Composer, session: Session, data: ShopData, address: str
) -> None:
    set_column(session, Customer, data.sam, email=address)
    result = prepare_one(composer, session, queue(session, "welcome", data.sam))
    assert isinstance(result, Unsendable)
    assert "recipient address" in result.reason


def test_template_failure_names_the_file_and_line(
    project: Project, renderer: Renderer, session: Session, data: ShopData
) -> None:
    composer = Composer(project, Secrets(secret=SECRET), renderer=renderer)
    message = queue(session, "thank_you", data.sam)  # no order: subject and body need one
    [result] = composer.prepare(session, [message], now=NOW)
    assert result == Unsendable(
        message.id or 0,
        "template error: campaigns/thank_you.yaml: subject: 'order.number' is undefined: "
        "order is None in this email",
        retry=True,
    )
    campaign = project.campaigns["thank_you"]
    plain = campaign.model_copy(update={"subject": "Thank you"})
    project = replace(project, campaigns={**project.campaigns, "thank_you": plain})
    composer = Composer(project, Secrets(secret=SECRET), renderer=renderer)
    [result] = composer.prepare(session, [message], now=NOW)
    assert result == Unsendable(
        message.id or 0,
        "template error: thank_you.html:4: 'order.number' is undefined: order is None in this email",
        retry=True,
    )


def test_output_over_the_cap_is_unsendable(
    project: Project, session: Session, data: ShopData
) -> None:
    small = Renderer(REPO / "templates" / "emails", max_output=2_000)
    composer = Composer(project, Secrets(secret=SECRET), renderer=small)
    result = prepare_one(
        composer, session, queue(session, "welcome", data.sam, order_id=data.order_en)
    )
    assert isinstance(result, Unsendable) and "over the 2,000 limit" in result.reason
    assert result.retry  # a limit is a template error: the message waits, not fails


# ---------------------------------------------------------------- DKIM


def _dkim_project(project_dir: Path) -> tuple[Project, bytes]:
    key = project_dir / "dkim.pem"
    subprocess.run(
        ["openssl", "genrsa", "-traditional", "-out", str(key), "2048"],
        check=True,
        capture_output=True,
    )
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    config = project_dir / "config.yaml"
    text = config.read_text(encoding="utf-8")
    text = text.replace(
        "sending:\n",
        "sending:\n  dkim: {domain: nakshighor.example, selector: mail2026, key_file: dkim.pem}\n",
        1,
    )
    config.write_text(text, encoding="utf-8")
    return load_project(config), base64.b64encode(public)


def test_dkim_signature_verifies(
    project_dir: Path, renderer: Renderer, session: Session, data: ShopData
) -> None:
    project, public = _dkim_project(project_dir)
    composer = Composer(project, Secrets(secret=SECRET), renderer=renderer)
    results = composer.prepare(
        session,
        [queue(session, "thank_you", data.rahima, order_id=data.order_bn), refund(session, data)],
        now=NOW,
    )
    asked = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        return b"v=DKIM1; k=rsa; p=" + public

    for result in results:
        assert isinstance(result, Outgoing), result
        assert dkim.verify(result.data, dnsfunc=dns)
        signature = parse(result)["DKIM-Signature"]
        signed = {
            h.strip().lower() for h in re.search(r"h=([^;]+)", str(signature)).group(1).split(":")
        }  # type: ignore[union-attr]
        assert {"from", "to", "subject", "date", "message-id"} <= signed
        tampered = result.data.replace(b"Message-ID: <", b"Message-ID: <0", 1)
        assert not dkim.verify(tampered, dnsfunc=dns)
    marketing = parse(results[0])["DKIM-Signature"]
    assert "list-unsubscribe" in str(marketing).lower()
    assert "list-unsubscribe-post" in str(marketing).lower()
    assert asked and asked[0] == b"mail2026._domainkey.nakshighor.example."


# ---------------------------------------------------------------- construction and preview


def test_the_tracking_secret_is_required(project: Project) -> None:
    with pytest.raises(ConfigError, match="LIFECYCLE_SECRET: is not set"):
        Composer(project, Secrets())
    with pytest.raises(ConfigError, match="at least 16 characters"):
        Composer(project, Secrets(secret="short"))


def test_config_header_values_are_checked_up_front(project_dir: Path) -> None:
    config = project_dir / "config.yaml"
    text = config.read_text(encoding="utf-8")
    text = text.replace("reply_to: help@nakshighor.example", "reply_to: সাহায্য@nakshighor.example")
    config.write_text(text, encoding="utf-8")
    project = load_project(config)
    with pytest.raises(ConfigError) as caught:
        Composer(project, Secrets(secret=SECRET))
    [problem] = caught.value.problems
    assert (problem.file, problem.key) == ("config.yaml", "sending.reply_to")
    assert problem.line == next(
        n for n, line in enumerate(text.splitlines(), 1) if "reply_to:" in line
    )
    assert "is not ASCII" in problem.message


def test_a_bengali_sender_name_is_encoded(project_dir: Path, renderer: Renderer) -> None:
    config = project_dir / "config.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace("from: {name: Nakshi Ghor,", "from: {name: নকশি ঘর,"), encoding="utf-8"
    )
    composer = Composer(load_project(config), Secrets(secret=SECRET), renderer=renderer)
    raw = composer._from + "\r\nSubject: x\r\n\r\n"
    parsed = email.message_from_bytes(raw.encode("ascii"), policy=email.policy.default)
    assert parsed["From"].addresses[0].display_name == "নকশি ঘর"


def test_preview_renders_without_writing(
    composer: Composer, session: Session, data: ShopData
) -> None:
    before = session.execute(select(func.count()).select_from(Message)).scalar_one()
    shown = composer.preview(session, "thank_you", data.rahima, now=NOW)
    assert shown.subject == "Nakshi Ghor-এ আপনার অর্ডার NG-1-এর জন্য ধন্যবাদ"
    assert "জামদানি শাড়ি" in shown.text and "জামদানি শাড়ি" in shown.html
    assert parse(Outgoing(0, "", "", shown.data, ""))["Subject"] == shown.subject
    refund_preview = composer.preview(session, "price_drop_refund", data.sam, now=NOW)
    assert "Order: NG-2" in refund_preview.text
    holiday_preview = composer.preview(session, "holiday_preannounce", data.sam, now=NOW)
    assert "Black Friday is on November 27, 2026" in holiday_preview.text
    session.flush()
    assert session.execute(select(func.count()).select_from(Message)).scalar_one() == before


def test_preview_says_what_is_missing(composer: Composer, session: Session, data: ShopData) -> None:
    with pytest.raises(UnknownRecord, match="no campaign named 'nope'"):
        composer.preview(session, "nope", data.sam, now=NOW)
    with pytest.raises(UnknownRecord, match="no customer with id 4242"):
        composer.preview(session, "welcome", 4242, now=NOW)
    from engine.intake import shop

    lonely = shop.upsert_customer(session, external_id="c9", email="l@example.com", now=NOW)
    assert lonely.id
    with pytest.raises(DataError, match="has no orders, and the thank_you email is about one"):
        composer.preview(session, "thank_you", lonely.id, now=NOW)


# ---------------------------------------------------------------- VERP


def test_with_a_bounce_address_each_message_has_its_own_signed_envelope_sender(
    project_dir: Path, renderer: Renderer, session: Session, data: ShopData
) -> None:
    config = project_dir / "config.yaml"
    text = config.read_text()
    assert "  from:" in text
    config.write_text(
        text.replace("  from:", "  bounce_address: bounce@bounces.nakshighor.example\n  from:", 1)
    )
    composer = Composer(load_project(config), Secrets(secret=SECRET), renderer=renderer)
    first = queue(session, "welcome", data.rahima, order_id=data.order_bn)
    second = queue(session, "welcome", data.sam, order_id=data.order_en)
    senders = [prepare_one(composer, session, m) for m in (first, second)]
    signer = Signer(SECRET)
    for message, outgoing in zip((first, second), senders, strict=True):
        assert isinstance(outgoing, Outgoing)
        local, domain = outgoing.sender.split("@")
        assert domain == "bounces.nakshighor.example" and local.startswith("bounce+")
        assert signer.verify_bounce(local.removeprefix("bounce+")) == message.id
        assert parse(outgoing)["From"].addresses[0].addr_spec == "hello@nakshighor.example"
    assert senders[0].sender != senders[1].sender  # type: ignore[union-attr]


def test_without_a_bounce_address_the_envelope_sender_is_the_from_address(
    composer: Composer, session: Session, data: ShopData
) -> None:
    outgoing = prepare_one(
        composer, session, queue(session, "welcome", data.rahima, order_id=data.order_bn)
    )
    assert isinstance(outgoing, Outgoing) and outgoing.sender == "hello@nakshighor.example"


def test_a_preview_of_a_step_with_a_coupon_shows_a_code_that_is_not_one(
    composer: Composer, session: Session, data: ShopData
) -> None:
    """A preview mints nothing: it used to fail with "its coupon is not minted yet"."""
    before = session.execute(select(func.count()).select_from(Message)).scalar_one()
    shown = composer.preview(session, "welcome_series", data.rahima, now=NOW)
    assert "PREVIEW-0000-0000" in shown.text and "PREVIEW-0000-0000" in shown.html
    assert "None" not in shown.text
    assert session.execute(select(func.count()).select_from(Message)).scalar_one() == before
