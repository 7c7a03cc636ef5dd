"""Catalog files: named groups of packages with owners; the checks linking packages to them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from policyd.rules.apiversion import ApiVersion
from policyd.rules.model import AccessPackage, Catalog
from policyd.rules.review_schema import ReviewSchema
from policyd.rules.schema_fields import Slug, references, unique_ids
from policyd.rules.source import Document, Problem, flatten_messages

PRINCIPALS = ("user:<id>", "group:<id>")


class CatalogSchema(Schema):
    class Meta:
        unknown = RAISE

    id = Slug(required=True)
    display_name = fields.String(
        data_key="displayName", required=True, validate=validate.Length(min=1)
    )
    description = fields.String()
    owners = references(PRINCIPALS, load_default=())
    # the packages of the catalog without reviews of their own are reviewed by these
    reviews = fields.List(fields.Nested(ReviewSchema), load_default=(), validate=unique_ids)

    @validates_schema
    def review_owners(self, data, **kwargs):
        for review in data.get("reviews", ()):
            if not data.get("owners") and "owners" in (*review.reviewers, *review.fallback):
                raise ValidationError("reviewer 'owners' needs the catalog's owners", "reviews")

    @post_load
    def make(self, data, **kwargs):
        return Catalog(
            id=data["id"],
            display_name=data["display_name"],
            owners=tuple(data["owners"]),
            description=data.get("description"),
            reviews=tuple(data["reviews"]),
        )


class CatalogFileSchema(Schema):
    class Meta:
        unknown = RAISE

    api_version = ApiVersion()
    catalogs = fields.List(
        fields.Nested(CatalogSchema),
        required=True,
        validate=validate.Length(min=1, error="a catalog file declares at least one catalog"),
    )


def is_catalog_file(document: Document) -> bool:
    """A file that declares catalogs (top-level `catalogs:`) rather than a package."""
    data = document.data
    return isinstance(data, dict) and "catalogs" in data and "package" not in data


def load_catalogs(
    document: Document, problems: list[Problem], plain: Callable[[str], str] = str
) -> list[Catalog]:
    """The catalogs of one catalog file, each knowing its file and line; problems appended,
    their messages through `plain` (the loader's wording of marshmallow's)."""
    try:
        loaded = CatalogFileSchema().load(document.data)
    except ValidationError as err:
        for path, message in flatten_messages(err.messages):
            problems.append(document.problem(path, plain(message)))
        return []
    return [
        dataclasses.replace(catalog, file=document.file, line=document.line_of(("catalogs", index)))
        for index, catalog in enumerate(loaded["catalogs"])
    ]


def link_catalogs(
    catalogs: Sequence[Catalog], packages: Sequence[tuple[AccessPackage, Document]]
) -> tuple[dict[str, Catalog], list[Problem]]:
    """Catalogs by id, each with the ids of its packages, and the problems: a catalog
    declared twice, a package naming a catalog no file declares."""
    problems: list[Problem] = []
    by_id: dict[str, Catalog] = {}
    for catalog in catalogs:
        first = by_id.get(catalog.id)
        if first is not None:
            message = f"duplicate catalog id {catalog.id!r} (also in {first.file}:{first.line})"
            problems.append(Problem(catalog.file, catalog.line, message, "catalogs.id"))
            continue
        by_id[catalog.id] = catalog
    members: dict[str, list[str]] = {catalog_id: [] for catalog_id in by_id}
    for package, document in packages:
        if package.catalog is not None and package.catalog not in by_id:
            known = ", ".join(sorted(by_id)) or "none declared"
            message = f"unknown catalog {package.catalog!r} (catalogs: {known})"
            problems.append(document.problem(("package", "catalog"), message))
        elif package.catalog is not None:
            members[package.catalog].append(package.id)
    linked = {
        catalog_id: dataclasses.replace(catalog, packages=tuple(sorted(members[catalog_id])))
        for catalog_id, catalog in by_id.items()
    }
    return linked, problems


def managed_packages(packages: Iterable[AccessPackage]) -> dict[str, tuple[str, ...]]:
    """Package id -> managers, for the packages that name any."""
    return {package.id: package.managers for package in packages if package.managers}
