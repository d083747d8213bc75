"""Tests for modbot.classify: the ordered rule table, and the person each notification is about."""

from __future__ import annotations

import time
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modbot.authenticity import check, vouched
from modbot.classify import RULES, Rule, classify, template_key
from modbot.model import Authenticity, Kind, Notification, Person, Verdict
from modbot.parse import parse
from modbot.person import canonical_profile_url, find_person

DATA = Path(__file__).parents[1] / "data"
EXPECTED = tomllib.loads((DATA / "expected.toml").read_text(encoding="utf-8"))
FIXTURES = sorted(EXPECTED)
AUTHENTIC = Authenticity(True, Verdict.AUTHENTIC, ("given by the test",))
UNVERIFIED = Authenticity(True, Verdict.UNKNOWN, ("given by the test",))
SPOOF = Authenticity(True, Verdict.SPOOF, ("given by the test",))
NOT_LINKEDIN = Authenticity(False, Verdict.UNKNOWN, ("given by the test",))


def raw(name: str) -> bytes:
    return (DATA / name).read_bytes()


def expected_auth(name: str) -> Authenticity:
    """The authenticity finding the expectations give a fixture (tested in test_authenticity)."""
    entry = EXPECTED[name]
    return Authenticity(entry["kind"] != "not_linkedin", Verdict(entry["verdict"]), ("given",))


def mail(*headers: str, subject: str = "Notice", body: str = "Hello.",
         from_: str = "LinkedIn <notifications-noreply@linkedin.com>") -> Notification:
    lines = [f"From: {from_}", "To: Morgan Lee <morgan.lee@counsel.example.edu>",
             f"Subject: {subject}", *headers, "Content-Type: text/plain; charset=utf-8",
             "Content-Transfer-Encoding: 8bit"]
    return parse(("\n".join(lines) + "\n\n" + body + "\n").encode())


# --- the fixture corpus ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_kind_and_rule(name: str) -> None:
    """Each fixture is classified by the rule, and as the kind, its expectation names."""
    result = classify(parse(raw(name)), expected_auth(name))
    assert (result.kind.value, result.rule) == (EXPECTED[name]["kind"], EXPECTED[name]["rule"])
    assert result.reasons[0].startswith(result.rule + ": ")


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_person(name: str) -> None:
    """Each fixture yields exactly the person facts its expectation lists, and no others."""
    person = classify(parse(raw(name)), expected_auth(name)).person
    wanted = Person(**{f.name: EXPECTED[name].get(f.name) for f in fields(Person)})
    assert person == wanted


@pytest.mark.parametrize("name", FIXTURES)
def test_person_is_never_the_counselor_or_linkedin(name: str) -> None:
    """No fixture names the counselor from the footer, or LinkedIn itself, as the person."""
    person = classify(parse(raw(name)), expected_auth(name)).person
    assert person.name not in ("Morgan Lee", "Paul Hammant", "LinkedIn", "LinkedIn Groups")
    assert person.headline is None or "Career Counselor" not in person.headline


@pytest.mark.parametrize(("name", "kind", "authentic"), [
    ("corpus/invitation_m2m_2016.eml", Kind.CONNECTION_INVITATION, None),
    ("corpus/spoof_linkedin_welcome_2013.eml", Kind.SPOOFED_LINKEDIN, False),
    ("corpus/not_linkedin_spam_2011.eml", Kind.NOT_LINKEDIN, None),
])
def test_real_corpus_end_to_end(name: str, kind: Kind, authentic: bool | None) -> None:
    """The three real messages come out right through parse, check and classify together."""
    n = parse(raw(name))
    auth = check(n, trusted_authserv_ids=["mx.counsel.example.edu"])
    assert (classify(n, auth).kind, auth.authentic) == (kind, authentic)


