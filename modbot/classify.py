"""Say what kind of LinkedIn notification a message is, and whom it is about.

The decision is an ordered table of named rules, read top to bottom like GNU Mailman's
moderation chain: the first rule whose test finds evidence decides, and the last rule is the
default. Strongest evidence first: authenticity, then LinkedIn's template key, then
``X-LinkedIn-Class``, then the sender's local part, then phrases in the subject and body (EN, ES,
FR, DE, PT, IT, ID). Counselors add rules from configuration with ``Rule.from_spec``; they run
after the two safety rules (not LinkedIn, spoof) and before the built-in ones.

The person the decided kind is about is read by ``modbot.person``; ``classify`` hands it the
facts the rules read, so both see the same text.

Pure: no network, database, clock or environment, and it never raises for bad mail. This module
must never log message content, and a counselor's rule must never run before the two safety
rules.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from modbot.brand import is_linkedin, is_linkedin_link
from modbot.model import Authenticity, Classification, Kind, Notification, Verdict
from modbot.parse import clean_line
from modbot.person import APOSTROPHE, find_person
from modbot.person import normalise_profile_url as normalise_profile_url  # re-exported

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

_Q = APOSTROPHE
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
    person = find_person(rule.kind, n, auth.verdict, facts.words, facts.lines)
    return Classification(kind=rule.kind, rule=rule.name, person=person,
                          template_key=facts.template_key,
                          reasons=(f"{rule.name}: {evidence}.",))
