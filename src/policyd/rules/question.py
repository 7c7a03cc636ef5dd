"""Requestor questions: their rule-file schema and the check of a request's answers."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validates_schema

from policyd.rules.condition import QUESTION_ID
from policyd.rules.model import AccessPackage, Question, QuestionType

LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")  # en, fr, pt-BR, zh-Hant
MAX_TEXT_ANSWER = 1000  # characters in a text answer (as in an attribute's text)
MAX_QUESTIONS = 20  # per package
ANSWER_FIELD = "answers"


class QuestionId(fields.String):
    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not QUESTION_ID.match(text):
            raise ValidationError(
                f"{text!r} is not a valid question id (lower-case letters, digits and '_', "
                "starting with a letter, at most 64)"
            )
        return text


class QuestionText(fields.Field):
    """Plain text, or a mapping of language tags to text (`{en: ..., fr: ...}`)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and value.strip():
            return (("", value),)
        if isinstance(value, dict) and value:
            for tag, text in value.items():
                if not isinstance(tag, str) or not LANGUAGE_TAG.match(tag):
                    raise ValidationError(f"{tag!r} is not a language tag such as en or pt-BR")
                if not isinstance(text, str) or not text.strip():
                    raise ValidationError(f"the {tag} text is empty")
            return tuple(value.items())
        raise ValidationError("text is non-empty text, or a mapping such as {en: ..., fr: ...}")


class Bound(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError(f"{value!r} is not a number")
        if not math.isfinite(value):
            raise ValidationError(f"{value!r} is not a finite number")
        return float(value)


class QuestionSchema(Schema):
    class Meta:
        unknown = RAISE

    id = QuestionId(required=True)
    text = QuestionText(required=True)
    type = fields.Enum(QuestionType, by_value=True, required=True)
    required = fields.Boolean(load_default=False)
    options = fields.List(fields.String(), load_default=())
    minimum = Bound(data_key="min")
    maximum = Bound(data_key="max")

    @validates_schema
    def consistent(self, data, **kwargs):
        kind = data.get("type")
        options = data.get("options") or ()
        if kind is QuestionType.CHOICE:
            if not options:
                raise ValidationError("a choice question needs options", field_name="options")
            if len(set(options)) != len(options) or not all(o.strip() for o in options):
                raise ValidationError("options are distinct, non-empty", field_name="options")
        elif options:
            raise ValidationError("only a choice question takes options", field_name="options")
        for key, name in (("minimum", "min"), ("maximum", "max")):
            if data.get(key) is not None and kind is not QuestionType.NUMBER:
                raise ValidationError(f"only a number question takes {name}", field_name=name)
        low, high = data.get("minimum"), data.get("maximum")
        if low is not None and high is not None and low > high:
            raise ValidationError("min is greater than max", field_name="max")

    @post_load
    def make(self, data, **kwargs):
        return Question(
            id=data["id"],
            type=data["type"],
            text=data["text"],
            required=data["required"],
            options=tuple(data["options"]),
            minimum=data.get("minimum"),
            maximum=data.get("maximum"),
        )


def questions_field() -> fields.List:
    return fields.List(fields.Nested(QuestionSchema), load_default=())


def question_problems(questions: tuple[Question, ...]) -> str | None:
    """What is wrong with a package's list of questions as a whole, if anything."""
    if len(questions) > MAX_QUESTIONS:
        return f"at most {MAX_QUESTIONS} questions per package"
    ids = [q.id for q in questions]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        return f"question id(s) {', '.join(repeated)} repeat"
    return None


class AnswerError(ValueError):
    """An answer does not fit its question; `field` is `answers.<id>`."""

    def __init__(self, question_id: str, message: str):
        self.field = f"{ANSWER_FIELD}.{question_id}"
        self.message = message
        super().__init__(f"{self.field}: {message}")


def check_answers(
    package: AccessPackage,
    answers: Mapping[str, Any] | None,
    asked: Sequence[Question] | None = None,
    *,
    require: bool = True,
) -> dict[str, Any]:
    """The answers, checked against the questions `asked` (default: the package's own),
    normalised: dates as ISO text, text trimmed; an empty text answer counts as none. None
    means nobody was asked (a probe, a replay of a decision logged without answers): the
    answers are then empty and no question is required; nor with `require=False`.

    Raises:
        AnswerError: naming the first unknown, missing or unfitting answer.
    """
    questions = package.questions if asked is None else tuple(asked)
    by_id = {question.id: question for question in questions}
    given = dict(answers or {})
    for question_id in given:
        if question_id not in by_id:
            if any(q.id == question_id for rule in package.rules for q in rule.questions):
                message = "the rule that asks this question does not apply to this request"
            else:
                message = f"package {package.id!r} asks no such question"
            raise AnswerError(str(question_id), message)
    checked: dict[str, Any] = {}
    for question in questions:
        value = given.get(question.id)
        if isinstance(value, str) and question.type is not QuestionType.CHOICE:
            value = value.strip() or None
        if value is None:
            if question.required and answers is not None and require:
                raise AnswerError(question.id, f"question {question.id!r} requires an answer")
            continue
        checked[question.id] = _fit(question, value)
    return checked


def _fit(question: Question, value: Any) -> Any:
    kind = question.type
    if kind is QuestionType.TEXT:
        if not isinstance(value, str):
            raise AnswerError(question.id, "the answer is text")
        if len(value) > MAX_TEXT_ANSWER:
            raise AnswerError(question.id, f"at most {MAX_TEXT_ANSWER} characters")
        return value
    if kind is QuestionType.CHOICE:
        if value not in question.options:
            raise AnswerError(question.id, f"choose one of: {', '.join(question.options)}")
        return value
    if kind is QuestionType.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise AnswerError(question.id, "the answer is a number")
        if not math.isfinite(value):
            raise AnswerError(question.id, "the answer is a finite number")
        if question.minimum is not None and value < question.minimum:
            raise AnswerError(question.id, f"at least {_plain(question.minimum)}")
        if question.maximum is not None and value > question.maximum:
            raise AnswerError(question.id, f"at most {_plain(question.maximum)}")
        return value
    try:
        return date.fromisoformat(value).isoformat() if isinstance(value, str) else _no_date()
    except ValueError:
        raise AnswerError(question.id, "the answer is a date such as 2026-12-31") from None


def _no_date() -> str:
    raise ValueError("not text")


def _plain(number: float) -> str:
    return str(int(number)) if number.is_integer() else repr(number)


def question_view(question: Question, language: str | None = None) -> dict[str, Any]:
    """A question as the API shows it to requesters: `text` in `language` (see
    Question.text_for) and, when localised, every text under `texts`."""
    view: dict[str, Any] = {
        "id": question.id,
        "type": str(question.type),
        "text": question.text_for(language),
        "texts": dict(question.text) if question.text[0][0] else None,
        "required": question.required,
        "options": list(question.options) if question.options else None,
        "min": question.minimum,
        "max": question.maximum,
    }
    return view
