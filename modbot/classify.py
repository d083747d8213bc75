"""Say what kind of LinkedIn notification a message is, and whom it is about.

The decision is an ordered table of named rules, read top to bottom like GNU Mailman's
moderation chain: the first rule whose test finds evidence decides, and the last rule is the
default. Strongest evidence first: authenticity, then LinkedIn's template key, then
``X-LinkedIn-Class``, then the sender's local part, then phrases in the subject and body (EN, ES,
FR, DE, PT, IT, ID). Counselors add rules from configuration with ``Rule.from_spec``; they run
after the three safety rules (not LinkedIn, spoof, a LinkedIn employee's own mail) and before
the built-in ones.

Template keys are names, not words: only keys seen in LinkedIn's real mail decide a kind
(``email_invite_signup_dropoffs_01`` holds "invite" and is a sign-up nudge), and a message that
carries any other key is unknown LinkedIn mail, held for the counselor. Nor is a sender a kind:
``messages-noreply@`` also sends people-you-may-know, ``invitations@`` accepted invitations, so
the sender never makes a message or an invitation. Phrases are read only when the message
carries no key at all.

The person the decided kind is about is read by ``modbot.person``; ``classify`` hands it the
clues the rules read, so both see the same text.

Pure: no network, database, clock or environment, and it never raises for bad mail. This module
must never log message content, and a counselor's rule must never run before the safety rules.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from modbot.brand import is_linkedin, is_linkedin_link
from modbot.model import Authenticity, Classification, ClassifierRule, Kind, Notification, Verdict
from modbot.parse import clean_line
from modbot.person import APOSTROPHE, find_person

MAX_WORDS = 100_000  # characters of subject and body searched for phrases


@dataclass(frozen=True)
class Clues:
    """What the rules look at, computed once per message."""

    notification: Notification
    auth: Authenticity
    template_key: str | None
    template_source: str
    linkedin_class: str
    local_part: str  # From local part, only when From is linkedin.com
    from_linkedin: bool  # From is an address of linkedin.com itself
    words: str  # subject and body text, for phrases
    lines: tuple[str, ...]  # non-empty body lines (the text part, else the HTML as text)


Test = Callable[[Clues], str | None]  # evidence found, or None


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


def _keys(*patterns: str) -> Test:
    """The template key is one of LinkedIn's known ``patterns`` (whole key, any case)."""
    rx = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
    return lambda f: (f"template key {f.template_key} from {f.template_source}"
                      if f.template_key and rx.fullmatch(f.template_key) else None)


def _linkedin_class(*values: str) -> Test:
    return lambda f: (f"X-LinkedIn-Class {f.linkedin_class}"
                      if f.linkedin_class in values else None)


def _sender(pattern: str, also: Test | None = None) -> Test:
    rx = re.compile(pattern, re.IGNORECASE)

    def test(f: Clues) -> str | None:
        if not f.local_part or not rx.fullmatch(f.local_part):
            return None
        extra = also(f) if also else ""
        return None if extra is None else f"From local part {f.local_part}" + (
            f" and {extra}" if extra else "")
    return test


def _phrase(pattern: str) -> Test:
    rx = re.compile(pattern, re.IGNORECASE | re.MULTILINE)

    def test(f: Clues) -> str | None:
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

K, R = Kind, ClassifierRule
_N = r"_?\d{1,3}"  # the version number LinkedIn appends to a key, which may change
_ONMICROSOFT = re.compile(r"(?:^|;)\s*d\s*=\s*[\w.-]+\.onmicrosoft\.com\s*(?:;|$)", re.IGNORECASE)


def _staff_mail(f: Clues) -> str | None:
    """Mail a LinkedIn employee wrote: linkedin.com, but sent from Microsoft 365, not a template.

    LinkedIn's notifications come from its own servers with ``X-LinkedIn-*`` headers or a
    ``:linkedin`` Feedback-ID; its people's mail is signed for linkedin.com too, but leaves
    through Exchange Online (a ``*.outlook.com`` Message-ID, an ``onmicrosoft.com`` signature).
    """
    n = f.notification
    if not f.from_linkedin or any(name.startswith("x-linkedin-") for name in n.headers):
        return None
    if (n.header("feedback-id") or "").strip().lower().endswith(":linkedin"):
        return None
    message_id = (n.message_id or "").strip().rstrip(">").lower()
    if message_id.endswith((".outlook.com", "@outlook.com")):
        return "a linkedin.com person's mail sent from Microsoft 365 (Message-ID), not a template"
    if any(_ONMICROSOFT.search(value) for value in n.headers.get("dkim-signature", ())):
        return "a linkedin.com person's mail signed by Microsoft 365, not a template"
    return None


