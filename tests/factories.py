"""factory_boy factories for every model more than one test module builds; identifiers
are valid by construction.

Rows are written directly (tests set the scene; the services are what is under
test), except where a test relies on what a service adds: ``room_created_by`` goes
through ``room_create`` (a drawn slug, the ``room.create`` audit event) and
``api_token_issued`` through ``api_token_create`` (a clear token shown once, audited).
"""

from datetime import timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from accounts.identifiers import luhn_valid
from accounts.models import (
    Agent,
    AgentImportJob,
    ApiToken,
    Ministry,
    MinistryDomain,
    MinistrySiret,
    Role,
    RoleGrant,
)
from accounts.tokens import api_token_create
from audit.actor import Actor
from licensing.models import LicencePool
from media_nodes.models import Allocation, MediaNode
from rooms.models import MeetingSession, ParticipantSession, Room
from rooms.services import room_create
from usage.models import DailyUsage


def with_luhn_key(base: str) -> str:
    """Append the digit that makes ``base`` pass the Luhn check."""
    return next(base + str(d) for d in range(10) if luhn_valid(base + str(d)))


# -- Accounts -------------------------------------------------------------------------


class MinistryFactory(factory.django.DjangoModelFactory):
    """A ministry rolling out, with its domain ``<code>.gouv.fr``, one SIRET and a pool
    of 1,000 seats."""

    class Meta:
        model = Ministry
        skip_postgeneration_save = True

    code = factory.Sequence(lambda n: f"min-{n}")
    name = factory.Sequence(lambda n: f"Ministère n°{n}")
    siren = factory.Sequence(lambda n: with_luhn_key(f"{20000000 + n:08d}"))
    state = Ministry.State.ROLLING_OUT

    @factory.post_generation
    def identifiers(self, create, extracted, **kwargs):
        if create:
            MinistryDomainFactory(ministry=self, domain=f"{self.code}.gouv.fr")
            MinistrySiret.objects.create(ministry=self, siret=with_luhn_key(self.siren + "0001"))
            licence_pool(self, seats=1000)


class MinistryDomainFactory(factory.django.DjangoModelFactory):
    """One more email domain of a ministry."""

    class Meta:
        model = MinistryDomain

    ministry = factory.SubFactory(MinistryFactory)
    domain = factory.Sequence(lambda n: f"domain-{n}.gouv.fr")


class AgentFactory(factory.django.DjangoModelFactory):
    """An agent of a ministry (``ministry=None``: platform staff), no usable password.

    ``imported=True``: as a CSV import leaves them, known by email only (no names)."""

    class Meta:
        model = Agent
        skip_postgeneration_save = True

    class Params:
        imported = factory.Trait(given_name="", usual_name="")

    ministry = factory.SubFactory(MinistryFactory)
    email = factory.LazyAttributeSequence(
        lambda o, n: f"agent{n}@{o.ministry.code}.gouv.fr" if o.ministry else f"staff{n}@x.fr"
    )
    given_name = factory.Faker("first_name", locale="fr_FR")
    usual_name = factory.Faker("last_name", locale="fr_FR")
    password = factory.django.Password(None)


class AgentImportJobFactory(factory.django.DjangoModelFactory):
    """An import job row, pending unless told otherwise (its task is not run)."""

    class Meta:
        model = AgentImportJob

    ministry = factory.SubFactory(MinistryFactory)
    content = b""


def licence_pool(ministry: Ministry, *, seats: int) -> LicencePool:
    """A pool covering this year, at the foreign licence's reference price."""
    today = timezone.localdate()
    return LicencePool.objects.create(
        ministry=ministry,
        starts_on=today - timedelta(days=180),
        ends_on=today + timedelta(days=185),
        seats=seats,
        foreign_price_eur=Decimal("100.00"),
        sovereign_cost_eur=Decimal("12.00"),
    )


def grant(agent: Agent, role: str, ministry: Ministry | None = None) -> Agent:
    """Give ``agent`` a role directly (tests set the scene; services are under test)."""
    RoleGrant.objects.create(agent=agent, role=role, ministry=ministry)
    return agent


def api_token_issued(
    admin: Agent, ministry: Ministry, role: str, *, name: str = "tests"
) -> tuple[ApiToken, str]:
    """A token of ``ministry`` issued by ``admin`` through the service, with its only
    clear copy."""
    return api_token_create(
        actor=Actor(user=admin, label="tests"), ministry=ministry, role=role, name=name
    )


