"""``manage.py seed_demo``: a believable demo tenant set, idempotent.

Armées, DGFiP and Assurance Maladie rolling out, Culture in pilot; an operator,
ministry admins, auditors and agents. Every write goes through the services, so
the demo's audit trail is real too.
"""

from datetime import date
from decimal import Decimal

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.agents import agent_create
from accounts.grants import operator_bootstrap, role_grant_create
from accounts.ministries import ministry_create
from accounts.models import Agent, Ministry
from audit.actor import Actor
from licensing.services import licence_pool_create
from media_nodes import services as node_services
from media_nodes.models import MediaNode

# The demo's simulated media nodes (devtools/livekit_sim.py, started by `make run`):
# two in Paris, qualified SecNumCloud, two in Lyon. Demo credentials only.
DEMO_NODE_KEY = "devkey"
DEMO_NODE_SECRET = "demo-node-secret-not-for-production-0000"
DEMO_NODES = [
    ("paris-1", "http://127.0.0.1:7880", "paris", ["secnumcloud"]),
    ("paris-2", "http://127.0.0.1:7881", "paris", ["secnumcloud"]),
    ("lyon-1", "http://127.0.0.1:7890", "lyon", []),
    ("lyon-2", "http://127.0.0.1:7891", "lyon", []),
]

MINISTRIES = [
    {
        "code": "armees",
        "name": "Ministère des Armées",
        "siren": "110044013",
        "state": "rolling_out",
        "domains": ["intradef.gouv.fr"],
        "sirets": ["11004401300016", "11004401300024"],
        "residency_tags": ["secnumcloud"],
        "jit_provisioning": False,
    },
    {
        "code": "dgfip",
        "name": "Direction générale des Finances publiques",
        "siren": "130018153",
        "state": "rolling_out",
        "domains": ["dgfip.finances.gouv.fr"],
        "sirets": ["13001815300010"],
        "residency_tags": [],
        "jit_provisioning": True,
    },
    {
        "code": "assurance-maladie",
        "name": "Assurance Maladie",
        "siren": "180037012",
        "state": "rolling_out",
        "domains": ["assurance-maladie.fr"],
        "sirets": ["18003701200010"],
        "residency_tags": [],
        "jit_provisioning": True,
    },
    {
        "code": "culture",
        "name": "Ministère de la Culture",
        "siren": "110002011",
        "state": "pilot",
        "domains": ["culture.gouv.fr"],
        "sirets": ["11000201100010"],
        "residency_tags": [],
        "jit_provisioning": False,
    },
]

# Seats per ministry for 2026-2027. Foreign licences cost about 1 M EUR a year per
# 100,000 agents, so 10 EUR per seat and year is the reference price replaced.
SEATS = {"armees": 60_000, "dgfip": 100_000, "assurance-maladie": 80_000, "culture": 5_000}
POOL_PERIOD = (date(2026, 1, 1), date(2027, 12, 31))
FOREIGN_PRICE_EUR = Decimal("10.00")
SOVEREIGN_COST_EUR = Decimal("1.50")

# (email, given name, usual name, ministry code or None, unit, [(role, ministry code)])
PEOPLE = [
    ("operateur@numerique.gouv.fr", "Camille", "Opératrice", None, "DINUM", [("operator", None)]),
    ("auditrice@numerique.gouv.fr", "Inès", "Contrôle", None, "DINUM", [("auditor", None)]),
    (
        "admin@intradef.gouv.fr",
        "Hugo",
        "Martin",
        "armees",
        "DIRISI",
        [("ministry_admin", "armees")],
    ),
    ("auditeur@intradef.gouv.fr", "Léa", "Bernard", "armees", "CGA", [("auditor", "armees")]),
    ("agent1@intradef.gouv.fr", "Paul", "Durand", "armees", "EMA", []),
    ("agent2@intradef.gouv.fr", "Chloé", "Petit", "armees", "DGA", []),
    (
        "admin@dgfip.finances.gouv.fr",
        "Nadia",
        "Robert",
        "dgfip",
        "SSI",
        [("ministry_admin", "dgfip")],
    ),
    ("agent1@dgfip.finances.gouv.fr", "Julien", "Richard", "dgfip", "DRFiP Île-de-France", []),
    ("agent2@dgfip.finances.gouv.fr", "Emma", "Moreau", "dgfip", "DDFiP Gironde", []),
    (
        "admin@assurance-maladie.fr",
        "Thomas",
        "Laurent",
        "assurance-maladie",
        "DSI",
        [("ministry_admin", "assurance-maladie")],
    ),
    ("agent1@assurance-maladie.fr", "Sarah", "Simon", "assurance-maladie", "CPAM Lyon", []),
    (
        "admin@culture.gouv.fr",
        "Louis",
        "Michel",
        "culture",
        "SNUM",
        [("ministry_admin", "culture")],
    ),
    ("agent1@culture.gouv.fr", "Manon", "Garcia", "culture", "DRAC Bretagne", []),
]


class Command(BaseCommand):
    help = "Seed the demo ministries and accounts (does nothing for those already there)."

    @transaction.atomic
    def handle(self, *args, **options):
        email, given, usual = PEOPLE[0][:3]
        operator = operator_bootstrap(
            actor=Actor.system("manage.py seed_demo"),
            email=email,
            given_name=given,
            usual_name=usual,
        ).agent
        actor = Actor(user=operator, label=f"{operator.email} (seed_demo)")
        ministries = {m.code: m for m in Ministry.objects.all()}
        for spec in MINISTRIES:
            if spec["code"] not in ministries:
                ministries[spec["code"]] = ministry_create(actor=actor, **spec)
            ministry = ministries[spec["code"]]
            if not ministry.licence_pools.exists():
                licence_pool_create(
                    actor=actor,
                    ministry=ministry,
                    starts_on=POOL_PERIOD[0],
                    ends_on=POOL_PERIOD[1],
                    seats=SEATS[ministry.code],
                    foreign_price_eur=FOREIGN_PRICE_EUR,
                    sovereign_cost_eur=SOVEREIGN_COST_EUR,
                )
        for email, given, usual, code, unit, grants in PEOPLE[1:]:
            agent = Agent.objects.filter(email=email).first()
            if agent is None:
                if code is None:
                    agent = Agent.objects.create_user(
                        email, given_name=given, usual_name=usual, organizational_unit=unit
                    )
                else:
                    agent = agent_create(
                        actor=actor,
                        ministry=ministries[code],
                        email=email,
                        given_name=given,
                        usual_name=usual,
                        organizational_unit=unit,
                    )
            for role, scope in grants:
                ministry = ministries[scope] if scope else None
                if not agent.grants.filter(role=role, ministry=ministry).exists():
                    role_grant_create(actor=actor, agent=agent, role=role, ministry=ministry)
        for name, url, region, tags in DEMO_NODES:
            if not MediaNode.objects.filter(name=name).exists():
                # Not checked against the node: the demo may be seeded before they run.
                node_services.node_add(
                    actor=actor,
                    name=name,
                    url=url,
                    api_key=DEMO_NODE_KEY,
                    api_secret=DEMO_NODE_SECRET,
                    region=region,
                    capacity=500,
                    tags=tags,
                    check=False,
                )
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo ready: {Ministry.objects.count()} ministries, "
                f"{MediaNode.objects.count()} simulated media nodes, "
                f"{Agent.objects.count()} accounts."
            )
        )
        for email, _given, _usual, code, _unit, grants in PEOPLE:
            roles = ", ".join(r for r, _ in grants) or "agent"
            self.stdout.write(f"  {email:34} {roles:16} {code or 'national'}")
