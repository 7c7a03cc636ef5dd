"""The shared parts of the HTTP API's schemas: strict input, list cursors and UTC date-times."""

from __future__ import annotations

from datetime import UTC

from marshmallow import RAISE, Schema, ValidationError, fields

from policyd.rules.inputs import (
    Text,
)
from policyd.services.listing import MAX_CURSOR


class Strict(Schema):
    class Meta:
        unknown = RAISE


class Cursor(Text):
    """The `after` query field of a list that pages by cursor (docs/api.md, Pagination)."""

    def __init__(self):
        super().__init__(
            MAX_CURSOR,
            metadata={
                "description": "a cursor from X-Pagination's next_after: the page after it, "
                "without totals; empty for the first page"
            },
        )


class UtcDateTime(fields.AwareDateTime):
    """An ISO-8601 date and time with an offset, loaded as UTC.

    Every date the API takes passes here: one that UTC cannot hold (0001-01-01T00:00:00+14:00
    is in year 0) is refused by name instead of overflowing later in a comparison.
    """

    def __init__(self, **kwargs):
        super().__init__(default_timezone=None, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(UTC)
        except (OverflowError, ValueError):
            raise ValidationError("the date is outside the years 1 to 9999 in UTC") from None