def test_real_invitation_person() -> None:
    """The 2016 invitation is from Steven Footle, with his profile and the invitation id."""
    n = parse(raw("corpus/invitation_m2m_2016.eml"))
    person = classify(n, check(n, trusted_authserv_ids=())).person
    assert person.name == "Steven Footle"
    assert person.profile_url == ("https://www.linkedin.com/comm/profile/view"
                                  "?id=AAsAAAAIW1gBCVPJFcvlZjm6AtEfNiLTNya_HqA")
    assert person.invitation_id == "6122153757099996400"


def test_reminder_keeps_the_invitation_id() -> None:
    """A reminder carries the same invitation id as the invitation it reminds of."""
    first = classify(parse(raw("invitation_current_jordan_rivera.eml")), AUTHENTIC)
    reminder = classify(parse(raw("invitation_reminder_jordan_rivera.eml")), AUTHENTIC)
    assert first.person.invitation_id == reminder.person.invitation_id == "7012345678901234567"
    assert reminder.template_key == "email_m2m_invite_reminder_02"


def test_unverified_message_is_still_classified() -> None:
    """A message with no evidence either way gets its kind; the policy decides what to do."""
    result = classify(parse(raw("invitation_unverified_elliot_park.eml")), UNVERIFIED)
    assert result.kind is Kind.CONNECTION_INVITATION and result.person.name == "Elliot Park"


def test_personal_reply_to_is_never_the_person_s_address() -> None:
    """A Reply-To no signature covers names nobody: the person is found in the directory."""
    n = parse(raw("invitation_2012_member_reply_to.eml"))
    person = classify(n, AUTHENTIC).person
    assert "taylor.brooks@example.org" not in repr(person)


FOOTER = "This email was intended for Morgan Lee (Career Counselor)."


@pytest.mark.parametrize(("from_", "body", "kind", "expected"), [
    # The From name comes first for an invitation, the text's name for a join request.
    ("Avery Quinn <invitations@linkedin.com>", "Sam Okafor wants to join your group",
     Kind.CONNECTION_INVITATION, Person(name="Avery Quinn")),
    ("Avery Quinn <groups-noreply@linkedin.com>", "Sam Okafor wants to join Career Circle",
     Kind.GROUP_JOIN_REQUEST, Person(name="Sam Okafor", group="Career Circle")),
    # The counselor named in the footer is passed over for the next name the text gives.
    ("Morgan Lee <invitations@linkedin.com>", f"View Riley Chen's profile\n{FOOTER}",
     Kind.CONNECTION_INVITATION, Person(name="Riley Chen")),
    ("morgan LEE <invitations@linkedin.com>", FOOTER, Kind.CONNECTION_INVITATION, Person()),
    # LinkedIn itself and an address are never a name; "via LinkedIn" is dropped.
    ("LinkedIn <invitations@linkedin.com>", "Hello.\nView Jo Park's profile",
     Kind.CONNECTION_INVITATION, Person(name="Jo Park")),
    ("Kai Ito via LinkedIn <invitations@linkedin.com>", "Hello.", Kind.CONNECTION_INVITATION,
     Person(name="Kai Ito")),
    ("jo@example.org <invitations@linkedin.com>", "Hello.", Kind.CONNECTION_INVITATION, Person()),
    # Only group mail reads a group; mail about no one person gets an empty Person.
    ("Kai Ito <invitations@linkedin.com>", "New posts in the group Career Circle",
     Kind.GROUP_ACTIVITY, Person(group="Career Circle")),
    ("Kai Ito <invitations@linkedin.com>", "Kai Ito wants to join Career Circle",
     Kind.CONNECTION_INVITATION, Person(name="Kai Ito")),
    ("Kai Ito <invitations@linkedin.com>", "Kai Ito wants to join Career Circle",
     Kind.OTHER_LINKEDIN, Person()),
])
def test_person_of_each_kind(from_: str, body: str, kind: Kind, expected: Person) -> None:
    """The person's name is the first acceptable candidate, in the order the kind gives."""
    n = mail(from_=from_, body=body)
    words = f"{n.subject}\n{n.text}"
    lines = tuple(line for line in n.text.splitlines() if line)
    assert find_person(kind, n, Verdict.AUTHENTIC, words, lines) == expected


