"""`lifecycle doctor`'s checks: the shop's sending setup as DNS shows it to a receiver.

`diagnose` reads the SPF records of the From and bounce domains, the DKIM key, the
DMARC record, whether the three domains align, and the tracking address; it returns one
`Finding` per check, each saying what it found and, when something is missing or
wrong, the record to publish. It never blocks sending and never raises for what DNS
answers or fails to answer: a timeout is a finding like any other.

`DnsLookups` asks the questions, each answer remembered for the run: a question waits
at most `timeout` seconds, the run at most `budget`, and once the nameserver has let
one question time out the rest are not asked.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import dns.exception
import dns.name
import dns.nameserver
import dns.resolver
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ..errors import EngineError
from ..project import Project, Sending, Smtp

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 7208 4.6.4: a receiver stops after this many DNS-querying terms (permerror).
MAX_SPF_LOOKUPS = 10

# A relay host of a sending service, by domain suffix, and the domain its customers
# include in SPF: its outgoing addresses are not the relay host's own.
_PROVIDERS = {
    "amazonaws.com": "amazonses.com",  # email-smtp.<region>.amazonaws.com
    "brevo.com": "spf.brevo.com",
    "gmail.com": "_spf.google.com",
    "google.com": "_spf.google.com",
    "mailgun.org": "mailgun.org",
    "mailjet.com": "spf.mailjet.com",
    "mandrillapp.com": "spf.mandrillapp.com",
    "office365.com": "spf.protection.outlook.com",
    "outlook.com": "spf.protection.outlook.com",
    "postmarkapp.com": "spf.mtasv.net",
    "sendgrid.net": "sendgrid.net",
    "sendinblue.com": "spf.sendinblue.com",
    "sparkpostmail.com": "sparkpostmail.com",
    "zoho.com": "zoho.com",
}

# Public suffixes of two labels common among shops; without a full public suffix list
# the organizational domain is the last two labels, or three under one of these.
_TWO_LABEL_SUFFIXES = frozenset({
    "ac.uk", "co.uk", "org.uk", "me.uk", "com.au", "net.au", "org.au", "co.nz", "com.bd",
    "net.bd", "org.bd", "edu.bd", "co.in", "net.in", "org.in", "com.pk", "com.np", "com.lk",
    "com.sg", "com.my", "co.id", "co.th", "com.vn", "com.ph", "co.jp", "co.kr", "com.cn",
    "com.hk", "com.tw", "co.za", "com.ng", "com.eg", "com.sa", "com.tr", "com.br", "com.mx",
    "com.ar", "com.co",
})  # fmt: skip

_LOCAL_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)

_SPF_TERM = re.compile(r"(?P<qualifier>[-+~?]?)(?P<name>[a-z][a-z0-9_.-]*)(?P<rest>[:/=].*)?", re.I)
_CIDR = re.compile(r"(?P<host>[^/]*)(?:/(?P<v4>\d+))?(?://(?P<v6>\d+))?")
_ENDING = re.compile(r"~all|-all|\?all|\+?all")
_ENDINGS_GENTLEST = ["~all", "-all", "?all", "all", "+all"]
_QUALIFIERS = {"+": "pass", "": "pass", "-": "fail", "~": "softfail", "?": "neutral"}


class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Record:
    """A DNS record to publish."""

    name: str
    type: str
    value: str

    def __str__(self) -> str:
        # A TXT string holds at most 255 characters; a longer value is written as several.
        chunks = [self.value[i : i + 255] for i in range(0, len(self.value), 255)] or [""]
        return f"{self.name}. {self.type} " + " ".join(f'"{chunk}"' for chunk in chunks)


@dataclass(frozen=True)
class Finding:
    """One check: what it looked at (`subject`), its verdict, what it found, and the
    record to publish when something is missing or wrong."""

    check: str  # spf, dkim, dmarc, alignment, tracking
    subject: str
    verdict: Verdict
    found: str
    publish: Record | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict.value}


class DnsFailure(EngineError, OSError):
    """DNS gave no usable answer: a timeout, SERVFAIL, a refusal, no resolver."""


def parse_nameserver(text: str) -> tuple[str, int]:
    """`IP`, `IP:PORT`, `[IPv6]:PORT` → (address, port); ValueError otherwise."""
    text = text.strip()
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") if rest else "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"expected an IP address, IP:PORT or [IPv6]:PORT, got {text!r}") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"the port must be a number from 1 to 65535, got {port!r}")
    return str(address), int(port)


class DnsLookups:
    """DNS questions, each answered once per run; `nameservers` empty: the system's."""

    def __init__(
        self,
        nameservers: Sequence[tuple[str, int]] = (),
        *,
        timeout: float = 3.0,
        budget: float = 20.0,
    ):
        self.timeout = timeout
        self._deadline = time.monotonic() + budget
        self._answers: dict[tuple[str, str], list[Any] | DnsFailure] = {}
        self._silenced: str | None = None  # why no more questions are asked
        try:
            self._resolver = dns.resolver.Resolver(configure=not nameservers)
        except dns.exception.DNSException as exc:
            self._silenced = f"no DNS resolver is configured here ({exc})"
            self._resolver = dns.resolver.Resolver(configure=False)
        if nameservers:
            self._resolver.nameservers = [
                dns.nameserver.Do53Nameserver(a, p) for a, p in nameservers
            ]
        self._resolver.use_edns(0, 0, 1232)
        self._resolver.timeout = min(1.0, timeout)  # a lost datagram is asked again

    def txt(self, name: str) -> list[str]:
        """The TXT records at `name`, each one string; [] when there is none."""
        return [b"".join(r.strings).decode("utf-8", "replace") for r in self._ask(name, "TXT")]

    def mx(self, name: str) -> list[str]:
        return [r.exchange.to_text(omit_final_dot=True) for r in self._ask(name, "MX")]

    def addresses(self, name: str) -> list[IPAddress]:
        """The A and AAAA addresses of `name` (an IP literal is its own address)."""
        try:
            return [ipaddress.ip_address(name)]
        except ValueError:
            pass
        found = [*self._ask(name, "A"), *self._ask(name, "AAAA")]
        return [ipaddress.ip_address(r.address) for r in found]

    def _ask(self, name: str, rdtype: str) -> list[Any]:
        key = (name.lower().rstrip("."), rdtype)
        if key not in self._answers:
            try:
                self._answers[key] = self._resolve(*key)
            except DnsFailure as exc:
                self._answers[key] = exc
        answer = self._answers[key]
        if isinstance(answer, DnsFailure):
            raise answer
        return answer

    def _resolve(self, name: str, rdtype: str) -> list[Any]:
        if self._silenced is not None:
            raise DnsFailure(f"{name} {rdtype} not asked: {self._silenced}")
        lifetime = min(self.timeout, self._deadline - time.monotonic())
        if lifetime <= 0:
            raise DnsFailure(f"{name} {rdtype} not asked: the run's time for DNS is spent")
        try:
            answer = self._resolver.resolve(
                dns.name.from_text(name), rdtype, lifetime=lifetime, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN:
            return []
        except dns.exception.Timeout:
            failure = DnsFailure(f"no answer for {name} {rdtype} within {lifetime:.1f} s")
            self._silenced = f"the question for {name} {rdtype} timed out"
            raise failure from None
        except dns.exception.DNSException as exc:
            raise DnsFailure(f"{name} {rdtype}: {exc}") from exc
        return list(answer.rrset or ())


def diagnose(project: Project, lookups: DnsLookups) -> list[Finding]:
    """Every check of the sending setup, in the order a reader fixes them."""
    sending = project.config.sending
    from_domain = _domain(sending.sender.email)
    domains = [from_domain]
    if sending.bounce_address and _domain(sending.bounce_address) != from_domain:
        domains.append(_domain(sending.bounce_address))
    findings = [check_spf(domain, sending.smtp, lookups) for domain in domains]
    findings.append(check_dkim(project, lookups))
    findings.append(check_dmarc(from_domain, _report_address(project, from_domain), lookups))
    findings.append(check_alignment(sending))
    findings.append(check_tracking(project.config.tracking.base_url))
    return findings


def organizational_domain(domain: str) -> str:
    labels = domain.lower().rstrip(".").split(".")
    keep = 3 if ".".join(labels[-2:]) in _TWO_LABEL_SUFFIXES else 2
    return ".".join(labels[-keep:])


# ---------------------------------------------------------------- SPF


def check_spf(domain: str, smtp: Smtp, lookups: DnsLookups) -> Finding:
    """One SPF record at `domain`, within the lookup limit, permitting the relay."""
    spf = _Spf(lookups)
    try:
        records = spf.records(domain)
        if len(records) == 1:
            return _spf_record(domain, records[0], smtp, spf)
    except DnsFailure as exc:
        return Finding("spf", domain, Verdict.FAIL, f"could not check the SPF record: {exc}")
    if not records:
        found = "no SPF record: receivers cannot tell which servers may send for it"
        record = f"v=spf1 {_relay_term(smtp)} ~all"
    else:
        listed = "; ".join(repr(r) for r in sorted(records))
        found = (
            f"{len(records)} SPF records ({listed}): receivers fail SPF when there is "
            "more than one (permerror); merge them into one"
        )
        record = _merged(records)
    return Finding("spf", domain, Verdict.FAIL, found, Record(domain, "TXT", record))


def _spf_record(domain: str, record: str, smtp: Smtp, spf: _Spf) -> Finding:
    if spf.querying_terms(record) > MAX_SPF_LOOKUPS:
        found = (
            f"{record!r} needs more than {MAX_SPF_LOOKUPS} DNS lookups (RFC 7208's limit), "
            "so receivers fail SPF (permerror): replace include:, a and mx terms by the "
            "ip4:/ip6: ranges they stand for"
        )
        return Finding("spf", domain, Verdict.FAIL, found)
    provider = _provider_include(smtp.host)
    if provider and f"include:{provider}" in record.lower().split():
        found = f"{record!r} includes {provider}, for the relay {smtp.host}"
        return Finding("spf", domain, Verdict.OK, found)
    addresses = spf.lookups.addresses(smtp.host)
    shown = _relay_shown(smtp.host, addresses)
    if not addresses:
        found = f"{record!r}; the relay {smtp.host} has no address to check it against"
        return Finding("spf", domain, Verdict.FAIL, found)
    if all(_local(ip) for ip in addresses):
        found = (
            f"{record!r}; the relay {shown} is on this machine or its network: "
            "SPF must permit the public address the mail leaves from, which this check cannot see"
        )
        return Finding("spf", domain, Verdict.WARN, found)
    refused = [
        ip for ip in addresses if not _local(ip) and spf.result(ip, domain, record) != "pass"
    ]
    if refused:
        found = f"{record!r} does not permit the relay {_relay_shown(smtp.host, refused)}"
        publish = Record(domain, "TXT", _with_term(record, _relay_term(smtp)))
        return Finding("spf", domain, Verdict.FAIL, found, publish)
    if any(re.fullmatch(r"\+?all", term, re.I) for term in record.split()):
        found = (
            f"{record!r} permits every server on the internet (+all): anyone can send as {domain}"
        )
        publish = Record(domain, "TXT", re.sub(r"(?<=\s)\+?all(?=\s|$)", "~all", record))
        return Finding("spf", domain, Verdict.WARN, found, publish)
    return Finding("spf", domain, Verdict.OK, f"{record!r} permits the relay {shown}")


class _Spf:
    """RFC 7208's check_host for the relay's addresses, each record asked once."""

    def __init__(self, lookups: DnsLookups):
        self.lookups = lookups

    def records(self, domain: str) -> list[str]:
        return [t for t in self.lookups.txt(domain) if re.match(r"v=spf1(\s|$)", t, re.I)]

    def querying_terms(self, record: str, spent: int = 0) -> int:
        """`spent` plus the DNS-querying terms a receiver meets in `record` and in the
        records it includes or redirects to, counted until past the limit."""
        for _qualifier, name, target in _terms(record):
            if name in ("a", "mx", "ptr", "exists", "include", "redirect"):
                spent += 1
            if spent > MAX_SPF_LOOKUPS:
                break
            if name in ("include", "redirect") and target and "%" not in target:
                included = self.records(target)
                if len(included) == 1:
                    spent = self.querying_terms(included[0], spent)
        return spent

    def result(self, ip: IPAddress, domain: str, record: str) -> str:
        """pass, fail, softfail, neutral or permerror for mail sent from `ip`."""
        redirect = None
        for qualifier, name, target in _terms(record):
            if name == "redirect":
                redirect = target
            elif self._matches(ip, domain, name, target):
                return _QUALIFIERS[qualifier]
        if not redirect:
            return "neutral"
        included = self.records(redirect)
        return self.result(ip, redirect, included[0]) if len(included) == 1 else "permerror"

    def _matches(self, ip: IPAddress, domain: str, name: str, target: str) -> bool:
        if name == "all":
            return True
        if name in ("ip4", "ip6"):
            try:
                return ip in ipaddress.ip_network(target, strict=False)
            except ValueError:
                return False
        if name == "include":
            included = self.records(target) if target else []
            return len(included) == 1 and self.result(ip, target, included[0]) == "pass"
        if name in ("a", "mx"):
            spec = _CIDR.fullmatch(target)
            if spec is None:
                return False
            host = spec["host"] or domain
            prefix = (spec["v4"] if ip.version == 4 else spec["v6"]) or ""
            hosts = [host] if name == "a" else self.lookups.mx(host)
            addresses = [a for h in hosts for a in self.lookups.addresses(h)]
            return any(_within(ip, address, prefix) for address in addresses)
        return False  # ptr and exists: not evaluated (ptr is deprecated, exists needs macros)


def _terms(record: str) -> Iterable[tuple[str, str, str]]:
    """(qualifier, name, argument) of each term: `~include:x` → ("~", "include", "x");
    `a/24` → ("", "a", "/24"); `redirect=x` → ("", "redirect", "x")."""
    for term in record.split()[1:]:
        match = _SPF_TERM.fullmatch(term)
        if match:
            argument = match["rest"] or ""
            yield (
                match["qualifier"],
                match["name"].lower(),
                argument.removeprefix(":").removeprefix("="),
            )


def _within(ip: IPAddress, address: IPAddress, prefix: str) -> bool:
    if ip.version != address.version:
        return False
    bits = int(prefix) if prefix.isdigit() else address.max_prefixlen
    try:
        return ip in ipaddress.ip_network(f"{address}/{bits}", strict=False)
    except ValueError:
        return False


def _relay_shown(host: str, addresses: list[IPAddress]) -> str:
    """`relay.example (192.0.2.1)`, or the address alone when the relay is written so."""
    listed = ", ".join(map(str, addresses))
    return listed if listed == host else f"{host} ({listed})"


def _relay_term(smtp: Smtp) -> str:
    """The SPF term that permits the relay: its provider's include, else its address."""
    provider = _provider_include(smtp.host)
    if provider:
        return f"include:{provider}"
    try:
        ip = ipaddress.ip_address(smtp.host)
    except ValueError:
        return f"a:{smtp.host}"
    if _local(ip):
        # the mail leaves from this machine, known by the name it greets with
        return f"a:{smtp.local_hostname}" if "." in smtp.local_hostname else "mx"
    return f"ip{ip.version}:{ip}"


def _provider_include(host: str) -> str | None:
    host = host.lower().rstrip(".")
    for suffix, include in _PROVIDERS.items():
        if host == suffix or host.endswith("." + suffix):
            return include
    return None


def _with_term(record: str, term: str) -> str:
    """`record` with `term` first, so no term before it can refuse the relay."""
    version, _, terms = record.partition(" ")
    return " ".join(filter(None, (version, term, terms.strip())))


def _merged(records: list[str]) -> str:
    """One record with the terms of all (DNS keeps no order between records: sorted),
    ending with the gentlest `all` among theirs."""
    terms = list(dict.fromkeys(t for r in sorted(records) for t in r.split()[1:]))
    endings = sorted(
        (t for t in terms if _ENDING.fullmatch(t.lower())),
        key=lambda t: _ENDINGS_GENTLEST.index(t.lower()),
    )
    return " ".join(["v=spf1", *(t for t in terms if t not in endings), *endings[:1]])


def _local(ip: IPAddress) -> bool:
    return ip.is_loopback or ip.is_link_local or any(ip in net for net in _LOCAL_NETWORKS)


# ---------------------------------------------------------------- DKIM


def check_dkim(project: Project, lookups: DnsLookups) -> Finding:
    """The key published at `<selector>._domainkey.<domain>` is the configured key's."""
    config = project.config.sending.dkim
    if config is None:
        found = (
            "sending.dkim is not set: the engine does not sign, so the relay must sign "
            "as the From domain (ask the provider), or no DKIM signature aligns"
        )
        return Finding("dkim", _domain(project.config.sending.sender.email), Verdict.WARN, found)
    name = f"{config.selector}._domainkey.{config.domain}"
    try:
        kind, public = _public_key((project.root / config.key_file).read_bytes())
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return Finding("dkim", name, Verdict.FAIL, f"cannot read the key {config.key_file}: {exc}")
    wanted = Record(name, "TXT", f"v=DKIM1; k={kind}; p={base64.b64encode(public).decode()}")
    try:
        records = [t for t in lookups.txt(name) if "p" in _tags(t)]
    except DnsFailure as exc:
        return Finding("dkim", name, Verdict.FAIL, f"could not read the DKIM record: {exc}")
    if not records:
        found = "no DKIM record: receivers cannot check the signatures"
    elif len(records) > 1:
        found = f"{len(records)} DKIM records where one belongs"
    elif not _tags(records[0])["p"]:
        found = "the published key is revoked (empty p=)"
    elif not _same_key(kind, public, _tags(records[0])["p"]):
        shown = _tags(records[0])["p"][:16]
        found = f"the published key (p={shown}…) is not {config.key_file}'s: every signature fails"
    else:
        return Finding("dkim", name, Verdict.OK, f"the published key matches {config.key_file}")
    return Finding("dkim", name, Verdict.FAIL, found, wanted)


def _public_key(pem: bytes) -> tuple[str, bytes]:
    """The DKIM key type (k=) and public key (p=, decoded) of a PEM private key."""
    key = serialization.load_pem_private_key(pem, password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        return "rsa", key.public_key().public_bytes(serialization.Encoding.DER, spki)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
        return "ed25519", key.public_key().public_bytes(*raw)
    raise ValueError(f"it holds a {type(key).__name__}; DKIM keys are RSA or Ed25519")


def _same_key(kind: str, public: bytes, published: str) -> bool:
    try:
        key = base64.b64decode(re.sub(r"\s", "", published), validate=True)
    except (binascii.Error, ValueError):
        return False
    if key == public or kind != "rsa":
        return key == public
    # some publish the bare RSAPublicKey (PKCS#1) in place of SubjectPublicKeyInfo
    pkcs1 = serialization.load_der_public_key(public).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1
    )
    return key == pkcs1


def _tags(record: str) -> dict[str, str]:
    """The `tag=value` pairs of a DKIM or DMARC record, tags lowercased."""
    pairs = (part.split("=", 1) for part in record.split(";") if "=" in part)
    return {tag.strip().lower(): value.strip() for tag, value in pairs}


# ---------------------------------------------------------------- DMARC and alignment

_POLICIES = {
    "none": "monitoring only: mail that fails is delivered as usual, and reported",
    "quarantine": "mail that fails goes to spam",
    "reject": "mail that fails is refused",
}


def check_dmarc(from_domain: str, report_address: str, lookups: DnsLookups) -> Finding:
    """A DMARC record for the From domain, or its organizational domain's; its policy."""
    for domain in dict.fromkeys((from_domain, organizational_domain(from_domain))):
        name = f"_dmarc.{domain}"
        try:
            records = [t for t in lookups.txt(name) if re.match(r"v\s*=\s*DMARC1\s*(;|$)", t, re.I)]
        except DnsFailure as exc:
            return Finding("dmarc", name, Verdict.FAIL, f"could not read the DMARC record: {exc}")
        if len(records) > 1:
            found = f"{len(records)} DMARC records: receivers ignore them all; keep one"
            return Finding("dmarc", name, Verdict.FAIL, found)
        if records:
            return _dmarc_policy(name, records[0], subdomain=domain != from_domain)
    name = f"_dmarc.{from_domain}"
    found = "no DMARC record: Gmail and Yahoo require one of bulk senders"
    publish = Record(name, "TXT", f"v=DMARC1; p=none; rua=mailto:{report_address}")
    return Finding("dmarc", name, Verdict.FAIL, found, publish)


def _dmarc_policy(name: str, record: str, *, subdomain: bool) -> Finding:
    tags = _tags(record)
    policy = tags.get("sp", tags.get("p")) if subdomain else tags.get("p")
    if policy not in _POLICIES:
        found = f"{record!r} has no valid policy (p=none, quarantine or reject)"
        return Finding("dmarc", name, Verdict.FAIL, found)
    reports = "" if "rua" in tags else "; without rua= no aggregate reports arrive"
    return Finding("dmarc", name, Verdict.OK, f"p={policy} ({_POLICIES[policy]}){reports}")


def check_alignment(sending: Sending) -> Finding:
    """DMARC passes only through a domain aligned with From (relaxed: the same
    organizational domain): DKIM's d= or the envelope's, the bounce address."""
    from_domain = _domain(sending.sender.email)
    envelope = _domain(sending.bounce_address) if sending.bounce_address else from_domain
    org = organizational_domain(from_domain)
    problems = []
    if organizational_domain(envelope) != org:
        problems.append(
            f"the bounce (envelope) domain {envelope} is not aligned with the From domain "
            f"{from_domain}, so SPF cannot pass DMARC"
        )
    if sending.dkim is None:
        problems.append(f"nothing is signed here: DKIM aligns only if the relay signs as {org}")
    elif organizational_domain(sending.dkim.domain) != org:
        problems.append(
            f"the DKIM domain d={sending.dkim.domain} is not aligned with the From domain "
            f"{from_domain}, so DKIM cannot pass DMARC"
        )
    if not problems:
        found = f"From, DKIM d= and the bounce domain all belong to {org}"
        return Finding("alignment", from_domain, Verdict.OK, found)
    verdict = Verdict.FAIL if len(problems) == 2 else Verdict.WARN
    return Finding("alignment", from_domain, verdict, "; ".join(problems))


# ---------------------------------------------------------------- tracking


def check_tracking(base_url: str) -> Finding:
    """Gmail's one-click unsubscribe (RFC 8058) posts only to an https address."""
    url = urlsplit(base_url)
    if url.scheme == "https":
        return Finding("tracking", base_url, Verdict.OK, "https, as one-click unsubscribe needs")
    if _loopback(url.hostname or ""):
        found = "http on this machine: fine for the demo only (one-click unsubscribe needs https)"
        return Finding("tracking", base_url, Verdict.WARN, found)
    found = (
        "http: Gmail's one-click unsubscribe needs https; put the tracking server behind "
        "a proxy that terminates TLS"
    )
    return Finding("tracking", base_url, Verdict.FAIL, found)


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[1].lower()


def _report_address(project: Project, from_domain: str) -> str:
    """Where DMARC reports go: the shop's support address when it is in the From
    domain's organization, else dmarc@ the From domain."""
    support = project.config.shop.support_email
    if support and organizational_domain(_domain(support)) == organizational_domain(from_domain):
        return support
    return f"dmarc@{from_domain}"
