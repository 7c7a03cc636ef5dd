"""A package's own reminder schedule: its rule-file schema (`reminders:`)."""

from __future__ import annotations

from datetime import timedelta

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validates_schema

from policyd.rules.inputs import Duration
from policyd.rules.model import ReminderPolicy

MAX_EXPIRY_REMINDERS = 10


class Offset(Duration):
    """A reminder offset: a positive span of days, hours or minutes (no months: an offset is
    compared with an end in the database, where a month has no fixed length)."""

    def _deserialize(self, value, attr, data, **kwargs):
        span = super()._deserialize(value, attr, data, **kwargs)
        if not isinstance(span, timedelta):
            raise ValidationError(f"{value!r}: give reminders in days or hours, e.g. P7D")
        if span <= timedelta(0):
            raise ValidationError(f"{value!r}: a reminder is a positive duration")
        return span


class RemindersSchema(Schema):
    """`reminders: {expiry: [P7D, P1D], approval: P2D}` on a package."""

    class Meta:
        unknown = RAISE

    expiry = fields.List(Offset(any_form=True), load_default=None)
    approval = Offset(any_form=True, load_default=None)

    @validates_schema
    def bounded(self, data, **kwargs):
        expiry = data.get("expiry") or ()
        if len(expiry) > MAX_EXPIRY_REMINDERS:
            raise ValidationError(
                f"at most {MAX_EXPIRY_REMINDERS} expiry reminders", field_name="expiry"
            )
        if len(set(expiry)) != len(expiry):
            raise ValidationError("an expiry reminder repeats", field_name="expiry")

    @post_load
    def make(self, data, **kwargs):
        expiry = data["expiry"]
        return ReminderPolicy(
            expiry=None if expiry is None else tuple(sorted(expiry, reverse=True)),
            approval=data["approval"],
        )


def reminders_field() -> fields.Nested:
    return fields.Nested(RemindersSchema, load_default=None)