def test_spoof_wins_over_every_other_rule() -> None:
    """A perfect invitation that is a spoof is classified as a spoof, with no person."""
    result = classify(parse(raw("invitation_current_jordan_rivera.eml")), SPOOF)
    assert (result.kind, result.person) == (Kind.SPOOFED_LINKEDIN, Person())


# --- the rule table -------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "kind"), [
    ("M2M_Invitation", Kind.CONNECTION_INVITATION),
    ("email_m2m_invite_single_01", Kind.CONNECTION_INVITATION),
    ("invite_member_28", Kind.CONNECTION_INVITATION),
    ("invite_guest_59", Kind.CONNECTION_INVITATION),
    ("first_guest_reminder_01", Kind.CONNECTION_INVITATION),
    ("second_guest_reminder_01", Kind.CONNECTION_INVITATION),
    ("email_m2m_invite_reminder_02", Kind.CONNECTION_INVITATION),
    ("email_m2m_invite_digest_02", Kind.UNKNOWN_LINKEDIN),
    ("accept_invite_04", Kind.OTHER_LINKEDIN),
    ("connection_suggestion_email", Kind.OTHER_LINKEDIN),
    ("email_pymk_02", Kind.OTHER_LINKEDIN),
    ("email_hire_inmail_initial_single_01", Kind.LINKEDIN_MESSAGE),
    ("email_member_message_v2", Kind.LINKEDIN_MESSAGE),
    ("inmail_sent", Kind.LINKEDIN_MESSAGE),
    ("email_type_messaging_digest", Kind.UNKNOWN_LINKEDIN),
    ("group_applicant_template_response", Kind.GROUP_ACTIVITY),
    ("email_groups_recommended_by_admin_01", Kind.GROUP_ACTIVITY),
    ("grp", Kind.GROUP_ACTIVITY),
    ("email_group_join_request_01", Kind.GROUP_JOIN_REQUEST),
    ("email_recommendation_request_01", Kind.RECOMMENDATION_REQUEST),
    ("jobs_jymbii_digest", Kind.OTHER_LINKEDIN),
    ("email_job_alert_digest_01", Kind.OTHER_LINKEDIN),
    ("email_news_letter_round_up_01", Kind.OTHER_LINKEDIN),
    ("email_edge_discover_01", Kind.OTHER_LINKEDIN),
    ("email_invite_signup_dropoffs_01", Kind.OTHER_LINKEDIN),
    ("email_notification_digest_01", Kind.OTHER_LINKEDIN),
    ("EMAIL_M2M_INVITE_SINGLE_01", Kind.CONNECTION_INVITATION),
    ("email_m2m_invite_single_02", Kind.CONNECTION_INVITATION),
])
def test_template_keys(key: str, kind: Kind) -> None:
    """Every template key LinkedIn is known to use maps to its kind, whatever its version."""
    assert classify(mail(f"X-LinkedIn-Template: {key}"), AUTHENTIC).kind is kind


@pytest.mark.parametrize("key", [
    "welcome_default", "email_m2m_invite_new_shape_01", "email_member_message_reply_nudge",
    "email_job_recommendations_01", "invite_accepted_digest", "grp_sub", "M2M_Invitation_v3",
])
def test_unknown_keys_are_never_read_as_words(key: str) -> None:
    """A key LinkedIn is not known to use is unknown LinkedIn mail, whatever words it holds."""
    n = mail(f"X-LinkedIn-Template: {key}", from_="Jo Park <invitations@linkedin.com>",
             subject="I want to connect", body="I'd like to join your LinkedIn network.")
    result = classify(n, AUTHENTIC)
    assert (result.kind, result.rule) == (Kind.UNKNOWN_LINKEDIN, "template_unknown")
    assert key in result.reasons[0]


