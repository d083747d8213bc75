"""What a month of the real inbox says about the configuration, before modbot goes live.

``modbot check`` reads the LinkedIn notifications of the last 30 days (``modbot.checks`` does
the IMAP part) and hands each one here. This module, pure apart from the injected DNS lookup
the gate itself takes, turns them into a report:

- how many notifications were found, how many the gate proves and by which evidence, how many
  it cannot and why (its reasons, shortened and grouped), and which link wrappers it met;
- the ``[policy]`` settings the header blocks suggest, read from where each mail system writes
  its stamps: the tenant id Exchange Online stamped on copies that entered through it, the
  hosts of a known gateway where mail entered the college, and the authserv-ids whose verdict
  sits where the gate would believe it. Every notification is judged again with the suggestion
  added, so the report says how many it would prove, never just that it might.

A suggestion is only a reading of headers a sender partly controls: the report says so, and
the admin confirms the tenant id and the hosts before writing them. Never reads or returns
subjects, names or bodies: only counts, host names, tenant ids and the gate's reasons.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from modbot import authenticity, links, parse, stacks, trace, verdicts
from modbot.brand import registrable_domain
from modbot.config import PolicySettings
from modbot.model import Authenticity, Notification, Verdict

__all__ = ["DAYS", "MAX_MESSAGES", "MAX_NOTIFICATIONS", "Finding", "Stamps", "Suggestion", "Survey",
           "claims_linkedin", "judge", "report", "stamps", "suggest"]

DnsLookup = Callable[[bytes], bytes | None]

DAYS = 30  # how far back the survey reads
MAX_NOTIFICATIONS = 300  # the newest notifications read whole; enough to see every stack
MAX_MESSAGES = 20_000  # the newest messages whose headers are read
REASON_CHARS = 110
# Inbound gateways whose Received lines name them, by host suffix.
GATEWAYS = (("pphosted.com", "Proofpoint"), ("ppe-hosted.com", "Proofpoint"),
            ("mimecast.com", "Mimecast"), ("barracudanetworks.com", "Barracuda"),
            ("iphmx.com", "Cisco Secure Email"))
# Mimecast writes its verdict among the message's own fields, where position proves nothing
# (CAMPUS-MAIL.md): its hosts in gateway_hosts would make nothing believable.
POSITIONLESS = frozenset({"Mimecast"})
# Authserv-ids every customer of a vendor shares, on outbound mail too: never the college's own.
SHARED_AUTHSERV_SUFFIXES = ("ppops.net", "pphosted.com", "mimecast.com", "outlook.com",
                            "microsoft.com", "barracudanetworks.com", "cudasvc.com",
                            "iphmx.com", "messagelabs.com")
EVIDENCE = {authenticity.EXCHANGE: "Exchange Online's verdict",
            authenticity.GATEWAY: "the gateway's verdict",
            authenticity.SERVER: "a trusted server's verdict",
            authenticity.DKIM: "DKIM verified here",
            authenticity.ARC: "an ARC chain verified here"}
WRAPPERS = {"safelinks": "Safe Links", "proofpoint": "Proofpoint URL Defense",
            "barracuda": "Barracuda LinkProtect", "cisco": "Cisco Secure Email",
            "mimecast": "Mimecast URL Protect"}
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_FROM_HOST = re.compile(r"\s*from\s+([^\s(;]+)", re.IGNORECASE)
_REPLY_FIELDS = re.compile(rb"^(?:in-reply-to|references)[ \t]*:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*",
                           re.IGNORECASE | re.MULTILINE)


def claims_linkedin(header: bytes) -> bool:
    """Whether a header block claims or imitates LinkedIn (``parse.linkedin_candidate``),
    leaving aside that it answers a message: the survey wants notifications, not replies."""
    return parse.linkedin_candidate(_REPLY_FIELDS.sub(b"X-Dropped: x", header))


# --- where each mail system stamped a copy ------------------------------------------------------

@dataclass(frozen=True)
class Stamps:
    """What one copy's header block says about the systems that stored it.

    ``tenant``: the ``X-MS-Exchange-CrossTenant-Id`` of a copy that entered through Exchange
    Online (only when every such stamp agrees). ``gateway``: the known gateway that took the
    message in, by name, and ``gateway_hosts`` the hosts its Received lines name, from its
    internal hop down to where mail entered it. ``authserv_ids``: those whose verdict lies
    where the gate would believe it, vendor-shared ids left out.
    """

    tenant: str | None = None
    gateway: str | None = None
    gateway_hosts: tuple[str, ...] = ()
    authserv_ids: tuple[str, ...] = ()


def _gateway_name(host: str) -> str | None:
    return next((name for suffix, name in GATEWAYS if trace.host_matches(host, suffix)), None)


def _shared(authserv_id: str) -> bool:
    return any(trace.host_matches(authserv_id, s) for s in SHARED_AUTHSERV_SUFFIXES)


def stamps(header: bytes) -> Stamps:
    """The stamps of one header block; empty for a block the gate could not read."""
    block = trace.fields(header)
    if block is None or not any(f.name == "received" for f in block):
        return Stamps()  # never crossed SMTP: no stamp of a receiving system to read
    tenant = None
    if stacks.exchange_ingress(block) is not None:
        ids = {f.value.strip().lower() for f in block if f.name == "x-ms-exchange-crosstenant-id"}
        if len(ids) == 1 and _GUID.fullmatch(next(iter(ids))):
            tenant = ids.pop()
    gateway, hosts = _gateway(block)
    authserv_ids: list[str] = []
    for f in block:
        read = verdicts.read(f.value) if f.name == "authentication-results" else None
        if read is None or read[0] in authserv_ids or _shared(read[0]) \
                or not verdicts.strict_domain(read[0]):
            continue
        if verdicts.trusted_results(block, [read[0]]) is not None:
            authserv_ids.append(read[0])  # believed where that server writes, as the gate does
    return Stamps(tenant, gateway, hosts, tuple(authserv_ids))


def _from_host(received: str) -> str:
    match = _FROM_HOST.match(received)
    return match.group(1).lower().rstrip(".") if match else ""


def _gateway(block: Sequence[trace.Field]) -> tuple[str | None, tuple[str, ...]]:
    """The known gateway that handed the message to the college's mail system, and the hosts
    of its Received lines, from its internal hop down to where mail entered it.

    Read from the top, where the receiving side writes: its own lines, down to the first that
    crosses from another organisation (Exchange's ingress; Google's or the college's MX taking
    the message in). When that hop came from a known gateway, the gateway's lines follow right
    below it. A gateway named only further down was named by the sender.
    """
    received = [(i, f.value) for i, f in enumerate(block) if f.name == "received"]
    top = stacks.exchange_ingress(block)
    start = next((n for n, (i, value) in enumerate(received)
                  if i == top or (top is None and _crosses(value))), None)
    if start is None:
        return None, ()
    handed = _gateway_name(_from_host(received[start][1]))
    below = received[start + 1:] if handed else received[start:]
    hosts: list[str] = []
    for _, value in below:
        by = trace.received_by(value)
        if _gateway_name(by) is None:
            break
        hosts.append(by)
        if not trace.from_loopback(value):
            break  # where mail entered the gateway: everything below is the sender's
    name = handed or (_gateway_name(hosts[0]) if hosts else None)
    return name, tuple(dict.fromkeys(hosts))


def _crosses(received: str) -> bool:
    """A hop from another organisation's host into this one (not from this machine)."""
    source, by = _from_host(received), trace.received_by(received)
    if not source or not by or trace.from_loopback(received):
        return False
    return registrable_domain(source) != registrable_domain(by)


