"""Directory: users, groups, memberships, connected organisations."""

from __future__ import annotations

from flask.views import MethodView

from policyd.api import context
from policyd.api.auth import guard
from policyd.api.blueprint import Blueprint
from policyd.api.schemas import GroupSchema, MemberSchema, OrganizationSchema, UserSchema
from policyd.services.actor import Role
from policyd.services.directory import KEEP, DirectoryService
from policyd.services.errors import ForbiddenError, NotFoundError
from policyd.services.leavers import LeaverService
from policyd.store.models import ConnectedOrganization, Group

blp = Blueprint("directory", __name__, url_prefix="/v1", description="Directory")
READERS = (Role.ADMIN, Role.AUDITOR, Role.APP)
READER_NAMES = ", ".join(r.value for r in READERS)


def service() -> DirectoryService:
    return DirectoryService(context.session())


def commit(value):
    context.session().commit()
    return value


@blp.route("/users")
class Users(MethodView):
    @guard(*READERS)
    @blp.response(200, UserSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List users."""
        return context.paged(pagination_parameters, service().list_users)


@blp.route("/users/<user_id>")
class UserById(MethodView):
    @guard()
    @blp.response(200, UserSchema)
    def get(self, user_id):
        """One user (users may read themselves)."""
        actor = context.actor()
        if actor.role is Role.USER and actor.principal != user_id:
            raise ForbiddenError(f"this needs one of the roles: {READER_NAMES}")
        return service().get_user(user_id)

    @guard(Role.ADMIN)
    @blp.arguments(UserSchema())
    @blp.response(200, UserSchema)
    def put(self, data, user_id):
        """Create a user, or update one: the fields sent are set (null clears one), the others
        keep their value."""
        external = data.pop("manager_external")
        return commit(
            service().put_user(
                context.actor(),
                user_id,
                data,
                now=context.now(),
                keep_missing=True,
                external_manager=external,
            )
        )

    @guard(Role.ADMIN)
    @blp.response(204)
    def delete(self, user_id):
        """Delete a user: their access is removed, their open requests canceled and their
        pending approvals handed on; their history stays (docs/lifecycle.md#leavers)."""
        leavers = LeaverService(context.session(), context.runtime(), context.listeners())
        leavers.delete_user(context.actor(), user_id, now=context.now())
        context.deliver()


@blp.route("/users/<user_id>/disable")
class DisableUser(MethodView):
    @guard(Role.ADMIN)
    @blp.response(204)
    def post(self, user_id):
        """Disable a user: as for a deletion their access is removed, their open requests
        canceled and their pending approvals handed on, but they stay in the directory and may
        be enabled again (docs/lifecycle.md#leavers)."""
        leavers = LeaverService(context.session(), context.runtime(), context.listeners())
        leavers.disable_user(context.actor(), user_id, now=context.now())
        context.deliver()


@blp.route("/users/<user_id>/enable")
class EnableUser(MethodView):
    @guard(Role.ADMIN)
    @blp.response(204)
    def post(self, user_id):
        """Enable a disabled user: they may request access again (nothing is given back)."""
        leavers = LeaverService(context.session(), context.runtime(), context.listeners())
        leavers.enable_user(context.actor(), user_id, now=context.now())


@blp.route("/groups")
class Groups(MethodView):
    @guard(*READERS)
    @blp.response(200, GroupSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List groups."""
        return context.paged(pagination_parameters, service().list_groups)


@blp.route("/organizations")
class Organizations(MethodView):
    @guard(*READERS)
    @blp.response(200, OrganizationSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List connected organisations."""
        return context.paged(pagination_parameters, service().list_organizations)


@blp.route("/groups/<group_id>")
class GroupById(MethodView):
    @guard(*READERS)
    @blp.response(200, GroupSchema)
    def get(self, group_id):
        """One group."""
        group = context.session().get(Group, group_id)
        if group is None:
            raise NotFoundError(f"no group {group_id!r}", field="id")
        return group

    @guard(Role.ADMIN)
    @blp.arguments(GroupSchema())
    @blp.response(200, GroupSchema)
    def put(self, data, group_id):
        """Create a group, or rename one when `display_name` is sent (members stay)."""
        return commit(
            service().put_group(
                context.actor(), group_id, data.get("display_name", KEEP), now=context.now()
            )
        )


@blp.route("/groups/<group_id>/members")
class GroupMembers(MethodView):
    @guard(*READERS)
    @blp.response(200, MemberSchema(many=True))
    @blp.paginate()
    def get(self, group_id, pagination_parameters):
        """Members of a group, by user id."""
        ids = context.paged(pagination_parameters, service().members, group_id)
        return [{"user_id": user_id} for user_id in ids]


@blp.route("/groups/<group_id>/members/<user_id>")
class GroupMember(MethodView):
    @guard(Role.ADMIN)
    @blp.response(204)
    def put(self, group_id, user_id):
        """Add a member (idempotent)."""
        service().add_member(context.actor(), group_id, user_id, now=context.now())
        commit(None)

    @guard(Role.ADMIN)
    @blp.response(204)
    def delete(self, group_id, user_id):
        """Remove a member (idempotent)."""
        service().remove_member(context.actor(), group_id, user_id, now=context.now())
        commit(None)


@blp.route("/organizations/<org_id>")
class OrganizationById(MethodView):
    @guard(*READERS)
    @blp.response(200, OrganizationSchema)
    def get(self, org_id):
        """One connected organisation."""
        org = context.session().get(ConnectedOrganization, org_id)
        if org is None:
            raise NotFoundError(f"no connected organization {org_id!r}", field="id")
        return org

    @guard(Role.ADMIN)
    @blp.arguments(OrganizationSchema())
    @blp.response(200, OrganizationSchema)
    def put(self, data, org_id):
        """Create a connected organisation, or update one: the fields sent are set, the
        others keep their value."""
        return commit(
            service().put_organization(
                context.actor(), org_id, data, now=context.now(), keep_missing=True
            )
        )
