"""Catalogs of the active version: all of them, or for a person the ones they own."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields

from policyd.api import context
from policyd.api.auth import guard
from policyd.api.blueprint import Blueprint
from policyd.services.delegation import DelegationService

blp = Blueprint("catalogs", __name__, url_prefix="/v1/catalogs", description="Catalogs")


class CatalogOutSchema(Schema):
    id = fields.String()
    display_name = fields.String()
    description = fields.String(allow_none=True)
    owners = fields.List(fields.String(), metadata={"description": "user:<id> or group:<id>"})
    packages = fields.List(fields.String(), metadata={"description": "ids of its packages"})


@blp.route("")
class Catalogs(MethodView):
    @guard()
    @blp.response(200, CatalogOutSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List catalogs (a user sees the ones they own)."""
        service = DelegationService(context.session(), context.runtime())
        return context.paged(pagination_parameters, service.catalogs, context.actor())
