"""Separation of duties: who holds incompatible access now."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields

from policyd.api import context
from policyd.api.auth import guard
from policyd.api.blueprint import Blueprint
from policyd.api.schemas import Strict
from policyd.rules.inputs import MAX_ID, Text
from policyd.services.actor import Role
from policyd.services.sod import SodService

blp = Blueprint("sod", __name__, url_prefix="/v1", description="Separation of duties")


class ViolationOutSchema(Schema):
    subject_id = fields.String(metadata={"description": "who holds the incompatible access"})
    package = fields.String()
    assignment_id = fields.String(metadata={"description": "the assignment of `package`"})
    kind = fields.String(
        metadata={"description": "`package`: another package; `group`: a directory group"}
    )
    conflicts_with = fields.String(metadata={"description": "the other package, or the group"})
    other_assignment_id = fields.String(
        allow_none=True,
        metadata={"description": "the other package's assignment; null for a group"},
    )
    rule = fields.String(
        metadata={
            "description": "the deny rule: incompatible:<package> or incompatible-group:<group>"
        }
    )
    version = fields.String(metadata={"description": "the policy version that declares it"})
    reason = fields.String()


class ViolationQuerySchema(Strict):
    subject = Text(MAX_ID, min_size=1)
    package = Text(
        64,
        min_size=1,
        metadata={"description": "conflicts this package is part of, on either side"},
    )


@blp.route("/sod-violations")
class SodViolations(MethodView):
    @guard(Role.ADMIN, Role.AUDITOR)
    @blp.arguments(ViolationQuerySchema(), location="query")
    @blp.response(200, ViolationOutSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """People who hold incompatible access now (admins and auditors)."""
        service = SodService(context.session(), context.runtime())
        return context.paged(pagination_parameters, service.violations, context.actor(), **args)
