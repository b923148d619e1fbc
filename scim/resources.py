"""The SCIM resources this service publishes, as scim2-models classes.

Only attributes the control plane really keeps are published, so that every
published attribute round-trips: a directory never writes a value that is
silently dropped.

- ``userName`` is the agent's professional email (lower-cased, in one of the
  ministry's domains); ``emails`` repeats it, read-only.
- ``name.givenName`` / ``name.familyName`` are the given and usual names;
  ``displayName`` is derived from them (read-only).
- ``externalId`` is the directory's identifier, unique within the ministry.
- the enterprise extension's ``department`` is the organisational unit.
- ``active`` is required in the published schema (directories always send it);
  a request without it keeps the agent's state.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Union

from pydantic import Field
from scim2_models import (
    URN,
    CaseExact,
    ComplexAttribute,
    Extension,
    Mutability,
    Reference,
    Required,
    Resource,
    Uniqueness,
)

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


class Name(ComplexAttribute):
    given_name: str | None = Field(None, max_length=150)
    """Given name (prénom)."""

    family_name: str | None = Field(None, max_length=150)
    """Usual name (nom d'usage)."""


class Email(ComplexAttribute):
    value: Annotated[str | None, Mutability.read_only] = None
    """The agent's professional email, the same as userName."""

    type: Annotated[str | None, Mutability.read_only] = None
    """Always "work"."""

    primary: Annotated[bool | None, Mutability.read_only] = None
    """Always true: an agent has one professional email."""


class GroupMembership(ComplexAttribute):
    value: Annotated[str | None, Mutability.read_only, CaseExact.true] = None
    """The id of a group the agent belongs to."""

    ref: Annotated[Reference[Group] | None, Mutability.read_only] = Field(  # noqa: F821
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    """The location of that group."""

    display: Annotated[str | None, Mutability.read_only] = None
    """The group's display name."""


class EnterpriseUser(Extension):
    __schema__ = URN(ENTERPRISE_SCHEMA)

    department: str | None = Field(None, max_length=255)
    """The agent's organisational unit."""


class User(Resource[Any]):
    __schema__ = URN(USER_SCHEMA)

    user_name: Annotated[str | None, Uniqueness.server, Required.true] = Field(None, max_length=254)
    """The agent's professional email, in one of the ministry's domains."""

    name: Name | None = None
    """The agent's given and usual names."""

    Name: ClassVar[type[ComplexAttribute]] = Name

    display_name: Annotated[str | None, Mutability.read_only] = None
    """Given name and usual name, as shown in meetings."""

    active: Annotated[bool | None, Required.true] = None
    """Whether the agent may log in and holds a seat."""

    emails: Annotated[list[Email] | None, Mutability.read_only] = None
    """The professional email (read-only: it is userName)."""

    Emails: ClassVar[type[ComplexAttribute]] = Email

    groups: Annotated[list[GroupMembership] | None, Mutability.read_only] = None
    """The directory groups the agent belongs to."""


class GroupMember(ComplexAttribute):
    value: Annotated[str | None, Mutability.immutable, CaseExact.true] = None
    """The id of a member agent."""

    ref: Annotated[Reference[User] | None, Mutability.immutable] = Field(  # noqa: F821
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    """The location of that agent."""

    type: Annotated[str | None, Mutability.immutable] = Field(None, examples=["User"])
    """Always "User": groups hold agents, not other groups."""


class Group(Resource[Any]):
    __schema__ = URN(GROUP_SCHEMA)

    display_name: Annotated[str | None, Required.true] = Field(None, max_length=200)
    """The group's name."""

    members: list[GroupMember] | None = None
    """The agents in the group."""

    Members: ClassVar[type[ComplexAttribute]] = GroupMember


UserWithExtension = User[Union[EnterpriseUser]]  # noqa: UP007
