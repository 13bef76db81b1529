"""What `lifecycle doctor` asks DNS, and how it says what it found.

`DnsLookups` asks the questions, each answer remembered for the run: a question waits
at most `timeout` seconds, the run at most `budget`, and once the nameserver has let
one question time out the rest are not asked; what DNS fails to answer is a
`DnsFailure`. A check's result is a `Finding` (its `Verdict`, what it found, and the
`Record` to publish when something is missing or wrong).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import dns.exception
import dns.name
import dns.nameserver
import dns.resolver

from ..errors import EngineError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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
