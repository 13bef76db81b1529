"""A real Postfix for tests: Debian's postfix, private to the test run, on 127.0.0.1.

`postfix_server` gives a test an MTA that bounces the way one in the wild does: it takes
a message for an unknown user of `shop.test` over SMTP (STARTTLS with a certificate from
the run's own CA, no login needed from 127.0.0.1), then sends a delivery status
notification (RFC 3464) to the envelope sender, a `bounce+<token>@bounces.test` address.
Where that DSN goes is the fixture's parameter, `BounceDestination`:

    MAILDIR (the default)  one Maildir on disk, `server.bounces`: `server.wait_for_maildir`
    RELAY                  an aiosmtpd listener on 127.0.0.1: `server.wait_for_relay`

    @pytest.mark.parametrize("postfix_server", [BounceDestination.RELAY], indirect=True)

Each destination has one Postfix for the whole run (it starts in about half a second);
before each test its queue is emptied and its Maildir removed or its listener's script
replaced, so tests do not see each other's mail.

Each Postfix is a master process run as our child with everything in a temporary folder:
main.cf and master.cf, queue, data and log; from /etc/postfix only the package's own
lists (postfix-files, dynamicmaps.cf), and the system's postfix service is neither
started nor reconfigured. SMTP AUTH is not offered: smtpd takes mail from 127.0.0.0/8
without it. Postfix's master must run as root; without root or without postfix the tests
that use it skip (`make mailservers` installs it); under CI=true they fail.
"""

from __future__ import annotations

import mailbox
import os
import pty
import pwd
import shutil
import smtplib
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from enum import StrEnum
from pathlib import Path
from typing import NoReturn

import pytest
from aiosmtpd.smtp import SMTP

from tests.conftest import skip_or_fail
from tests.daemon_fixtures import free_port
from tests.smtp_servers import Received, Script, ServerThread

HOST = "127.0.0.1"
DOMAIN = "shop.test"  # the shop's own domain: only postmaster@ has a mailbox
BOUNCE_DOMAIN = "bounces.test"  # the domain of the envelope senders, bounce+<token>@
START_TIMEOUT = 15.0  # seconds; it starts in well under one
STOP_TIMEOUT = 10.0
WAIT_TIMEOUT = 10.0  # for a DSN; Postfix sends one for an unknown user at once
COMMAND_TIMEOUT = 30.0


class BounceDestination(StrEnum):
    """Where Postfix delivers the DSNs it sends to `bounce+...@bounces.test`."""

    MAILDIR = "maildir"
    RELAY = "relay"


@dataclass(frozen=True)
class PostfixServer:
    """One test's view of a private Postfix: an empty queue and no DSN delivered yet.

    Send to `host`:`port` (STARTTLS, verified with
    `ssl.create_default_context(cafile=cafile)`); `nosuchuser@{domain}` is accepted and
    then bounced. In MAILDIR mode the DSNs land in the Maildir `bounces`; in RELAY mode
    they are relayed to the aiosmtpd listener whose handler is `relay` (a fresh `Script`
    per test: set its replies to have the relay refuse). `log` is Postfix's log, for a
    failing test to show.
    """

    host: str
    port: int
    domain: str
    bounce_domain: str
    cafile: Path
    log: Path
    config_directory: Path
    bounces: Path | None  # MAILDIR mode
    relay: Script | None  # RELAY mode

    def flush(self) -> None:
        """Ask Postfix to retry every deferred message now (`postqueue -f`)."""
        _postfix_command("postqueue", "-c", str(self.config_directory), "-f")

    def queue(self) -> str:
        """The queue as `postqueue -p` lists it."""
        return _postfix_command("postqueue", "-c", str(self.config_directory), "-p")

    def wait_for_maildir(self, count: int, timeout: float = WAIT_TIMEOUT) -> list[EmailMessage]:
        """The messages in the bounce Maildir, oldest first, once there are `count` or
        more; fail with the queue and the log when there are fewer after `timeout` s."""
        assert self.bounces is not None, "the bounces go to a relay: use wait_for_relay"
        deadline = time.monotonic() + timeout
        while True:
            messages = _maildir_messages(self.bounces)
            if len(messages) >= count:
                return messages
            if time.monotonic() > deadline:
                self._fail(f"{len(messages)} of {count} messages in {self.bounces}")
            time.sleep(0.05)

    def wait_for_relay(self, count: int, timeout: float = WAIT_TIMEOUT) -> list[Received]:
        """What the relay listener accepted, in order, once it has `count` messages or
        more; fail with the queue and the log when it has fewer after `timeout` s."""
        assert self.relay is not None, "the bounces go to a Maildir: use wait_for_maildir"
        deadline = time.monotonic() + timeout
        while True:
            received = list(self.relay.received)
            if len(received) >= count:
                return received
            if time.monotonic() > deadline:
                self._fail(f"the relay listener accepted {len(received)} of {count} messages")
            time.sleep(0.05)

    def output(self) -> str:
        return f"--- queue\n{self.queue()}\n--- {self.log.name}\n{_read(self.log)}"

    def _fail(self, what: str) -> NoReturn:
        pytest.fail(f"{what} after waiting\n{self.output()}")