@pytest.mark.parametrize(("address", "key", "rule"), [
    ("messages-noreply@linkedin.com", "email_pymk_02", "template_people_you_may_know"),
    ("messages-noreply@linkedin.com", "email_edge_discover_01", "template_people_you_may_know"),
    ("invitations@linkedin.com", "email_invite_signup_dropoffs_01", "template_sign_up_nudge"),
    ("invitations@linkedin.com", "accept_invite_04", "template_accepted_invitation"),
    ("notifications-noreply@linkedin.com", "email_notification_digest_01",
     "template_notification_digest"),
])
def test_the_sender_never_makes_a_message_or_an_invitation(address: str, key: str,
                                                            rule: str) -> None:
    """Mail from the senders of messages and invitations is what its key says, about no one."""
    n = mail(f"Feedback-ID: {key}:linkedin", from_=f"Jo Park <{address}>",
             subject="Jo Park sent you a new message")
    result = classify(n, AUTHENTIC)
    assert (result.kind, result.rule, result.person) == (Kind.OTHER_LINKEDIN, rule, Person())


LI = "https://www.linkedin.com/"
TRK = f"{LI}a?trk=eml-comm_x-b&trkEmail=eml-M2M_Invitation-hero-1"


@pytest.mark.parametrize(("headers", "body", "key"), [
    (("X-LinkedIn-Template: invite_guest", "Feedback-ID: email_pymk_02:linkedin"), "",
     "invite_guest"),
    (("Feedback-ID: email_pymk_02:linkedin",), f"{LI}x?ek=M2M_Invitation", "email_pymk_02"),
    (("Feedback-ID: 1:email_pymk_02:linkedin",), "", "email_pymk_02"),
    ((), f"{TRK}\n{LI}b?ek=invite_member_28", "invite_member_28"),
    ((), TRK, "M2M_Invitation"),
    ((), f"{LI}a?trk=eml-grp-sub", "grp"),
    ((), f"{LI}a?lipi=urn%3Ali%3Apage%3Aemail_email_pymk_02%3Bx", "email_pymk_02"),
    ((), "https://www.linkedin-security.net/a?ek=M2M_Invitation", None),
    # A known key wins over other tracking values, from whichever link parameter.
    ((), f"{LI}a?trk=eml-comm_x-b\n{LI}b?lipi=urn%3Ali%3Apage%3Aemail_email_pymk_02%3Bx",
     "email_pymk_02"),
    ((), f"{LI}a?trk=eml-comm_x-b\n{LI}b?trk=eml-comm_x-b", "comm_x"),
])
def test_template_key_sources_in_order(headers: tuple[str, ...], body: str,
                                       key: str | None) -> None:
    """The key comes from the header, else Feedback-ID, else ek=, trkEmail=, trk=, lipi= links."""
    assert template_key(mail(*headers, body=body))[0] == key


@pytest.mark.parametrize(("value", "kind"), [
    ("INVITE-GUEST", Kind.CONNECTION_INVITATION), ("INMAIL", Kind.LINKEDIN_MESSAGE),
    ("MBR-TO-MBR", Kind.LINKEDIN_MESSAGE), ("JOBS-TO-MBR", Kind.OTHER_LINKEDIN),
    ("SAVEDSEARCH", Kind.OTHER_LINKEDIN), ("WELCOME", Kind.OTHER_LINKEDIN),
    ("EMAIL-DEFAULT", Kind.UNKNOWN_LINKEDIN),
])
def test_linkedin_class(value: str, kind: Kind) -> None:
    """X-LinkedIn-Class decides when there is no template key."""
    assert classify(mail(f"X-LinkedIn-Class: {value}"), AUTHENTIC).kind is kind


