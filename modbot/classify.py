"""Say what kind of LinkedIn notification a message is, and whom it is about.

The decision is an ordered table of named rules, read top to bottom like GNU Mailman's
moderation chain: the first rule whose test finds evidence decides, and the last rule is the
default. Strongest evidence first: authenticity, then LinkedIn's template key, then
``X-LinkedIn-Class``, then the sender's local part, then phrases in the subject and body (EN, ES,
FR, DE, PT, IT, ID). Counselors add rules from configuration with ``Rule.from_spec``; they run
after the two safety rules (not LinkedIn, spoof) and before the built-in ones.

Pure: no network, database, clock or environment, and it never raises for bad mail. The person
is read from the message only, never the counselor named in the "This email was intended for"
footer, and never "LinkedIn" itself. This module must never log message content.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from modbot.brand import claims_linkedin_name, is_linkedin, is_linkedin_link, is_lookalike
from modbot.model import Authenticity, Classification, Kind, Notification, Person, Verdict
from modbot.parse import clean_line

MAX_WORDS = 100_000  # characters of subject and body searched for phrases


@dataclass(frozen=True)
class Facts:
    """What the rules look at, computed once per message."""

    notification: Notification
    auth: Authenticity
    template_key: str | None
    template_source: str
    linkedin_class: str
    local_part: str  # From local part, only when From is linkedin.com
    words: str  # subject and body text, for phrases
    lines: tuple[str, ...]  # non-empty body lines (the text part, else the HTML as text)


Test = Callable[[Facts], str | None]  # evidence found, or None


@dataclass(frozen=True)
class Rule:
    """A named test that, when it finds evidence, decides the kind."""

    name: str
    kind: Kind
    test: Test

    @classmethod
    def from_spec(cls, spec: Mapping[str, str]) -> Rule:
        """Build a rule from configuration; raise ``ValueError`` saying what is wrong.

        ``spec`` has ``name``, ``kind`` and one test: ``template`` (regex on the template key),
        ``header`` with ``match`` (regex on that header's values), ``sender`` (the local part of
        a linkedin.com From address, exactly) or ``text`` (regex on subject and body).
        """
        unknown = set(spec) - {"name", "kind", "template", "header", "match", "sender", "text"}
        if unknown:
            raise ValueError(f"unknown rule keys: {', '.join(sorted(unknown))}")
        name, kind = spec.get("name", ""), spec.get("kind", "")
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
            raise ValueError(f"rule name {name!r} must be lower-case letters, digits and _")
        if kind not in {k.value for k in Kind}:
            raise ValueError(f"rule {name}: unknown kind {kind!r}")
        tests = [key for key in ("template", "header", "sender", "text") if key in spec]
        if len(tests) != 1 or ("header" in spec) != ("match" in spec):
            raise ValueError(f"rule {name}: give exactly one of template, header with match, "
                             "sender, text")
        try:
            if "template" in spec:
                test = _template(spec["template"])
            elif "header" in spec:
                test = _header(spec["header"], spec["match"])
            elif "sender" in spec:
                test = _sender(re.escape(spec["sender"]))
            else:
                test = _phrase(spec["text"])
        except re.error as exc:
            raise ValueError(f"rule {name}: invalid regular expression: {exc}") from None
        return cls(name, Kind(kind), test)


# --- test builders ----------------------------------------------------------------------------

def _template(pattern: str) -> Test:
    rx = re.compile(pattern, re.IGNORECASE)
    return lambda f: (f"template key {f.template_key} from {f.template_source}"
                      if f.template_key and rx.search(f.template_key) else None)


def _linkedin_class(*values: str) -> Test:
    return lambda f: (f"X-LinkedIn-Class {f.linkedin_class}"
                      if f.linkedin_class in values else None)


def _sender(pattern: str, also: Test | None = None) -> Test:
    rx = re.compile(pattern, re.IGNORECASE)

    def test(f: Facts) -> str | None:
        if not f.local_part or not rx.fullmatch(f.local_part):
            return None
        extra = also(f) if also else ""
        return None if extra is None else f"From local part {f.local_part}" + (
            f" and {extra}" if extra else "")
    return test


def _phrase(pattern: str) -> Test:
    rx = re.compile(pattern, re.IGNORECASE | re.MULTILINE)

    def test(f: Facts) -> str | None:
        match = rx.search(f.words)
        return f"the text says \u201c{clean_line(match.group(0))[:60]}\u201d" if match else None
    return test


def _header(name: str, pattern: str) -> Test:
    rx, key = re.compile(pattern, re.IGNORECASE), name.lower()
    return lambda f: next((f"{name} header matches" for v in
                           f.notification.headers.get(key, ()) if rx.search(v)), None)


# --- phrases, in the languages LinkedIn writes to our counselors --------------------------------

_Q = "['\u2019]"
ACCEPTED = (r"accepted your invitation|ha aceptado tu invitaci[oó]n|a accept[ée] votre invitation"
            r"|hat Ihre Einladung angenommen|aceitou (?:o )?seu convite|ha accettato il tuo invito"
            r"|menerima undangan Anda")
PEOPLE_YOU_MAY_KNOW = (
    r"people you may know|personas que quiz[aá]s? conozcas|vous connaissez peut-[eê]tre"
    r"|Personen, die Sie (?:vielleicht )?kennen|pessoas que (?:talvez )?voc[eê] conhe[cç]a"
    r"|persone che potresti conoscere|orang yang mungkin Anda kenal")
RECOMMENDATION = (
    r"(?:asked|requested|is asking) (?:you )?for a recommendation|recommendation request"
    r"|(?:te ha pedido|te pide|solicitud de) (?:una )?recomendaci[oó]n"
    r"|demande de recommandation|vous demande une recommandation"
    r"|bittet Sie um eine Empfehlung|Empfehlungsanfrage"
    r"|(?:pedido|solicita[cç][aã]o) de recomenda[cç][aã]o"
    r"|(?:solicitou|pediu) uma recomenda[cç][aã]o"
    r"|richiesta di (?:referenza|segnalazione)|ti ha chiesto una (?:referenza|segnalazione)"
    r"|(?:permintaan|meminta) rekomendasi")
GROUP_JOIN = (
    r"(?:wants|has requested|requested|asked) to join (?!your (?:LinkedIn )?network)"
    r"|request to join (?:your |the )?group|pending (?:join|membership) requests?"
    r"|solicitud(?:es)? para unirse|quiere unirse al? grupo"
    rf"|demandes? d{_Q}adh[ée]sion|souhaite rejoindre (?:le|votre) groupe"
    r"|Beitrittsanfrage|m[öo]chte (?:Ihrer|der) Gruppe beitreten"
    r"|(?:pedido|solicita[cç][aã]o) para participar|quer participar do grupo"
    r"|richiesta di (?:iscrizione|adesione)|vuole unirsi al gruppo"
    r"|permintaan (?:untuk )?bergabung|ingin bergabung dengan grup")
INVITATION = (
    rf"(?:I{_Q}d|I would) like to (?:join|add you to) (?:your|my) (?:professional )?"
    r"(?:LinkedIn )?network|add me to your LinkedIn network|invitation to connect"
    r"|I want to connect|wants to connect|invitation is awaiting your response"
    r"|Me gustar[ií]a a[ñn]adirte a mi red|invitaci[oó]n (?:a|para) conectar|quiere conectar"
    rf"|J{_Q}aimerais (?:vous ajouter [àa] mon|rejoindre votre) r[ée]seau"
    r"|invitation [àa] (?:se connecter|rejoindre)"
    r"|zu meinem (?:beruflichen )?Netzwerk (?:auf LinkedIn )?hinzuf[üu]gen|Kontaktanfrage"
    r"|m[öo]chte sich mit Ihnen vernetzen|adicion[aá]-l[oa] [àa] minha rede"
    r"|convite para (?:se )?conectar|quer se conectar|Voglio collegarmi"
    r"|vorrei aggiungerti alla mia rete|ingin menambahkan Anda ke jaringan"
    r"|undangan untuk terhubung")
MESSAGE = (
    r"sent you a (?:new )?message|sent you an InMail|new message from"
    r"|te ha enviado un mensaje|nuevo mensaje de|vous a envoy[ée] un (?:nouveau )?message"
    r"|hat Ihnen eine (?:neue )?Nachricht gesendet|neue Nachricht von"
    r"|enviou uma (?:nova )?mensagem|ti ha inviato un (?:nuovo )?messaggio"
    r"|mengirimi Anda pesan|pesan baru dari")
GROUP_ACTIVITY = (
    r"(?:new )?(?:conversations?|discussions?|posts?) in (?:the |your )?group|posted in"
    r"|publicaci[oó]n(?:es)? en el grupo|dans (?:le|votre) groupe|in der Gruppe|no grupo"
    r"|nel gruppo|di grup")
JOBS = (r"job alert|jobs? (?:you may be interested in|for you)|alerta de empleo"
        rf"|offres? d{_Q}emploi|Stellenangebote|vagas|offerte di lavoro|lowongan")


# --- the table ----------------------------------------------------------------------------------

K = Kind
GUARDS: tuple[Rule, ...] = (
    Rule("not_linkedin", K.NOT_LINKEDIN,
         lambda f: None if f.auth.looks_like_linkedin else "does not claim to be LinkedIn mail"),
    Rule("spoofed_linkedin", K.SPOOFED_LINKEDIN,
         lambda f: "looks like LinkedIn but is a spoof" if f.auth.verdict is Verdict.SPOOF
         else None),
)
RULES: tuple[Rule, ...] = (
    # A digest names several people: no single person to answer.
    Rule("template_digest_of_people", K.UNKNOWN_LINKEDIN,
         _template(r"invite_digest|messaging_digest")),
    Rule("template_accepted_invitation", K.OTHER_LINKEDIN, _template(r"accept_invite")),
    Rule("template_people_you_may_know", K.OTHER_LINKEDIN,
         _template(r"pymk|connection_suggestion")),
    Rule("template_group_applicant_response", K.GROUP_ACTIVITY,
         _template(r"group_applicant_template_response")),
    Rule("template_group_join_request", K.GROUP_JOIN_REQUEST,
         _template(r"(?:group|grp).*(?:join|request)|(?:join|request).*(?:group|grp)")),
    Rule("template_group_activity", K.GROUP_ACTIVITY, _template(r"group|grp")),
    Rule("template_recommendation_request", K.RECOMMENDATION_REQUEST,
         _template(r"recommend(?!ed)")),
    Rule("template_invitation", K.CONNECTION_INVITATION,
         _template(r"invit|guest_reminder")),
    Rule("template_message", K.LINKEDIN_MESSAGE, _template(r"inmail|message|messaging")),
    Rule("template_other", K.OTHER_LINKEDIN,
         _template(r"job|jymbii|news|welcome|digest|notification|birthday|anniversar"
                   r"|profile_view|security|password|verif|premium|learning|event|update")),
    Rule("class_invitation", K.CONNECTION_INVITATION, _linkedin_class("INVITE-GUEST")),
    Rule("class_message", K.LINKEDIN_MESSAGE, _linkedin_class("INMAIL", "MBR-TO-MBR")),
    Rule("class_other", K.OTHER_LINKEDIN, _linkedin_class("JOBS-TO-MBR", "SAVEDSEARCH", "WELCOME")),
    Rule("sender_invitations", K.CONNECTION_INVITATION, _sender(r"invitations|member")),
    Rule("sender_messages", K.LINKEDIN_MESSAGE,
         _sender(r"inmail-hit-reply|hit-reply|messages-noreply")),
    Rule("sender_groups_join_request", K.GROUP_JOIN_REQUEST,
         _sender(r"groups?(?:-noreply)?|group-digests", _phrase(GROUP_JOIN))),
    Rule("sender_groups", K.GROUP_ACTIVITY, _sender(r"groups?(?:-noreply)?|group-digests")),
    Rule("sender_other", K.OTHER_LINKEDIN,
         _sender(r"jobs-.*|jobs|jobalerts-noreply|editors-noreply|updates|welcome|connections"
                 r"|invitations-noreply|linkedin|news|security-noreply")),
    Rule("phrase_accepted_invitation", K.OTHER_LINKEDIN, _phrase(ACCEPTED)),
    Rule("phrase_people_you_may_know", K.OTHER_LINKEDIN, _phrase(PEOPLE_YOU_MAY_KNOW)),
    Rule("phrase_recommendation_request", K.RECOMMENDATION_REQUEST, _phrase(RECOMMENDATION)),
    Rule("phrase_group_join_request", K.GROUP_JOIN_REQUEST, _phrase(GROUP_JOIN)),
    Rule("phrase_invitation", K.CONNECTION_INVITATION, _phrase(INVITATION)),
    Rule("phrase_message", K.LINKEDIN_MESSAGE, _phrase(MESSAGE)),
    Rule("phrase_group_activity", K.GROUP_ACTIVITY, _phrase(GROUP_ACTIVITY)),
    Rule("phrase_jobs", K.OTHER_LINKEDIN, _phrase(JOBS)),
    Rule("default_unknown_linkedin", K.UNKNOWN_LINKEDIN, lambda f: "no other rule matched"),
)


# --- facts --------------------------------------------------------------------------------------

_LINK_KEYS = (
    ("ek", re.compile(r"([A-Za-z0-9_]+)$"), "ek= link parameter"),
    ("trkEmail", re.compile(r"eml-([A-Za-z0-9_]+)-"), "trkEmail= link parameter"),
    ("trk", re.compile(r"eml-([A-Za-z0-9_]+)-"), "trk= link parameter"),
    ("lipi", re.compile(r"urn:li:page:email_([A-Za-z0-9_]+)"), "lipi= link parameter"),
)
# [^<>] rather than [^>]: a stray "<" must not make every later tag rescan the document.
_HTML_HIDDEN = re.compile(r"<!--|<(script|style|head)\b", re.IGNORECASE)
_HTML_BREAK = re.compile(r"<\s*/?\s*(?:br|p|div|h[1-6]|td|tr|li|table|center|title)\b[^<>]*>",
                         re.IGNORECASE)
_HTML_TAG = re.compile(r"<[^<>]*>")


def _visible(markup: str) -> str:
    """``markup`` without comments, scripts, styles and the head, in one forward pass."""
    lower, kept, pos = markup.lower(), [], 0
    while match := _HTML_HIDDEN.search(markup, pos):
        kept.append(markup[pos:match.start()])
        closer = "-->" if match.group(1) is None else f"</{match.group(1).lower()}"
        end = lower.find(closer, match.end())
        pos = lower.find(">", end) + 1 if end >= 0 else 0
        if pos <= 0:
            return " ".join(kept)  # unclosed: the rest is hidden too
    kept.append(markup[pos:])
    return " ".join(kept)


def html_lines(markup: str) -> tuple[str, ...]:
    """The visible text of an HTML body, one block element per line, without empty lines."""
    text = _HTML_BREAK.sub("\n", _visible(markup[:MAX_WORDS * 5]))
    text = html.unescape(_HTML_TAG.sub(" ", text))
    return tuple(line for line in (clean_line(raw) for raw in text.splitlines()) if line)


def template_key(n: Notification) -> tuple[str | None, str]:
    """LinkedIn's template key and where it was found (header, Feedback-ID or tracking links)."""
    header = clean_line(n.header("x-linkedin-template") or "")
    if header:
        return header, "X-LinkedIn-Template"
    feedback = (n.header("feedback-id") or "").strip()
    if feedback.lower().endswith(":linkedin"):
        key = feedback[: -len(":linkedin")].rpartition(":")[2].strip()
        if key:
            return key, "Feedback-ID"
    params = [pair for url in n.links if is_linkedin_link(url)
              for pair in parse_qsl(urlsplit(url).query, errors="replace")]
    for name, rx, source in _LINK_KEYS:
        keys = Counter(m.group(1) for key, value in params if key == name
                       for m in [rx.match(value)] if m)
        if keys:
            return keys.most_common(1)[0][0], source
    return None, ""


