"""The tenant-isolation matrix: every endpoint, every kind of caller, nothing crosses.

Targets belong to ministry A ("alpha"). Callers: anonymous, a plain agent of A, the
admin of B, an admin API token of B, the auditor of A (session and API token), a
national auditor, and the caller the endpoint is for. Every refusal leaves the
database exactly as it was.
"""

import pytest
from django.utils import timezone

from accounts.models import Agent, ApiToken, Ministry, RoleGrant
from audit.actor import Actor
from audit.models import AuditEvent
from licensing.models import LicencePool
from scim.models import DirectoryToken
from scim.tokens import directory_token_issue
from tests.factories import AgentFactory
from tests.support.clients import client_as, client_with_token

pytestmark = pytest.mark.django_db

CALLERS = [
    "anonymous",
    "agent_a",
    "admin_b",
    "token_b",
    "auditor_a",
    "auditor_token_a",
    "national_auditor",
    "allowed",
]


@pytest.fixture
def scene(world):
    """World plus A's role grant, A's API token and an audit event of A."""
    client_as(world.admin_a).post(
        "/api/v1/api-tokens/", {"name": "A sync", "ministry": "alpha", "role": "auditor"}
    )
    world.grant_a = RoleGrant.objects.get(agent=world.auditor_a)
    world.token_a = ApiToken.objects.get(ministry=world.a)
    world.event_a = AuditEvent.objects.get(ministry_id=world.a.pk)
    world.directory_token_a, _ = directory_token_issue(
        actor=Actor.system("tests"), ministry=world.a
    )
    directory_token_issue(actor=Actor.system("tests"), ministry=world.b)
    world.leaver_a = AgentFactory(ministry=world.a, is_active=False, deactivated_at=timezone.now())
    clients = {
        "anonymous": client_as(None),
        "agent_a": client_as(world.agent_a),
        "admin_b": client_as(world.admin_b),
        "token_b": client_with_token(world.admin_b, world.b, "ministry_admin"),
        "auditor_a": client_as(world.auditor_a),
        "auditor_token_a": client_with_token(world.admin_a, world.a, "auditor"),
        "national_auditor": client_as(world.national_auditor),
    }
    return world, clients


# (name, method, path, payload, allowed caller, codes for CALLERS in order)
READS = [
    (
        "ministry",
        "get",
        lambda w: "/api/v1/ministries/alpha/",
        None,
        "admin_a",
        [401, 200, 404, 404, 200, 200, 200, 200],
    ),
    (
        "agent",
        "get",
        lambda w: f"/api/v1/agents/{w.auditor_a.pk}/",
        None,
        "admin_a",
        [401, 404, 404, 404, 200, 200, 200, 200],
    ),
    (
        "role grant",
        "get",
        lambda w: f"/api/v1/role-grants/{w.grant_a.pk}/",
        None,
        "admin_a",
        [401, 404, 404, 404, 200, 200, 200, 200],
    ),
    (
        "api token",
        "get",
        lambda w: f"/api/v1/api-tokens/{w.token_a.pk}/",
        None,
        "admin_a",
        [401, 404, 404, 404, 200, 200, 200, 200],
    ),
    (
        "directory token",
        "get",
        lambda w: f"/api/v1/directory-tokens/{w.directory_token_a.pk}/",
        None,
        "admin_a",
        [401, 404, 404, 404, 200, 200, 200, 200],
    ),
    (
        "audit event",
        "get",
        lambda w: f"/api/v1/audit-events/{w.event_a.sequence}/",
        None,
        "admin_a",
        [401, 404, 404, 404, 200, 200, 200, 200],
    ),
]
WRITES = [
    (
        "create ministry",
        "post",
        lambda w: "/api/v1/ministries/",
        lambda w: {"code": "new", "name": "New", "siren": "110014016"},
        "operator",
        [401, 403, 403, 403, 403, 403, 403, 201],
    ),
    (
        "update ministry",
        "patch",
        lambda w: "/api/v1/ministries/alpha/",
        lambda w: {"name": "Renamed"},
        "operator",
        [401, 403, 404, 404, 403, 403, 403, 200],
    ),
    (
        "create agent",
        "post",
        lambda w: "/api/v1/agents/",
        lambda w: {"ministry": "alpha", "email": "new@alpha.gouv.fr"},
        "admin_a",
        [401, 403, 400, 400, 403, 403, 403, 201],
    ),
    (
        "update agent",
        "patch",
        lambda w: f"/api/v1/agents/{w.agent_a.pk}/",
        lambda w: {"usual_name": "Changed"},
        "admin_a",
        [401, 403, 404, 404, 403, 403, 403, 200],
    ),
    (
        "deactivate agent",
        "post",
        lambda w: f"/api/v1/agents/{w.agent_a.pk}/deactivate/",
        lambda w: {},
        "admin_a",
        [401, 403, 404, 404, 403, 403, 403, 200],
    ),
    (
        "reactivate agent",
        "post",
        lambda w: f"/api/v1/agents/{w.leaver_a.pk}/reactivate/",
        lambda w: {},
        "admin_a",
        [401, 403, 404, 404, 403, 403, 403, 200],
    ),
    (
        "grant role",
        "post",
        lambda w: "/api/v1/role-grants/",
        lambda w: {"agent": str(w.agent_a.pk), "role": "auditor", "ministry": "alpha"},
        "admin_a",
        [401, 403, 400, 400, 403, 403, 403, 201],
    ),
    (
        "withdraw role",
        "delete",
        lambda w: f"/api/v1/role-grants/{w.grant_a.pk}/",
        None,
        "admin_a",
        [401, 403, 404, 404, 403, 403, 403, 204],
    ),
    (
        "create token",
        "post",
        lambda w: "/api/v1/api-tokens/",
        lambda w: {"name": "x", "ministry": "alpha", "role": "auditor"},
        "admin_a",
        [401, 403, 400, 400, 403, 403, 403, 201],
    ),
    (
        "revoke token",
        "delete",
        lambda w: f"/api/v1/api-tokens/{w.token_a.pk}/",
        None,
        "admin_a",
        [401, 403, 404, 404, 403, 403, 403, 200],
    ),
    (
        "issue directory token",
        "post",
        lambda w: "/api/v1/directory-tokens/",
        lambda w: {"ministry": "alpha"},
        "admin_a",
        [401, 403, 400, 400, 403, 403, 403, 201],
    ),
    (
        "revoke directory token",
        "delete",
        lambda w: f"/api/v1/directory-tokens/{w.directory_token_a.pk}/",
        None,
        "admin_a",
        [401, 403, 404, 404, 403, 403, 403, 200],
    ),
]