@pytest.mark.parametrize(("address", "kind"), [
    ("invitations@linkedin.com", Kind.UNKNOWN_LINKEDIN),
    ("member@linkedin.com", Kind.UNKNOWN_LINKEDIN),
    ("inmail-hit-reply@linkedin.com", Kind.UNKNOWN_LINKEDIN),
    ("hit-reply@linkedin.com", Kind.UNKNOWN_LINKEDIN),
    ("messages-noreply@linkedin.com", Kind.UNKNOWN_LINKEDIN),
    ("groups-noreply@linkedin.com", Kind.GROUP_ACTIVITY),
    ("group-digests@linkedin.com", Kind.GROUP_ACTIVITY),
    ("jobs-listings@linkedin.com", Kind.OTHER_LINKEDIN),
    ("jobalerts-noreply@linkedin.com", Kind.OTHER_LINKEDIN),
    ("invitations-noreply@linkedin.com", Kind.OTHER_LINKEDIN),
    ("linkedin@em.linkedin.com", Kind.OTHER_LINKEDIN),
    ("updates-noreply@linkedin.com", Kind.OTHER_LINKEDIN),
    ("career-interests-noreply@linkedin.com", Kind.OTHER_LINKEDIN),
    ("invitations@linkedin.com.evil.net", Kind.UNKNOWN_LINKEDIN),
])
def test_sender_local_part(address: str, kind: Kind) -> None:
    """Without key or class the sender decides group and other mail, never a person's mail."""
    assert classify(mail(from_=f"Someone <{address}>"), AUTHENTIC).kind is kind


INVITE, OTHER = Kind.CONNECTION_INVITATION, Kind.OTHER_LINKEDIN


@pytest.mark.parametrize(("language", "text", "kind"), [
    ("en", "I'd like to join your LinkedIn network.", INVITE),
    ("en", "Jordan's invitation is awaiting your response", INVITE),
    ("es", "Me gustaría añadirte a mi red profesional en LinkedIn.", INVITE),
    ("es", "Has recibido una invitación a conectar.", INVITE),
    ("fr", "J’aimerais vous ajouter à mon réseau professionnel sur LinkedIn.", INVITE),
    ("de", "Ich möchte Sie gerne zu meinem beruflichen Netzwerk auf LinkedIn hinzufügen.", INVITE),
    ("pt", "Gostaria de adicioná-lo à minha rede profissional no LinkedIn.", INVITE),
    ("it", "Voglio collegarmi", INVITE),
    ("id", "Saya ingin menambahkan Anda ke jaringan profesional saya di LinkedIn.", INVITE),
    ("en", "Jordan Rivera has accepted your invitation", OTHER),
    ("es", "Lucía ha aceptado tu invitación", OTHER),
    ("de", "Jonas hat Ihre Einladung angenommen", OTHER),
    ("en", "People you may know", OTHER),
    ("en", "Noah has asked you for a recommendation", Kind.RECOMMENDATION_REQUEST),
    ("fr", "Camille vous demande une recommandation", Kind.RECOMMENDATION_REQUEST),
    ("pt", "João solicitou uma recomendação", Kind.RECOMMENDATION_REQUEST),
    ("it", "Giulia ti ha chiesto una referenza", Kind.RECOMMENDATION_REQUEST),
    ("id", "Dewi meminta rekomendasi", Kind.RECOMMENDATION_REQUEST),
    ("en", "Avery Quinn wants to join Career Circle Alumni", Kind.GROUP_JOIN_REQUEST),
    ("es", "Tienes 2 solicitudes para unirse a tu grupo", Kind.GROUP_JOIN_REQUEST),
    ("de", "Neue Beitrittsanfrage für Ihre Gruppe", Kind.GROUP_JOIN_REQUEST),
    ("en", "Sam Okafor sent you a new message", Kind.LINKEDIN_MESSAGE),
    ("fr", "Camille vous a envoyé un message", Kind.LINKEDIN_MESSAGE),
    ("it", "Giulia ti ha inviato un messaggio", Kind.LINKEDIN_MESSAGE),
    ("en", "New conversations in the group Career Circle", Kind.GROUP_ACTIVITY),
    ("pt", "Novas publicações no grupo Carreiras", Kind.GROUP_ACTIVITY),
    ("en", "Your job alert for counselor", OTHER),
    ("fr", "De nouvelles offres d’emploi pour vous", OTHER),
    ("en", "Here is your account summary.", Kind.UNKNOWN_LINKEDIN),
])
def test_phrases(language: str, text: str, kind: Kind) -> None:
    """Subject and body phrases decide, in each language seen, when nothing stronger does."""
    assert classify(mail(body=text), AUTHENTIC).kind is kind, language
    assert classify(mail(subject=text), AUTHENTIC).kind is kind, language