def _facts(n: Notification, auth: Authenticity) -> Facts:
    key, source = template_key(n)
    sender = n.from_.email if n.from_ else ""
    local, _, domain = sender.rpartition("@")
    lines = (tuple(ln for ln in (clean_line(raw) for raw in n.text[:MAX_WORDS].splitlines()) if ln)
             or html_lines(n.html))
    return Facts(n, auth, key, source,
                 clean_line(n.header("x-linkedin-class") or "").upper(),
                 local.lower() if is_linkedin(domain) else "",
                 "\n".join((n.subject, *lines))[:MAX_WORDS], lines)


# --- the person ---------------------------------------------------------------------------------

_VIA = re.compile(r"\s+(?:via|v[ií]a|[üu]ber|par|atrav[ée]s d[eo]|tramite|melalui)\s+LinkedIn$",
                  re.IGNORECASE)
_NAME_IN_TEXT = tuple(re.compile(p, re.IGNORECASE | re.MULTILINE) for p in (
    rf"View (?P<name>[^\n]{{1,80}}?){_Q}s profile",
    rf"^(?P<name>[^\n]{{1,80}}?){_Q}s invitation is awaiting",
    r"^(?P<name>[^\n]{1,80}?) (?:wants|has requested|requested|asked) to join",
    r"^(?P<name>[^\n]{1,80}?) (?:has asked|asked|is asking) you for a recommendation",
    r"^(?P<name>[^\n]{1,80}?) (?:has sent|sent) you a (?:new )?message",
))
_COUNSELOR = re.compile(
    r"(?:This email was intended for|Este (?:correo electr[oó]nico|email|mensaje) iba dirigido a"
    r"|Cet e-mail [ée]tait destin[ée] [àa]|Diese E-Mail war f[üu]r|Este e-mail foi enviado para"
    r"|Questa email [èe] stata inviata a|Email ini ditujukan untuk)\s+(?P<name>[^(\n.]{1,100})",
    re.IGNORECASE)
