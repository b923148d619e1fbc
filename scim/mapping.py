"""Agents and directory groups as SCIM Users and Groups, and back (RFC 7643 §4).

One place says which SCIM attribute is which column, so reads and writes cannot
drift apart: a resource read back after a write shows what was written.
"""

from __future__ import annotations

from django.utils.translation import gettext as _
from scim2_models import InvalidValueException

from accounts.models import Agent
from scim import services
from scim.models import DirectoryGroup
from scim.protocol import with_meta
from scim.resources import (
    Email,
    EnterpriseUser,
    Group,
    GroupMember,
    GroupMembership,
    Name,
    UserWithExtension,
)


def user_resource(agent: Agent, base: str) -> UserWithExtension:
    """An agent as a SCIM User, with its groups and meta (``directory_groups`` prefetched)."""
    names = None
    if agent.given_name or agent.usual_name:
        names = Name(given_name=agent.given_name or None, family_name=agent.usual_name or None)
    groups = [
        GroupMembership(value=str(g.pk), ref=f"{base}/Groups/{g.pk}", display=g.display_name)
        for g in agent.directory_groups.all()
    ]
    user = UserWithExtension(
        id=str(agent.pk),
        external_id=agent.external_id or None,
        user_name=agent.email,
        name=names,
        display_name=agent.full_name or None,
        active=agent.is_active,
        emails=[Email(value=agent.email, type="work", primary=True)],
        groups=groups or None,
    )
    if agent.organizational_unit:
        user[EnterpriseUser] = EnterpriseUser(department=agent.organizational_unit)
    return with_meta(user, "User", agent, base)


def agent_data(user: UserWithExtension) -> services.AgentData:
    """What a SCIM User asks of its agent, for the services; userName must be an email."""
    email = (user.user_name or "").strip().lower()
    if not email or "@" not in email:
        raise InvalidValueException(detail=_("userName must be the agent's professional email."))
    extension = user[EnterpriseUser]
    return services.AgentData(
        email=email,
        given_name=(user.name.given_name or "") if user.name else "",
        usual_name=(user.name.family_name or "") if user.name else "",
        external_id=user.external_id or "",
        organizational_unit=(extension.department or "") if extension else "",
        active=user.active,
    )


def group_resource(group: DirectoryGroup, base: str) -> Group:
    """A directory group as a SCIM Group, with its members and meta (``members`` prefetched)."""
    members = [
        GroupMember(value=str(a.pk), ref=f"{base}/Users/{a.pk}", type="User")
        for a in group.members.all()
    ]
    resource = Group(
        id=str(group.pk),
        external_id=group.external_id or None,
        display_name=group.display_name,
        members=members or None,
    )
    return with_meta(resource, "Group", group, base)


def group_fields(group: Group) -> dict:
    """What a SCIM Group asks of its directory group, as the services' keyword arguments."""
    if not (group.display_name or "").strip():
        raise InvalidValueException(detail=_("displayName is required."))
    members = []
    for member in group.members or []:
        if member.type not in (None, "User"):
            raise InvalidValueException(detail=_("Groups hold users only, not other groups."))
        members.append(member.value)
    return {
        "display_name": group.display_name.strip(),
        "external_id": group.external_id or "",
        "members": members,
    }
