"""Delivery: from queued messages to bytes handed to the SMTP server.

`dispatcher` claims due rows from the `outbox` with a lease, has them composed
(`composepool`, `compose`: the rendered email from `engine.render`, its links signed
with `tokens`, `headers` writing the header lines) and sends them through a `mailer`;
`results` records what each answer does to its message, counted in a
`dispatchreport`; `detractors` forwards unhappy survey comments to the shop's support
address; `dryrun` is a pass that writes nothing. `preview` builds one
customer's unsaved message; `sink` is the development mail sink; `doctor` checks
the sending domain's SPF (`spfcheck`), DKIM and DMARC records in DNS (`lifecycle doctor`),
asked through `dnslookups`.

May import: `engine.errors`, `engine.children`, `engine.exports`, `engine.store`,
`engine.project`, `engine.intake`, `engine.plan`, `engine.render`.
Other stages import only the public names below, from this package; its own
modules import each other directly.

Public names:

- `canary`: `judge_blasts`, `resume_campaign`, `waiting_blasts`
- `compose`: `Composer`
- `composepool`: `Composes`, `POOL_FROM`, `start_compose_pool`, `stop_compose_pool`
- `detractors`: `DetractorForwarder`, `forward_detractors`
- `dispatcher`: `dispatch`
- `dispatchreport`: `DispatchReport`, `default_worker_id`
- `dnslookups`: `DnsLookups`, `Finding`, `Verdict`, `parse_nameserver`
- `doctor`: `diagnose`
- `dryrun`: `rehearse`
- `mailer`: `Mailer`, `Outcome`, `SmtpMailer`
- `outbox`: `count_due`
- `preview`: `preview_customer`, `preview_sample`
- `sink`: `LoopServer`, `serve_sink`, `start_sink`
- `tokens`: `InvalidToken`, `Purpose`, `Signer`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exports import public_names

if TYPE_CHECKING:
    from .canary import judge_blasts, resume_campaign, waiting_blasts
    from .compose import Composer
    from .composepool import POOL_FROM, Composes, start_compose_pool, stop_compose_pool
    from .detractors import DetractorForwarder, forward_detractors
    from .dispatcher import dispatch
    from .dispatchreport import DispatchReport, default_worker_id
    from .dnslookups import DnsLookups, Finding, Verdict, parse_nameserver
    from .doctor import diagnose
    from .dryrun import rehearse
    from .mailer import Mailer, Outcome, SmtpMailer
    from .outbox import count_due
    from .preview import preview_customer, preview_sample
    from .sink import LoopServer, serve_sink, start_sink
    from .tokens import InvalidToken, Purpose, Signer

__all__ = [
    "POOL_FROM",
    "Composer",
    "Composes",
    "DetractorForwarder",
    "DispatchReport",
    "DnsLookups",
    "Finding",
    "InvalidToken",
    "LoopServer",
    "Mailer",
    "Outcome",
    "Purpose",
    "Signer",
    "SmtpMailer",
    "Verdict",
    "count_due",
    "default_worker_id",
    "diagnose",
    "dispatch",
    "forward_detractors",
    "judge_blasts",
    "parse_nameserver",
    "preview_customer",
    "preview_sample",
    "rehearse",
    "resume_campaign",
    "serve_sink",
    "start_compose_pool",
    "start_sink",
    "stop_compose_pool",
    "waiting_blasts",
]

# Each public name and its module (see `engine.exports`).
_PUBLIC = {
    "Composer": ".compose",
    "Composes": ".composepool",
    "DetractorForwarder": ".detractors",
    "DispatchReport": ".dispatchreport",
    "DnsLookups": ".dnslookups",
    "Finding": ".dnslookups",
    "InvalidToken": ".tokens",
    "LoopServer": ".sink",
    "Mailer": ".mailer",
    "Outcome": ".mailer",
    "POOL_FROM": ".composepool",
    "Purpose": ".tokens",
    "Signer": ".tokens",
    "SmtpMailer": ".mailer",
    "Verdict": ".dnslookups",
    "count_due": ".outbox",
    "default_worker_id": ".dispatchreport",
    "diagnose": ".doctor",
    "dispatch": ".dispatcher",
    "forward_detractors": ".detractors",
    "judge_blasts": ".canary",
    "resume_campaign": ".canary",
    "waiting_blasts": ".canary",
    "parse_nameserver": ".dnslookups",
    "preview_customer": ".preview",
    "preview_sample": ".preview",
    "rehearse": ".dryrun",
    "serve_sink": ".sink",
    "start_compose_pool": ".composepool",
    "start_sink": ".sink",
    "stop_compose_pool": ".composepool",
}
_MODULES: set[str] = set()

if not TYPE_CHECKING:
    __getattr__ = public_names(__name__, _PUBLIC, _MODULES)
