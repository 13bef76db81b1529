"""`lifecycle doctor`: the sending domain's SPF, DKIM and DMARC records, as DNS shows them.

Each check prints what it found and, when something is missing or wrong, the record to
publish (see `engine.deliver.doctor`). Nothing is sent and nothing is written; the exit
code is 1 when a check fails (a warning alone exits 0).
"""

from __future__ import annotations

import sys

import click
from rich.text import Text

from ..deliver import DnsLookups, Finding, Verdict, diagnose, parse_nameserver
from .app import App
from .base import console, main, print_json, with_app

_SHOWN = {
    Verdict.OK: ("ok", "green"),
    Verdict.WARN: ("warn", "yellow"),
    Verdict.FAIL: ("FAIL", "bold red"),
}


def _nameservers(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> list[tuple[str, int]]:
    try:
        return [parse_nameserver(value) for value in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc


@main.command()
@click.option(
    "--nameserver",
    "nameservers",
    metavar="IP[:PORT]",
    multiple=True,
    callback=_nameservers,
    help="Ask this DNS server (repeatable; [IPv6]:PORT for a port on IPv6). "
    "Default: the system's resolver.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 30),
    default=3.0,
    show_default=True,
    metavar="SECONDS",
    help="How long one DNS question may wait.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@with_app
def doctor(app: App, nameservers: list[tuple[str, int]], timeout: float, as_json: bool) -> None:
    """Check the sending setup in DNS (SPF, DKIM, DMARC, alignment) and the tracking address."""
    findings = diagnose(app.project, DnsLookups(nameservers, timeout=timeout))
    failed = any(f.verdict is Verdict.FAIL for f in findings)
    if as_json:
        print_json({"ok": not failed, "findings": [f.as_dict() for f in findings]})
    else:
        for finding in findings:
            show(finding)
        console.print(summary(findings), markup=False)
    sys.exit(1 if failed else 0)


def show(finding: Finding) -> None:
    label, style = _SHOWN[finding.verdict]
    text = f" {finding.check:<9} {finding.subject}: {finding.found}"
    console.print(Text.assemble((f"{label:<4}", style), text))
    if finding.publish is not None:
        console.print(f"{'':<4} {'publish':<9} {finding.publish}", markup=False)


def summary(findings: list[Finding]) -> str:
    failed = sum(f.verdict is Verdict.FAIL for f in findings)
    warned = sum(f.verdict is Verdict.WARN for f in findings)
    if not failed and not warned:
        return "all good"
    return f"{failed} failed, {warned} warning{'s' if warned != 1 else ''}"
