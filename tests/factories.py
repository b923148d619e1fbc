"""factory_boy factories for the domain; identifiers are valid by construction."""

from datetime import timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from accounts.identifiers import luhn_valid
from accounts.models import Agent, Ministry, MinistryDomain, MinistrySiret, Role, RoleGrant
from licensing.models import LicencePool


def with_luhn_key(base: str) -> str:
    """Append the digit that makes ``base`` pass the Luhn check."""
    return next(base + str(d) for d in range(10) if luhn_valid(base + str(d)))


class MinistryFactory(factory.django.DjangoModelFactory):
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
            MinistryDomain.objects.create(ministry=self, domain=f"{self.code}.gouv.fr")
            MinistrySiret.objects.create(ministry=self, siret=with_luhn_key(self.siren + "0001"))
            licence_pool(self, seats=1000)


class AgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agent
        skip_postgeneration_save = True

    ministry = factory.SubFactory(MinistryFactory)
    email = factory.LazyAttributeSequence(
        lambda o, n: f"agent{n}@{o.ministry.code}.gouv.fr" if o.ministry else f"staff{n}@x.fr"
    )
    given_name = factory.Faker("first_name", locale="fr_FR")
    usual_name = factory.Faker("last_name", locale="fr_FR")
    password = factory.django.Password(None)


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


__all__ = ["AgentFactory", "MinistryFactory", "Role", "grant", "with_luhn_key"]