def snapshot():
    """Everything a refused write could have touched."""
    return (
        list(Ministry.objects.values_list("code", "name", "state").order_by("code")),
        list(Agent.objects.values_list("email", "usual_name", "is_active").order_by("email")),
        list(
            RoleGrant.objects.values_list("agent__email", "role", "ministry__code").order_by(
                "agent__email", "role"
            )
        ),
        list(ApiToken.objects.values_list("prefix", "revoked_at").order_by("prefix")),
        list(DirectoryToken.objects.values_list("prefix", "revoked_at").order_by("prefix")),
        LicencePool.objects.count(),
        AuditEvent.objects.count(),
    )


def call(client, method, path, payload):
    return getattr(client, method)(path, payload, format="json")


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(
    ("name", "method", "path", "payload", "allowed", "codes"),
    READS + WRITES,
    ids=[r[0] for r in READS + WRITES],
)
def test_every_endpoint_every_caller(scene, caller, name, method, path, payload, allowed, codes):
    """Each caller gets exactly the expected status; a refused write changes nothing."""
    world, clients = scene
    client = client_as(getattr(world, allowed)) if caller == "allowed" else clients[caller]
    expected = codes[CALLERS.index(caller)]
    before = snapshot()
    response = call(client, method, path(world), payload(world) if payload else None)
    assert response.status_code == expected, (caller, name, response.content[:300])
    if method != "get":
        if expected < 300:
            assert snapshot() != before
        else:
            assert snapshot() == before


LISTS = [
    "/api/v1/ministries/",
    "/api/v1/agents/",
    "/api/v1/role-grants/",
    "/api/v1/api-tokens/",
    "/api/v1/audit-events/",
    "/api/v1/directory-tokens/",
]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("caller", ["admin_b", "token_b"])
def test_lists_of_another_ministry_show_nothing_of_a(scene, path, caller):
    """B's admin and B's token list nothing that belongs to A."""
    world, clients = scene
    response = clients[caller].get(path)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] > 0, "B's own objects are listed"
    text = str(body)
    for marker in (
        "alpha",
        str(world.a.pk),
        world.agent_a.email,
        world.auditor_a.email,
        world.admin_a.email,
        world.token_a.prefix,
    ):
        assert marker not in text, (path, marker)


@pytest.mark.parametrize("path", LISTS)
def test_national_auditor_and_operator_list_everything(scene, path):
    """National roles see both ministries' objects."""
    world, clients = scene
    national = clients["national_auditor"].get(path).json()
    operator = client_as(world.operator).get(path).json()
    assert national["count"] == operator["count"] > 0
