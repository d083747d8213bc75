"""A college's own receiving mail server on loopback, as Debian sets it up, for the pipeline tests.

    sender ─SMTP, XCLIENT─▶ Postfix (mx.college.test) ─LMTP─▶ Dovecot ◀─IMAP─ modbot
                               │ milters over Unix sockets
                               ▼
                   OpenDKIM, OpenDMARC ─DNS─▶ dnsmasq        (a private network namespace)

- Postfix listens on free loopback ports, one ``smtpd`` per variant: ``"opendkim_opendmarc"``
  passes mail through OpenDKIM then OpenDMARC (each writes its own ``Authentication-Results``
  with the MX's authserv-id), ``"opendkim"`` through OpenDKIM alone. It takes XCLIENT from
  loopback, so a test says which Internet host a message came from: the MX's ``Received`` line
  and the SPF check then name that host, as they would for mail from outside.
- OpenDKIM, OpenDMARC and dnsmasq run in a network namespace of their own (``unshare``), where
  dnsmasq answers on port 53 and ``/etc/resolv.conf`` is bind-mounted to point at it; nothing
  touches the host's DNS or port 53, and several runs never collide. Postfix reaches the milters
  over Unix sockets, which cross namespaces.
- Every daemon but Dovecot also runs in a PID namespace whose first process dies with the test
  process (SIGKILL by ``PR_SET_PDEATHSIG`` to ``unshare --kill-child``): the kernel then kills
  all of them, whatever users they switched to on the way (which clears a parent-death signal
  of their own).
- Dovecot is ``servers.start_dovecot`` with its LMTP listener on; Postfix delivers every
  ``@college.test`` recipient there, and the local part is the Dovecot user.

Needs root (the namespace, bind mounts and Postfix's own users) and Debian's postfix, opendkim,
opendmarc, dnsmasq-base (the program without the system service) and dovecot-lmtpd.
``start_pipeline`` raises ``servers.ServerUnavailable`` when something is missing or does not
start.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dkim
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from support import servers

MX = "mx.college.test"  # the MX's host name and the authserv-id both milters write
MAIL_DOMAIN = "college.test"  # every recipient here is delivered to Dovecot
STORE = "imap.college.test"  # Dovecot's name in the Received line it adds
VARIANTS = ("opendkim_opendmarc", "opendkim")
PREFIX = "mbpf-"
OWNER_FILE = "owner.pid"
START_TIMEOUT = 10.0
DELIVERY_TIMEOUT = 15.0
DOVECOT_LMTP = Path("/usr/lib/dovecot/lmtp")
POSTFIX_FILES = Path("/etc/postfix/postfix-files")
PUBLIC_SUFFIX_LIST = Path("/usr/share/publicsuffix/public_suffix_list.dat")
PROGRAMS = {
    "master": ("/usr/lib/postfix/sbin/master", "postfix"),
    "opendkim": ("/usr/sbin/opendkim", "opendkim"),
    "opendmarc": ("/usr/sbin/opendmarc", "opendmarc"),
    "dnsmasq": ("/usr/sbin/dnsmasq", "dnsmasq-base"),
    "unshare": ("/usr/bin/unshare", "util-linux"),
    "nsenter": ("/usr/bin/nsenter", "util-linux"),
}


# --------------------------------------------------------------------------------------------
# DKIM keys and DNS records


@dataclass(frozen=True)
class DkimKey:
    """An RSA signing key of ``domain`` under ``selector``, and the TXT record that publishes it."""

    domain: str
    selector: str
    pem: bytes = field(repr=False)
    record: str = field(repr=False)

    @property
    def name(self) -> str:
        """The DNS name of the key's TXT record."""
        return f"{self.selector}._domainkey.{self.domain}"

    def sign(self, raw: bytes, headers: Sequence[str]) -> bytes:
        """``raw`` with this key's ``DKIM-Signature`` on top, covering ``headers`` (dkimpy)."""
        signature: bytes = dkim.sign(raw, self.selector.encode(), self.domain.encode(), self.pem,
                                     include_headers=[h.encode() for h in headers],
                                     linesep=b"\r\n")
        return signature + raw


