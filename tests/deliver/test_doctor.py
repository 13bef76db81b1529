"""`lifecycle doctor`'s checks against a DNS server of the test's own on 127.0.0.1,
answering from a dict of records; nothing is asked of the network."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from engine.deliver.dnslookups import DnsLookups, Finding, Record, Verdict, parse_nameserver
from engine.deliver.doctor import check_tracking, diagnose, organizational_domain
from engine.project import Project, load_project
from engine.project.config import Dkim

REPO = Path(__file__).resolve().parents[2]
DOMAIN = "nakshighor.example"
RELAY = "relay.nakshighor.example"
SELECTOR_NAME = f"mail._domainkey.{DOMAIN}"

# Each name's records as a zone file writes them after the name: 'TXT "…"', "A 203.0.113.25".
Zone = dict[str, list[str]]


def txt(value: str) -> str:
    return "TXT " + " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))


class DnsServer:
    """Answers UDP questions on 127.0.0.1 from `zone`: a name it lacks is NXDOMAIN;
    `silent`: reads every question and answers none."""

    def __init__(self, zone: Zone, *, silent: bool = False):
        self.zone = {name.lower(): records for name, records in zone.items()}
        self.silent = silent
        self.asked: list[tuple[str, str]] = []
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.05)
        self.port: int = self.socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @contextmanager
    def running(self) -> Iterator[DnsServer]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(5)
            self.socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.socket.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True).lower()
            self.asked.append((name, dns.rdatatype.to_text(question.rdtype)))
            if not self.silent:
                self.socket.sendto(self._answer(query).to_wire(), peer)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        kind = dns.rdatatype.to_text(question.rdtype)
        if name not in self.zone:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response
        found = [
            dns.rdata.from_text("IN", kind, text)
            for kind_written, text in (record.split(None, 1) for record in self.zone[name])
            if kind_written == kind
        ]
        if found:
            response.answer.append(dns.rrset.from_rdata_list(question.name, 300, found))
        return response


def spf_record(findings: list[Finding], domain: str = DOMAIN) -> Finding:
    return next(f for f in findings if f.check == "spf" and f.subject == domain)


def finding(findings: list[Finding], check: str) -> Finding:
    return next(f for f in findings if f.check == check)


# ---------------------------------------------------------------- fixtures


def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_b64(key: rsa.RSAPrivateKey, form: Any = None) -> str:
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, form or serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(public).decode()


@pytest.fixture(scope="module")
def dkim_key() -> rsa.RSAPrivateKey:
    return private_key()


@pytest.fixture(scope="module")
def shipped() -> Project:
    return load_project(REPO / "config.yaml")


def good_zone(dkim_key: rsa.RSAPrivateKey) -> Zone:
    """A shop whose relay, DKIM key and DMARC record are all published."""
    return {
        DOMAIN: [txt(f"v=spf1 a:{RELAY} ~all"), txt("site-verification=4c1e")],
        RELAY: ["A 203.0.113.25"],
        SELECTOR_NAME: [txt(f"v=DKIM1; k=rsa; p={public_b64(dkim_key)}")],
        f"_dmarc.{DOMAIN}": [txt(f"v=DMARC1; p=none; rua=mailto:help@{DOMAIN}")],
    }


@pytest.fixture
def zone(dkim_key: rsa.RSAPrivateKey) -> Zone:
    return good_zone(dkim_key)


@pytest.fixture
def shop(shipped: Project, tmp_path: Path, dkim_key: rsa.RSAPrivateKey) -> Callable[..., Project]:
    """The shipped project sending through RELAY, signing as DOMAIN, bounces to DOMAIN,
    tracking on https; keyword arguments replace settings of `sending`."""
    (tmp_path / "dkim.pem").write_bytes(pem(dkim_key))

    def make(base_url: str = f"https://t.{DOMAIN}", **sending: Any) -> Project:
        config = shipped.config
        smtp = config.sending.smtp.model_copy(update={"host": sending.pop("relay", RELAY)})
        settings = {
            "smtp": smtp,
            "dkim": Dkim(domain=DOMAIN, selector="mail", key_file="dkim.pem"),
            "bounce_address": f"bounce@{DOMAIN}",
            **sending,
        }
        tracking = config.tracking.model_copy(update={"base_url": base_url})
        changed = config.model_copy(
            update={"sending": config.sending.model_copy(update=settings), "tracking": tracking}
        )
        return replace(shipped, root=tmp_path, config=changed)

    return make


def run(project: Project, zone: Zone, *, timeout: float = 2.0) -> list[Finding]:
    with DnsServer(zone).running() as server:
        return diagnose(project, DnsLookups([("127.0.0.1", server.port)], timeout=timeout))


# ---------------------------------------------------------------- all good


def test_a_shop_with_every_record_published_is_all_good(
    shop: Callable[..., Project], zone: Zone
) -> None:
    findings = run(shop(), zone)
    assert [(f.check, f.verdict) for f in findings] == [
        ("spf", Verdict.OK),
        ("dkim", Verdict.OK),
        ("dmarc", Verdict.OK),
        ("alignment", Verdict.OK),
        ("tracking", Verdict.OK),
    ]
    assert all(f.publish is None for f in findings)
    assert "203.0.113.25" in spf_record(findings).found
    assert finding(findings, "dmarc").found.startswith("p=none (monitoring only")


# ---------------------------------------------------------------- SPF


def test_a_missing_spf_record_says_what_to_publish(
    shop: Callable[..., Project], zone: Zone
) -> None:
    zone[DOMAIN] = [txt("site-verification=4c1e")]
    found = spf_record(run(shop(), zone))
    assert found.verdict is Verdict.FAIL and "no SPF record" in found.found
    assert found.publish == Record(DOMAIN, "TXT", f"v=spf1 a:{RELAY} ~all")


@pytest.mark.parametrize(
    ("record", "publish"),
    [
        pytest.param(
            "v=spf1 ip4:198.51.100.0/24 -all",
            f"v=spf1 a:{RELAY} ip4:198.51.100.0/24 -all",
            id="another-network",
        ),
        pytest.param("v=spf1 mx", f"v=spf1 a:{RELAY} mx", id="mx-elsewhere-no-all"),
        # the relay goes first: a term before it could refuse it again
        pytest.param(
            "v=spf1 -ip4:203.0.113.25 +all",
            f"v=spf1 a:{RELAY} -ip4:203.0.113.25 +all",
            id="relay-refused-first",
        ),
    ],
)
def test_an_spf_record_that_does_not_permit_the_relay_fails(
    shop: Callable[..., Project], zone: Zone, record: str, publish: str
) -> None:
    zone[DOMAIN] = [txt(record)]
    zone[f"mx.{DOMAIN}"] = ["A 198.51.100.7"]
    zone[DOMAIN].append(f"MX 10 mx.{DOMAIN}.")
    found = spf_record(run(shop(), zone))
    assert found.verdict is Verdict.FAIL
    assert found.found.endswith(f"does not permit the relay {RELAY} (203.0.113.25)")
    assert found.publish == Record(DOMAIN, "TXT", publish)


@pytest.mark.parametrize(
    ("netblock", "verdict"),
    [
        pytest.param("ip4:203.0.113.0/24", Verdict.OK, id="relay-in-the-last-include"),
        pytest.param("ip4:198.51.100.0/24", Verdict.FAIL, id="relay-outside"),
        pytest.param("a:out.mailhost.example/24", Verdict.OK, id="a-with-prefix"),
        pytest.param("mx:mailhost.example", Verdict.OK, id="mx-of-another-domain"),
    ],
)
def test_spf_follows_an_include_chain(
    shop: Callable[..., Project], zone: Zone, netblock: str, verdict: Verdict
) -> None:
    zone[DOMAIN] = [txt(f"v=spf1 include:_spf.{DOMAIN} ~all")]
    zone[f"_spf.{DOMAIN}"] = [txt("v=spf1 ip4:192.0.2.1 include:_netblocks.mailhost.example ~all")]
    zone["_netblocks.mailhost.example"] = [txt(f"v=spf1 {netblock} -all")]
    zone["mailhost.example"] = ["MX 5 out.mailhost.example."]
    zone["out.mailhost.example"] = ["A 203.0.113.9"] if "/24" in netblock else ["A 203.0.113.25"]
    assert spf_record(run(shop(), zone)).verdict is verdict


def test_a_known_providers_include_covers_its_relay(
    shop: Callable[..., Project], zone: Zone
) -> None:
    zone[DOMAIN] = [txt("v=spf1 include:sendgrid.net ~all")]
    found = spf_record(run(shop(relay="smtp.sendgrid.net"), zone))
    assert found.verdict is Verdict.OK and "sendgrid.net" in found.found


def test_a_providers_relay_without_its_include_is_told_the_include(
    shop: Callable[..., Project], zone: Zone
) -> None:
    zone[DOMAIN] = [txt("v=spf1 ip4:198.51.100.0/24 ~all")]
    zone["smtp.sendgrid.net"] = ["A 203.0.113.80"]
    found = spf_record(run(shop(relay="smtp.sendgrid.net"), zone))
    assert found.verdict is Verdict.FAIL
    assert found.publish == Record(
        DOMAIN, "TXT", "v=spf1 include:sendgrid.net ip4:198.51.100.0/24 ~all"
    )


@pytest.mark.parametrize(
    ("lookups", "verdict"),
    [pytest.param(10, Verdict.OK, id="ten-allowed"), pytest.param(11, Verdict.FAIL, id="eleven")],
)
def test_spf_counts_dns_lookups_to_rfc_7208s_limit(
    shop: Callable[..., Project], zone: Zone, lookups: int, verdict: Verdict
) -> None:
    # lookups - 1 includes, one after the other, then the `a` that permits the relay
    names = [f"s{n}.{DOMAIN}" for n in range(lookups - 1)]
    zone[DOMAIN] = [txt(f"v=spf1 include:{names[0]} -all")]
    for name, following in zip(names, [*names[1:], None], strict=True):
        term = f"include:{following}" if following else f"a:{RELAY}"
        zone[name] = [txt(f"v=spf1 {term} -all")]
    found = spf_record(run(shop(), zone))
    assert found.verdict is verdict
    if verdict is Verdict.FAIL:
        assert "more than 10 DNS lookups" in found.found and found.publish is None


def test_two_spf_records_fail_and_are_merged(shop: Callable[..., Project], zone: Zone) -> None:
    zone[DOMAIN] = [txt(f"v=spf1 a:{RELAY} ~all"), txt("v=spf1 include:sendgrid.net -all")]
    found = spf_record(run(shop(), zone))
    assert found.verdict is Verdict.FAIL and found.found.startswith("2 SPF records")
    merged = f"v=spf1 a:{RELAY} include:sendgrid.net ~all"
    assert found.publish == Record(DOMAIN, "TXT", merged)


def test_plus_all_permits_the_relay_and_everyone_else(
    shop: Callable[..., Project], zone: Zone
) -> None:
    zone[DOMAIN] = [txt("v=spf1 mx +all")]
    found = spf_record(run(shop(), zone))
    assert found.verdict is Verdict.WARN and "(+all)" in found.found
    assert found.publish == Record(DOMAIN, "TXT", "v=spf1 mx ~all")


def test_a_relay_on_this_machine_is_a_warning(shop: Callable[..., Project], zone: Zone) -> None:
    found = spf_record(run(shop(relay="127.0.0.1"), zone))
    assert found.verdict is Verdict.WARN and "cannot see" in found.found


# ---------------------------------------------------------------- DKIM


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(serialization.PublicFormat.SubjectPublicKeyInfo, id="spki"),
        pytest.param(serialization.PublicFormat.PKCS1, id="pkcs1"),
    ],
)
def test_dkim_key_matching_the_private_key(
    shop: Callable[..., Project], zone: Zone, dkim_key: rsa.RSAPrivateKey, form: Any
) -> None:
    zone[SELECTOR_NAME] = [txt(f"v=DKIM1; k=rsa; p={public_b64(dkim_key, form)}")]
    found = finding(run(shop(), zone), "dkim")
    assert found.verdict is Verdict.OK and found.subject == SELECTOR_NAME


def test_a_different_dkim_key_shows_the_record_to_publish(
    shop: Callable[..., Project], zone: Zone, dkim_key: rsa.RSAPrivateKey
) -> None:
    zone[SELECTOR_NAME] = [txt(f"v=DKIM1; k=rsa; p={public_b64(private_key())}")]
    found = finding(run(shop(), zone), "dkim")
    assert found.verdict is Verdict.FAIL and "is not dkim.pem's" in found.found
    wanted = f"v=DKIM1; k=rsa; p={public_b64(dkim_key)}"
    assert found.publish == Record(SELECTOR_NAME, "TXT", wanted)
    # a TXT string holds 255 characters: the 2048-bit key is shown in two
    shown = str(found.publish)
    assert shown.startswith(f'{SELECTOR_NAME}. TXT "v=DKIM1; k=rsa; p=') and shown.count('" "') == 1
    assert shown.replace('" "', "").endswith(f'{public_b64(dkim_key)}"')


def test_a_missing_dkim_record_shows_the_record_to_publish(
    shop: Callable[..., Project], zone: Zone, dkim_key: rsa.RSAPrivateKey
) -> None:
    del zone[SELECTOR_NAME]
    found = finding(run(shop(), zone), "dkim")
    assert found.verdict is Verdict.FAIL and found.found.startswith("no DKIM record")
    assert found.publish is not None and found.publish.value.endswith(public_b64(dkim_key))


def test_a_key_file_that_is_not_a_private_key_is_a_finding(
    shop: Callable[..., Project], zone: Zone
) -> None:
    project = shop()
    (project.root / "dkim.pem").write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n")
    found = finding(run(project, zone), "dkim")
    assert found.verdict is Verdict.FAIL and found.found.startswith("cannot read the key dkim.pem")


def test_without_dkim_configured_the_relay_must_sign(
    shop: Callable[..., Project], zone: Zone
) -> None:
    findings = run(shop(dkim=None), zone)
    assert finding(findings, "dkim").verdict is Verdict.WARN
    assert finding(findings, "alignment").verdict is Verdict.WARN


# ---------------------------------------------------------------- DMARC


def test_a_missing_dmarc_record_says_what_to_publish(
    shop: Callable[..., Project], zone: Zone
) -> None:
    del zone[f"_dmarc.{DOMAIN}"]
    found = finding(run(shop(), zone), "dmarc")
    assert found.verdict is Verdict.FAIL
    # the shop's support address is in its own domain: the reports go there
    wanted = f"v=DMARC1; p=none; rua=mailto:help@{DOMAIN}"
    assert found.publish == Record(f"_dmarc.{DOMAIN}", "TXT", wanted)


def test_dmarc_p_reject_is_reported(shop: Callable[..., Project], zone: Zone) -> None:
    zone[f"_dmarc.{DOMAIN}"] = [txt("v=DMARC1; p=reject; rua=mailto:d@nakshighor.example")]
    found = finding(run(shop(), zone), "dmarc")
    assert (found.verdict, found.found) == (Verdict.OK, "p=reject (mail that fails is refused)")


def test_a_subdomain_takes_the_organizational_domains_dmarc_sp(
    shop: Callable[..., Project], zone: Zone
) -> None:
    zone[f"_dmarc.{DOMAIN}"] = [txt("v=DMARC1; p=reject; sp=quarantine")]
    sender = shop().config.sending.sender.model_copy(update={"email": f"hello@news.{DOMAIN}"})
    found = finding(run(shop(sender=sender), zone), "dmarc")
    assert found.subject == f"_dmarc.{DOMAIN}"
    assert found.found.startswith("p=quarantine (mail that fails goes to spam)")


# ---------------------------------------------------------------- alignment and tracking


def test_a_bounce_domain_of_another_organization_is_not_aligned(
    shop: Callable[..., Project], zone: Zone
) -> None:
    zone["mailhost.example"] = [txt(f"v=spf1 a:{RELAY} -all")]
    findings = run(shop(bounce_address="bounces@mailhost.example"), zone)
    assert spf_record(findings, "mailhost.example").verdict is Verdict.OK
    aligned = finding(findings, "alignment")
    assert aligned.verdict is Verdict.WARN
    assert "bounce (envelope) domain mailhost.example is not aligned" in aligned.found
    assert "DKIM" not in aligned.found


def test_a_bounce_subdomain_is_aligned_and_dkim_elsewhere_is_not(
    shop: Callable[..., Project], zone: Zone
) -> None:
    zone[f"bounce.{DOMAIN}"] = [txt(f"v=spf1 a:{RELAY} -all")]
    dkim = Dkim(domain="mailhost.example", selector="mail", key_file="dkim.pem")
    findings = run(shop(bounce_address=f"b@bounce.{DOMAIN}", dkim=dkim), zone)
    aligned = finding(findings, "alignment")
    assert aligned.verdict is Verdict.WARN
    assert aligned.found.startswith("the DKIM domain d=mailhost.example is not aligned")


@pytest.mark.parametrize(
    ("base_url", "verdict", "said"),
    [
        pytest.param(f"https://t.{DOMAIN}", Verdict.OK, "https", id="https"),
        pytest.param(
            "http://127.0.0.1:8000", Verdict.WARN, "fine for the demo only", id="loopback"
        ),
        pytest.param(
            "http://localhost:8000", Verdict.WARN, "fine for the demo only", id="localhost"
        ),
        pytest.param(f"http://t.{DOMAIN}", Verdict.FAIL, "needs https", id="public-http"),
    ],
)
def test_the_tracking_address_must_be_https(base_url: str, verdict: Verdict, said: str) -> None:
    found = check_tracking(base_url)
    assert found.verdict is verdict and said in found.found


# ---------------------------------------------------------------- DNS failing


def test_a_dns_server_that_does_not_answer_is_a_finding_within_bounded_time(
    shop: Callable[..., Project], zone: Zone
) -> None:
    with DnsServer(zone, silent=True).running() as server:
        started = time.monotonic()
        findings = diagnose(shop(), DnsLookups([("127.0.0.1", server.port)], timeout=0.5))
        took = time.monotonic() - started
    assert took < 2.0  # the first question waits its 0.5 s; the rest are not asked
    dns_checks = [f for f in findings if f.check in ("spf", "dkim", "dmarc")]
    assert [f.verdict for f in dns_checks] == [Verdict.FAIL] * 3
    assert "no answer for nakshighor.example TXT within 0.5 s" in dns_checks[0].found
    assert all("timed out" in f.found for f in dns_checks[1:])
    assert len(server.asked) >= 1 and {name for name, _ in server.asked} == {DOMAIN}


def test_the_whole_run_has_a_time_budget(shop: Callable[..., Project], zone: Zone) -> None:
    with DnsServer(zone).running() as server:
        lookups = DnsLookups([("127.0.0.1", server.port)], timeout=1.0, budget=0)
        findings = diagnose(shop(), lookups)
    assert server.asked == []
    assert "time for DNS is spent" in spf_record(findings).found


# ---------------------------------------------------------------- small parts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("127.0.0.1", ("127.0.0.1", 53), id="address"),
        pytest.param("127.0.0.1:5353", ("127.0.0.1", 5353), id="address-port"),
        pytest.param("::1", ("::1", 53), id="ipv6"),
        pytest.param("[::1]:5353", ("::1", 5353), id="ipv6-port"),
    ],
)
def test_a_nameserver_is_an_address_and_a_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(text) == expected


@pytest.mark.parametrize(
    "text", ["dns.example", "127.0.0.1:0", "127.0.0.1:99999", "127.0.0.1:x", "[::1]:"]
)
def test_a_nameserver_that_is_not_an_address_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_nameserver(text)


@pytest.mark.parametrize(
    ("domain", "organizational"),
    [
        ("news.nakshighor.example", "nakshighor.example"),
        ("nakshighor.example", "nakshighor.example"),
        ("mail.shop.com.bd", "shop.com.bd"),
        ("shop.co.uk", "shop.co.uk"),
    ],
)
def test_the_organizational_domain(domain: str, organizational: str) -> None:
    assert organizational_domain(domain) == organizational