GUARDS: tuple[Rule, ...] = (
    Rule(R.NOT_LINKEDIN, K.NOT_LINKEDIN,
         lambda f: None if f.auth.looks_like_linkedin else "does not claim to be LinkedIn mail"),
    Rule(R.SPOOFED_LINKEDIN, K.SPOOFED_LINKEDIN,
         lambda f: "looks like LinkedIn but is a spoof" if f.auth.verdict is Verdict.SPOOF
         else None),
    # An employee's own mail is correspondence, never a notification to answer.
    Rule(R.LINKEDIN_STAFF_MAIL, K.OTHER_LINKEDIN, _staff_mail),
)

# LinkedIn's known template keys (whole keys, as seen in real mail), most specific first.
_TEMPLATES: tuple[tuple[str, Kind, tuple[str, ...]], ...] = (
    # A digest names several people: no single person to answer.
    (R.TEMPLATE_DIGEST_OF_PEOPLE, K.UNKNOWN_LINKEDIN,
     (rf"email_m2m_invite_digest{_N}", r"email_type_messaging_digest")),
    # "You have 1 new message": a summary with no relay to answer by email.
    (R.TEMPLATE_NOTIFICATION_DIGEST, K.OTHER_LINKEDIN, (rf"email_notification_digest{_N}",)),
    (R.TEMPLATE_ACCEPTED_INVITATION, K.OTHER_LINKEDIN, (rf"accept_invite{_N}",)),
    # People you may know, and people to follow: both sent from messages-noreply@.
    (R.TEMPLATE_PEOPLE_YOU_MAY_KNOW, K.OTHER_LINKEDIN,
     (r"connection_suggestion_email", rf"email_pymk{_N}", rf"email_edge_discover{_N}")),
    (R.TEMPLATE_SIGN_UP_NUDGE, K.OTHER_LINKEDIN, (rf"email_invite_signup_dropoffs{_N}",)),
    (R.TEMPLATE_GROUP_APPLICANT_RESPONSE, K.GROUP_ACTIVITY,
     (r"group_applicant_template_response",)),
    # No real key is known for these two features: keys named after the feature, exactly.
    (R.TEMPLATE_GROUP_JOIN_REQUEST, K.GROUP_JOIN_REQUEST,
     (rf"(?:email_)?groups?_join_request{_N}", rf"(?:email_)?groups?_request_to_join{_N}")),
    (R.TEMPLATE_RECOMMENDATION_REQUEST, K.RECOMMENDATION_REQUEST,
     (rf"(?:email_)?recommendation_request{_N}", rf"(?:email_)?request_recommendation{_N}")),
    (R.TEMPLATE_GROUP_ACTIVITY, K.GROUP_ACTIVITY,
     (rf"email_groups_recommended_by_admin{_N}", r"grp")),  # "grp" from trk=eml-grp-sub
    (R.TEMPLATE_INVITATION, K.CONNECTION_INVITATION,
     (r"M2M_Invitation", rf"email_m2m_invite_single{_N}", rf"invite_member{_N}",
      rf"invite_guest(?:{_N})?", rf"(?:first|second)_guest_reminder{_N}",
      rf"email_m2m_invite_reminder{_N}")),
    (R.TEMPLATE_MESSAGE, K.LINKEDIN_MESSAGE,
     (rf"email_hire_inmail_initial_single{_N}", r"email_member_message_v\d{1,2}",
      r"inmail_sent")),
    (R.TEMPLATE_OTHER, K.OTHER_LINKEDIN,
     (r"jobs_jymbii_digest", rf"email_job_alert_digest{_N}", rf"email_news_letter_round_up{_N}")),
)
_KNOWN_KEY = re.compile("|".join(f"(?:{p})" for _, _, keys in _TEMPLATES for p in keys),
                        re.IGNORECASE)

