"""Intake questions: what a service asks before the hold, and the answers it keeps.

A service's ``questions`` is a list of at most :data:`MAX_QUESTIONS` documents
``{"id", "label", "type", "required"[, "choices"]}`` (CONTRACT "Intake questions").
:func:`parse_questions` is the admin's :class:`~engine.services.validation.Field`
parser (400 ``invalid_request`` naming ``questions[3].label``); :func:`check` judges a
hold's ``answers`` against them (422 ``invalid_answers`` naming the question) and returns
the cleaned answers that the claim keeps; :func:`properties` turns them into the order
line's ``label: answer`` properties; :func:`labelled` is what the admin list, the CSV
export and the calendar event description show.

Rules beyond the contract, and why:

- Labels are unique within a service (case-insensitively) and may not be ``Appointment``,
  ``Expert`` or begin with ``_``: a label is a line-item property name and a CSV column,
  and must never shadow the engine's own properties (``_hold`` ties the order line to
  the hold; Shopify hides ``_``-prefixed properties from the customer).
- Answers are plain text: no control characters (a ``textarea`` may hold newlines and
  tabs; ``\\r\\n`` becomes ``\\n``), no Unicode line/paragraph separators, no bidi
  overrides. Leading and trailing whitespace is dropped; an empty answer is no answer.
- ``checkbox`` answers are ``"true"``/``"false"`` (JSON ``true``/``false`` is accepted
  and normalised); a *required* checkbox must be ``"true"``, as an HTML required checkbox.
- ``phone``: an optional leading ``+``, then groups of digits (a group may be in
  parentheses) separated by at most one space, ``-`` or ``.``; 7 to 15 digits in all
  (E.164 allows at most 15); no letters, so no extensions. The
  answer is kept as typed, so the merchant reads what the customer wrote.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from engine.domain.mail import valid_address
from engine.errors import Unprocessable, ValidationError
from engine.services.validation import EMAIL

MAX_QUESTIONS = 20
MAX_LABEL = 200
MAX_CHOICES = 50
MAX_CHOICE = 200
MAX_ANSWER = 2000
TYPES = ("text", "textarea", "choice", "checkbox", "email", "phone")
KEYS = frozenset({"id", "label", "type", "required", "choices"})
RESERVED_LABELS = frozenset({"appointment", "expert"})

_ID = re.compile(r"[a-z0-9_]{1,32}")
# One digit (or one parenthesised group) per step, so a match is found or refused in
# linear time (no nested repetition over the same digits).
_PHONE = re.compile(r"\+?(?:\([0-9]+\)|[0-9])(?:[ .-]?\([0-9]+\)|[ .-]?[0-9])*")
MAX_PHONE = 40
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
_LINE_BREAKS = re.compile(r"\r\n?")


def _bad_char(c: str, *, multiline: bool) -> bool:
    if multiline and c in "\n\t":
        return False
    return unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in _BIDI


def _plain(name: str, value: Any, max_length: int) -> str:
    """A one-line, non-empty string of at most ``max_length`` characters (admin side)."""
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string", field=name)
    value = value.strip()
    if not value:
        raise ValidationError(f"{name} may not be empty", field=name)
    if len(value) > max_length:
        raise ValidationError(f"{name} is longer than {max_length} characters", field=name)
    if any(_bad_char(c, multiline=False) for c in value):
        raise ValidationError(f"{name} may not contain control characters", field=name)
    return str(value)


def _question(name: str, doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ValidationError(f"{name} must be an object", field=name)
    unknown = sorted(str(k) for k in set(doc) - KEYS)
    if unknown:
        raise ValidationError(f"{name}: unknown field {unknown[0]!r}",
                              field=f"{name}.{unknown[0]}")
    for key in ("id", "label", "type"):
        if key not in doc:
            raise ValidationError(f"{name}.{key} is required", field=f"{name}.{key}")
    qid = doc["id"]
    if not isinstance(qid, str) or not _ID.fullmatch(qid):
        raise ValidationError(f"{name}.id must be 1-32 of a-z, 0-9 and _", field=f"{name}.id")
    label = _plain(f"{name}.label", doc["label"], MAX_LABEL)
    if label.casefold() in RESERVED_LABELS or label.startswith("_"):
        raise ValidationError(f"{name}.label {label!r} is reserved for the booking's own "
                              "properties", field=f"{name}.label")
    kind = doc["type"]
    if kind not in TYPES:
        raise ValidationError(f"{name}.type must be one of {', '.join(TYPES)}",
                              field=f"{name}.type")
    required = doc.get("required", False)
    if not isinstance(required, bool):
        raise ValidationError(f"{name}.required must be true or false",
                              field=f"{name}.required")
    out: dict[str, Any] = {"id": qid, "label": label, "type": kind, "required": required}
    if kind == "choice":
        out["choices"] = _choices(f"{name}.choices", doc.get("choices"))
    elif doc.get("choices") not in (None, []):
        raise ValidationError(f"{name}.choices is only for questions of type choice",
                              field=f"{name}.choices")
    return out


def _choices(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CHOICES:
        raise ValidationError(f"{name} must be a list of 1 to {MAX_CHOICES} strings",
                              field=name)
    choices = [_plain(f"{name}[{i}]", v, MAX_CHOICE) for i, v in enumerate(value)]
    if len(set(choices)) != len(choices):
        raise ValidationError(f"{name} lists a choice twice", field=name)
    return choices


def parse_questions(name: str, value: Any) -> list[dict[str, Any]]:
    """A service's questions, normalised (labels stripped, ``required`` always present,
    ``choices`` only on ``choice``); ValidationError naming ``questions[i].field``."""
    if not isinstance(value, list):
        raise ValidationError(f"{name} must be a list", field=name)
    if len(value) > MAX_QUESTIONS:
        raise ValidationError(f"{name} has more than {MAX_QUESTIONS} questions", field=name)
    out = [_question(f"{name}[{i}]", doc) for i, doc in enumerate(value)]
    ids: set[str] = set()
    labels: set[str] = set()
    for i, q in enumerate(out):
        if q["id"] in ids:
            raise ValidationError(f"{name}[{i}].id {q['id']!r} is used twice",
                                  field=f"{name}[{i}].id")
        if q["label"].casefold() in labels:
            raise ValidationError(f"{name}[{i}].label {q['label']!r} is used twice",
                                  field=f"{name}[{i}].label")
        ids.add(q["id"])
        labels.add(q["label"].casefold())
    return out


# --- answers --------------------------------------------------------------------------


def _refuse(q: Mapping[str, Any], why: str) -> Unprocessable:
    label = q.get("label") or q["id"]
    return Unprocessable(f"answer to {q['id']!r} ({label}): {why}", code="invalid_answers")


def _answer(q: Mapping[str, Any], value: Any) -> str | None:
    """The cleaned answer to ``q``, None when not answered; Unprocessable otherwise."""
    kind = q.get("type", "text")
    if kind == "checkbox" and isinstance(value, bool):
        value = "true" if value else "false"
    if not isinstance(value, str):
        raise _refuse(q, "must be a string")
    multiline = kind == "textarea"
    if multiline:
        value = _LINE_BREAKS.sub("\n", value)
    value = value.strip()
    if len(value) > MAX_ANSWER:
        raise _refuse(q, f"is longer than {MAX_ANSWER} characters")
    if any(_bad_char(c, multiline=multiline) for c in value):
        raise _refuse(q, "may not contain control characters")
    if not value:
        return None
    if kind == "checkbox":
        if value not in ("true", "false"):
            raise _refuse(q, "must be true or false")
    elif kind == "choice":
        if value not in q.get("choices", ()):
            raise _refuse(q, "is not one of the choices")
    elif kind == "email":
        if not EMAIL.match(value) or valid_address(value) is None:
            raise _refuse(q, "is not a valid email address")
    elif kind == "phone":
        digits = sum("0" <= c <= "9" for c in value)
        if len(value) > MAX_PHONE or not 7 <= digits <= 15 or not _PHONE.fullmatch(value):
            raise _refuse(q, "is not a valid phone number")
    return str(value)


def check(questions: Sequence[Mapping[str, Any]] | None, answers: Any) -> dict[str, str]:
    """The answers a hold keeps: ``{question id: text}`` for the answered questions only,
    in question order. ``422 invalid_answers`` naming the question (id and label) for an
    unknown id, a missing required answer, a wrong type, a choice not listed, a bad email
    or phone number, control characters, or more than 2000 characters. ``questions`` are
    as :func:`parse_questions` returns them (a missing ``required`` is false)."""
    questions = list(questions or ())
    if not isinstance(answers, dict):
        raise Unprocessable("answers must be an object of question ids to answers",
                            code="invalid_answers")
    known = {q["id"] for q in questions}
    unknown = sorted(str(k) for k in answers if k not in known)
    if unknown:
        raise Unprocessable(f"the service asks no question {unknown[0][:40]!r}",
                            code="invalid_answers")
    out: dict[str, str] = {}
    for q in questions:
        answer = _answer(q, answers[q["id"]]) if q["id"] in answers else None
        required = q.get("required") is True
        if required and answer is None:
            raise _refuse(q, "is required")
        if required and q.get("type") == "checkbox" and answer != "true":
            raise _refuse(q, "must be checked")
        if answer is not None:
            out[q["id"]] = answer
    return out


def labelled(questions: Sequence[Mapping[str, Any]] | None,
             answers: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """``(label, answer)`` for every kept answer: the service's questions in order, then
    answers to questions removed since (labelled by their id, sorted), so nothing a
    customer said is lost when the merchant edits the questions later."""
    answers = dict(answers or {})
    out: list[tuple[str, str]] = []
    for q in questions or ():
        if q["id"] in answers:
            out.append((str(q.get("label") or q["id"]), str(answers.pop(q["id"]))))
    out.extend((str(k), str(answers[k])) for k in sorted(answers))
    return out


def properties(questions: Sequence[Mapping[str, Any]] | None,
               answers: Mapping[str, Any] | None) -> dict[str, str]:
    """``{label: answer}`` in question order, for the hold's ``line_item_properties``.
    A label can never replace ``Appointment``, ``Expert`` or a ``_`` property:
    :func:`parse_questions` refuses such labels, and any that reach here anyway (rows
    written before that rule) are prefixed with ``Answer:`` rather than dropped."""
    out: dict[str, str] = {}
    for label, answer in labelled(questions, answers):
        if label.casefold() in RESERVED_LABELS or label.startswith("_"):
            label = f"Answer: {label}"
        out.setdefault(label, answer)
    return out
