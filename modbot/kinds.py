"""The table of notification kinds: everything modbot knows about a kind, in one row each.

What it is for: a kind's default action, whether it is about one person, the reply template it
is answered with (or none), the digest chart's series it is counted in, and the words a
counselor reads for it are written here once; the policy, the person finder, the renderer,
the digest and the words module read them from this table, so adding a kind is adding a
``Kind`` member and its row (``docs/development.md`` lists the rest). A ``Kind`` without a row,
or a row that contradicts itself, stops the import with a sentence saying what is missing.

Pure values: this module must never import anything beyond the standard library and
``modbot.model``, so every command can read it cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from modbot.model import Action, Kind


@dataclass(frozen=True)
class KindRow:
    """What modbot knows about one kind.

    ``reply_template`` names the template (``config/templates/<name>.j2``) a reply to this kind
    is rendered from; None means the kind is never answered, whatever the configuration says.
    ``series`` is the digest chart's series the kind is counted in (None: not charted).
    ``label`` names the kind in a heading or a column, ``phrase`` inside a sentence.
    """

    kind: Kind
    action: Action
    about_person: bool
    reply_template: str | None
    series: str | None
    label: str
    phrase: str


@dataclass(frozen=True)
class Series:
    """One series of the digest's chart of LinkedIn mail: its key, label and colour."""

    key: str
    label: str
    colour: str


# The digest chart's series in stacking order.
SERIES: tuple[Series, ...] = (
    Series("invitations", "Invitations", "#2e6bd9"),
    Series("groups", "Group requests", "#0e9384"),
    Series("messages", "Messages", "#7a5af8"),
    Series("recommendations", "Recommendations", "#f79009"),
    Series("other", "Other LinkedIn", "#98a2b3"),
    Series("suspect", "Fake or unknown", "#d92d20"),
)

K, A = Kind, Action
ROWS: tuple[KindRow, ...] = (
    KindRow(K.CONNECTION_INVITATION, A.REPLY, True, "connection_invitation", "invitations",
            "Connection invitation", "a connection invitation"),
    KindRow(K.GROUP_JOIN_REQUEST, A.REPLY, True, "group_join_request", "groups",
            "Request to join your group", "a request to join your LinkedIn group"),
    KindRow(K.GROUP_ACTIVITY, A.LOG, False, None, "other",
            "LinkedIn group news", "news from a LinkedIn group"),
    KindRow(K.LINKEDIN_MESSAGE, A.REPLY, True, "linkedin_message", "messages",
            "LinkedIn message", "a LinkedIn message"),
    KindRow(K.RECOMMENDATION_REQUEST, A.REPLY, True, "recommendation_request", "recommendations",
            "Recommendation request", "a request for a recommendation"),
    KindRow(K.OTHER_LINKEDIN, A.LOG, False, None, "other",
            "LinkedIn job alerts and news", "a LinkedIn job alert or news"),
    KindRow(K.SPOOFED_LINKEDIN, A.HOLD, False, None, "suspect",
            "Fake LinkedIn mail", "mail pretending to come from LinkedIn"),
    KindRow(K.UNKNOWN_LINKEDIN, A.HOLD, False, None, "suspect",
            "LinkedIn mail of an unknown kind", "LinkedIn mail of a kind modbot does not know"),
    # Not LinkedIn's: never charted, and left exactly as it is.
    KindRow(K.NOT_LINKEDIN, A.IGNORE, False, None, None,
            "Email not from LinkedIn", "an email not from LinkedIn"),
)


def problems(rows: tuple[KindRow, ...] = ROWS) -> list[str]:
    """What is missing or contradictory in ``rows``, one sentence each; empty when complete."""
    found: list[str] = []
    kinds = [row.kind for row in rows]
    series = {s.key for s in SERIES}
    found += [f"Kind.{k.name} has no row in modbot/kinds.py ROWS" for k in Kind if k not in kinds]
    found += [f"Kind.{k.name} has two rows in modbot/kinds.py ROWS"
              for k in Kind if kinds.count(k) > 1]
    for row in rows:
        name = f"Kind.{row.kind.name}"
        if (row.action is Action.REPLY) != (row.reply_template is not None):
            found.append(f"{name}: a kind replied to by default needs a reply template, "
                         "and only such a kind has one")
        if row.reply_template is not None and not row.about_person:
            found.append(f"{name}: a reply goes to a person, so the kind must be about one")
        if row.series is not None and row.series not in series:
            found.append(f"{name}: chart series {row.series!r} is not in SERIES")
        if not row.label or not row.phrase:
            found.append(f"{name}: needs a label and a phrase for the counselor")
    return found


_PROBLEMS = problems()
if _PROBLEMS:  # a kind half described would fail silently later: fail here, saying where
    raise TypeError("; ".join(_PROBLEMS))

BY_KIND: Mapping[Kind, KindRow] = MappingProxyType({row.kind: row for row in ROWS})
DEFAULT_ACTIONS: Mapping[Kind, Action] = MappingProxyType({r.kind: r.action for r in ROWS})
# The kinds that can be answered: the policy holds any other kind configured to be replied to.
REPLY_KINDS = frozenset(row.kind for row in ROWS if row.reply_template is not None)
PERSON_KINDS = frozenset(row.kind for row in ROWS if row.about_person)
REPLY_TEMPLATES: tuple[str, ...] = tuple(
    row.reply_template for row in ROWS if row.reply_template is not None)
# kind value -> its template name, for rows read back from the store
TEMPLATE_OF: Mapping[str, str] = MappingProxyType(
    {row.kind.value: row.reply_template for row in ROWS if row.reply_template is not None})


def charted(series: Series) -> tuple[Kind, ...]:
    """The kinds the chart's ``series`` counts."""
    return tuple(row.kind for row in ROWS if row.series == series.key)
