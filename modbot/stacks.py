"""Where the mail systems colleges run write their verdict: Exchange Online and inbound gateways.

What it is for: Microsoft 365 and gateways such as Proofpoint write their verdicts in shapes
``modbot.verdicts`` does not read (Exchange's has no authserv-id; a gateway's arrives renamed
``Authentication-Results-Original`` behind Exchange). Each is believed only where that system
wrote it:

- **Exchange Online**: the one ``Authentication-Results`` directly above the tenant's ingress
  line, ``Received: … by <X>.mail.protection.outlook.com … via Frontend Transport`` (only
  ``Received-SPF`` may come between), on a copy stamped with the configured tenant
  (``X-MS-Exchange-CrossTenant-Id`` / ``X-EOPTenantAttributedMessage``). Its format is read
  tolerantly (comments dropped, bare tenant names skipped) but never loosely: a quoted string,
  an unknown method or a method given twice makes the whole header no evidence, so a token the
  sender chose cannot become a result.
- **A gateway** in ``gateway_hosts``: the verdict between the gateway's internal ``Received``
  line and its external ingress, the line where mail entered the college from outside.

``hop_hint`` names the outside hop that delivered to Exchange, for a reason that tells IT what
to change when Exchange could not check a signature a gateway had already broken.

Pure: no network, database, clock or environment; never raises for bad mail. This module must
never log header values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from modbot.trace import (
    Field,
    from_loopback,
    from_public,
    host_matches,
    received_by,
    without_comments,
)
from modbot.verdicts import MAX_VALUE, Result, Verdict, read

EXCHANGE = "Exchange Online"
_EXCHANGE_INGRESS = "*.mail.protection.outlook.com"
_METHODS = frozenset({"spf", "dkim", "dmarc", "compauth", "arc", "bimi", "auth"})
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Inbound gateways that change a message's body before Exchange sees it, by their hosts.
_GATEWAYS = (("pphosted.com", "Proofpoint"), ("ppe-hosted.com", "Proofpoint"),
             ("mimecast.com", "Mimecast"), ("barracudanetworks.com", "Barracuda"),
             ("iphmx.com", "Cisco Secure Email"), ("messagelabs.com", "Symantec"))


def read_exchange(value: str) -> tuple[Result, ...] | None:
    """The results of Exchange's own ``Authentication-Results`` (no authserv-id), or None.

    Comments are dropped and a bare name between clauses (``tenant.onmicrosoft.com;``, the
    2017-2021 form) is skipped; anything else that is not ``method=result name=value …`` with a
    known method, each method once and no quoted string, makes the header no evidence.
    """
    if len(value) > MAX_VALUE or not value.isascii():
        return None
    text = without_comments(value)
    if '"' in text or "(" in text or ")" in text or "\\" in text:
        return None  # a quoted local part or an unbalanced comment could hide a clause
    results: list[Result] = []
    seen: set[str] = set()
    for clause in text.split(";"):
        words = clause.split()
        if not words:
            continue
        if "=" not in words[0]:
            if len(words) == 1 and _TOKEN.fullmatch(words[0]):
                continue  # the tenant's name on its own
            return None
        method, _, result = words[0].lower().partition("=")
        if method not in _METHODS or method in seen or not result.isalpha():
            return None
        seen.add(method)
        props: dict[str, str] = {}
        for word in words[1:]:
            name, equals, prop = word.partition("=")
            name = name.lower()
            if not equals or name in props or "=" in prop:
                return None
            props[name] = prop
        results.append(Result(method, result, props))
    return tuple(results) or None


def exchange_ingress(block: Sequence[Field]) -> int | None:
    """Index of the tenant's ingress line: the topmost Frontend Transport hop into EOP."""
    for index, field in enumerate(block):
        if field.name == "received" and host_matches(received_by(field.value), _EXCHANGE_INGRESS) \
                and "via frontend transport" in " ".join(field.value.lower().split()):
            return index
    return None


def tenant_stamped(block: Sequence[Field], tenant: str) -> bool:
    """Whether Exchange stamped this copy for ``tenant``, and no stamp names another."""
    tenant = tenant.strip().lower()
    ids = [f.value.strip().lower() for f in block if f.name == "x-ms-exchange-crosstenant-id"]
    attributed = [f.value.strip().lower().partition(":")[0] for f in block
                  if f.name == "x-eoptenantattributedmessage"]
    stamps = ids + attributed
    return bool(stamps) and all(s == tenant for s in stamps)


def exchange_verdict(block: Sequence[Field], tenant: str | None) -> Verdict | None:
    """Exchange Online's own verdict on this copy, where it writes it, for ``tenant``."""
    if not tenant or not _GUID.fullmatch(tenant.strip().lower()):
        return None
    top = exchange_ingress(block)
    if top is None or not tenant_stamped(block, tenant):
        return None
    for field in reversed(block[:top]):
        if field.name == "received-spf":
            continue
        if field.name != "authentication-results":
            return None
        results = read_exchange(field.value)
        return Verdict(EXCHANGE, results) if results else None
    return None


def gateway_verdict(block: Sequence[Field], gateways: Sequence[str]) -> Verdict | None:
    """The verdict a gateway in ``gateways`` wrote where it writes it, or None.

    The gateway's external ingress is the topmost ``Received`` by one of its hosts from a hop
    that is not this machine; its verdict (``Authentication-Results``, renamed ``…-Original``
    behind Exchange) lies between that line and the gateway's own internal ``Received`` above.
    """
    hosts = [h.strip().lower() for h in gateways if h.strip()]
    if not hosts:
        return None
    ingress = None
    for index, field in enumerate(block):
        if field.name != "received":
            continue
        by_gateway = any(host_matches(received_by(field.value), h) for h in hosts)
        if by_gateway and not from_loopback(field.value):
            ingress = index
            break
        if not by_gateway and from_public(field.value):
            return None  # another server took it in from the internet: the rest is the sender's
    if ingress is None:
        return None
    server = ""
    results: list[Result] = []
    for field in reversed(block[:ingress]):
        if field.name == "received":
            if not any(host_matches(received_by(field.value), h) for h in hosts):
                return None  # the verdict must sit inside the gateway's own hops
            break
        if field.name in ("authentication-results", "authentication-results-original"):
            parsed = read(field.value)
            if parsed is not None:
                server = server or parsed[0]
                results += parsed[1]
    else:
        return None  # nothing above the ingress: the gateway's internal hop is missing
    return Verdict(f"the gateway {server}" if server else "the gateway", tuple(results)) \
        if results else None


def hop_hint(block: Sequence[Field]) -> str | None:
    """The gateway that handed the message to Exchange, by name, when one did."""
    top = exchange_ingress(block)
    if top is None:
        return None
    head = block[top].value.split(";")[0]
    match = re.match(r"\s*from\s+([^\s(]+)", head, re.IGNORECASE)
    host = match.group(1).lower() if match else ""
    return next((name for suffix, name in _GATEWAYS if host_matches(host, suffix)), None)