def new_key(domain: str, selector: str, bits: int = 2048) -> DkimKey:
    """A fresh key for ``domain``; 2048 bits as LinkedIn's, so the record spans two strings."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = private.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    public = private.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return DkimKey(domain, selector, pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode())


def _dnsmasq_txt(name: str, text: str) -> str:
    """A dnsmasq ``txt-record`` line; text longer than one string is split at 255 characters."""
    if '"' in text or "\n" in text:
        raise ValueError(f"TXT text for {name} cannot hold quotes or line breaks")
    chunks = [text[i:i + 255] for i in range(0, len(text), 255)] or [""]
    return f"txt-record={name}," + ",".join(f'"{chunk}"' for chunk in chunks)


# --------------------------------------------------------------------------------------------
# Configuration, close to what Debian ships and the usual guides add


_DNSMASQ_CONF = """\
# The only DNS server the milters see: the test zone, NXDOMAIN for every other name.
port=53
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
no-poll
local=/#/
user=root
pid-file=
log-facility={root}/dnsmasq.log
log-queries
{records}
"""

# Debian's /etc/opendkim.conf (Canonicalization, OversignHeaders) for a receiving server that
# only verifies; AuthservID is the MX's name, as OpenDMARC's.
_OPENDKIM_CONF = """\
Syslog                  no
Canonicalization        relaxed/simple
OversignHeaders         From
Mode                    v
AuthservID              {mx}
Socket                  local:{root}/opendkim.sock
PidFile                 {root}/opendkim.pid
UMask                   000
Nameservers             127.0.0.1
ResolverConfiguration   {root}/unbound.conf
"""

# OpenDKIM resolves with libunbound, which answers every name under test. (RFC 6761) itself
# with NXDOMAIN unless told otherwise: the attacker's evil.test must come from dnsmasq.
_UNBOUND_CONF = """\
server:
    local-zone: "test." nodefault
"""

# Debian's /etc/opendmarc.conf plus what the usual set-up adds: the MX's authserv-id, trusting
# OpenDKIM's results of that id, and SPF checked here (there is no SPF policy daemon).
_OPENDMARC_CONF = """\
Syslog                  false
AuthservID              {mx}
TrustedAuthservIDs      {mx}
Socket                  local:{root}/opendmarc.sock
PidFile                 {root}/opendmarc.pid
UMask                   000
PublicSuffixList        {psl}
SPFSelfValidate         true
SPFIgnoreResults        true
RejectFailures          false
FailureReports          false
"""

_MAIN_CF = """\
compatibility_level = 3.6
myhostname = {mx}
mydomain = {domain}
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
queue_directory = {root}/spool
data_directory = {root}/data
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
alias_maps =
alias_database =
biff = no
mynetworks = 127.0.0.1/32
smtpd_authorized_xclient_hosts = 127.0.0.1
smtpd_relay_restrictions = reject_unauth_destination
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
virtual_mailbox_domains = {domain}
virtual_mailbox_maps = static:ok
virtual_transport = lmtp:inet:127.0.0.1:{lmtp_port}
# A milter that does not answer makes the sender try again; mail never passes unverified.
milter_default_action = tempfail
"""

_SMTPD = """\
127.0.0.1:{port} inet n - n - - smtpd
  -o syslog_name=postfix/{variant}
  -o smtpd_milters={milters}
