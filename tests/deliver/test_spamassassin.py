"""Every email of every shipped campaign, each step, in English and Bengali, as the engine
composes it for a customer of the demo shop, scored by SpamAssassin with its local rules
(`spamassassin --local`: no network tests): none may score over 1.0.

One spamassassin run scores them all (loading its rules is most of the cost): the emails go
in one mbox, each behind a `From email-<n>@…` line that its output keeps, so each score finds
its email whatever order spamassassin reads them in. It runs with a home folder of its own and
no Bayes database, so nothing of the machine's own training counts. Without Debian's
spamassassin (`make mailreaders` installs it) the test skips; under CI=true it fails.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.deliver.compose import Composer, Outgoing
from engine.deliver.preview import preview_customer
from engine.demo.club import place_in_tiers
from engine.demo.seed import seed_demo
from engine.demo.tables import MIN_CUSTOMERS
from engine.errors import DataError, UnknownRecord
from engine.plan.planner import plan
from engine.project.loader import Project, Secrets, load_project
from engine.store.db import make_engine, session_scope
from engine.store.models import Credit, Customer, Message
from tests.conftest import REPO, skip_or_fail
from tests.deliver.test_compose import SECRET

pytestmark = pytest.mark.slow  # the demo shop, then spamassassin: about 20 s

MAX_SCORE = 1.0
NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
LOCALES = ("en", "bn_BD")
RUN_TIMEOUT = 300  # seconds; about 2 s to load the rules, then a tenth of a second an email
CONTROL = "control: the old hidden preheader, a Bengali subject with a capitals-only code"


@dataclass(frozen=True)
class Score:
    points: float
    rules: dict[str, float]

    def __str__(self) -> str:
        return f"{self.points} ({', '.join(f'{r}={p}' for r, p in self.rules.items())})"


# ---------------------------------------------------------------- the emails


@pytest.fixture(scope="module")
def project() -> Project:
    return load_project(REPO / "config.yaml")


@pytest.fixture(scope="module")
def demo_shop(
    project: Project, migrated_sqlite: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """The demo shop after one pass of the planner: every campaign has its recipients."""
    path = tmp_path_factory.mktemp("demo") / "store.db"
    shutil.copy(migrated_sqlite, path)
    engine = make_engine(f"sqlite:///{path}")
    with session_scope(engine) as session:
        seed_demo(session, now=NOW, customers=MIN_CUSTOMERS)
    place_in_tiers(engine, project, NOW)
    plan(engine, project, NOW)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def shipped_emails(project: Project, demo_shop: Engine) -> dict[str, bytes]:
    """`campaign/step/locale` → the email's bytes, for every campaign file (listed in
    config.yaml or not), every step of it, in each of LOCALES."""
    composer = Composer(project, Secrets(secret=SECRET))
    emails = {}
    with Session(demo_shop) as session:
        for campaign in project.campaigns.values():
            for step in campaign.flow:
                for locale in LOCALES:
                    name = f"{campaign.name}/{step.label}/{locale}"
                    emails[name] = compose(composer, session, project, name)
        session.rollback()
    return emails


def compose(composer: Composer, session: Session, project: Project, name: str) -> bytes:
    """The email `name` as the engine makes it: a message the planner queued for that step,
    composed as it is sent; for a step the planner queued none of, the preview for the
    first customer it can be shown to. Customers reading the language come first; else
    one of the others reads it in that language for the while."""
    campaign_name, label, locale = name.split("/")
    campaign = project.campaigns[campaign_name]
    step = next(step for step in campaign.flow if step.label == label)
    queued = session.execute(
        select(Message)
        .where(col(Message.campaign) == campaign.name)
        .where(col(Message.step).is_(None) if step.id is None else col(Message.step) == step.id)
        .order_by(col(Message.id))
    ).scalars()
    by_customer = {message.customer_id: message for message in queued}  # one for each
    customers = [session.get(Customer, i) for i in by_customer] or candidates(
        session, project, campaign.name
    )
    for customer in readers_first([c for c in customers if c is not None], locale):
        with reading(customer, locale):
            message = by_customer.get(customer.id or 0)
            if message is not None:
                return sent(composer, session, name, message)
            try:
                return composer.preview(
                    session, campaign.name, customer.id or 0, now=NOW, step=label
                ).data
            except (DataError, UnknownRecord):
                continue
    pytest.fail(f"{name}: no customer of the demo shop can be shown this email")


def candidates(session: Session, project: Project, campaign: str) -> list[Customer]:
    """The customers to preview `campaign` for, best first: the one a preview picks, the
    customers with credit, then everyone."""
    picked = preview_customer(session, project, campaign)
    credited = select(Credit.customer_id).where(col(Credit.amount) > 0)
    everyone = session.execute(select(Customer).order_by(col(Customer.id))).scalars().all()
    by_id = {customer.id: customer for customer in everyone}
    order = [picked, *session.execute(credited.order_by(col(Credit.id).desc())).scalars(), *by_id]
    return [by_id[i] for i in dict.fromkeys(order) if i in by_id]


def readers_first(customers: list[Customer], locale: str) -> list[Customer]:
    language = locale.split("_")[0]
    return sorted(customers, key=lambda customer: customer.locale.split("_")[0] != language)


@contextmanager
def reading(customer: Customer, locale: str) -> Iterator[None]:
    """The customer reads `locale`'s language while inside (unsaved)."""
    own = customer.locale
    if own.split("_")[0] != locale.split("_")[0]:
        customer.locale = locale
    try:
        yield
    finally:
        customer.locale = own


