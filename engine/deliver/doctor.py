"""`lifecycle doctor`'s checks: the shop's sending setup as DNS shows it to a receiver.

`diagnose` reads the SPF records of the From and bounce domains, the DKIM key, the
DMARC record, whether the three domains align, and the tracking address; it returns one
`Finding` per check, each saying what it found and, when something is missing or
wrong, the record to publish. It never blocks sending and never raises for what DNS
answers or fails to answer: a timeout is a finding like any other.

The questions are asked by `dnslookups.DnsLookups` (each answer remembered for the
run, each question and the run bounded in time); the SPF check is `spfcheck`'s.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from urllib.parse import urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ..project import Project, Sending
from .dnslookups import DnsFailure, DnsLookups, Finding, Record, Verdict
from .spfcheck import check_spf

# Public suffixes of two labels common among shops; without a full public suffix list
# the organizational domain is the last two labels, or three under one of these.
_TWO_LABEL_SUFFIXES = frozenset({
    "ac.uk", "co.uk", "org.uk", "me.uk", "com.au", "net.au", "org.au", "co.nz", "com.bd",
    "net.bd", "org.bd", "edu.bd", "co.in", "net.in", "org.in", "com.pk", "com.np", "com.lk",
    "com.sg", "com.my", "co.id", "co.th", "com.vn", "com.ph", "co.jp", "co.kr", "com.cn",
    "com.hk", "com.tw", "co.za", "com.ng", "com.eg", "com.sa", "com.tr", "com.br", "com.mx",
    "com.ar", "com.co",
})  # fmt: skip


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
