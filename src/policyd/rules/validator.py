"""A marshmallow schema's `load` for valid documents, with its walk precomputed.

Validating a bundle of 100,000 packages spent two thirds of its time in marshmallow's
bookkeeping around the fields (per call: resolving data keys, closures per field, hook
lookups, error stores), not in the fields themselves. `CompiledSchema` does that walk once
per schema: each value is still judged by its own field's `deserialize` and every schema's
own validators and post_load hooks run, in marshmallow's order. It only answers for
documents without errors: at the first error it stops, and the caller asks the schema's
own `load` for the messages (so every message stays marshmallow's, word for word).

Template rows share the parts of their packages that hold no placeholder (the same object
in every stamped package), so a nested schema remembers what it made of the last few
thousand objects by identity, and a shared part is validated once per template.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, missing
from marshmallow.decorators import POST_LOAD, PRE_LOAD, VALIDATES, VALIDATES_SCHEMA
from marshmallow.fields import Field

MEMO_SIZE = 4096  # nested results remembered by identity, per schema, before starting afresh


class Invalid(Exception):
    """The document has an error; load it with the schema's own `load` for the messages."""


class CompiledSchema:
    """`schema.load(data)` for a document without errors; raises Invalid on any error.

    A schema (or a nested one) using what this does not precompute (pre_load hooks,
    `@validates` methods, hooks taking the original data or many items, partial or INCLUDE
    loading, a field with its own pre_load or post_load functions) is loaded by its own `load`.
    """

    def __init__(self, schema: Schema):
        self.schema = schema
        self.plain = _plain(schema)
        self.raise_unknown = schema.unknown == RAISE
        # (data key, attribute, field, what loads a present value)
        self.fields: list[tuple[str, str, Field, Any]] = []
        for name, field in schema.load_fields.items():
            key = field.data_key if field.data_key is not None else name
            self.fields.append((key, field.attribute or name, field, _reader(field)))
        self.keys = frozenset(key for key, *_ in self.fields)
        hooks = schema._hooks
        self.validators = [getattr(schema, name) for name, _many, _kw in hooks[VALIDATES_SCHEMA]]
        self.post_load = [getattr(schema, name) for name, _many, _kw in hooks[POST_LOAD]]
        self.unknown = schema.unknown
        self._memo: dict[int, tuple[Any, Any]] = {}

    def load(self, data: Any) -> Any:
        """What `schema.load(data)` returns.

        Raises:
            Invalid: `schema.load(data)` would raise ValidationError.
        """
        if not self.plain:
            return _own_load(self.schema, data)
        if type(data) is not dict:  # a Mapping of another type: let marshmallow judge it
            return _own_load(self.schema, data)
        if self.raise_unknown and not data.keys() <= self.keys:
            raise Invalid
        result: dict[str, Any] = {}
        try:
            for key, attribute, field, read in self.fields:
                value = data.get(key, missing)
                if value is missing:
                    if field.required:
                        raise Invalid
                    default = field.load_default
                    if default is not missing:
                        result[attribute] = default() if callable(default) else default
                    continue
                value = read(value, key, data)
                if value is not missing:
                    result[attribute] = value
            for validator in self.validators:
                validator(result, partial=None, many=False, unknown=self.unknown)
            for hook in self.post_load:
                result = hook(result, partial=None, many=False, unknown=self.unknown)
        except ValidationError:
            raise Invalid from None
        return result

    def load_shared(self, data: Any) -> Any:
        """`load`, remembering the result for this very object (not an equal one)."""
        known = self._memo.get(id(data))
        if known is not None and known[0] is data:
            return known[1]
        result = self.load(data)
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()
        self._memo[id(data)] = (data, result)  # holding `data` keeps its id from being reused
        return result


def _own_load(schema: Schema, data: Any) -> Any:
    try:
        return schema.load(data)
    except ValidationError:
        raise Invalid from None


def _reader(field: Field) -> Any:
    """A function loading a present value of `field` as `field.deserialize` does."""
    if isinstance(field, fields.Nested) and _plain_nested(field):
        nested = CompiledSchema(field.schema)
        return _nested_reader(field, nested)
    if (
        isinstance(field, fields.List)
        and isinstance(field.inner, fields.Nested)
        and _plain_nested(field.inner)
        and _plain_field(field)
    ):
        return _list_reader(field, CompiledSchema(field.inner.schema))
    if isinstance(field, fields.Method | fields.Function):  # these read the whole document
        return field.deserialize
    return _field_reader(field)


def _field_reader(field: Field) -> Any:
    """`field.deserialize`, remembering what it made of a mapping (a condition) by identity.

    Fields judge their value alone (the ones reading the rest of the document, Method and
    Function, are never remembered).
    """
    memo: dict[int, tuple[Any, Any]] = {}

    def read(value: Any, key: str, data: Any) -> Any:
        if type(value) is not dict:
            return field.deserialize(value, key, data)
        known = memo.get(id(value))
        if known is not None and known[0] is value:
            return known[1]
        result = field.deserialize(value, key, data)
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        memo[id(value)] = (value, result)
        return result

    return read


def _nested_reader(field: fields.Nested, nested: CompiledSchema) -> Any:
    def read(value: Any, key: str, data: Any) -> Any:
        if type(value) is not dict:  # None, a list, a scalar: the field's own checks
            return field.deserialize(value, key, data)
        result = nested.load_shared(value)
        field._validate(result)
        return result

    return read


def _list_reader(field: fields.List, nested: CompiledSchema) -> Any:
    def read(value: Any, key: str, data: Any) -> Any:
        if type(value) is not list or any(type(item) is not dict for item in value):
            return field.deserialize(value, key, data)
        result = [nested.load_shared(item) for item in value]
        field._validate(result)
        return result

    return read


_UNSUPPORTED_HOOKS = (PRE_LOAD, VALIDATES)


def _plain(schema: Schema) -> bool:
    """Whether the walk above is exactly what `schema.load` does."""
    hooks = schema._hooks
    return (
        not schema.many
        and not schema.partial
        and schema.unknown in (RAISE, EXCLUDE)
        and not any(hooks[tag] for tag in _UNSUPPORTED_HOOKS)
        and all(
            not many and not kw.get("pass_original")
            for tag in (POST_LOAD, VALIDATES_SCHEMA)
            for _, many, kw in hooks[tag]
        )
        and all(
            _plain_field(field) and "." not in (field.attribute or name)
            for name, field in schema.load_fields.items()
        )
    )


def _plain_field(field: Field) -> bool:
    return not field.pre_load and not field.post_load


def _plain_nested(field: fields.Nested) -> bool:
    """A Nested field that only loads its schema (no options but its own validators)."""
    return (
        not field.many
        and field.unknown is None
        and not field.only
        and not field.exclude
        and _plain_field(field)
        and not field.validators
        and _plain(field.schema)
    )