RULES: tuple[Rule, ...] = (
    *(Rule(name, kind, _keys(*keys)) for name, kind, keys in _TEMPLATES),
    # Any other key: LinkedIn mail of a kind not yet seen, never guessed from words in the key.
    Rule(R.TEMPLATE_UNKNOWN, K.UNKNOWN_LINKEDIN,
         lambda f: f"template key {f.template_key} from {f.template_source} is not a known one"
         if f.template_key else None),
    # Without a key: the class header, then the sender (never for a message or an invitation),
    # then phrases.
    Rule(R.CLASS_INVITATION, K.CONNECTION_INVITATION, _linkedin_class("INVITE-GUEST")),
    Rule(R.CLASS_MESSAGE, K.LINKEDIN_MESSAGE, _linkedin_class("INMAIL", "MBR-TO-MBR")),
    Rule(R.CLASS_OTHER, K.OTHER_LINKEDIN, _linkedin_class("JOBS-TO-MBR", "SAVEDSEARCH", "WELCOME")),
    Rule(R.SENDER_GROUPS_JOIN_REQUEST, K.GROUP_JOIN_REQUEST,
         _sender(r"groups?(?:-noreply)?|group-digests", _phrase(GROUP_JOIN))),
    Rule(R.SENDER_GROUPS, K.GROUP_ACTIVITY, _sender(r"groups?(?:-noreply)?|group-digests")),
    Rule(R.SENDER_OTHER, K.OTHER_LINKEDIN,
         _sender(r"jobs-.*|jobs|jobalerts-noreply|editors-noreply|updates(?:-noreply)?|welcome"
                 r"|connections|invitations-noreply|linkedin|news|security-noreply"
                 r"|career-interests-noreply")),
    Rule(R.PHRASE_ACCEPTED_INVITATION, K.OTHER_LINKEDIN, _phrase(ACCEPTED)),
    Rule(R.PHRASE_PEOPLE_YOU_MAY_KNOW, K.OTHER_LINKEDIN, _phrase(PEOPLE_YOU_MAY_KNOW)),
    Rule(R.PHRASE_RECOMMENDATION_REQUEST, K.RECOMMENDATION_REQUEST, _phrase(RECOMMENDATION)),
    Rule(R.PHRASE_GROUP_JOIN_REQUEST, K.GROUP_JOIN_REQUEST, _phrase(GROUP_JOIN)),
    Rule(R.PHRASE_INVITATION, K.CONNECTION_INVITATION, _phrase(INVITATION)),
    Rule(R.PHRASE_MESSAGE, K.LINKEDIN_MESSAGE, _phrase(MESSAGE)),
    Rule(R.PHRASE_GROUP_ACTIVITY, K.GROUP_ACTIVITY, _phrase(GROUP_ACTIVITY)),
    Rule(R.PHRASE_JOBS, K.OTHER_LINKEDIN, _phrase(JOBS)),
    Rule(R.DEFAULT_UNKNOWN_LINKEDIN, K.UNKNOWN_LINKEDIN, lambda f: "no other rule matched"),
)


# --- clues --------------------------------------------------------------------------------------

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
    # Links carry other tracking values too ("trk=eml-comm_…"): a known key wins over them.
    fallback: tuple[str | None, str] = (None, "")
    for name, rx, source in _LINK_KEYS:
        keys = Counter(m.group(1) for key, value in params if key == name
                       for m in [rx.match(value)] if m)
        known = [key for key, _ in keys.most_common() if _KNOWN_KEY.fullmatch(key)]
        if known:
            return known[0], source
        if keys and fallback[0] is None:
            fallback = keys.most_common(1)[0][0], source
    return fallback


def _clues(n: Notification, auth: Authenticity) -> Clues:
    key, source = template_key(n)
    sender = n.from_.email if n.from_ else ""
    local, _, domain = sender.rpartition("@")
    lines = (tuple(ln for ln in (clean_line(raw) for raw in n.text[:MAX_WORDS].splitlines()) if ln)
             or html_lines(n.html))
    from_linkedin = bool(domain) and is_linkedin(domain)
    return Clues(n, auth, key, source,
                 clean_line(n.header("x-linkedin-class") or "").upper(),
                 local.lower() if from_linkedin else "", from_linkedin,
                 "\n".join((n.subject, *lines))[:MAX_WORDS], lines)


def classify(n: Notification, auth: Authenticity,
             extra_rules: Sequence[Rule] = ()) -> Classification:
    """The kind of ``n``, the rule that decided it, and the person it concerns.

    ``extra_rules`` run after the safety rules (not LinkedIn, spoof) and before the built-in
    table. A message whose verdict is ``UNKNOWN`` is classified like any other; the policy
    decides what to do with it.
    """
    clues = _clues(n, auth)
    for rule in (*GUARDS, *extra_rules, *RULES):
        evidence = rule.test(clues)
        if evidence is not None:
            break
    person = find_person(rule.kind, n, auth.verdict, clues.words, clues.lines)
    return Classification(kind=rule.kind, rule=rule.name, person=person,
                          template_key=clues.template_key,
                          reasons=(f"{rule.name}: {evidence}.",))
