"""A real IMAP server for tests: Debian's dovecot, private to the test run, on 127.0.0.1.

`imap_server` gives a test an empty mailbox on it: where to log in, the certificate to
trust, and the Maildir behind the mailbox, so the test can put bounces in and read back
what the client did. One dovecot serves the whole run (it starts in ~0.2 s); the mailbox
is emptied before each test, so a test logs out before it ends (`with IMAP4_SSL(...)`).

The dovecot runs as a child process with a config of its own in a temporary folder:
IMAPS only (TLS from the first byte, with a certificate made for the run), one user from a
passwd-file, mail in a Maildir, its sockets, state and log in that folder; nothing from
/etc/dovecot or the system's accounts, and the system's dovecot service is never needed.
Without dovecot the tests that use it skip (`make mailservers` installs it); under
CI=true they fail.
"""

from __future__ import annotations

import grp
import imaplib
import mailbox
import os
import pwd
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail
from tests.daemon_fixtures import free_port
from tests.smtp_servers import certificate

HOST = "127.0.0.1"
USER = "bounces"
PASSWORD = "imap test password"
START_TIMEOUT = 15.0  # seconds; it starts in well under one
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class ImapServer:
    """One test's mailbox on the private dovecot.

    `cafile` is the server's self-signed certificate, for
    `ssl.create_default_context(cafile=...)`. `maildir` is the mailbox on disk: INBOX
    at its top, a folder `Name` in `.Name` (Maildir++; the IMAP hierarchy separator is
    "."), as `mailbox.Maildir(maildir).get_folder("Name")` reads it. `log` is dovecot's
    log, for a failing test to show.
    """

    host: str
    port: int
    user: str
    password: str
    cafile: Path
    maildir: Path
    log: Path
    mail_owner: tuple[int, int]  # the uid and gid dovecot reads and writes mail as

    def deliver(self, raw: bytes, folder: str | None = None) -> str:
        """Put the message `raw` in INBOX, or in `folder` (made when missing), as a new,
        unseen message; return its Maildir key."""
        inbox = mailbox.Maildir(self.maildir, create=True)
        if folder is None:
            box = inbox
        elif folder in inbox.list_folders():
            box = inbox.get_folder(folder)
        else:
            box = inbox.add_folder(folder)
        key = box.add(raw)
        _hand_over(self.maildir, self.mail_owner)
        return key


class Dovecot:
    """A dovecot master process serving IMAPS on `HOST`:`port`, everything in `folder`."""

    def __init__(self, executable: str, folder: Path):
        self.executable = executable
        self.folder = folder
        self.port = free_port()
        self.log = folder / "dovecot.log"
        self.cafile, self.key = certificate(folder)
        self.mail_owner = _mail_owner()
        self.home = folder / "home" / USER
        self.process: subprocess.Popen[bytes] | None = None

    def mailbox(self) -> ImapServer:
        """The user's mailbox, emptied."""
        maildir = self.home / "Maildir"
        shutil.rmtree(maildir, ignore_errors=True)
        return ImapServer(
            HOST, self.port, USER, PASSWORD, self.cafile, maildir, self.log, self.mail_owner
        )

    def start(self) -> None:
        """Start dovecot and wait until it accepts a login over TLS; fail with its log
        when it does not within START_TIMEOUT."""
        self.home.mkdir(parents=True)
        _hand_over(self.home, self.mail_owner)
        uid, gid = self.mail_owner
        users = self.folder / "users"
        users.write_text(f"{USER}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{self.home}::\n")
        config = self.folder / "dovecot.conf"
        config.write_text(self._config(users))
        with (self.folder / "stderr.log").open("wb") as stderr:
            self.process = subprocess.Popen(
                [self.executable, "-F", "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        self._wait_for_login()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()  # dovecot ends its children, then itself (~1 s)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def output(self) -> str:
        """What dovecot said: its own output (config errors) and its log."""
        parts = []
        for path in (self.folder / "stderr.log", self.log):
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def _wait_for_login(self) -> None:
        assert self.process is not None
        context = ssl.create_default_context(cafile=self.cafile)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                pytest.fail(
                    f"dovecot exited with {self.process.returncode} at start\n{self.output()}"
                )
            try:
                with imaplib.IMAP4_SSL(HOST, self.port, ssl_context=context, timeout=5) as imap:
                    imap.login(USER, PASSWORD)
                return
            except (OSError, imaplib.IMAP4.error) as exc:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"dovecot did not accept a login on {HOST}:{self.port} within "
                        f"{START_TIMEOUT:.0f} s: {exc!r}\n{self.output()}"
                    )
                time.sleep(0.05)

    def _config(self, users: Path) -> str:
        internal_user, internal_group, login_user = _service_accounts()
        uid = self.mail_owner[0]
        return f"""\
# A private dovecot for the tests (tests/imap_server.py): nothing from /etc/dovecot.
base_dir = {self.folder}/run
state_dir = {self.folder}/state
log_path = {self.log}
protocols = imap
listen = {HOST}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = {uid}
last_valid_uid = {uid}

ssl = required
ssl_cert = <{self.cafile}
ssl_key = <{self.key}

auth_mechanisms = plain
# A wrong password is answered at once (by default after 2 s), and failed logins do
# not slow down the next ones from 127.0.0.1 (anvil's penalty reaches 15 s).
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {users}
}}

mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
}}

# No chroots: they need root, and there is nothing here for them to protect.
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {self.port}
    ssl = yes
  }}
}}
"""


def _mail_owner() -> tuple[int, int]:
    """Who dovecot reads and writes mail as: ourselves, or `nobody` when we are root
    (dovecot refuses mail access as root)."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


def _service_accounts() -> tuple[str, str, str]:
    """The user and group of dovecot's own processes, and the user of its login
    processes: the unprivileged ones Debian's package makes when we are root, else
    ourselves (only root may switch)."""
    if os.geteuid() == 0:
        return "dovecot", "dovecot", "dovenull"
    me = pwd.getpwuid(os.getuid()).pw_name
    return me, grp.getgrgid(os.getgid()).gr_name, me


def _hand_over(path: Path, owner: tuple[int, int]) -> None:
    """Give what the test wrote under `path` to the mail user (when that is not us)."""
    uid, gid = owner
    if uid == os.geteuid():
        return
    for folder, _, files in os.walk(path):
        os.chown(folder, uid, gid)
        for name in files:
            os.chown(os.path.join(folder, name), uid, gid)


def _dovecot_executable() -> str | None:
    # Debian installs it in /usr/sbin, which is not on a user's PATH
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    return shutil.which("dovecot", path=search)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """The private dovecot of the test run; tests take `imap_server`."""
    executable = _dovecot_executable()
    if executable is None:
        skip_or_fail("dovecot is not installed: `make mailservers` installs it")
    if shutil.which("openssl") is None:
        skip_or_fail("openssl is needed to make the IMAP server's certificate")
    assert executable is not None
    # Not under pytest's temporary folder: that is private to us, and dovecot's own
    # processes run as other users when we are root.
    with tempfile.TemporaryDirectory(prefix="lifecycle-dovecot-") as name:
        folder = Path(name)
        folder.chmod(0o755)
        server = Dovecot(executable, folder)
        try:
            server.start()
            yield server
        finally:
            server.stop()


@pytest.fixture
def imap_server(dovecot: Dovecot) -> ImapServer:
    """An empty mailbox on a real IMAP server (dovecot, IMAPS on 127.0.0.1)."""
    return dovecot.mailbox()