def test_template_key_is_stronger_than_sender_and_phrase() -> None:
    """An accepted-invitation key beats the invitations@ sender and the word 'invitation'."""
    n = mail("X-LinkedIn-Template: accept_invite_04", from_="Jo <invitations@linkedin.com>",
             subject="Invitation to connect on LinkedIn")
    assert classify(n, AUTHENTIC).rule == "template_accepted_invitation"


def test_last_rule_is_the_default() -> None:
    """The table ends with a rule that matches anything and holds it as unknown LinkedIn mail."""
    assert RULES[-1].kind is Kind.UNKNOWN_LINKEDIN
    assert classify(mail(), AUTHENTIC).rule == RULES[-1].name


def test_rule_names_are_unique() -> None:
    """Every rule in the table has its own name, so each decision can be traced."""
    assert len({rule.name for rule in RULES}) == len(RULES)


# --- rules from configuration ---------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "n"), [
    ({"name": "career_fair", "kind": "other_linkedin", "template": "^event_"},
     mail("X-LinkedIn-Template: event_reminder_01")),
    ({"name": "campus_header", "kind": "other_linkedin", "header": "X-Campus", "match": "fair"},
     mail("X-Campus: spring fair")),
    ({"name": "editors", "kind": "other_linkedin", "sender": "editors-noreply"},
     mail(from_="LinkedIn News <editors-noreply@linkedin.com>")),
    ({"name": "endorse", "kind": "recommendation_request", "text": r"endorse (me|my)"},
     mail(body="Could you endorse my skills?")),
])
def test_rules_from_configuration_match(spec: dict[str, str], n: Notification) -> None:
    """Each kind of configured test finds its evidence."""
    rule = Rule.from_spec(spec)
    result = classify(n, AUTHENTIC, [rule])
    assert (result.rule, result.kind.value) == (spec["name"], spec["kind"])


@pytest.mark.parametrize("spec", [
    {"name": "x", "kind": "other_linkedin"},
    {"name": "x", "kind": "other_linkedin", "template": "a", "sender": "b"},
    {"name": "x", "kind": "other_linkedin", "header": "X-A"},
    {"name": "x", "kind": "nonsense", "template": "a"},
    {"name": "Bad Name", "kind": "other_linkedin", "template": "a"},
    {"name": "x", "kind": "other_linkedin", "template": "("},
    {"name": "x", "kind": "other_linkedin", "template": "a", "colour": "red"},
])
def test_invalid_rule_specs_are_refused(spec: dict[str, str]) -> None:
    """A configured rule with a missing, extra or broken part is refused with ValueError."""
    with pytest.raises(ValueError, match=r"\S"):
        Rule.from_spec(spec)


def test_configured_rules_cannot_override_the_spoof_rule() -> None:
    """Configured rules run after the not-LinkedIn and spoof rules."""
    rule = Rule.from_spec({"name": "everything", "kind": "connection_invitation", "text": "."})
    assert classify(mail(), SPOOF, [rule]).kind is Kind.SPOOFED_LINKEDIN
    assert classify(mail(from_="a@example.org"), NOT_LINKEDIN, [rule]).kind is Kind.NOT_LINKEDIN


def test_configured_rules_run_before_the_built_in_ones() -> None:
    """A configured rule can reclassify what a built-in rule would have decided."""
    rule = Rule.from_spec({"name": "guests_only_logged", "kind": "other_linkedin",
                           "template": "^invite_guest"})
    assert classify(mail("X-LinkedIn-Template: invite_guest_59"), AUTHENTIC, [rule]).kind \
        is Kind.OTHER_LINKEDIN