@dataclass(frozen=True)
class Suggestion:
    """The ``[policy]`` trust settings the copies suggest, and what they were read from."""

    microsoft365_tenant: str | None = None
    tenants: tuple[tuple[str, int], ...] = ()  # every tenant id seen, most copies first
    exchange_copies: int = 0
    gateway: str | None = None
    gateway_hosts: tuple[str, ...] = ()
    authserv_ids: tuple[str, ...] = ()

    def policy(self, current: PolicySettings) -> PolicySettings:
        """``current`` with the suggestion added (a configured tenant gives way to the seen one)."""
        return current.model_copy(update={
            "microsoft365_tenant": self.microsoft365_tenant or current.microsoft365_tenant,
            "gateway_hosts": tuple(dict.fromkeys((*current.gateway_hosts, *self.gateway_hosts))),
            "trusted_authserv_ids": tuple(dict.fromkeys(
                (*current.trusted_authserv_ids, *self.authserv_ids)))})

    def adds_to(self, current: PolicySettings) -> bool:
        """Whether the suggestion changes anything in ``current``."""
        return self.policy(current) != current


def suggest(seen: Iterable[Stamps]) -> Suggestion:
    """What the stamps of the copies suggest: the tenant on most Exchange copies (when it is on
    more than half of them), the hosts of the one gateway most copies entered through (unless
    its verdict has no position), and every authserv-id found where the gate believes it."""
    tenants: Counter[str] = Counter()
    gateways: Counter[str] = Counter()
    hosts: dict[str, list[str]] = {}
    ids: Counter[str] = Counter()
    exchange = 0
    for s in seen:
        if s.tenant:
            exchange += 1
            tenants[s.tenant] += 1
        if s.gateway:
            gateways[s.gateway] += 1
            hosts.setdefault(s.gateway, []).extend(s.gateway_hosts)
        ids.update(s.authserv_ids)
    tenant = None
    if tenants:
        top, count = tenants.most_common(1)[0]
        tenant = top if count * 2 > exchange else None
    gateway = gateways.most_common(1)[0][0] if gateways else None
    gateway_hosts = () if gateway is None or gateway in POSITIONLESS else tuple(
        sorted(dict.fromkeys(hosts[gateway])))
    return Suggestion(tenant, tuple(tenants.most_common()), exchange, gateway, gateway_hosts,
                      tuple(sorted(ids)))


