"""Policy versions: publish, list, show, activate (roll back)."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from policyd.api import context
from policyd.api.auth import guard
from policyd.api.blueprint import Blueprint
from policyd.api.errors import ApiErrorSchema
from policyd.api.schemas import PublishInSchema, VersionDetailSchema, VersionOutSchema
from policyd.services.actor import Role
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
            connectors=current_app.extensions["policyd.connectors"].types(),
        )
        after_change()
        return view(version, version.id)


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
