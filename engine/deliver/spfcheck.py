"""The SPF check of `lifecycle doctor`: one record per domain, within RFC 7208's lookup
limit, that lets the shop's relay send.

`check_spf` evaluates the record the way a receiver does (its includes, `a`, `mx`,
`ip4`/`ip6` terms and redirect, at most `MAX_SPF_LOOKUPS` DNS-querying terms) for the
relay's addresses, and when it does not pass says which record to publish instead:
the relay's term (or its sending service's include) added, several records merged.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from ..project import Smtp
from .dnslookups import DnsFailure, DnsLookups, Finding, IPAddress, Record, Verdict

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

_LOCAL_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)

_SPF_TERM = re.compile(r"(?P<qualifier>[-+~?]?)(?P<name>[a-z][a-z0-9_.-]*)(?P<rest>[:/=].*)?", re.I)
_CIDR = re.compile(r"(?P<host>[^/]*)(?:/(?P<v4>\d+))?(?://(?P<v6>\d+))?")
_ENDING = re.compile(r"~all|-all|\?all|\+?all")
_ENDINGS_GENTLEST = ["~all", "-all", "?all", "all", "+all"]
_QUALIFIERS = {"+": "pass", "": "pass", "-": "fail", "~": "softfail", "?": "neutral"}

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