# --- one notification, judged as the poll judges it ----------------------------------------------

@dataclass(frozen=True)
class Finding:
    """The gate's finding on one notification, as counts need it: no subject, name or link."""

    verdict: Verdict
    evidence: str
    reason: str
    wrappers: frozenset[str] = frozenset()
    suggested: Verdict | None = None  # the verdict with the suggestion added, when it adds any


def _reason(reasons: Sequence[str]) -> str:
    """The gate's deciding reason (the one after its "claims to be LinkedIn" line), shortened."""
    text = " ".join(reasons[1:2] or reasons[:1]).strip()
    return text if len(text) <= REASON_CHARS else text[:REASON_CHARS - 1].rstrip() + "…"


def _check(notification: Notification, policy: PolicySettings,
           lookup: DnsLookup | None) -> Authenticity:
    return authenticity.check(
        notification,
        trusted_authserv_ids=policy.trusted_authserv_ids, dkim_lookup=lookup,
        microsoft365_tenant=policy.microsoft365_tenant, gateway_hosts=policy.gateway_hosts)


def judge(raw: bytes, policy: PolicySettings, lookup: DnsLookup | None,
          suggested: PolicySettings | None = None) -> Finding | None:
    """The gate's finding on ``raw`` with ``policy`` (and with ``suggested``, when given);
    None when the message does not claim to be LinkedIn's after all. Never raises."""
    try:
        n = parse.parse(raw)
        found = _check(n, policy, lookup)
        if not found.looks_like_linkedin:
            return None
        wrappers = frozenset(links.wrappers_in(parse.extract_links(n.text, n.html,
                                                                   originals=False)))
        again = _check(n, suggested, lookup).verdict if suggested is not None else None
        return Finding(found.verdict, found.evidence, _reason(found.reasons), wrappers, again)
    except Exception as exc:  # one bad message is one more line, never the end of the survey
        return Finding(Verdict.UNKNOWN, "", f"could not be read ({type(exc).__name__})")


