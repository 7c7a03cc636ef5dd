"""API tokens and the audit trail."""

from __future__ import annotations

from flask.views import MethodView

from policyd.api import context
from policyd.api.auth import guard
from policyd.api.blueprint import Blueprint
from policyd.api.schemas import AuditOutSchema, AuditQuerySchema, TokenInSchema, TokenOutSchema
from policyd.services.actor import Role
from policyd.services.audit import AuditService
from policyd.services.tokens import TokenService

blp = Blueprint("admin", __name__, url_prefix="/v1", description="Tokens and audit")


@blp.route("/tokens")
class Tokens(MethodView):
    @guard(Role.ADMIN, Role.AUDITOR)
    @blp.response(200, TokenOutSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List API tokens (never their secret)."""
        return context.paged(pagination_parameters, TokenService(context.session()).list)

    @guard(Role.ADMIN)
    @blp.arguments(TokenInSchema())
    @blp.response(201, TokenOutSchema)
    def post(self, data):
        """Create a token; its secret is in the response once."""
        token, plain = TokenService(context.session()).create(
            context.actor(),
            data["principal"],
            data["role"],
            now=context.now(),
            expires_in=data["expires_in"],
            description=data["description"],
        )
        return {
            **{c: getattr(token, c) for c in TokenOutSchema().fields if c != "token"},
            "token": plain,
        }


@blp.route("/tokens/<token_id>")
class TokenById(MethodView):
    @guard(Role.ADMIN)
    @blp.response(200, TokenOutSchema)
    def delete(self, token_id):
        """Revoke a token."""
        service = TokenService(context.session())
        token = service.revoke(context.actor(), token_id, now=context.now())
        context.components().token_cache.clear()
        return token


@blp.route("/audit")
class Audit(MethodView):
    @guard(Role.ADMIN, Role.AUDITOR)
    @blp.arguments(AuditQuerySchema(), location="query")
    @blp.response(200, AuditOutSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """The audit trail, oldest first."""
        return context.paged(pagination_parameters, AuditService(context.session()).list, **args)
