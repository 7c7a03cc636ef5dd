"""Policy versions: publish (at once, or accepted for a worker), list, show, activate (roll
back), diff."""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView
from marshmallow import Schema, fields

from policyd.api import context
from policyd.api.auth import guard
from policyd.api.blueprint import Blueprint
from policyd.api.errors import ApiErrorSchema
from policyd.api.schemas import PublishInSchema, VersionDetailSchema, VersionOutSchema
from policyd.services.actor import Role
from policyd.services.publications import PublicationService
from policyd.services.versions import VersionService

blp = Blueprint(
    "versions", __name__, url_prefix="/v1/policy-versions", description="Policy versions"
)


def view(version, active: str | None, files: bool = False) -> dict:
    data = {
        name: getattr(version, name)
        for name in (
            "id",
            "content_hash",
            "git_commit",
            "git_dirty",
            "author",
            "message",
            "created_at",
            "packages",
        )
    }
    data["active"] = version.id == active
    if files:
        data["files"] = version.files
    return data


def after_change() -> None:
    context.current_sync().sync()


@blp.route("")
class Versions(MethodView):
    @guard()
    @blp.response(200, VersionOutSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List published versions, newest first."""
        service = VersionService(context.session())
        items = context.paged(pagination_parameters, service.list)
        active = service.active_id()
        return [view(v, active) for v in items]

    @guard(Role.ADMIN)
    @blp.arguments(PublishInSchema())
    @blp.response(201, VersionOutSchema)
    @blp.alt_response(422, schema=ApiErrorSchema, description="file:line errors under errors.files")
    def post(self, data):
        """Validate, store and activate a bundle; a bundle with any error is rejected whole."""
        version = VersionService(context.session()).publish(
            context.actor(),
            data["files"],
            message=data["message"],
            git_commit=data["git_commit"],
            now=context.now(),
            connectors=context.components().connectors.types(),
        )
        after_change()
        return view(version, version.id)


class PublicationOutSchema(Schema):
    id = fields.String()
    state = fields.String(
        metadata={
            "description": "queued (a worker publishes it next), active (stored as `version` "
            "and activated) or rejected (`errors` lists every problem; nothing was stored)",
            "enum": ["queued", "active", "rejected"],
        }
    )
    version = fields.String(
        attribute="version_id", allow_none=True, metadata={"description": "once active"}
    )
    errors = fields.List(
        fields.String(), allow_none=True, metadata={"description": "file:line: key: message"}
    )
    message = fields.String()
    git_commit = fields.String(allow_none=True)
    author = fields.String()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


@blp.route("/publications")
class Publications(MethodView):
    @guard(Role.ADMIN)
    @blp.arguments(PublishInSchema())
    @blp.response(202, PublicationOutSchema)
    def post(self, data):
        """Accept a bundle for publication and return at once; poll the publication (its
        Location) until it is active or rejected. For bundles too large to validate within
        one request's time; `policyd worker` publishes it."""
        publication = PublicationService(context.session()).accept(
            context.actor(),
            data["files"],
            message=data["message"],
            git_commit=data["git_commit"],
            now=context.now(),
            connectors=context.components().connectors.types(),
        )
        where = url_for("versions.PublicationById", publication_id=publication.id)
        return publication, {"Location": where}


@blp.route("/publications/<publication_id>")
class PublicationById(MethodView):
    @guard(Role.ADMIN, Role.AUDITOR)
    @blp.response(200, PublicationOutSchema)
    @blp.alt_response(404, schema=ApiErrorSchema, description="no such publication (errors.id)")
    def get(self, publication_id):
        """A publication's state: queued, active (with its version) or rejected (with every
        file:line problem)."""
        return PublicationService(context.session()).get(publication_id)


@blp.route("/<version_id>")
class VersionById(MethodView):
    @guard()
    @blp.response(200, VersionDetailSchema)
    def get(self, version_id):
        """One version with the text of every file."""
        service = VersionService(context.session())
        return view(service.get(version_id), service.active_id(), files=True)


@blp.route("/<version_id>/activate")
class ActivateVersion(MethodView):
    @guard(Role.ADMIN)
    @blp.response(200, VersionOutSchema)
    @blp.alt_response(422, schema=ApiErrorSchema, description="it no longer loads: errors.id")
    def post(self, version_id):
        """Make a stored version active again (roll back or forward)."""
        service = VersionService(context.session())
        version = service.activate(context.actor(), version_id, now=context.now())
        after_change()
        return view(version, version.id)


class FieldChangeSchema(Schema):
    field = fields.String(metadata={"description": "rule-file key, e.g. lifetime, when, owners"})
    before = fields.Raw(allow_none=True, metadata={"description": "normalised; null: not set"})
    after = fields.Raw(allow_none=True, metadata={"description": "normalised; null: not set"})


class RuleChangeSchema(Schema):
    id = fields.String()
    change = fields.String(metadata={"description": "added, removed or changed"})
    line = fields.Integer(metadata={"description": "in the new file (the old one if removed)"})
    changes = fields.List(fields.Nested(FieldChangeSchema), data_key="fields", attribute="fields")


class ResourceChangeSchema(Schema):
    change = fields.String(metadata={"description": "added or removed"})
    connector = fields.String()
    resource = fields.String()
    role = fields.String()


class PackageChangeSchema(Schema):
    id = fields.String()
    change = fields.String(metadata={"description": "added, removed or changed"})
    file = fields.String()
    template = fields.String(allow_none=True, metadata={"description": "the template that made it"})
    row = fields.String(allow_none=True, metadata={"description": "its template row, file:line"})
    changes = fields.List(fields.Nested(FieldChangeSchema), data_key="fields", attribute="fields")
    resources = fields.List(fields.Nested(ResourceChangeSchema))
    rules = fields.List(fields.Nested(RuleChangeSchema))


class CatalogChangeSchema(Schema):
    id = fields.String()
    change = fields.String(metadata={"description": "added, removed or changed"})
    file = fields.String()
    changes = fields.List(fields.Nested(FieldChangeSchema), data_key="fields", attribute="fields")
    joined = fields.List(fields.String(), metadata={"description": "packages that joined it"})
    left = fields.List(fields.String(), metadata={"description": "packages that left it"})


class VersionDiffSchema(Schema):
    old = fields.String(metadata={"description": "the old version id"})
    new = fields.String(metadata={"description": "the new version id"})
    effective = fields.Boolean(metadata={"description": "false: no effective change"})
    summary = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(keys=fields.String(), values=fields.Integer()),
        metadata={"description": "counts: packages, rules, resources, fields, catalogs by change"},
    )
    packages = fields.List(fields.Nested(PackageChangeSchema))
    catalogs = fields.List(fields.Nested(CatalogChangeSchema))


@blp.route("/<version_id>/diff/<other_id>")
class VersionDiff(MethodView):
    @guard()
    @blp.response(200, VersionDiffSchema)
    @blp.alt_response(404, schema=ApiErrorSchema, description="no such version (errors.old/new)")
    def get(self, version_id, other_id):
        """What changed from one version to another: packages, rules and resources added,
        removed and changed, field by field; formatting, key order and comments never count."""
        return VersionService(context.session()).diff(version_id, other_id).to_dict()
