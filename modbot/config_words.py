"""Configuration problems in the words of the file: TOML's, not Python's.

pydantic reports ``Input should be a valid tuple`` about ``('policy', 'mode')``; the person who
wrote the file wrote an array under ``[policy]``. Each problem here names the key as the file
spells it (``classify.rules[2].kind``), repeats what was given (``policy.mode = "yolo"``), says
what is expected in TOML terms (a string, an array, a table, true or false), and for a key or
a choice that does not exist suggests the one probably meant. A value given for a key is
repeated only when it is short and never for a secret key (those never reach here anyway:
secrets are refused before validation).
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from typing import Any

from pydantic import BaseModel

_TYPE_WORDS = {
    "tuple_type": "must be an array, in square brackets",
    "list_type": "must be an array, in square brackets",
    "set_type": "must be an array, in square brackets",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "string_type": "must be a string, in double quotes",
    "path_type": "must be a path, as a string in double quotes",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
}
# What a key's pattern means, for the keys that have one.
_PATTERN_WORDS = {
    "time": 'must be a 24-hour time like "08:00"',
    "keyword": 'must be an IMAP keyword like "$ModbotDone" (letters, digits, _ and -)',
    "tenant": "must be a tenant id or domain (letters, digits, . _ and -)",
    "ldap_filter": 'must be an LDAP filter in parentheses, like "(objectClass=person)"',
    "name_attribute": "must be an LDAP attribute name (letters, digits and -)",
    "email_attribute": "must be an LDAP attribute name (letters, digits and -)",
    "url_attribute": "must be an LDAP attribute name (letters, digits and -)",
}
_SECRET_KEY = re.compile(r"password|secret|token", re.IGNORECASE)


def toml_value(value: object, limit: int = 60) -> str | None:
    """``value`` as it would be written in TOML, or None when it is too long to repeat."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)  # a TOML basic string reads the same
    elif isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, list | tuple):
        parts = [toml_value(item, limit) for item in value]
        if any(part is None for part in parts):
            return None
        text = "[" + ", ".join(str(part) for part in parts) + "]"
    else:
        return None  # a table: its keys say more than its repr
    return text if len(text) <= limit else None


def where(loc: tuple[int | str, ...]) -> str:
    """A location as the file spells it: ``classify.rules[1].kind`` (arrays count from 1)."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part + 1}]"
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def suggestion(word: str, known: typing.Iterable[str]) -> str:
    """`` — did you mean X?`` for the known word closest to ``word``, or nothing."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    if not close:
        lowered = {k.lower(): k for k in known}
        close = [lowered[word.lower()]] if word.lower() in lowered else []
    return f" — did you mean {close[0]}?" if close else ""


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The settings table a field holds (``X``, ``X | None`` or ``tuple[X, ...]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, tuple, list, typing.Annotated):
        for argument in typing.get_args(annotation):
            found = _model_of(argument)
            if found is not None:
                return found
    return None


def keys_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys the table at ``loc`` may hold (empty when it is not a settings table)."""
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        model = _model_of(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _choices(expected: str) -> list[str]:
    return re.findall(r"'([^']*)'", expected)


def _one_of(choices: list[str]) -> str:
    quoted = [json.dumps(choice) for choice in choices]
    if len(quoted) == 1:
        return quoted[0]
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def describe(error: Any, root: type[BaseModel], prefix: tuple[int | str, ...] = ()) -> str:
    """One pydantic error as one line about the file: key, what was given, what is expected."""
    loc = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    given = error.get("input")
    if loc and loc[-1] == "[key]":  # a key of a mapping such as [policy] actions
        loc = loc[:-1]
        choices = _choices(str(ctx.get("expected", "")))
        key = str(loc[-1]) if loc else ""
        return (f"{where(prefix + loc)}: {key} cannot be used here: must be one of "
                f"{_one_of(choices)}{suggestion(key, choices)}")
    name = where(prefix + loc)
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else ""
        return f"{name}: unknown key{suggestion(key, keys_at(root, loc[:-1]))}"
    if kind == "missing":
        return f"{name}: required key is missing"
    last = str(loc[-1]) if loc else ""
    shown = None if _SECRET_KEY.search(last) else toml_value(given)
    subject = f"{name} = {shown}" if shown is not None else name
    if kind in _TYPE_WORDS:
        return f"{subject}: {_TYPE_WORDS[kind]}"
    if kind in ("enum", "literal_error"):
        choices = _choices(str(ctx.get("expected", "")))
        hint = suggestion(given, choices) if isinstance(given, str) else ""
        return f"{subject}: must be {_one_of(choices)}{hint}"
    if kind == "greater_than_equal":
        return f"{subject}: must be at least {ctx['ge']}"
    if kind == "greater_than":
        return f"{subject}: must be more than {ctx['gt']:g}"
    if kind == "less_than_equal":
        return f"{subject}: must be at most {ctx['le']}"
    if kind == "less_than":
        return f"{subject}: must be less than {ctx['lt']:g}"
    if kind == "string_too_short":
        least = int(ctx.get("min_length", 1))
        return f"{subject}: must not be empty" if least <= 1 else \
            f"{subject}: must have at least {least} characters"
    if kind == "string_too_long":
        return f"{subject}: must have at most {ctx['max_length']} characters"
    if kind == "string_pattern_mismatch":
        words = _PATTERN_WORDS.get(last, f"must match the pattern {ctx.get('pattern')}")
        return f"{subject}: {words}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{name}: {message}"
