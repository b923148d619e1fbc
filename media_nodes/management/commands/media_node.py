"""Operators' shell for media nodes.

manage.py media_node list
manage.py media_node add NAME --url URL --api-key KEY --region REGION --capacity N [--tag T]…
    (the API secret is read from MEDIA_NODE_API_SECRET or asked for, never an argument)
manage.py media_node cordon|enable NAME
manage.py media_node drain NAME [--deadline-minutes M]
manage.py media_node remove NAME
manage.py media_node reencrypt
    (every node's API secret under the newest MEDIA_NODE_SECRET_KEYS key: key rotation)
"""

import getpass
import os

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count, Q
from django.utils import timezone

from audit.actor import Actor
from media_nodes import services
from media_nodes.models import MediaNode


class Command(BaseCommand):
    help = (
        "List, add, cordon, drain, enable or remove media nodes; reencrypt their secrets "
        "with the newest key."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list")
        add = sub.add_parser("add")
        add.add_argument("name")
        add.add_argument("--url", required=True)
        add.add_argument("--api-key", required=True)
        add.add_argument("--region", required=True)
        add.add_argument("--capacity", type=int, required=True)
        add.add_argument("--tag", action="append", default=[])
        for name in ("cordon", "enable", "remove"):
            sub.add_parser(name).add_argument("name")
        drain = sub.add_parser("drain")
        drain.add_argument("name")
        drain.add_argument("--deadline-minutes", type=int, default=None)
        sub.add_parser("reencrypt")

    def handle(self, *args, action, **options):
        actor = Actor.system(f"manage.py media_node {action}")
        try:
            getattr(self, f"do_{action}")(actor, **options)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None

    def _node(self, name):
        try:
            return MediaNode.objects.get(name=name)
        except MediaNode.DoesNotExist:
            raise CommandError(f"No media node named “{name}”.") from None

    def do_list(self, actor, **options):
        nodes = MediaNode.objects.annotate(
            live=Count("allocations", filter=Q(allocations__closed_at__isnull=True))
        )
        self.stdout.write(f"{'name':20} {'region':10} {'state':9} {'health':6} {'load':>11} rooms")
        for n in nodes:
            load = f"{n.load}/{n.capacity}"
            self.stdout.write(
                f"{n.name:20} {n.region:10} {n.state:9} {n.health:6} {load:>11} {n.live}"
            )

    def do_add(self, actor, name, url, api_key, region, capacity, tag, **options):
        secret = os.environ.get("MEDIA_NODE_API_SECRET") or getpass.getpass("API secret: ")
        node = services.node_add(
            actor=actor,
            name=name,
            url=url,
            api_key=api_key,
            api_secret=secret,
            region=region,
            capacity=capacity,
            tags=tag,
        )
        self.stdout.write(
            self.style.SUCCESS(f"Added {node.name} ({node.url}): credentials checked.")
        )

    def do_cordon(self, actor, name, **options):
        services.node_set_state(actor=actor, node=self._node(name), state=MediaNode.State.CORDONED)
        self.stdout.write(f"{name} cordoned: no new rooms.")

    def do_enable(self, actor, name, **options):
        services.node_set_state(actor=actor, node=self._node(name), state=MediaNode.State.ACTIVE)
        self.stdout.write(f"{name} enabled.")

    def do_drain(self, actor, name, deadline_minutes, **options):
        deadline = None
        if deadline_minutes is not None:
            deadline = timezone.now() + timezone.timedelta(minutes=deadline_minutes)
        services.node_set_state(
            actor=actor, node=self._node(name), state=MediaNode.State.DRAINING, deadline=deadline
        )
        self.stdout.write(f"{name} draining" + (f" until {deadline:%H:%M}." if deadline else "."))

    def do_remove(self, actor, name, **options):
        services.node_remove(actor=actor, node=self._node(name))
        self.stdout.write(f"{name} removed.")

    def do_reencrypt(self, actor, **options):
        count = services.node_secrets_reencrypt(actor=actor)
        self.stdout.write(f"{count} node secrets encrypted with the newest key.")
