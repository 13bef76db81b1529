"""Hearing back from the mail system: bounces and complaints.

`reports` reads one report (an RFC 3464 delivery status notification, a plain-text
bounce, an RFC 5965 complaint, or an auto-reply to ignore) and finds the VERP token
that names its message; `apply` checks the token and records the bounce or complaint
on the message, suppressing the address when it must; `mailboxes` reads the bounce
mailbox (a Maildir or IMAP over TLS), each report once, and moves it aside;
`poller` is the daemon's reading of it, every `bounces.every`; `listener` is the
daemon's SMTP listener for the bounce domain, for reports sent straight to it.

May import: `engine.errors`, `engine.children`, `engine.exports`, `engine.store`,
`engine.project`, `engine.intake`, `engine.plan`, `engine.render`, `engine.deliver`.
Other stages import only the public names below, from this package; its own
modules import each other directly.

Public names:

- `apply`: `Outcome`, `Tally`, `apply_report`, `apply_reports`
- `listener`: `BounceListener`
- `mailboxes`: `MailboxError`, `Processor`, `read_imap`, `read_mailbox`, `read_maildir`
- `poller`: `MailboxPoller`
- `reports`: `Report`, `VerpPattern`, `read_report`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exports import public_names

if TYPE_CHECKING:
    from .apply import Outcome, Tally, apply_report, apply_reports
    from .listener import BounceListener
    from .mailboxes import MailboxError, Processor, read_imap, read_mailbox, read_maildir
    from .poller import MailboxPoller
    from .reports import Report, VerpPattern, read_report

__all__ = [
    "BounceListener",
    "MailboxError",
    "MailboxPoller",
    "Outcome",
    "Processor",
    "Report",
    "Tally",
    "VerpPattern",
    "apply_report",
    "apply_reports",
    "read_imap",
    "read_mailbox",
    "read_maildir",
    "read_report",
]

_PUBLIC = {
    "BounceListener": ".listener",
    "MailboxError": ".mailboxes",
    "MailboxPoller": ".poller",
    "Outcome": ".apply",
    "Processor": ".mailboxes",
    "Report": ".reports",
    "Tally": ".apply",
    "VerpPattern": ".reports",
    "apply_report": ".apply",
    "apply_reports": ".apply",
    "read_imap": ".mailboxes",
    "read_mailbox": ".mailboxes",
    "read_maildir": ".mailboxes",
    "read_report": ".reports",
}
_MODULES: set[str] = set()

if not TYPE_CHECKING:
    __getattr__ = public_names(__name__, _PUBLIC, _MODULES)