_GROUP = tuple(re.compile(p, re.IGNORECASE | re.MULTILINE) for p in (
    r"(?:to join|unirse a|rejoindre|participar do|unirsi a|bergabung dengan) (?:your |the )?"
    r"(?:group |grupo |groupe |gruppo |grup )?[\"\u201c\u00ab]?"
    r"(?P<group>[^\"\u201d\u00bb\n]{2,100}?)[\"\u201d\u00bb]?(?: group)?[.!]?$",
    r"(?:conversations?|discussions?|posts?|posted|activity) in (?:the |your )?(?:group )?"
    r"[\"\u201c\u00ab]?(?P<group>[^\"\u201d\u00bb\n]{2,100}?)[\"\u201d\u00bb]?[.!]?$",
))
_PROFILE_PATH = re.compile(r"(?:/comm)?/(?:profile/view|in/[^/?#\s]+)", re.IGNORECASE)
_INVITATION_ID = re.compile(
    r"[?&]invitationId=([A-Za-z0-9_-]{1,64})|/invitationId/([A-Za-z0-9_-]{1,64})", re.IGNORECASE)
_PERSON_KINDS = frozenset({K.CONNECTION_INVITATION, K.LINKEDIN_MESSAGE,
                           K.RECOMMENDATION_REQUEST, K.GROUP_JOIN_REQUEST})