@dataclass
class RelayScript(Script):
    """The relay listener's handler for the whole run: it hands every connection to the
    script of the test running now."""

    current: Script = field(default_factory=Script)

    def protocol(self) -> SMTP:
        return self.current.protocol()

    def hang_up(self) -> None:
        self.current.hang_up()

    def replace(self) -> Script:
        """A fresh script for the next test; the last test's connections closed."""
        self.current.hang_up()
        self.current = Script()
        return self.current


@dataclass(frozen=True)
class RelayListener:
    """The aiosmtpd listener a RELAY-mode Postfix sends its DSNs to."""

    script: RelayScript
    port: int


class Postfix:
    """A Postfix master process serving SMTP on `HOST`:`port`, everything in `folder`,
    delivering its DSNs to a Maildir or, given `relay`, to that listener."""

    def __init__(self, master: str, folder: Path, relay: RelayListener | None = None):
        self.master = master
        self.folder = folder
        self.relay = relay
        self.port = free_port()
        self.config_directory = folder / "config"
        self.log = folder / "postfix.log"
        self.mail = folder / "mail"  # virtual_mailbox_base
        self.cafile, self.chain = certificate_authority(folder / "tls")
        self.mail_owner = _mail_owner()
        self.process: subprocess.Popen[bytes] | None = None

    def for_test(self) -> PostfixServer:
        """This Postfix with an empty queue and no DSN delivered yet."""
        _postfix_command("postsuper", "-c", str(self.config_directory), "-d", "ALL")
        bounces = None
        if self.relay is None:
            bounces = self.mail / "bounces"
            shutil.rmtree(bounces, ignore_errors=True)
        return PostfixServer(
            host=HOST,
            port=self.port,
            domain=DOMAIN,
            bounce_domain=BOUNCE_DOMAIN,
            cafile=self.cafile,
            log=self.log,
            config_directory=self.config_directory,
            bounces=bounces,
            relay=None if self.relay is None else self.relay.script.replace(),
        )

    def start(self) -> None:
        """Write the configuration, let `postfix check` make the queue, start the master
        and wait until a client that trusts the CA gets through STARTTLS; fail with the
        log when it does not within START_TIMEOUT."""
        self._write_config()
        # Checks the configuration, and makes the queue's folders with the owners and
        # modes postfix wants (post-install create-missing, which needs root).
        status, said = _run_on_a_terminal(
            [_command("postfix"), "-c", str(self.config_directory), "check"]
        )
        if status != 0:
            pytest.fail(f"postfix check failed:\n{said}\n{self.output()}")
        # Started as `postfix start` starts it, but in the foreground: the master is our
        # child, and ends its daemons when it ends. postfix(1) also tells it where
        # postlogd will listen; with that it logs what stops it from starting (a port
        # in use) to the log file itself, else only to syslog.
        logging = {
            "POSTLOG_SERVICE": str(self.folder / "queue" / "public" / "postlog"),
            "POSTLOG_HOSTNAME": f"mail.{DOMAIN}",
        }
        self.process = subprocess.Popen(  # its stdin, stdout and stderr: /dev/null
            [self.master, "-c", str(self.config_directory)],
            env={**os.environ, **logging},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_for_starttls()

    def _write_config(self) -> None:
        self.config_directory.mkdir()
        (self.folder / "queue").mkdir()
        self.mail.mkdir()
        os.chown(self.mail, *self.mail_owner)  # virtual(8) makes the Maildirs as that user
        (self.config_directory / "main.cf").write_text(self._main_cf())
        (self.config_directory / "master.cf").write_text(self._master_cf())
        (self.config_directory / "mailboxes").write_text(
            f"# virtual_mailbox_maps: any other address of {DOMAIN} is an unknown user\n"
            f"/^postmaster@{_regexp(DOMAIN)}$/ postmaster/\n"
            f"/^bounce\\+.+@{_regexp(BOUNCE_DOMAIN)}$/ bounces/\n"
        )
        # Postfix reads a file changed within the last second again and again until it
        # is older (in case it was being edited): 2 s at each start without this.
        an_hour_ago = time.time() - 3600
        for path in self.config_directory.iterdir():
            os.utime(path, (an_hour_ago, an_hour_ago))

    def stop(self) -> None:
        if self.process is None:
            return
        daemons = _children(self.process.pid)
        self.process.terminate()  # the master passes SIGTERM on to its daemons
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        # ...and ends without waiting for them: wait here, so that none is still writing
        # in the folder when it is removed.
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(_running(pid) for pid in daemons) and time.monotonic() < deadline:
            time.sleep(0.02)

    def output(self) -> str:
        """What Postfix said: its log."""
        return f"--- {self.log.name}\n{_read(self.log)}"

    def _wait_for_starttls(self) -> None:
        assert self.process is not None
        context = ssl.create_default_context(cafile=self.cafile)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                pytest.fail(
                    f"postfix's master exited with {self.process.returncode} at start\n"
                    f"{self.output()}"
                )
            try:
                with smtplib.SMTP(HOST, self.port, timeout=5) as smtp:
                    smtp.starttls(context=context)
                    smtp.noop()
                return
            except ssl.SSLError as exc:  # it offers STARTTLS even when its key is unusable
                pytest.fail(f"postfix's STARTTLS failed: {exc!r}\n{self.output()}")
            except (OSError, smtplib.SMTPException) as exc:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"postfix did not answer on {HOST}:{self.port} within "
                        f"{START_TIMEOUT:.0f} s: {exc!r}\n{self.output()}"
                    )
                time.sleep(0.05)

    def _main_cf(self) -> str:
        uid, gid = self.mail_owner
        domains = f"{DOMAIN}, {BOUNCE_DOMAIN}" if self.relay is None else DOMAIN
        relay = ""
        if self.relay is not None:
            relay = f"""
# RELAY mode: the DSNs for {BOUNCE_DOMAIN} go to the test's listener, one connection
# per message (a cached one would belong to the previous test's script).
transport_maps = inline:{{ {BOUNCE_DOMAIN}=smtp:[{HOST}]:{self.relay.port} }}
smtp_connection_cache_on_demand = no
"""
        return f"""\
# A private Postfix for the tests (tests/postfix_server.py): nothing from /etc/postfix.
compatibility_level = 3.6
queue_directory = {self.folder}/queue
data_directory = {self.folder}/data
maillog_file = {self.log}
# Postfix writes its log only under these prefixes (by default /var and /dev/stdout).
maillog_file_prefixes = {self.folder}

inet_interfaces = {HOST}
inet_protocols = ipv4
myhostname = mail.{DOMAIN}
mydomain = {DOMAIN}
myorigin = {DOMAIN}
mynetworks = 127.0.0.0/8
smtpd_banner = $myhostname ESMTP

# No local delivery, no aliases, no DNS, no relay host: nothing leaves 127.0.0.1.
mydestination =
alias_maps =
alias_database =
relayhost =
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
biff = no

# {domains}: one Maildir per address in `mailboxes`, written as uid {uid}. An address
# that is not there is accepted at RCPT (smtpd does not check) and bounced by virtual(8)
# as an unknown user (5.1.1): an asynchronous DSN, as a remote MX's bounce would be.
virtual_mailbox_domains = {domains}
virtual_mailbox_base = {self.mail}
virtual_mailbox_maps = regexp:{self.config_directory}/mailboxes
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
smtpd_reject_unlisted_recipient = no
{relay}
# STARTTLS offered, never required; a certificate from the run's own CA.
smtpd_tls_security_level = may
smtpd_tls_chain_files = {self.chain}
smtpd_tls_loglevel = 1
smtp_tls_security_level = none
"""

    def _master_cf(self) -> str:
        # Nothing chrooted: the queue is in a temporary folder with no copy of /etc.
        return f"""\
# service type  private unpriv  chroot  wakeup  maxproc command
{HOST}:{self.port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfixes:
    """The run's private Postfix instances, one per bounce destination, each started
    when a test first asks for it, all under `folder`."""

    def __init__(self, master: str, folder: Path, stack: ExitStack):
        self.master = master
        self.folder = folder
        self.stack = stack
        self.started: dict[BounceDestination, Postfix] = {}

    def server(self, destination: BounceDestination) -> PostfixServer:
        if destination not in self.started:
            if (self.folder / destination.value).exists():
                pytest.fail(f"the {destination} postfix failed to start for an earlier test")
            self.started[destination] = self._start(destination)
        return self.started[destination].for_test()

    def _start(self, destination: BounceDestination) -> Postfix:
        relay = None
        if destination is BounceDestination.RELAY:
            script = RelayScript()
            relay = RelayListener(script, self.stack.enter_context(ServerThread(script).running()))
        folder = self.folder / destination.value
        folder.mkdir()
        postfix = Postfix(self.master, folder, relay)
        self.stack.callback(postfix.stop)
        postfix.start()
        return postfix


def certificate_authority(folder: Path) -> tuple[Path, Path]:
    """A CA and a server certificate it signed for 127.0.0.1 and localhost, in `folder`:
    the CA's certificate (what a client trusts) and the server's key and certificate in
    one file (P-256: an RSA key takes openssl up to a second to make)."""
    folder.mkdir()
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key = folder / "cert.pem", folder / "key.pem"
    new_key = ["-nodes", "-days", "1", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    _openssl(
        "req", "-x509", *new_key, "-subj", "/CN=lifecycle test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", str(ca_key), "-out", str(ca),
    )  # fmt: skip
    _openssl(
        "req", "-x509", *new_key, "-subj", "/CN=localhost",
        "-CA", str(ca), "-CAkey", str(ca_key),
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-addext", "basicConstraints=critical,CA:FALSE",
        "-addext", "keyUsage=critical,digitalSignature",
        "-addext", "extendedKeyUsage=serverAuth",
        "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    chain = folder / "chain.pem"  # smtpd_tls_chain_files: the key, then its certificate
    chain.write_bytes(key.read_bytes() + cert.read_bytes())
    chain.chmod(0o600)
    return ca, chain


def _openssl(*arguments: str) -> None:
    subprocess.run(["openssl", *arguments], check=True, capture_output=True, timeout=30)


def _postfix_command(name: str, *arguments: str) -> str:
    """Run one of postfix's commands; its output. Fails the test with what it said when
    it fails."""
    done = subprocess.run(
        [_command(name), *arguments], capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    if done.returncode != 0:
        pytest.fail(f"{name} {' '.join(arguments)} failed: {done.stdout}{done.stderr}")
    return done.stdout


def _run_on_a_terminal(command: list[str]) -> tuple[int, str]:
    """Run `command` with its output on a pseudo-terminal; its exit status and output.
    Postfix's commands write errors in their configuration to stderr only when it is a
    terminal, else only to syslog, which a container may not have."""
    primary, secondary = pty.openpty()
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=secondary,
            stderr=secondary,
            timeout=COMMAND_TIMEOUT,
        )
    finally:
        os.close(secondary)
    output = b""
    with os.fdopen(primary, "rb", buffering=0) as terminal:
        while True:
            try:
                chunk = terminal.read(4096)
            except OSError:  # EIO: read to the end, and the other side is closed
                break
            if not chunk:
                break
            output += chunk
    return done.returncode, output.decode(errors="replace")


def _command(name: str) -> str:
    return _which(name) or name


def _which(name: str) -> str | None:
    # Debian installs postfix's commands in /usr/sbin, which is not on a user's PATH
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    return shutil.which(name, path=search)


def _maildir_messages(path: Path) -> list[EmailMessage]:
    if not (path / "new").is_dir():  # virtual(8) makes the Maildir at its first delivery
        return []
    box = mailbox.Maildir(path, create=False)
    # Keys start with the delivery time; sorted, they put the oldest message first.
    return [_parse(box.get_bytes(key)) for key in sorted(box.keys())]


def _parse(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _regexp(domain: str) -> str:
    return domain.replace(".", "\\.")


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else "(none)"


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()  # after "pid (command)"
        except OSError:  # it ended meanwhile
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _running(pid: int) -> bool:
    """Whether `pid` has not ended (a zombie has: it waits only to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _mail_owner() -> tuple[int, int]:
    """Who virtual(8) writes mail as: `nobody` (it refuses root and system users)."""
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


def _master() -> str | None:
    """The path of postfix's master daemon, when postfix is installed."""
    postconf = _which("postconf")
    if _which("postfix") is None or postconf is None:
        return None
    daemons = subprocess.run(
        [postconf, "-d", "-h", "daemon_directory"],
        capture_output=True,
        text=True,
        check=True,
        timeout=COMMAND_TIMEOUT,
    ).stdout.strip()
    return os.path.join(daemons, "master")


@pytest.fixture(scope="session")
def postfixes() -> Iterator[Postfixes]:
    """The run's private Postfix instances; tests take `postfix_server`."""
    master = _master()
    if master is None:
        skip_or_fail("postfix is not installed: `make mailservers` installs it")
    if os.geteuid() != 0:
        skip_or_fail("a private postfix needs root: its master runs as root")
    if shutil.which("openssl") is None:
        skip_or_fail("openssl is needed to make the SMTP server's certificates")
    assert master is not None
    # Not under pytest's temporary folder: that is private to us, and postfix's daemons
    # run as the postfix user, its deliveries as nobody.
    with tempfile.TemporaryDirectory(prefix="lifecycle-postfix-") as name, ExitStack() as stack:
        folder = Path(name)
        folder.chmod(0o755)
        yield Postfixes(master, folder, stack)


@pytest.fixture
def postfix_server(request: pytest.FixtureRequest, postfixes: Postfixes) -> PostfixServer:
    """A real MTA (Postfix, SMTP with STARTTLS on 127.0.0.1) that bounces mail for unknown
    users of `shop.test` to the envelope sender; the DSNs go to a Maildir, or with
    `BounceDestination.RELAY` as the (indirect) parameter, to an aiosmtpd listener."""
    destination = BounceDestination(getattr(request, "param", BounceDestination.MAILDIR))
    return postfixes.server(destination)