"""

_MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


# --------------------------------------------------------------------------------------------
# The running pipeline


@dataclass(frozen=True)
class Peer:
    """An Internet host a message comes from, as Postfix is told with XCLIENT."""

    name: str
    addr: str


class Rejected(Exception):
    """Postfix (or a milter through it) refused a message; the message is its answer."""


@dataclass
class Pipeline:
    """A running Postfix, OpenDKIM, OpenDMARC, dnsmasq and Dovecot; stop it with ``stop()``."""

    root: Path
    dovecot: servers.Dovecot
    ports: dict[str, int] = field(default_factory=dict)  # variant → Postfix smtpd port
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def send(self, raw: bytes, *, variant: str, sender: str, recipient: str,
             peer: Peer) -> str:
        """Hand ``raw`` to Postfix as ``peer`` would; return the queue id Postfix gave it."""
        with smtplib.SMTP(servers.HOST, self.ports[variant], local_hostname="injector",
                          timeout=START_TIMEOUT) as smtp:
            smtp.ehlo()
            code, answer = smtp.docmd("XCLIENT",
                                      f"NAME={peer.name} ADDR={peer.addr} HELO={peer.name}")
            if code != 220:
                raise Rejected(f"XCLIENT: {code} {answer.decode(errors='replace')}")
            smtp.ehlo(peer.name)
            for step, (code, answer) in (("MAIL", smtp.mail(sender)),
                                         ("RCPT", smtp.rcpt(recipient))):
                if code != 250:
                    raise Rejected(f"{step}: {code} {answer.decode(errors='replace')}")
            code, answer = smtp.data(raw)
            if code != 250:
                raise Rejected(f"DATA: {code} {answer.decode(errors='replace')}")
        match = re.search(rb"queued as ([0-9A-Za-z]+)", answer)
        if match is None:
            raise Rejected(f"no queue id in {answer!r}")
        return match.group(1).decode()

    def wait_delivered(self, queue_ids: Sequence[str],
                       timeout: float = DELIVERY_TIMEOUT) -> None:
        """Wait until Postfix has delivered every one of ``queue_ids`` to Dovecot over LMTP."""
        pending = set(queue_ids)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            log = self.maillog()
            for queue_id in list(pending):
                status = re.search(rf"{queue_id}: to=<[^>]*>,.* status=(\w+)", log)
                if status is None:
                    continue
                if status.group(1) != "sent":
                    raise Rejected(f"{queue_id} was not delivered:\n{self.log_tail()}")
                pending.discard(queue_id)
            if pending:
                time.sleep(0.02)
        if pending:
            raise TimeoutError(f"not delivered in {timeout} s: {sorted(pending)}\n"
                               f"{self.log_tail()}")

    def maillog(self) -> str:
        """What Postfix has logged so far."""
        return _read(self.root / "maillog")

    def log_tail(self, lines: int = 10) -> str:
        """The last lines of every daemon's log, for failure messages."""
        parts = []
        for name in ("maillog", "master.log", "holder.log", "dnsmasq.log", "dnsmasq.out",
                     "opendkim.log", "opendmarc.log"):
            text = _read(self.root / name).strip()
            if text:
                parts.append(f"--- {name}\n" + "\n".join(text.splitlines()[-lines:]))
        parts.append(f"--- dovecot\n{self.dovecot.log_tail(lines)}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop every daemon and remove the directory.

        Ending the namespace kills every process in it at once, Postfix's children too; none
        keeps anything worth a clean stop (OpenDMARC alone would take five seconds to answer
        SIGTERM).
        """
        namespace = self.processes.pop("namespace", None)
        if namespace is not None:  # unshare waits out SIGTERM; its child dies with it either way
            servers.stop_process(namespace, signal.SIGKILL)
        for process in self.processes.values():  # nsenter, each waiting for its daemon
            servers.stop_process(process, signal.SIGKILL)
        self.processes.clear()
        self.dovecot.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _read(path: Path) -> str:
    """``path``'s text, or nothing if it is not there (yet)."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _child_of(pid: int) -> int:
    """The one child process of ``pid`` (read from /proc)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _read(stat).rpartition(")")[2].split()
        if len(fields) > 1 and fields[1] == str(pid):
            return int(stat.parent.name)
    raise servers.ServerUnavailable(f"unshare (pid {pid}) started no process")


def _programs() -> dict[str, str]:
    if os.geteuid() != 0:
        raise servers.ServerUnavailable(
            "the Postfix pipeline needs root (a network namespace and Postfix's own users)")
    found: dict[str, str] = {}
    missing: set[str] = set()
    for name, (path, package) in PROGRAMS.items():
        chosen = path if os.access(path, os.X_OK) else shutil.which(name)
        if chosen is None:
            missing.add(package)
        else:
            found[name] = chosen
    if not PUBLIC_SUFFIX_LIST.is_file():
        missing.add("publicsuffix")
    if not DOVECOT_LMTP.is_file():
        missing.add("dovecot-lmtpd")
    if missing:
        raise servers.ServerUnavailable(
            f"the Postfix pipeline needs {', '.join(sorted(missing))} (apt-get install "
            "postfix opendkim opendkim-tools opendmarc dnsmasq-base dovecot-lmtpd)")
    return found


def _killed_with_parent() -> None:
    """Ask the kernel to SIGKILL this child when the test process dies (unshare, waiting for
    its child, ignores SIGTERM)."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def _spawn(argv: Sequence[str], log: Path,
           preexec: Callable[[], None] = servers._die_with_parent) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                preexec_fn=preexec)


