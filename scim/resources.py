"""The SCIM resources this service publishes, as scim2-models classes.

Only attributes the control plane really keeps are published, so that every
published attribute round-trips. Directories send more than that with their
default mappings (Entra ID: phoneNumbers, addresses, name.formatted, roles;
Okta: locale, password, nickName…): requests are read under ``POLICY``, which
accepts and drops what no class here declares, so such an attribute is never an
error and never stored (a password included).

- ``userName`` is the agent's professional email (lower-cased, in one of the
  ministry's domains); ``emails`` repeats it. Directories write both (Entra's
  ``emails[type eq "work"].value``): ``scim.mapping.agent_email`` reconciles them.
- ``name.givenName`` / ``name.familyName`` are the given and usual names;
  ``displayName`` is derived from them. A written displayName is accepted and not
  kept (there is nothing to keep it in that the names do not already say).
- ``title``, ``preferredLanguage`` (a BCP 47 tag) and the enterprise extension's
  ``employeeNumber``, ``department`` (the organisational unit) and ``manager``
  (another agent of the ministry, by its SCIM id) are kept.
- ``externalId`` is the directory's identifier, unique within the ministry.
- ``active`` may be left out of a request: a new agent is then active, and a
  replacement keeps the agent's state.

``published_schemas`` marks ``displayName`` and ``emails`` read-only in
``/Schemas``: a generic client must not expect an independent value there.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Union

from pydantic import Field, field_validator
from scim2_models import (
    URN,
    CaseExact,
    ComplexAttribute,
    Extension,
    Mutability,
    Reference,
    Required,
    Resource,
    ScimPolicy,
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


POLICY = ScimPolicy(
    unknown=ScimPolicy.Unknown.ignore,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)
"""How requests are read: attributes no class here declares are accepted and
dropped; Entra's ``{"op": "Remove", "path": "members", "value": [{"value": id}]}``
removes those members; a PATCH of ``emails[type eq "work"].value`` on a user
without a work email creates it (Entra writes it so)."""

LANGUAGES = ["fr-FR", "fr", "en-US", "en-GB", "en", "de-DE", "es-ES", "it-IT", "nl-NL"]
"""Examples of preferredLanguage (published as canonical values); any BCP 47 tag
is accepted."""


class Email(ComplexAttribute):
    value: str | None = Field(None, max_length=254)
    """The agent's professional email, the same as userName."""

    type: str | None = Field(None, max_length=64)
    """Always "work"."""

    primary: bool | None = None
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


class Manager(ComplexAttribute):
    value: Annotated[str | None, CaseExact.true] = None
    """The SCIM id of the agent's manager, an agent of the same ministry."""

    ref: Reference[User] | None = Field(  # noqa: F821
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    """The location of that agent."""


class EnterpriseUser(Extension):
    __schema__ = URN(ENTERPRISE_SCHEMA)

    employee_number: str | None = Field(None, max_length=64)
    """The agent's employee number in the ministry's HR system."""

    department: str | None = Field(None, max_length=255)
    """The agent's organisational unit."""

    manager: Manager | None = None
    """The agent's manager."""

    Manager: ClassVar[type[ComplexAttribute]] = Manager

    @field_validator("manager", mode="before")
    @classmethod
    def _manager_as_id(cls, value: Any) -> Any:
        """Entra ID sends the manager as a bare id string, not as ``{"value": id}``."""
        if isinstance(value, str):
            return {"value": value} if value.strip() else None
        return value


class User(Resource[Any]):
    __schema__ = URN(USER_SCHEMA)

    user_name: Annotated[str | None, Uniqueness.server, Required.true] = Field(None, max_length=254)
    """The agent's professional email, in one of the ministry's domains."""

    name: Name | None = None
    """The agent's given and usual names."""

    Name: ClassVar[type[ComplexAttribute]] = Name

    display_name: str | None = Field(None, max_length=301)
    """Given name and usual name, as shown in meetings (derived: a written value is
    accepted and not kept)."""

    title: str | None = Field(None, max_length=128)
    """The agent's job title."""

    preferred_language: str | None = Field(
        None, max_length=35, pattern=r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$", examples=LANGUAGES
    )
    """The agent's preferred language, a BCP 47 tag such as "fr-FR"."""

    active: Annotated[bool | None, Required.true] = None
    """Whether the agent may log in and holds a seat. Required, as an agent always has
    a state (a PATCH cannot remove it), but a request may leave it out: a new agent
    is then active, and a replacement keeps the agent's state (``scim.views``)."""

    emails: list[Email] | None = None
    """The professional email: the same address as userName."""

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


# Manager refers to User, declared after it: complete both before use.
Manager.model_rebuild()
EnterpriseUser.model_rebuild()

UserWithExtension = User[Union[EnterpriseUser]]  # noqa: UP007


def user_schema():
    """The User schema as ``/Schemas`` publishes it: ``displayName`` and ``emails``
    read-only. The server accepts what directories write there when it agrees with
    the names and userName, but a generic client must not expect to set them
    independently (scim2-tester would write an unrelated address and read it back)."""
    schema = UserWithExtension.to_schema()
    for attribute in schema.attributes:
        if attribute.name in ("displayName", "emails"):
            attribute.mutability = Mutability.read_only
            for sub in attribute.sub_attributes or []:
                sub.mutability = Mutability.read_only
    return schema