# -- Media nodes and rooms -----------------------------------------------------------------


class MediaNodeFactory(factory.django.DjangoModelFactory):
    """An active, up node in Paris that nothing listens on (``127.0.0.1:1``), with an
    API key of its own (webhooks tell nodes apart by it) and its secret set through
    the model's property, which encrypts it. ``reserved`` and ``observed`` stand for
    ``reserved_participants`` and ``observed_participants``."""

    class Meta:
        model = MediaNode
        rename = {"reserved": "reserved_participants", "observed": "observed_participants"}

    name = factory.Sequence(lambda n: f"node-{n}")
    url = factory.LazyAttribute(lambda o: f"http://127.0.0.1:1/{o.name}")
    api_key = factory.LazyAttribute(lambda o: f"key-{o.name}")
    api_secret = factory.LazyAttribute(lambda o: f"secret-{o.name}-" + "0123456789abcdef" * 2)
    region = "paris"
    capacity = 100
    tags = factory.LazyFunction(list)

    @classmethod
    def _adjust_kwargs(cls, **kwargs):
        kwargs["tags"] = list(kwargs["tags"])  # any iterable of tags, stored as a list
        return kwargs


class RoomFactory(factory.django.DjangoModelFactory):
    """A room of its owner's ministry, written directly (no audit event)."""

    class Meta:
        model = Room

    slug = factory.Sequence(lambda n: f"room-{n:04d}")
    name = "Réunion"
    owner = factory.SubFactory(AgentFactory)
    ministry = factory.LazyAttribute(lambda o: o.owner.ministry)
    expected_size = 10


def room_created_by(agent: Agent, *, size: int = 10, name: str = "Réunion") -> Room:
    """A room created by ``agent`` through ``room_create``, as the API creates one."""
    return room_create(actor=Actor(user=agent, label="t"), name=name, expected_size=size)


class AllocationFactory(factory.django.DjangoModelFactory):
    """A live allocation of a room to a node, written directly: the node's
    ``reserved_participants`` is not moved (placement does that)."""

    class Meta:
        model = Allocation

    room = factory.SubFactory(RoomFactory)
    node = factory.SubFactory(MediaNodeFactory)
    reserved = factory.LazyAttribute(lambda o: o.room.expected_size)


# -- Sessions and usage --------------------------------------------------------------------


class MeetingSessionFactory(factory.django.DjangoModelFactory):
    """One occurrence of a meeting, started now unless told otherwise, of no ministry
    unless given one."""

    class Meta:
        model = MeetingSession

    room_name = factory.Sequence(lambda n: f"room-{n}")
    livekit_sid = factory.Sequence(lambda n: f"RM_{n}")
    ministry = None
    started_at = factory.LazyFunction(timezone.now)


class ParticipantSessionFactory(factory.django.DjangoModelFactory):
    """One stay in a meeting: of ``agent`` (their ministry, unit and identity), or of a
    guest when ``agent`` is None; its duration follows from ``left_at``."""

    class Meta:
        model = ParticipantSession

    meeting = factory.SubFactory(MeetingSessionFactory)
    agent = None
    ministry = factory.LazyAttribute(lambda o: o.agent.ministry if o.agent else None)
    organizational_unit = factory.LazyAttribute(
        lambda o: o.agent.organizational_unit if o.agent else ""
    )
    identity = factory.LazyAttributeSequence(
        lambda o, n: (o.agent.sub or str(o.agent.pk)) if o.agent else f"guest-{n}"
    )
    participant_sid = factory.Sequence(lambda n: f"PA_{n}")
    joined_at = factory.LazyFunction(timezone.now)
    left_at = None
    duration_seconds = factory.LazyAttribute(
        lambda o: int((o.left_at - o.joined_at).total_seconds()) if o.left_at else None
    )


class DailyUsageFactory(factory.django.DjangoModelFactory):
    """One roll-up row: national (no ministry) and for today unless told otherwise."""

    class Meta:
        model = DailyUsage

    ministry = None
    day = factory.LazyFunction(timezone.localdate)


__all__ = [
    "AgentFactory",
    "AgentImportJobFactory",
    "AllocationFactory",
    "DailyUsageFactory",
    "MediaNodeFactory",
    "MeetingSessionFactory",
    "MinistryDomainFactory",
    "MinistryFactory",
    "ParticipantSessionFactory",
    "Role",
    "RoomFactory",
    "api_token_issued",
    "grant",
    "licence_pool",
    "room_created_by",
    "with_luhn_key",
]