# --- the report ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Survey:
    """Everything the survey of one folder found, ready to report."""

    folder: str
    messages: int  # in the window
    findings: tuple[Finding, ...]
    current: PolicySettings
    suggestion: Suggestion = field(default_factory=Suggestion)
    unread: int = 0  # notifications beyond MAX_NOTIFICATIONS or too large, not judged
    days: int = DAYS


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _toml_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def report(survey: Survey) -> tuple[str, str, list[str]]:
    """(level, headline, table lines) for ``modbot check``.

    The level is ``problem`` when notifications were found and none is proven (modbot would
    answer nobody), ``warning`` when some are not proven, else ``ok`` (``note`` for none found).
    """
    findings = survey.findings
    total = len(findings)
    where = (f"the last {survey.days} days of {survey.folder} "
             f"({_plural(survey.messages, 'message')})")
    if not total:
        unread = f"; {survey.unread} could not be read" if survey.unread else ""
        return "note", f"mail survey: no LinkedIn notification in {where}{unread}", []
    proven = [f for f in findings if f.verdict is Verdict.AUTHENTIC]
    unknown = [f for f in findings if f.verdict is Verdict.UNKNOWN]
    spoofs = [f for f in findings if f.verdict is Verdict.SPOOF]
    found = f"mail survey: {_plural(total, 'LinkedIn notification')} in {where}"
    if not proven:
        level, headline = "problem", (f"{found}; the configuration proves none of them, so "
                                      "modbot would answer nobody")
    elif unknown or spoofs:
        level, headline = "warning", f"{found}; {len(proven)} proven, {total - len(proven)} not"
    else:
        level, headline = "ok", f"{found}; all proven"
    lines = [f"  {len(proven):>5}  proven"]
    lines += [f"  {c:>5}    by {EVIDENCE.get(e, e or 'other evidence')}"
              for e, c in Counter(f.evidence for f in proven).most_common()]
    for label, group in (("not proven: held for the counselor", unknown),
                         ("judged forged: held, never answered", spoofs)):
        if group:
            lines.append(f"  {len(group):>5}  {label}")
            lines += [f"  {c:>5}    {reason}"
                      for reason, c in Counter(f.reason for f in group).most_common(6)]
    if survey.unread:
        lines.append(f"  {survey.unread:>5}  not read (beyond the newest {MAX_NOTIFICATIONS}, "
                     "or too large)")
    met = Counter(w for f in findings for w in f.wrappers)
    lines.append("  link wrappers met: " + (", ".join(
        f"{WRAPPERS.get(w, w)} ({c})" for w, c in met.most_common()) or "none"))
    broken = sum(1 for f in unknown + spoofs if f.wrappers and f.evidence == authenticity.DKIM)
    if broken:
        copies = "1 copy" if broken == 1 else f"{broken} copies"
        lines.append(f"  {copies} failed DKIM with rewritten links: a rewritten body breaks "
                     "LinkedIn's signature, so genuine mail reads as forged until the receiving "
                     "system's own verdict is trusted")
    lines += _suggestion_lines(survey, proven=len(proven))
    return level, headline, lines


def _suggestion_lines(survey: Survey, *, proven: int) -> list[str]:
    s, current = survey.suggestion, survey.current
    lines: list[str] = []
    if s.gateway in POSITIONLESS:
        lines.append(f"  {s.gateway} took this mail in and writes its verdict where position "
                     "proves nothing: turn on Enhanced Filtering for Connectors in Exchange, or "
                     "trust its ARC seal there (docs/deployment.md)")
    if len(s.tenants) > 1:
        lines.append("  tenant ids seen: " + ", ".join(f"{t} ({c})" for t, c in s.tenants))
    if proven == len(survey.findings) or not s.adds_to(current):
        if not proven:
            lines.append("  no setting to suggest from these headers: see docs/deployment.md "
                         "for your mail system")
        return lines
    better = sum(f.suggested is Verdict.AUTHENTIC for f in survey.findings)
    lines.append(f"  suggested [policy] settings (with them {better} of "
                 f"{len(survey.findings)} would be proven):")
    if s.microsoft365_tenant and s.microsoft365_tenant != current.microsoft365_tenant:
        was = (f"; microsoft365_tenant = {current.microsoft365_tenant} is on no copy"
               if current.microsoft365_tenant else "")
        lines.append(f'    microsoft365_tenant = "{s.microsoft365_tenant}"   # stamped on '
                     f"{dict(s.tenants)[s.microsoft365_tenant]} of {s.exchange_copies} copies "
                     f"Exchange Online took in; confirm it is your tenant id{was}")
    extra_hosts = [h for h in s.gateway_hosts if h not in current.gateway_hosts]
    if extra_hosts:
        lines.append(f"    gateway_hosts = {_toml_list((*current.gateway_hosts, *extra_hosts))}"
                     f"   # {s.gateway}, where mail entered the college")
    extra_ids = [i for i in s.authserv_ids if i not in current.trusted_authserv_ids]
    if extra_ids:
        lines.append("    trusted_authserv_ids = "
                     f"{_toml_list((*current.trusted_authserv_ids, *extra_ids))}"
                     "   # verdicts written where the receiving server writes them")
    lines.append("  these are read from headers a sender partly writes: confirm each value is "
                 "your own system's before you set it (docs/deployment.md)")
    return lines
