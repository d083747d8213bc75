"""A private OpenLDAP ``slapd`` for the directory tests, started once per test session.

``start_slapd`` loads ``SEED`` into a fresh MDB database with ``slapadd`` (offline, no network;
OpenLDAP reads UTF-8 values in LDIF as they are),
then runs Debian's ``slapd`` in the foreground with its own ``slapd.conf`` on two free loopback
ports: ``ldap://`` (plain, offering StartTLS) and ``ldaps://``, both presenting a certificate from
the test CA. Only ``BIND_DN`` may read the people: an anonymous search finds nothing, so a test
that finds someone has proved its bind. Nothing here is for production.

``tests/edges/test_ldap.py`` turns this into the ``slapd`` fixture; the logic lives here so the
fixture stays short.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import trustme

from support.servers import (
    HOST,
    PORTS_TAKEN,
    ServerUnavailable,
    _die_with_parent,
    await_start,
    free_port,
    log_tail,
    stop_process,
)

SLAPD_ENV = "MODBOT_TEST_SLAPD"
SLAPD_CANDIDATES = ("/usr/sbin/slapd", "/usr/local/libexec/slapd")
SCHEMA_DIR = Path("/etc/ldap/schema")

BASE_DN = "dc=example,dc=edu"
PEOPLE_DN = f"ou=people,{BASE_DN}"
BIND_DN = f"cn=modbot,ou=services,{BASE_DN}"
BIND_PASSWORD = "ldap-secret-2024"

SEED = f"""\
dn: {BASE_DN}
objectClass: dcObject
objectClass: organization
o: Example University
dc: example

dn: ou=people,{BASE_DN}
objectClass: organizationalUnit
ou: people

dn: ou=services,{BASE_DN}
objectClass: organizationalUnit
ou: services

dn: {BIND_DN}
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: modbot
userPassword: {BIND_PASSWORD}

dn: uid=jrivera,{PEOPLE_DN}
objectClass: inetOrgPerson
uid: jrivera
cn: Jordan Rivera
sn: Rivera
mail: jrivera@students.example.edu
labeledURI: https://www.linkedin.com/in/jordan-rivera-42/ LinkedIn

dn: uid=jnunez,{PEOPLE_DN}
objectClass: inetOrgPerson
uid: jnunez
cn: José María Núñez
sn: Nunez
mail: jnunez@students.example.edu

dn: uid=achen1,{PEOPLE_DN}
objectClass: inetOrgPerson
uid: achen1
cn: Alex Chen
sn: Chen
mail: achen1@students.example.edu

dn: uid=achen2,{PEOPLE_DN}
objectClass: inetOrgPerson
uid: achen2
cn: Alex Chen
sn: Chen
mail: achen2@students.example.edu

dn: uid=mlopez,{PEOPLE_DN}
objectClass: inetOrgPerson
uid: mlopez
cn: Maria del Carmen Lopez
sn: Lopez
mail: mlopez@students.example.edu

dn: uid=rsmith,{PEOPLE_DN}
objectClass: inetOrgPerson
uid: rsmith
cn: Robert Smith
cn: Bob Smith
sn: Smith
mail: rsmith@students.example.edu
labeledURI: https://www.linkedin.com/profile/view?id=AAsAAA42

dn: uid=nomail,{PEOPLE_DN}
objectClass: inetOrgPerson
uid: nomail
cn: Casey Nomail
sn: Nomail

dn: cn=Priya Natarajan,ou=services,{BASE_DN}
objectClass: groupOfNames
cn: Priya Natarajan
member: {BIND_DN}
"""

_SLAPD_CONF = """\
# A private slapd for the modbot tests; nothing here is for production.
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
pidfile {root}/slapd.pid
argsfile {root}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCertificateFile {root}/cert.pem
TLSCertificateKeyFile {root}/key.pem
TLSProtocolMin 3.3

database mdb
suffix "{base}"
directory {root}/data
maxsize 16777216
dbnosync
access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by dn.exact="{bind_dn}" read
    by * none
"""


def find_slapd() -> str:
    """The slapd binary (``$MODBOT_TEST_SLAPD`` if set); ``ServerUnavailable`` if missing."""
    chosen = os.environ.get(SLAPD_ENV)
    candidates = (chosen,) if chosen else (*SLAPD_CANDIDATES, shutil.which("slapd"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ServerUnavailable(
        f"OpenLDAP is not installed (looked for {chosen or SLAPD_CANDIDATES[0]}); install the "
        f"Debian package slapd or set {SLAPD_ENV}"
    )


@dataclass
class Slapd:
    """A running private slapd; stop it with ``stop()``."""

    root: Path
    process: subprocess.Popen[bytes]
    ldap_port: int  # plain, offering StartTLS
    ldaps_port: int  # implicit TLS
    host: str = HOST

    def log_tail(self, lines: int = 20) -> str:
        """The last lines slapd wrote, for failure messages."""
        return log_tail(self.root / "slapd.log", lines=lines)

    def stop(self) -> None:
        """Stop the server (its directory belongs to the caller)."""
        stop_process(self.process)


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _both_answer(host: str, *ports: int) -> bool:
    return all(_answers(host, port) for port in ports)


def start_slapd(cert: trustme.LeafCert, parent: Path, attempts: int = 5) -> Slapd:
    """Start a private slapd on free loopback ports; raise ``ServerUnavailable`` on failure.

    A port found free can be taken before slapd binds it, so a failed bind is retried with new
    ports. The database is loaded once, before the first attempt.
    """
    binary = find_slapd()
    slapadd = Path(binary).with_name("slapadd")
    if not os.access(slapadd, os.X_OK):
        raise ServerUnavailable(f"{slapadd} is missing; reinstall the Debian package slapd")
    root = parent / "slapd"
    (root / "data").mkdir(parents=True)
    cert.cert_chain_pems[0].write_to_path(root / "cert.pem")
    cert.private_key_pem.write_to_path(root / "key.pem")
    (root / "key.pem").chmod(0o600)
    config = root / "slapd.conf"
    config.write_text(_SLAPD_CONF.format(schema=SCHEMA_DIR, root=root, base=BASE_DN,
                                         bind_dn=BIND_DN))
    (root / "seed.ldif").write_text(SEED, encoding="utf-8")
    loaded = subprocess.run([str(slapadd), "-q", "-f", str(config), "-l", str(root / "seed.ldif")],
                            capture_output=True, check=False, timeout=30)
    if loaded.returncode != 0:
        said = loaded.stderr.decode(errors="replace").strip()[-500:]
        raise ServerUnavailable(f"slapadd could not load the test directory: {said}")
    last_problem = "no attempt was made"
    for _ in range(attempts):
        ldap_port, ldaps_port = free_port(), free_port()
        while ldaps_port == ldap_port:
            ldaps_port = free_port()
        urls = f"ldap://{HOST}:{ldap_port}/ ldaps://{HOST}:{ldaps_port}/"
        with (root / "slapd.log").open("wb") as log:
            # "-d none": stay in the foreground and log only errors (such as a taken port).
            process = subprocess.Popen(
                [binary, "-d", "none", "-h", urls, "-f", str(config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=_die_with_parent,
            )
        server = Slapd(root, process, ldap_port, ldaps_port)
        problem = await_start(server, process,
                              functools.partial(_both_answer, HOST, ldap_port, ldaps_port))
        if problem is None:
            return server
        last_problem = problem
        if problem != PORTS_TAKEN:
            break
    raise ServerUnavailable(f"slapd did not start; {last_problem}")
