"""DKIM key look-ups over DNS: the one edge that speaks to a resolver.

Only this module imports dnspython; the stages that verify a signature (``modbot.authenticity``
through ``modbot.dkimcheck``) take its ``txt_lookup`` as an injected function, so tests and the
benchmarks hand them their own. dnspython is imported at the first look-up, never at start-up.
This module must never cache an answer beyond one call or log the names it looks up.
"""

from __future__ import annotations

from collections.abc import Callable

# dkimpy's ``dnsfunc`` signature: a name in, its TXT record's bytes (or None) out.
DnsLookup = Callable[[bytes], bytes | None]


def txt_lookup(name: bytes, timeout: float = 3.0) -> bytes | None:
    """DKIM key lookup over DNS with a bounded wait (dkimpy's ``dnsfunc`` signature).

    None when DNS says the name has no TXT record (the key does not exist: a failed proof);
    an exception when DNS gives no answer at all (a timeout, no reachable server), which
    proves nothing either way.
    """
    import dns.exception
    import dns.resolver

    resolver = dns.resolver.Resolver()
    resolver.lifetime = timeout
    try:
        answer = resolver.resolve(name.decode("ascii", "replace").rstrip("."), "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    for record in answer:
        return b"".join(record.strings)
    return None
