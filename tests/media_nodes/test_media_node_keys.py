"""Rotation of the keys encrypting media nodes' API secrets (MEDIA_NODE_SECRET_KEYS)."""

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from audit.actor import Actor
from audit.models import AuditEvent
from media_nodes import services
from media_nodes.models import MediaNode

pytestmark = pytest.mark.django_db

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
SECRET = "node-api-secret-".ljust(40, "x")


def _node(name: str) -> MediaNode:
    return services.node_add(
        actor=Actor.system("tests"),
        name=name,
        url=f"http://127.0.0.1:9/{name}",
        api_key="key",
        api_secret=SECRET,
        region="paris",
        capacity=100,
        check=False,
    )


def test_rotation_new_key_first_then_reencrypt_then_drop_the_old(settings, capsys):
    """With the new key listed first, old secrets still open; `media_node reencrypt`
    moves them to the new key, after which the old key can be dropped."""
    settings.MEDIA_NODE_SECRET_KEYS = [OLD]
    _node("paris-1")
    _node("paris-2")
    settings.MEDIA_NODE_SECRET_KEYS = [NEW, OLD]
    assert {n.api_secret for n in MediaNode.objects.all()} == {SECRET}
    settings.MEDIA_NODE_SECRET_KEYS = [NEW]
    with pytest.raises(ValueError):
        MediaNode.objects.get(name="paris-1").api_secret  # noqa: B018 - not moved yet
    settings.MEDIA_NODE_SECRET_KEYS = [NEW, OLD]
    call_command("media_node", "reencrypt")
    assert "2 node secrets" in capsys.readouterr().out
    settings.MEDIA_NODE_SECRET_KEYS = [NEW]
    assert {n.api_secret for n in MediaNode.objects.all()} == {SECRET}
    event = AuditEvent.objects.filter(action="media_node.secrets_reencrypt").get()
    assert event.data == {"nodes": 2}


def test_reencrypt_refuses_when_a_secret_opens_with_no_key(settings):
    """A secret under a key no longer listed stops the run, naming the node, and
    nothing is rewritten."""
    settings.MEDIA_NODE_SECRET_KEYS = [OLD]
    _node("lyon-1")
    before = MediaNode.objects.get(name="lyon-1").api_secret_encrypted
    settings.MEDIA_NODE_SECRET_KEYS = [NEW]
    with pytest.raises(CommandError, match="lyon-1"):
        call_command("media_node", "reencrypt")
    assert MediaNode.objects.get(name="lyon-1").api_secret_encrypted == before
    assert not AuditEvent.objects.filter(action="media_node.secrets_reencrypt").exists()