def _wait(what: str, ready: Callable[[], bool], process: subprocess.Popen[bytes],
          pipeline: Pipeline, timeout: float = START_TIMEOUT) -> None:
    """Wait until ``ready()`` is true; ``ServerUnavailable`` if ``process`` ends or time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if process.poll() is not None:
            break
        time.sleep(0.01)
    raise servers.ServerUnavailable(f"{what} did not start; the logs say:\n{pipeline.log_tail()}")


def _connects(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(path))
        return True
    except OSError:
        return False


def _greets_smtp(port: int) -> bool:
    try:
        with socket.create_connection((servers.HOST, port), timeout=0.5) as sock:
            return sock.recv(64).startswith(b"220 ")
    except OSError:
        return False


def _backdate(*paths: Path) -> None:
    """Set ``paths`` a minute into the past: Postfix rereads a file changed this very second
    until that second is over, 300 ms at a time, in every process that reads it."""
    past = time.time() - 60
    for path in paths:
        os.utime(path, (past, past))


def _make_postfix_directories(queue: Path, data: Path) -> None:
    """The queue and data directories with the owners and modes of Debian's postfix-files.

    What ``postfix check`` would create, without its three seconds of other checks.
    """
    places = {"$queue_directory": queue, "$data_directory": data}
    try:
        lines = POSTFIX_FILES.read_text().splitlines()
    except OSError as exc:
        raise servers.ServerUnavailable(f"cannot read {POSTFIX_FILES}: {exc}") from None
    for line in lines:
        fields = line.split(":")
        if len(fields) < 5 or fields[1] != "d":
            continue
        top, _, below = fields[0].partition("/")
        if top not in places:
            continue
        path = places[top] / below if below else places[top]
        path.mkdir(exist_ok=True)
        owner = "postfix" if fields[2] == "$mail_owner" else fields[2]
        group = {"-": None, "$setgid_group": "postdrop"}.get(fields[3], fields[3])
        shutil.chown(path, owner, group)
        path.chmod(int(fields[4], 8))


def start_pipeline(cert: trustme.LeafCert, client_context: ssl.SSLContext,
                   zone: Mapping[str, str], attempts: int = 5) -> Pipeline:
    """Start Dovecot, the namespace with dnsmasq serving ``zone`` (name → TXT), both milters
    and Postfix; raise ``servers.ServerUnavailable`` if any of them cannot start."""
    programs = _programs()
    servers.remove_stale_instances(PREFIX, OWNER_FILE)
    # The daemons read what is written here under their own users: an in-process `modbot`
    # command earlier in the run may have left the umask at 077.
    mask = os.umask(0o022)
    try:
        dovecot = servers.start_dovecot(cert, client_context, lmtp_hostname=STORE)
        root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=servers.INSTANCE_PARENT))
        pipeline = Pipeline(root, dovecot)
        try:
            _start(pipeline, programs, zone, attempts)
        except BaseException:
            pipeline.stop()
            raise
    finally:
        os.umask(mask)
    return pipeline


def _start(pipeline: Pipeline, programs: Mapping[str, str], zone: Mapping[str, str],
           attempts: int) -> None:
    root = pipeline.root
    root.chmod(0o755)  # Postfix's own processes reach the milter sockets and the spool here
    (root / OWNER_FILE).write_text(str(os.getpid()))

    # The namespaces: their first process sets up loopback and resolv.conf, then only holds
    # them; unshare kills it when unshare itself dies, and the kernel then kills the rest.
    (root / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    holder = _spawn([programs["unshare"], "--pid", "--kill-child", "--net", "--mount", "--",
                     "/bin/sh", "-c",
                     f"ip link set lo up && mount --bind {root}/resolv.conf /etc/resolv.conf"
                     " && echo namespace ready && exec sleep infinity"], root / "holder.log",
                    _killed_with_parent)
    pipeline.processes["namespace"] = holder
    _wait("the namespaces", lambda: "namespace ready" in _read(root / "holder.log"),
          holder, pipeline)
    first = _child_of(holder.pid)
    pid_only = [programs["nsenter"], f"--target={first}", "--pid", "--"]
    inside = [programs["nsenter"], f"--target={first}", "--pid", "--net", "--mount", "--"]

    records = "\n".join(_dnsmasq_txt(name, text) for name, text in sorted(zone.items()))
    (root / "dnsmasq.conf").write_text(_DNSMASQ_CONF.format(root=root, records=records))
    dnsmasq = _spawn([*inside, programs["dnsmasq"], "--keep-in-foreground",
                      f"--conf-file={root}/dnsmasq.conf"], root / "dnsmasq.out")
    pipeline.processes["dnsmasq"] = dnsmasq
    _wait("dnsmasq", lambda: "started, version" in _read(root / "dnsmasq.log"), dnsmasq,
          pipeline)

    (root / "opendkim.conf").write_text(_OPENDKIM_CONF.format(mx=MX, root=root))
    (root / "unbound.conf").write_text(_UNBOUND_CONF)
    opendkim = _spawn([*inside, programs["opendkim"], "-f", "-x", f"{root}/opendkim.conf"],
                      root / "opendkim.log")
    pipeline.processes["opendkim"] = opendkim
    (root / "opendmarc.conf").write_text(
        _OPENDMARC_CONF.format(mx=MX, root=root, psl=PUBLIC_SUFFIX_LIST))
    opendmarc = _spawn([*inside, programs["opendmarc"], "-f", "-c", f"{root}/opendmarc.conf"],
                       root / "opendmarc.log")
    pipeline.processes["opendmarc"] = opendmarc
    _wait("OpenDKIM", lambda: _connects(root / "opendkim.sock"), opendkim, pipeline)
    _wait("OpenDMARC", lambda: _connects(root / "opendmarc.sock"), opendmarc, pipeline)

    dkim_milter = f"unix:{root}/opendkim.sock"
    dmarc_milter = f"unix:{root}/opendmarc.sock"
    milters = {"opendkim_opendmarc": f"{dkim_milter},{dmarc_milter}", "opendkim": dkim_milter}
    etc = root / "etc"
    etc.mkdir()
    etc.chmod(0o755)  # whatever the umask an earlier test left
    _make_postfix_directories(root / "spool", root / "data")
    assert pipeline.dovecot.lmtp_port is not None
    (etc / "main.cf").write_text(_MAIN_CF.format(mx=MX, domain=MAIL_DOMAIN, root=root,
                                                 lmtp_port=pipeline.dovecot.lmtp_port))
    problem = "no attempt was made"
    for _ in range(attempts):
        ports = {variant: servers.free_port() for variant in VARIANTS}
        if len(set(ports.values())) < len(ports):
            continue
        listeners = "".join(_SMTPD.format(port=port, variant=variant,
                                          milters=milters[variant])
                            for variant, port in ports.items())
        (etc / "master.cf").write_text(listeners + _MASTER_CF)
        _backdate(etc / "main.cf", etc / "master.cf")
        master = _spawn([*pid_only, programs["master"], "-s", "-c", str(etc)],
                        root / "master.log")
        pipeline.processes["postfix"] = master
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and master.poll() is None:
            if all(_greets_smtp(port) for port in ports.values()):
                pipeline.ports = ports
                return
            time.sleep(0.01)
        if master.poll() is None:  # it never answered: stop the master, not only nsenter
            with contextlib.suppress(servers.ServerUnavailable, ProcessLookupError):
                os.kill(_child_of(master.pid), signal.SIGKILL)
        servers.stop_process(master, signal.SIGKILL)
        del pipeline.processes["postfix"]
        problem = pipeline.log_tail()
        if "Address already in use" not in problem:
            break
    raise servers.ServerUnavailable(f"Postfix did not start; the logs say:\n{problem}")