# --- profile URLs ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "normal"), [
    ("https://www.linkedin.com/comm/profile/view?id=AAsAAA1&authType=name&trk=x&midToken=y",
     "https://www.linkedin.com/comm/profile/view?id=AAsAAA1"),
    ("http://linkedin.com/comm/in/jordan-rivera-42/?midToken=x&trk=eml-y",
     "https://www.linkedin.com/comm/in/jordan-rivera-42"),
    ("https://de.linkedin.com/in/jonas-weber-de?trk=public", "https://www.linkedin.com/in/jonas-weber-de"),
    ("https://www.linkedin.com/comm/profile/view?authType=name", None),
    ("https://www.linkedin.com/comm/mynetwork/invite-accept/invitationId/1/", None),
    ("https://www.linkedin.com.evil.net/in/jordan", None),
    ("https://linkedin-security.net/in/jordan", None),
    ("javascript:alert(1)", None),
    # 2025: a country subdomain, and the path-style accept link naming the inviter.
    ("https://se.linkedin.com/comm/in/astrid-lindqvist-4b2a17?otpToken=x&trk=eml-y",
     "https://www.linkedin.com/comm/in/astrid-lindqvist-4b2a17"),
    ("https://www.linkedin.com/comm/mynetwork/invite-accept/invitationId/7301234567890123456/"
     "sharedKey/Xq7_Lm2Vb9/?inviterVanityName=astrid-lindqvist-4b2a17&otpToken=x",
     "https://www.linkedin.com/in/astrid-lindqvist-4b2a17"),
    ("https://www.linkedin.com/comm/people/invite-accept?mboxid=1&invitationId=2&sharedKey=x",
     None),
    ("https://evil.example/comm/mynetwork/invite-accept/invitationId/1/"
     "?inviterVanityName=jordan", None),
    # A profile link a mail gateway wrapped is read as the link inside.
    ("https://nam12.safelinks.protection.outlook.com/?url=https%3A%2F%2Fse.linkedin.com%2Fcomm"
     "%2Fin%2Fastrid-lindqvist-4b2a17%3FotpToken%3Dx&data=05%7C02&reserved=0",
     "https://www.linkedin.com/comm/in/astrid-lindqvist-4b2a17"),
])
def test_profile_urls_are_normalised(url: str, normal: str | None) -> None:
    """Profile links lose tracking parameters and point at https://www.linkedin.com."""
    assert canonical_profile_url(url) == normal


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048), st.sampled_from([AUTHENTIC, UNVERIFIED, SPOOF, NOT_LINKEDIN]))
def test_classify_never_raises(data: bytes, auth: Authenticity) -> None:
    """Whatever parse() makes of arbitrary bytes, classify() returns a classification."""
    assert classify(parse(data), auth).reasons


@pytest.mark.parametrize("body", [
    "<" * 500_000, "<style" * 100_000, "<!--" * 120_000, 'href="' * 90_000, "<br" * 150_000,
    "View " * 100_000, "to join " * 60_000,
], ids=["lt", "style", "comment", "href", "br", "view", "join"])
def test_pathological_bodies_are_classified_quickly(body: str) -> None:
    """Bodies built to make regular expressions backtrack are handled in well under a second."""
    data = ("From: Jo <invitations@linkedin.com>\nSubject: s\nFeedback-ID: " + "a" * 30_000
            + "\nContent-Type: text/html\n\n" + body + "\n").encode()
    started = time.perf_counter()
    classify(parse(data), check(parse(data), trusted_authserv_ids=()))
    assert time.perf_counter() - started < 1.5


# --- 2022–2026 shapes -----------------------------------------------------------------------------

STAFF_ID = ("Message-ID: <SJ0PR21MB2047C3B8E1F04A9D2B7E6A11C3D12"
            "@SJ0PR21MB2047.namprd21.prod.outlook.com>")