def normalise_profile_url(url: str) -> str | None:
    """``https://www.linkedin.com/<path>`` of a LinkedIn profile link, tracking removed, or None."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    path = parts.path.rstrip("/")
    if parts.scheme.lower() not in ("http", "https") or not is_linkedin(parts.hostname or ""):
        return None
    if not _PROFILE_PATH.fullmatch(path):
        return None
    if path.lower().endswith("/profile/view"):
        ids = [value for key, _, value in (p.partition("=") for p in parts.query.split("&"))
               if key == "id" and re.fullmatch(r"[A-Za-z0-9_%-]{1,200}", value)]
        return f"https://www.linkedin.com{path}?id={ids[0]}" if ids else None
    return f"https://www.linkedin.com{path}"


def _profile_rank(url: str) -> int:
    """0: the person's (hero, inviter, sender); 1: other; 2: the counselor's (header, footer)."""
    lower = url.lower()
    if "-header-" in lower or "-footer-" in lower:
        return 2
    return 0 if any(h in lower for h in ("hero", "invacpt", "inviter", "sender")) else 1


def _profile_url(f: Facts) -> str | None:
    named = re.search(rf"View [^\n]{{1,80}}?{_Q}s profile:\s*(https?://\S+)", f.notification.text)
    urls = [named.group(1)] if named else []
    urls += sorted((u for u in f.notification.links if normalise_profile_url(u)), key=_profile_rank)
    return next((p for u in urls if _profile_rank(u) < 2 for p in [normalise_profile_url(u)] if p),
                None)


def _name(kind: Kind, f: Facts, counselors: set[str]) -> str | None:
    from_name = _VIA.sub("", f.notification.from_.name) if f.notification.from_ else ""
    found = [m.group("name") for rx in _NAME_IN_TEXT for m in [rx.search(f.words)] if m]
    for candidate in ([*found, from_name] if kind is K.GROUP_JOIN_REQUEST else [from_name, *found]):
        name = clean_line(candidate).strip("\"'\u201c\u201d")[:100]
        if name and "@" not in name and not claims_linkedin_name(name) \
                and name.casefold() not in counselors:
            return name
    return None


def _headline(f: Facts, name: str | None, counselors: set[str]) -> str | None:
    lines = f.lines
    for i, line in enumerate(lines[:-1]):
        if name and line.casefold() == name.casefold():
            after = lines[i + 1]
            if len(after) <= 200 and "://" not in after and not after.endswith(":") \
                    and not re.match(r"(?:Accept|View|Ver|Voir|Lihat|Hi|Hello)\b", after) \
                    and after.casefold() not in counselors and not claims_linkedin_name(after):
                return after
    return None


def _person(kind: Kind, f: Facts) -> Person:
    n = f.notification
    group = next((clean_line(m.group("group")) for rx in _GROUP
                  for m in [rx.search(f.words)] if m), None)
    if kind is K.GROUP_ACTIVITY:
        return Person(group=group)
    if kind not in _PERSON_KINDS:
        return Person()
    counselors = {clean_line(m.group("name")).casefold() for m in _COUNSELOR.finditer(f.words)}
    name = _name(kind, f, counselors)
    invitation = None
    if kind is K.CONNECTION_INVITATION:
        ids = (m.group(1) or m.group(2) for u in n.links if is_linkedin_link(u)
               for m in [_INVITATION_ID.search(u)] if m)
        invitation = next(ids, None)
    relay = next((a.email for a in n.reply_to
                  if a.email.rpartition("@")[2].lower() == "reply.linkedin.com"), None)
    personal = next((a.email for a in n.reply_to
                     if not is_linkedin(d := a.email.rpartition("@")[2]) and not is_lookalike(d)),
                    None) if f.auth.verdict is Verdict.AUTHENTIC else None
    return Person(
        name=name,
        headline=_headline(f, name, counselors) if kind is K.CONNECTION_INVITATION else None,
        profile_url=_profile_url(f),
        invitation_id=invitation,
        relay_address=relay,
        reply_to_address=personal,
        group=group if kind is K.GROUP_JOIN_REQUEST else None,
    )


def classify(n: Notification, auth: Authenticity,
             extra_rules: Sequence[Rule] = ()) -> Classification:
    """The kind of ``n``, the rule that decided it, and the person it concerns.

    ``extra_rules`` run after the safety rules (not LinkedIn, spoof) and before the built-in
    table. A message whose verdict is ``UNKNOWN`` is classified like any other; the policy
    decides what to do with it.
    """
    facts = _facts(n, auth)
    for rule in (*GUARDS, *extra_rules, *RULES):
        evidence = rule.test(facts)
        if evidence is not None:
            break
    return Classification(kind=rule.kind, rule=rule.name, person=_person(rule.kind, facts),
                          template_key=facts.template_key,
                          reasons=(f"{rule.name}: {evidence}.",))