def sent(composer: Composer, session: Session, name: str, message: Message) -> bytes:
    [result] = composer.prepare(session, [message], now=NOW)
    if not isinstance(result, Outgoing):
        pytest.fail(f"{name}: message {message.id} cannot be sent: {result.reason}")
    return result.data


def control_email() -> bytes:
    """What the shipped emails were: a preheader in 1px text of the background colour, and a
    Bengali subject whose only Latin letters are those of an order number."""
    message = EmailMessage()
    message["From"] = "Nakshi Ghor <hello@nakshighor.example>"
    message["To"] = "rahima@example.com"
    message["Subject"] = "আপনার অর্ডার NG-00016-03-এর জন্য ধন্যবাদ"
    message["Date"] = "Sun, 22 Nov 2026 06:00:00 +0000"
    message["Message-ID"] = "<0123456789abcdef0123456789abcdef@nakshighor.example>"
    message.set_content("Your order NG-00016-03 was delivered.\n")
    message.add_alternative(
        '<html><body style="background-color:#f4efe6; color:#2b2620">'
        '<div style="display:none; font-size:1px; color:#f4efe6">Your parcel has arrived.</div>'
        "<p>Your order NG-00016-03 was delivered.</p></body></html>",
        subtype="html",
    )
    return message.as_bytes()


# ---------------------------------------------------------------- spamassassin


@pytest.fixture(scope="module")
def executable() -> str:
    """The spamassassin command; the tests skip (fail under CI=true) without it, before
    the demo shop is built."""
    found = shutil.which("spamassassin")
    if found is None:
        skip_or_fail("spamassassin is not installed (make mailreaders installs it)")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def scores(
    executable: str, shipped_emails: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Score]:
    """Each shipped email's score, and the control's (CONTROL)."""
    emails = {**shipped_emails, CONTROL: control_email()}
    return spamassassin(executable, emails, tmp_path_factory.mktemp("spamassassin"))


def spamassassin(executable: str, emails: dict[str, bytes], folder: Path) -> dict[str, Score]:
    """Score `emails` in one run of `spamassassin --local`; fail with its output when it
    does not score them all."""
    names = list(emails)
    mbox = folder / "emails.mbox"
    with mbox.open("wb") as out:
        for number, name in enumerate(names):
            out.write(f"From email-{number}@lifecycle.invalid Sun Nov 22 06:00:00 2026\n".encode())
            out.write(emails[name].replace(b"\r\n", b"\n") + b"\n")
    run = subprocess.run(
        [
            executable,
            "--local",
            "--nocreate-prefs",
            "--cf=use_bayes 0",
            "--cf=add_header all Points _SCORE_",
            "--cf=add_header all Rules _TESTSSCORES(,)_",
            "--mbox",
            str(mbox),
        ],
        capture_output=True,
        env={**os.environ, "HOME": str(folder)},
        timeout=RUN_TIMEOUT,
        check=False,
    )
    found = parse_scores(run.stdout)
    if run.returncode != 0 or set(found) != set(range(len(names))):
        pytest.fail(
            f"spamassassin exited with {run.returncode} and scored {len(found)} of "
            f"{len(names)} emails\n{run.stderr.decode(errors='replace')}"
        )
    return {names[number]: score for number, score in found.items()}


def parse_scores(output: bytes) -> dict[int, Score]:
    """The score of each email in spamassassin's output mbox, by its number."""
    parts = re.split(rb"^From email-(\d+)@lifecycle\.invalid [^\n]*\n", output, flags=re.M)
    found = {}
    for number, text in zip(parts[1::2], parts[2::2], strict=True):
        headers = email.message_from_bytes(text.split(b"\n\n", 1)[0] + b"\n\n")
        points, rules = headers["X-Spam-Points"], headers["X-Spam-Rules"]
        if points is None or rules is None:
            continue
        pairs = (rule.split("=") for rule in re.sub(r"\s+", "", rules).split(",") if rule)
        found[int(number)] = Score(float(points), {rule: float(p) for rule, p in pairs})
    return found


# ---------------------------------------------------------------- the tests


def test_every_shipped_email_is_scored(
    scores: dict[str, Score], project: Project, shipped_emails: dict[str, bytes]
) -> None:
    steps = sum(len(campaign.flow) for campaign in project.campaigns.values())
    assert len(project.campaigns) == len(list((REPO / "campaigns").glob("*.yaml")))
    assert len(shipped_emails) == steps * len(LOCALES)
    assert set(scores) == {*shipped_emails, CONTROL}
    # The rules ran: every email has an HTML part, and the control is caught.
    assert all("HTML_MESSAGE" in score.rules for score in scores.values())
    control = scores[CONTROL]
    assert {"HTML_FONT_LOW_CONTRAST", "SUBJ_ALL_CAPS"} <= set(control.rules), control
    assert control.points > MAX_SCORE, control


def test_no_shipped_email_scores_over_one(scores: dict[str, Score]) -> None:
    over = {
        name: score
        for name, score in scores.items()
        if name != CONTROL and score.points > MAX_SCORE
    }
    assert not over, f"{len(over)} emails score over {MAX_SCORE}:\n" + "\n".join(
        f"  {name}: {score}" for name, score in sorted(over.items())
    )
