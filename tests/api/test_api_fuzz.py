"""Schemathesis against the committed schema (docs/openapi.yaml): every operation, as
every kind of caller, with valid and invalid input, never answers 5xx nor anything
the schema does not describe (status, content type, headers, body).

Each (operation, caller) runs in its own world of two ministries, in one transaction.
Path parameters are either generated or the id of a real object of ministry A or B,
so the writes reach their services instead of stopping at a 404. Media nodes are the
one part replaced: a node that answers and holds no room (no LiveKit runs here).

Examples are derandomized so CI sees the same cases every run; for a deeper, random
run: ``FUZZ_EXAMPLES=200 FUZZ_RANDOM=1 pytest tests/api/test_api_fuzz.py``.
"""

import os
from pathlib import Path
from unittest import mock

import pytest
import schemathesis
import yaml
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from django.test import Client
from django.utils.crypto import get_random_string
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.import_jobs import agent_import_job_create
from accounts.models import AgentImportJob, ApiToken, RoleGrant
from accounts.tokens import api_token_create
from audit.actor import Actor
from audit.models import AuditEvent
from licensing.models import LicencePool
from media_nodes import services as media_node_services
from rooms.services import room_create
from scim.tokens import directory_token_issue
from tests.factories import MediaNodeFactory, api_token_issued

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.yaml")
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
APP = WSGIHandler()
pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=os.environ.get("FUZZ_RANDOM") != "1",
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)

# What "breaks the schema": a 5xx, or a status, content type, header or body the
# schema does not describe. (Schemathesis's other checks judge API design choices,
# e.g. that an unknown ``limit`` is ignored rather than refused; they are not run.)
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]

# caller -> how it authenticates (the two ministry roles with API tokens of A, as
# ministry scripts do; people with their console session).
ROLES = {
    "operator": ("session", "operator"),
    "national_auditor": ("session", "national_auditor"),
    "ministry_admin": ("token", "ministry_admin"),
    "ministry_auditor": ("token", "auditor"),
    "agent": ("session", "agent_a"),
    "anonymous": (None, None),
}
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


class EmptyNode:
    """A media node that answers and holds no room."""

    def list_rooms(self):
        return []

    def delete_room(self, name):
        return None

    def list_participants(self, room):
        return []


@pytest.fixture
def requests_keep_the_test_connection():
    """Django's test client does the same: a request's end must not close the
    connection that holds the test's transaction."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def scene(world, requests_keep_the_test_connection):
    """World plus one real object of A and of B behind every path parameter."""
    system = Actor.system("fuzz")
    for ministry in (world.a, world.b):
        api_token_create(actor=system, ministry=ministry, role="auditor", name="sync")
        directory_token_issue(actor=system, ministry=ministry)
        admin = world.admin_a if ministry == world.a else world.admin_b
        agent_import_job_create(
            actor=Actor(user=admin, label="fuzz"),
            ministry=ministry,
            content=f"email\nnew@{ministry.code}.gouv.fr\n".encode(),
            filename="agents.csv",
        )
    rooms = [
        room_create(actor=Actor(user=agent, label="fuzz"), name="Point")
        for agent in (world.agent_a, world.agent_b)
    ]
    MediaNodeFactory(name="paris-1")
    known = {
        "/api/v1/agent-imports/": [str(j.pk) for j in AgentImportJob.objects.all()],
        "/api/v1/agents/": [str(world.agent_a.pk), str(world.agent_b.pk)],
        "/api/v1/api-tokens/": [str(t.pk) for t in ApiToken.objects.all()],
        "/api/v1/audit-events/": [
            str(AuditEvent.objects.filter(ministry_id=m.pk).values_list("sequence", flat=True)[0])
            for m in (world.a, world.b)
        ],
        "/api/v1/directory-tokens/": [
            str(pk) for pk in world.a.directory_tokens.values_list("pk", flat=True)
        ]
        + [str(pk) for pk in world.b.directory_tokens.values_list("pk", flat=True)],
        "/api/v1/licence-pools/": [str(p.pk) for p in LicencePool.objects.all()],
        "/api/v1/media-nodes/": ["paris-1"],
        "/api/v1/ministries/": ["alpha", "bravo"],
        "/api/v1/role-grants/": [
            str(RoleGrant.objects.get(agent=world.auditor_a).pk),
            str(RoleGrant.objects.get(agent=world.admin_b).pk),
        ],
        "/api/v1/rooms/": [room.slug for room in rooms],
    }
    with mock.patch.object(media_node_services, "driver_for", lambda node, **kw: EmptyNode()):
        yield world, known


def credentials(world, role):
    """Headers and cookies of ``role`` (a session gets its CSRF pair, as a browser)."""
    kind, who = ROLES[role]
    if kind == "token":
        _, clear = api_token_issued(world.admin_a, world.a, who, name="fuzz caller")
        return {"Authorization": f"Bearer {clear}"}, {}
    if kind == "session":
        client = Client()
        client.force_login(getattr(world, who))
        csrf = get_random_string(32)  # a CSRF secret: 32 letters and digits
        cookies = {"sessionid": client.cookies["sessionid"].value, "csrftoken": csrf}
        return {"X-CSRFToken": csrf}, cookies
    return {}, {}


def cases(operation, known):
    """Generated cases, half of them aimed at a real object of A or B."""
    strategies = []
    for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
        strategies.append(operation.as_strategy(generation_mode=mode))
        names = [p.name for p in operation.path_parameters]
        prefix = next((p for p in known if operation.path.startswith(p)), None)
        if names and prefix:
            strategies.append(
                st.sampled_from(known[prefix]).flatmap(
                    lambda value, mode=mode: operation.as_strategy(
                        generation_mode=mode, path_parameters={names[0]: value}
                    )
                )
            )
    return st.one_of(strategies)


@pytest.mark.django_db
@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_every_operation_as_every_caller_answers_what_the_schema_says(
    scene, operation, role, django_capture_on_commit_callbacks
):
    """No 5xx, no undocumented status, content type, header or body; anonymous callers
    get nothing, auditors change nothing."""
    world, known = scene
    headers, cookies = credentials(world, role)

    @FUZZ_SETTINGS
    @given(case=cases(operation, known))
    def run(case):
        generated = {
            name: value
            for name, value in (case.headers or {}).items()
            if name.lower() not in ("authorization", "cookie", "x-csrftoken")
        }
        case.headers = {**generated, **headers}
        with django_capture_on_commit_callbacks(execute=True):  # tasks run, as after a commit
            response = case.call(app=APP, cookies=cookies)
        case.validate_response(response, checks=CHECKS)
        if role == "anonymous":
            assert response.status_code >= 400, response.text[:300]
        # Rooms are the agents' own meetings (an auditor is an agent too).
        own_meetings = operation.path.startswith("/api/v1/rooms/")
        if role.endswith("auditor") and case.method.upper() in WRITES and not own_meetings:
            assert response.status_code >= 400, response.text[:300]

    run()


def test_every_operation_of_the_schema_is_fuzzed():
    """Every operation of docs/openapi.yaml is among those fuzzed: none is left out."""
    document = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    in_schema = {
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert {op.label for op in OPERATIONS} == in_schema