ONMICROSOFT = ("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=microsoft.onmicrosoft.com;"
               " s=selector2-microsoft-onmicrosoft-com; h=From:Date; bh=eA==; b=eA==")


def test_a_linkedin_employees_own_mail_is_never_a_notification() -> None:
    """Genuine linkedin.com mail sent from Microsoft 365 is only noted, though its words invite."""
    n = parse(raw("linkedin_staff_mail_m365.eml"))
    found = check(n, trusted_authserv_ids=["mx.counsel.example.edu"])
    result = classify(vouched(n, found), found)
    assert found.verdict is Verdict.AUTHENTIC
    assert (result.kind, result.rule, result.person) == (
        Kind.OTHER_LINKEDIN, "linkedin_staff_mail", Person())


@pytest.mark.parametrize(("headers", "rule"), [
    ((STAFF_ID,), "linkedin_staff_mail"),
    (("Message-ID: <1.2@ltx1-app41752.prod.linkedin.com>", ONMICROSOFT), "linkedin_staff_mail"),
    # LinkedIn's own headers, or its packaging, make it a notification again.
    ((STAFF_ID, "X-LinkedIn-Class: INVITE-GUEST"), "class_invitation"),
    ((STAFF_ID, "Feedback-ID: email_m2m_invite_single_01:linkedin"), "template_invitation"),
    (("Message-ID: <1.2@ltx1-app41752.prod.linkedin.com>",), "phrase_invitation"),
    (("Message-ID: <624803000.3000.1342624803000@ela4-bed51.prod>",), "phrase_invitation"),
])
def test_staff_mail_is_told_by_its_sending_system(headers: tuple[str, ...], rule: str) -> None:
    """Microsoft 365 marks and no LinkedIn header tell an employee's mail from a notification."""
    n = mail(*headers, from_="Dana Whitfield <dwhitfield@linkedin.com>",
             body="I'd like to add you to my professional network on LinkedIn.")
    assert classify(n, AUTHENTIC).rule == rule


def test_configured_rules_cannot_answer_staff_mail() -> None:
    """A counselor's rule runs after the staff-mail rule, like the other safety rules."""
    rule = Rule.from_spec({"name": "everything", "kind": "connection_invitation", "text": "."})
    n = mail(STAFF_ID, from_="Dana Whitfield <dwhitfield@linkedin.com>")
    assert classify(n, AUTHENTIC, [rule]).rule == "linkedin_staff_mail"


def test_phrases_are_read_only_without_any_key() -> None:
    """Invitation words decide mail with no key, and never mail that carries an unknown one."""
    words = {"subject": "I’ve sent you a connection request",
             "body": "Hi Morgan, I’d like to join your professional network"}
    assert classify(mail(**words), AUTHENTIC).rule == "phrase_invitation"
    assert classify(mail("Feedback-ID: email_m2m_invite_v2:linkedin", **words),
                    AUTHENTIC).rule == "template_unknown"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from([
    "This email was intended for ", "THIS EMAIL WAS INTENDED FOR ", "Cet e-mail était destiné à ",
    "CET E-MAIL ÉTAIT DESTINÉ À ", "Diese E-Mail war für ", "Dana Whitfield", "İlkay Şahin",
    " (Counselor)", ".", "\n", "ß", "ﬁ", "ſ", "ı", "\u212a"]), st.text(max_size=6)), max_size=10
).map("".join))
def test_counselor_names_read_alike_in_lower_case(words: str) -> None:
    """The footer's names are read from lower-cased text exactly as the case-blind pattern
    reads them from the text itself."""
    from modbot.person import _COUNSELOR, _Counselors, clean_line

    found = _Counselors(words)
    "anyone" in found  # noqa: B015 (reads the names)
    assert found._names == frozenset(clean_line(m.group("name")).casefold()
                                     for m in _COUNSELOR.finditer(words))
