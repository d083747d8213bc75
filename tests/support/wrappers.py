"""Link wrappers written the way mail gateways write them, for the tests of modbot.links.

Each encoder follows its format's public description; the real links in data/wrapped_links.txt
check that the decoders agree with what the gateways really wrote.
"""

from __future__ import annotations

import base64
import email
import email.policy
import html
import re
from collections.abc import Callable
from urllib.parse import quote


def safelinks(url: str, region: str = "nam12") -> str:
    """``url`` as Microsoft 365 Safe Links writes it."""
    return (f"https://{region}.safelinks.protection.outlook.com/?url={quote(url, safe='')}"
            "&data=05%7C02%7Cmorgan.lee%40counsel.example.edu%7C304a702e%7C0%7C0%7C638640742"
            "&sdata=FtBs%2BWI3QWA6%3D&reserved=0")


def proofpoint_v2(url: str) -> str:
    """``url`` as URL Defense v2 writes it: percent-encoded, then "%" as "-" and "/" as "_"."""
    kept = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./"
    encoded = "".join(c if c in kept else quote(c, safe="") if c not in "-_" else
                      f"%{ord(c):02X}" for c in url)
    encoded = encoded.translate(str.maketrans("%/", "-_"))
    return (f"https://urldefense.proofpoint.com/v2/url?u={encoded}"
            "&d=DwIFaQ&c=7dfBJ8cX&r=P4xb2_7b&m=j-KHqunP&s=8LzYkGbu&e=")


def proofpoint_v3(url: str) -> str:
    """``url`` as URL Defense v3 writes it: specials as "*", runs as "**X", listed in base64."""
    specials = set("%*&;=?#:@!$+,'()[] ")
    runs = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    text, replaced, i = [], [], 0
    while i < len(url):
        j = i
        while j < len(url) and url[j] in specials:
            j += 1
        if j == i:
            text.append(url[i])
            i += 1
            continue
        run = url[i:j]
        replaced.append(run)
        while run:
            size = min(len(run), len(runs) + 1)
            text.append("*" if size == 1 else "**" + runs[size - 2])
            run = run[size:]
        i = j
    table = base64.urlsafe_b64encode("".join(replaced).encode()).decode().rstrip("=")
    return f"https://urldefense.com/v3/__{''.join(text)}__;{table}!!ACWV5N9M2RV99hQ!MwAZ$"


def barracuda(url: str) -> str:
    """``url`` as Barracuda LinkProtect writes it (lower-case hex)."""
    encoded = re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(url, safe=""))
    return f"https://linkprotect.cudasvc.com/url?a={encoded}&c=E,1,wPwTWuzMGz&typo=1"


def cisco(url: str) -> str:
    """``url`` as Cisco Secure Email writes it: an opaque token, then the encoded original."""
    return f"https://secure-web.cisco.com/12uvPqOwOjHJPiVGM6hJ7791jpWxxy8My3/{quote(url, safe='')}"


_TEXT_URL = re.compile(r"https?://[^\s<>\"']+")
_HREF_VALUE = re.compile(r"""(href\s*=\s*")([^"]*)(")""", re.IGNORECASE)


def rewritten(raw: bytes, wrap: Callable[[str], str]) -> bytes:
    """``raw`` as a gateway stores it: every link in the text and HTML parts wrapped."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    for part in message.walk():
        if part.get_content_type() not in ("text/plain", "text/html"):
            continue
        body = part.get_content()
        if part.get_content_subtype() == "html":
            body = _HREF_VALUE.sub(lambda m: m.group(1) + html.escape(
                wrap(html.unescape(m.group(2)))) + m.group(3), body)
        else:
            body = _TEXT_URL.sub(lambda m: wrap(m.group(0)), body)
        part.set_content(body, subtype=part.get_content_subtype(), charset="utf-8",
                         cte="quoted-printable")
    return message.as_bytes()
