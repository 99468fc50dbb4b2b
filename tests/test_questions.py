"""Intake questions (engine.services.questions): the admin's parser, the hold's answer
check and what the order line carries. Pure functions: no database.

Every question type, every validation error (each names its field or question), and
Hypothesis: any JSON given to either parser raises nothing but ValidationError or
Unprocessable, and what passes is always well formed.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import Unprocessable, ValidationError
from engine.services.questions import (
    MAX_ANSWER,
    check,
    labelled,
    parse_questions,
    properties,
)


def q(qid: str = "topic", kind: str = "text", **extra: Any) -> dict[str, Any]:
    return {"id": qid, "label": extra.pop("label", qid.title()), "type": kind, **extra}


ALL_TYPES = [
    q("topic", "text", required=True),
    q("notes", "textarea"),
    q("level", "choice", choices=["Beginner", "Expert"], required=True),
    q("consent", "checkbox", required=True),
    q("newsletter", "checkbox"),
    q("contact", "email"),
    q("phone", "phone"),
]


@pytest.fixture
def questions() -> list[dict[str, Any]]:
    return parse_questions("questions", ALL_TYPES)


# --------------------------------------------------------------------------- parse


def test_every_type_parses_and_normalises() -> None:
    parsed = parse_questions("questions", [*ALL_TYPES[:2], {**ALL_TYPES[2], "label": "  Lvl "}])
    assert parsed[0] == {"id": "topic", "label": "Topic", "type": "text", "required": True}
    assert parsed[1]["required"] is False and "choices" not in parsed[1]
    assert parsed[2] == {"id": "level", "label": "Lvl", "type": "choice", "required": True,
                         "choices": ["Beginner", "Expert"]}
    assert parse_questions("questions", []) == []
    assert len(parse_questions("questions", ALL_TYPES)) == len(ALL_TYPES)
    # A non-choice question may carry an empty choices list (an editor's leftover).
    assert "choices" not in parse_questions("questions", [q(choices=[])])[0]


LONG = "x" * 201
BAD_QUESTIONS = [
    ("not a list", {"id": "a"}, "questions"),
    ("too many", [q(f"q{i}", label=f"L{i}") for i in range(21)], "questions"),
    ("not an object", ["topic"], "questions[0]"),
    ("unknown key", [q(hint="x")], "questions[0].hint"),
    ("no id", [{"label": "A", "type": "text"}], "questions[0].id"),
    ("no label", [{"id": "a", "type": "text"}], "questions[0].label"),
    ("no type", [{"id": "a", "label": "A"}], "questions[0].type"),
    ("id upper case", [q("Topic")], "questions[0].id"),
    ("id too long", [q("a" * 33)], "questions[0].id"),
    ("id empty", [q("")], "questions[0].id"),
    ("id with dash", [q("a-b")], "questions[0].id"),
    ("id a number", [{"id": 1, "label": "A", "type": "text"}], "questions[0].id"),
    ("label empty", [q(label="  ")], "questions[0].label"),
    ("label too long", [q(label=LONG)], "questions[0].label"),
    ("label not text", [q(label=5)], "questions[0].label"),
    ("label control", [q(label="a\nb")], "questions[0].label"),
    ("label bidi", [q(label="a\u202eb")], "questions[0].label"),
    ("label Appointment", [q(label="appointment")], "questions[0].label"),
    ("label Expert", [q(label="Expert")], "questions[0].label"),
    ("label _hold", [q(label="_hold")], "questions[0].label"),
    ("type unknown", [q(kind="date")], "questions[0].type"),
    ("required not bool", [q(required="yes")], "questions[0].required"),
    ("required number", [q(required=1)], "questions[0].required"),
    ("choice without choices", [q(kind="choice")], "questions[0].choices"),
    ("choices empty", [q(kind="choice", choices=[])], "questions[0].choices"),
    ("choices too many", [q(kind="choice", choices=[str(i) for i in range(51)])],
     "questions[0].choices"),
    ("choices not list", [q(kind="choice", choices="a,b")], "questions[0].choices"),
    ("choice not text", [q(kind="choice", choices=["a", 2])], "questions[0].choices[1]"),
    ("choice empty", [q(kind="choice", choices=["a", " "])], "questions[0].choices[1]"),
    ("choice too long", [q(kind="choice", choices=[LONG])], "questions[0].choices[0]"),
    ("choice twice", [q(kind="choice", choices=["a", "a"])], "questions[0].choices"),
    ("choices on text", [q(choices=["a"])], "questions[0].choices"),
    ("id twice", [q("a", label="A"), q("a", label="B")], "questions[1].id"),
    ("label twice", [q("a", label="Topic"), q("b", label="topic ")], "questions[1].label"),
    ("second item bad", [q("a"), q("b", kind="nope")], "questions[1].type"),
]


@pytest.mark.parametrize(("value", "field"), [pytest.param(v, f, id=i)
                                             for i, v, f in BAD_QUESTIONS])
def test_bad_questions_name_the_field(value: Any, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_questions("questions", value)
    assert err.value.field == field
    assert field.split(".")[0].split("[")[0] in err.value.message


def test_twenty_questions_and_fifty_choices_are_the_limits() -> None:
    assert len(parse_questions("questions", [q(f"q{i}", label=f"L{i}")
                                             for i in range(20)])) == 20
    [c] = parse_questions("questions", [q(kind="choice", choices=[f"c{i}" for i in range(50)])])
    assert len(c["choices"]) == 50
    assert parse_questions("questions", [q("a" * 32, label="y" * 200)])[0]["id"] == "a" * 32


# --------------------------------------------------------------------------- answers


def test_every_type_answered(questions: list[dict[str, Any]]) -> None:
    got = check(questions, {
        "topic": "  Taxes ", "notes": "line one\r\nline two\n\tindented", "level": "Expert",
        "consent": True, "newsletter": "false", "contact": "ann@example.com",
        "phone": "+49 (30) 1234-5678"})
    assert got == {"topic": "Taxes", "notes": "line one\nline two\n\tindented",
                   "level": "Expert", "consent": "true", "newsletter": "false",
                   "contact": "ann@example.com", "phone": "+49 (30) 1234-5678"}
    assert list(got) == [x["id"] for x in questions]  # question order


def test_only_answered_questions_are_kept(questions: list[dict[str, Any]]) -> None:
    got = check(questions, {"topic": "T", "level": "Beginner", "consent": "true",
                            "notes": "   ", "contact": ""})
    assert got == {"topic": "T", "level": "Beginner", "consent": "true"}
    assert check([], {}) == {} and check(None, {}) == {}


@pytest.mark.parametrize("phone", ["+14155550123", "030 1234567", "+44 20 7946 0958",
                                   "(030) 123-4567", "+1.415.555.0123", "1234567",
                                   "+123456789012345"])
def test_phone_numbers_accepted(phone: str) -> None:
    assert check([q("p", "phone")], {"p": phone}) == {"p": phone}


OK = {"topic": "T", "level": "Beginner", "consent": "true"}
BAD_ANSWERS = [
    ("unknown id", {**OK, "shoe_size": "42"}, "shoe_size"),
    ("missing required text", {"level": "Beginner", "consent": "true"}, "topic"),
    ("blank required text", {**OK, "topic": " \n "}, "topic"),
    ("missing required choice", {"topic": "T", "consent": "true"}, "level"),
    ("missing required checkbox", {"topic": "T", "level": "Beginner"}, "consent"),
    ("required checkbox false", {**OK, "consent": "false"}, "consent"),
    ("required checkbox json false", {**OK, "consent": False}, "consent"),
    ("text a number", {**OK, "topic": 5}, "topic"),
    ("text a list", {**OK, "topic": ["a"]}, "topic"),
    ("text null", {**OK, "topic": None}, "topic"),
    ("text a bool", {**OK, "topic": True}, "topic"),
    ("text newline", {**OK, "topic": "a\nb"}, "topic"),
    ("text NUL", {**OK, "topic": "a\x00b"}, "topic"),
    ("text line separator", {**OK, "topic": "a\u2028b"}, "topic"),
    ("text bidi override", {**OK, "topic": "a\u202eb"}, "topic"),
    ("text too long", {**OK, "topic": "x" * (MAX_ANSWER + 1)}, "topic"),
    ("textarea NUL", {**OK, "notes": "a\n\x00"}, "notes"),
    ("textarea escape", {**OK, "notes": "a\x1b[2J"}, "notes"),
    ("textarea too long", {**OK, "notes": "x\n" * 1001}, "notes"),
    ("choice not listed", {**OK, "level": "Guru"}, "level"),
    ("choice wrong case", {**OK, "level": "beginner"}, "level"),
    ("checkbox yes", {**OK, "newsletter": "yes"}, "newsletter"),
    ("checkbox number", {**OK, "newsletter": 1}, "newsletter"),
    ("email no at", {**OK, "contact": "ann.example.com"}, "contact"),
    ("email display name", {**OK, "contact": "Ann <ann@example.com>"}, "contact"),
    ("email two", {**OK, "contact": "a@example.com,b@example.com"}, "contact"),
    ("email no dot", {**OK, "contact": "ann@localhost"}, "contact"),
    ("email header injection", {**OK, "contact": "a@example.com\r\nBcc: x@y.z"}, "contact"),
    ("phone letters", {**OK, "phone": "call me"}, "phone"),
    ("phone short", {**OK, "phone": "12345"}, "phone"),
    ("phone long", {**OK, "phone": "+1234567890123456"}, "phone"),
    ("phone inner plus", {**OK, "phone": "12+3456789"}, "phone"),
    ("phone double separator", {**OK, "phone": "123--4567890"}, "phone"),
    ("phone extension", {**OK, "phone": "1234567 ext 5"}, "phone"),
]


@pytest.mark.parametrize(("answers", "qid"), [pytest.param(a, i, id=n)
                                              for n, a, i in BAD_ANSWERS])
def test_bad_answers_name_the_question(questions: list[dict[str, Any]], answers: Any,
                                       qid: str) -> None:
    with pytest.raises(Unprocessable) as err:
        check(questions, answers)
    assert err.value.code == "invalid_answers"
    assert repr(qid) in err.value.message
    label = {x["id"]: x["label"] for x in questions}.get(qid)
    if label:
        assert f"({label})" in err.value.message


def test_answers_not_an_object(questions: list[dict[str, Any]]) -> None:
    for value in (None, [], "x", 3):
        with pytest.raises(Unprocessable) as err:
            check(questions, value)
        assert err.value.code == "invalid_answers"


def test_a_service_without_questions_refuses_any_answer() -> None:
    with pytest.raises(Unprocessable, match="'x'"):
        check([], {"x": ""})


def test_the_longest_answer_fits() -> None:
    assert check([q()], {"topic": "x" * MAX_ANSWER}) == {"topic": "x" * MAX_ANSWER}


# --------------------------------------------------------------------------- properties


def test_properties_in_question_order_by_label(questions: list[dict[str, Any]]) -> None:
    answers = check(questions, {"phone": "+441234567", "consent": True, "topic": "T",
                                "level": "Expert"})
    props = properties(questions, answers)
    assert list(props.items()) == [("Topic", "T"), ("Level", "Expert"), ("Consent", "true"),
                                   ("Phone", "+441234567")]


def test_properties_never_shadow_the_engines_own() -> None:
    # Rows stored before the label rule (or written by hand): prefixed, not dropped.
    legacy = [{"id": "a", "label": "Appointment", "type": "text", "required": False},
              {"id": "b", "label": "_hold", "type": "text", "required": False},
              {"id": "c", "label": "Expert", "type": "text", "required": False}]
    props = properties(legacy, {"a": "x", "b": "y", "c": "z"})
    assert props == {"Answer: Appointment": "x", "Answer: _hold": "y", "Answer: Expert": "z"}
    assert not {"Appointment", "Expert", "_hold"} & set(props)


def test_labelled_keeps_answers_of_removed_questions() -> None:
    qs = [q("b", label="Bee"), q("a", label="Ay")]
    assert labelled(qs, {"a": "1", "b": "2", "zz": "3", "old": "4"}) == [
        ("Bee", "2"), ("Ay", "1"), ("old", "4"), ("zz", "3")]
    assert labelled(None, None) == [] and labelled(qs, {}) == []


# --------------------------------------------------------------------------- hypothesis

TEXT = st.text(st.characters(codec=None, categories=None), max_size=12) | st.sampled_from(
    ["", "\x00", "\ud800", "text", "choice", "checkbox", "email", "phone", "textarea",
     "topic", "a", "true", "false", "ann@example.com", "+49 30 1234567", "Appointment"])
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(TEXT, inner, max_size=4), max_leaves=20)
KEYS = st.sampled_from(["id", "label", "type", "required", "choices"]) | TEXT
QUESTION = st.dictionaries(KEYS, JSON | TEXT, max_size=6) | st.fixed_dictionaries(
    {"id": st.from_regex(r"[a-z0-9_]{1,4}", fullmatch=True) | TEXT, "label": TEXT,
     "type": st.sampled_from(["text", "textarea", "choice", "checkbox", "email", "phone"]),
     "required": st.booleans() | JSON, "choices": st.lists(TEXT, max_size=4) | JSON})


@settings(max_examples=300, deadline=None)
@given(st.lists(QUESTION, max_size=5) | JSON)
def test_any_json_questions_is_parsed_or_refused(value: Any) -> None:
    try:
        parsed = parse_questions("questions", value)
    except ValidationError as err:
        assert err.field is not None and err.field.startswith("questions")
        return
    assert parse_questions("questions", parsed) == parsed  # idempotent
    ids = [x["id"] for x in parsed]
    assert len(ids) == len(set(ids))


@settings(max_examples=300, deadline=None)
@given(st.lists(QUESTION, max_size=5), st.dictionaries(TEXT, JSON, max_size=5) | JSON)
def test_any_json_answers_are_checked_or_refused(raw: Any, answers: Any) -> None:
    try:
        qs = parse_questions("questions", raw)
    except ValidationError:
        qs = parse_questions("questions", ALL_TYPES)
    try:
        got = check(qs, answers)
    except Unprocessable as err:
        assert err.code == "invalid_answers"
        return
    assert set(got) <= {x["id"] for x in qs}
    assert all(isinstance(v, str) and v and len(v) <= MAX_ANSWER for v in got.values())
    assert check(qs, got) == got  # the cleaned answers pass again, unchanged
    props = properties(qs, got)
    assert len(props) == len(got) and not {"Appointment", "Expert", "_hold"} & set(props)


def test_a_long_phone_answer_is_refused_quickly() -> None:
    import time

    started = time.perf_counter()
    for value in ("1" * 1999 + "x", "1 " * 999 + "x", "(1)" * 600 + "-"):
        with pytest.raises(Unprocessable):
            check([q("p", "phone")], {"p": value})
    assert time.perf_counter() - started < 1
