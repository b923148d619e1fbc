"""SCIM 2.0 at /scim/v2: conformance (scim2-tester), tenant boundaries, seats,
deletion and erasure, filters, ETags and malformed input."""

import json
import threading
import uuid
from datetime import timedelta

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.test import Client
from django.utils import timezone
from scim2_client.engines.wsgi import WSGISCIMClient
from scim2_tester import Status, check_server

from accounts.models import Agent
from audit.actor import Actor
from audit.models import AuditEvent
from licensing.models import LicencePool
from scim.models import DirectoryGroup, DirectoryToken
from scim.services import agents_erase_due
from scim.tokens import directory_token_issue
from tests.support.clients import client_as

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


def scim_client(ministry) -> Client:
    _, clear = directory_token_issue(actor=Actor.system("tests"), ministry=ministry)
    return Client(HTTP_AUTHORIZATION=f"Bearer {clear}")


def send(client, method, path, body=None, **headers):
    kwargs = {"content_type": "application/scim+json", **headers}
    if body is not None:
        kwargs["data"] = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return getattr(client, method)(f"/scim/v2/{path}", **kwargs)


def new_user(email, **extra):
    return {"schemas": [USER], "userName": email, "active": True, **extra}


@pytest.fixture
def scim_a(world):
    return scim_client(world.a)


@pytest.fixture
def scim_b(world):
    return scim_client(world.b)


# -- Conformance ------------------------------------------------------------------


class MinistryEmails:
    """userName values for scim2-tester: unique addresses in the ministry's domain.

    scim2-tester fills userName with random strings; this service requires an email
    in one of the ministry's domains (a national rule, not a protocol one), so the
    tester is taught that value space through the field's examples. No check is
    disabled and every other value stays random.
    """

    def __init__(self, domain):
        self.domain = domain

    def __len__(self):
        return 2**62

    def __getitem__(self, index):
        return f"scim.{uuid.uuid4().hex[:16]}@{self.domain}"


@pytest.fixture
def in_process_wsgi():
    """Let scim2-tester call the WSGI app in-process without closing the test's DB
    connection at the end of each request (as Django's own test client does)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield WSGIHandler()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def test_scim2_tester_passes_every_check(world, in_process_wsgi):
    _, clear = directory_token_issue(actor=Actor.system("tests"), ministry=world.a)
    client = WSGISCIMClient(
        in_process_wsgi,
        base_url="http://testserver/scim/v2",
        headers={"Authorization": f"Bearer {clear}"},
    )
    client.discover()
    client.get_resource_model("User").model_fields["user_name"].examples = MinistryEmails(
        "alpha.gouv.fr"
    )
    results = check_server(client)
    failed = [
        r for r in results if r.status not in (Status.SUCCESS, Status.COMPLIANT, Status.SKIPPED)
    ]
    assert not failed, "\n".join(f"{r.resource_type} {r.title}: {r.reason}" for r in failed)
    # Only features declared unsupported in ServiceProviderConfig (sort, bulk) may be
    # skipped: today nothing is.
    skipped = [r for r in results if r.status == Status.SKIPPED]
    assert not skipped, [f"{r.title}: {r.reason}" for r in skipped]
    titles = {r.title for r in results}
    assert {"check_add_attribute", "check_remove_attribute", "check_replace_attribute"} <= titles
    assert {"object_deletion", "object_replacement", "search_with_attributes"} <= titles
    assert len(results) >= 60
    # Everything it created was in ministry A, and it cleaned up after itself.
    assert not Agent.objects.filter(ministry=world.b, email__startswith="scim.").exists()


def test_discovery_documents(scim_a):
    config = send(scim_a, "get", "ServiceProviderConfig").json()
    assert config["patch"]["supported"] and config["etag"]["supported"]
    assert config["filter"] == {"supported": True, "maxResults": 200}
    assert not config["sort"]["supported"] and not config["bulk"]["supported"]
    types = send(scim_a, "get", "ResourceTypes").json()
    assert {t["name"] for t in types["Resources"]} == {"User", "Group"}
    schemas = send(scim_a, "get", "Schemas").json()
    ids = {s["id"] for s in schemas["Resources"]}
    assert {USER, ENTERPRISE, GROUP} <= ids
    user_schema = send(scim_a, "get", f"Schemas/{USER}").json()
    names = {a["name"] for a in user_schema["attributes"]}
    assert names == {
        "userName",
        "name",
        "displayName",
        "title",
        "preferredLanguage",
        "active",
        "emails",
        "groups",
    }
    # Derived from the names and from userName: published read-only, so that a generic
    # client does not write them independently (directories' writes are accepted).
    mutability = {a["name"]: a["mutability"] for a in user_schema["attributes"]}
    assert mutability["displayName"] == mutability["emails"] == "readOnly"
    assert mutability["title"] == mutability["userName"] == "readWrite"
    enterprise = send(scim_a, "get", f"Schemas/{ENTERPRISE}").json()
    assert {a["name"] for a in enterprise["attributes"]} == {
        "employeeNumber",
        "department",
        "manager",
    }
    assert send(scim_a, "get", "Schemas/urn:nope").status_code == 404


# -- Authentication and tenant boundaries --------------------------------------------


def test_no_token_bad_token_revoked_token(world, scim_a):
    anonymous = send(Client(), "get", "Users")
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    assert anonymous.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    wrong = send(Client(HTTP_AUTHORIZATION="Bearer scim_nope"), "get", "Users")
    assert wrong.status_code == 401
    # Issuing a new token without overlap revokes the previous one (rotation with an
    # overlap: test_directory_tokens.py).
    directory_token_issue(actor=Actor.system("tests"), ministry=world.a, overlap_days=0)
    assert send(scim_a, "get", "Users").status_code == 401
    assert DirectoryToken.objects.filter(ministry=world.a, revoked_at__isnull=True).count() == 1


def test_suspended_ministry_directory_is_refused(world, scim_a):
    world.a.state = "suspended"
    world.a.save()
    response = send(scim_a, "get", "Users")
    assert response.status_code == 403
    assert "suspended" in response.json()["detail"]  # in English: no Accept-Language


def test_directory_token_is_not_an_api_token_and_the_reverse(world, scim_a):
    clear = scim_a.defaults["HTTP_AUTHORIZATION"]
    api = Client(HTTP_AUTHORIZATION=clear).get("/api/v1/agents/")
    assert api.status_code == 401
    api_token = client_as(world.admin_a).post(
        "/api/v1/api-tokens/", {"name": "x", "ministry": "alpha", "role": "ministry_admin"}
    )
    other = Client(HTTP_AUTHORIZATION=f"Bearer {api_token.json()['token']}")
    assert send(other, "get", "Users").status_code == 401


def test_a_directory_sees_and_changes_only_its_ministry(world, scim_a, scim_b):
    listed = send(scim_a, "get", "Users").json()
    emails = {r["userName"] for r in listed["Resources"]}
    assert world.agent_a.email in emails and world.agent_b.email not in emails
    assert all(e.endswith("@alpha.gouv.fr") for e in emails)
    found = send(scim_a, "get", "Users", **{"QUERY_STRING": ""})
    assert found.status_code == 200
    filtered = send(scim_a, "get", f'Users?filter=userName eq "{world.agent_b.email}"')
    assert filtered.json()["totalResults"] == 0
    b_id = str(world.agent_b.pk)
    assert send(scim_a, "get", f"Users/{b_id}").status_code == 404
    patch = {
        "schemas": [PATCH],
        "Operations": [{"op": "replace", "path": "active", "value": False}],
    }
    assert send(scim_a, "patch", f"Users/{b_id}", patch).status_code == 404
    assert send(scim_a, "put", f"Users/{b_id}", new_user(world.agent_b.email)).status_code == 404
    assert send(scim_a, "delete", f"Users/{b_id}").status_code == 404
    world.agent_b.refresh_from_db()
    assert world.agent_b.is_active and world.agent_b.erase_after is None
    # Creating an agent in B's domain through A's directory is refused.
    created = send(scim_a, "post", "Users", new_user("intrus@bravo.gouv.fr"))
    assert created.status_code == 400
    assert created.json()["scimType"] == "invalidValue"
    assert not Agent.objects.filter(email="intrus@bravo.gouv.fr").exists()
    # A group of A cannot hold B's agents; B's groups are invisible to A.
    group = send(
        scim_a,
        "post",
        "Groups",
        {"schemas": [GROUP], "displayName": "Équipe", "members": [{"value": b_id}]},
    )
    assert group.status_code == 400
    assert not DirectoryGroup.objects.exists()
    b_group = send(scim_b, "post", "Groups", {"schemas": [GROUP], "displayName": "B"}).json()
    assert send(scim_a, "get", f"Groups/{b_group['id']}").status_code == 404
    assert send(scim_a, "get", "Groups").json()["totalResults"] == 0
    assert send(scim_a, "delete", f"Groups/{b_group['id']}").status_code == 404
    assert DirectoryGroup.objects.filter(pk=b_group["id"]).exists()


def test_directory_tokens_api_admins_of_their_ministry_only(world):
    issued = client_as(world.admin_a).post("/api/v1/directory-tokens/", {"ministry": "alpha"})
    assert issued.status_code == 201
    body = issued.json()
    assert body["token"].startswith("scim_") and body["scim_url"].endswith("/scim/v2/")
    assert (
        client_as(world.admin_a)
        .post("/api/v1/directory-tokens/", {"ministry": "bravo"})
        .status_code
        == 400
    )
    assert client_as(world.auditor_a).post(
        "/api/v1/directory-tokens/", {"ministry": "alpha"}
    ).status_code in (400, 403)
    assert client_as(world.admin_b).get("/api/v1/directory-tokens/").json()["count"] == 0
    listed = client_as(world.admin_a).get("/api/v1/directory-tokens/").json()
    assert "token" not in listed["results"][0]
    revoked = client_as(world.admin_b).delete(f"/api/v1/directory-tokens/{body['id']}/")
    assert revoked.status_code == 404
    revoked = client_as(world.admin_a).delete(f"/api/v1/directory-tokens/{body['id']}/")
    assert revoked.json()["revoked_at"] is not None
    assert (
        send(Client(HTTP_AUTHORIZATION=f"Bearer {body['token']}"), "get", "Users").status_code
        == 401
    )


# -- Users: lifecycle, seats, deletion ----------------------------------------------------


def test_create_read_replace_with_enterprise_extension(scim_a, world):
    body = new_user(
        "Jeanne.Martin@alpha.gouv.fr",
        externalId="E-42",
        name={"givenName": "Jeanne", "familyName": "Martin"},
        **{"schemas": [USER, ENTERPRISE], ENTERPRISE: {"department": "DNUM/SDIT"}},
    )
    created = send(scim_a, "post", "Users", body)
    assert created.status_code == 201, created.json()
    user = created.json()
    assert created["Location"].endswith(f"/scim/v2/Users/{user['id']}")
    assert created["ETag"] == user["meta"]["version"]
    assert user["userName"] == "jeanne.martin@alpha.gouv.fr"
    assert user["displayName"] == "Jeanne Martin"
    assert user["emails"] == [
        {"value": "jeanne.martin@alpha.gouv.fr", "type": "work", "primary": True}
    ]
    agent = Agent.objects.get(pk=user["id"])
    assert (agent.ministry, agent.external_id, agent.organizational_unit) == (
        world.a,
        "E-42",
        "DNUM/SDIT",
    )
    assert AuditEvent.objects.filter(action="agent.create", object_id=str(agent.pk)).exists()
    replaced = send(
        scim_a,
        "put",
        f"Users/{user['id']}",
        new_user("jeanne.martin@alpha.gouv.fr", name={"givenName": "Jeanne"}),
    )
    assert replaced.status_code == 200
    agent.refresh_from_db()
    assert (agent.usual_name, agent.external_id, agent.organizational_unit) == ("", "", "")
    duplicate = send(scim_a, "post", "Users", new_user("jeanne.martin@alpha.gouv.fr"))
    assert duplicate.status_code == 409 and duplicate.json()["scimType"] == "uniqueness"


def test_active_false_frees_the_seat_and_ends_sessions(world, scim_a):
    pool = LicencePool.objects.get(ministry=world.a)
    pool.seats = Agent.objects.filter(ministry=world.a, is_active=True).count()
    pool.save()
    full = send(scim_a, "post", "Users", new_user("nouveau@alpha.gouv.fr"))
    assert full.status_code == 409
    # The same reason as everywhere else (API, CSV, login): the pool and its size.
    assert "alpha" in full.json()["detail"] and str(pool.seats) in full.json()["detail"]
    assert not Agent.objects.filter(email="nouveau@alpha.gouv.fr").exists()
    session = Client()
    session.force_login(world.agent_a)
    assert session.get("/console/").status_code == 200
    patch = {"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": False}}]}
    response = send(scim_a, "patch", f"Users/{world.agent_a.pk}", patch)
    assert response.status_code in (200, 204)
    world.agent_a.refresh_from_db()
    assert not world.agent_a.is_active and world.agent_a.deactivated_at
    assert session.get("/console/").status_code == 302  # the open session is worthless
    assert send(scim_a, "post", "Users", new_user("nouveau@alpha.gouv.fr")).status_code == 201
    # Reactivating the first one now finds no seat: refused, nothing changed.
    back = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": True}]}
    refused = send(scim_a, "patch", f"Users/{world.agent_a.pk}", back)
    assert refused.status_code == 409
    world.agent_a.refresh_from_db()
    assert not world.agent_a.is_active


def test_create_inactive_takes_no_seat(world, scim_a):
    pool = LicencePool.objects.get(ministry=world.a)
    pool.seats = Agent.objects.filter(ministry=world.a, is_active=True).count()
    pool.save()
    body = new_user("parti@alpha.gouv.fr", active=False)
    assert send(scim_a, "post", "Users", body).status_code == 201
    assert not Agent.objects.get(email="parti@alpha.gouv.fr").is_active


def test_delete_deactivates_schedules_erasure_and_recreate_is_new(world, scim_a):
    world.a.retention_days = 30
    world.a.save()
    agent = world.agent_a
    email, external_id = agent.email, "dir-42"
    Agent.objects.filter(pk=agent.pk).update(sub="sub-of-agent-a", external_id=external_id)
    assert send(scim_a, "delete", f"Users/{agent.pk}").status_code == 204
    agent.refresh_from_db()
    assert not agent.is_active and agent.deleted_at is not None
    # The address moves aside and the login binding is gone: nothing of the deleted
    # row can clash with, or be reached by, the same person coming back.
    assert (agent.email, agent.deleted_email) == (f"deleted-{agent.pk}@invalid", email)
    assert agent.sub is None
    expected = timezone.now() + timedelta(days=30)
    assert abs((agent.erase_after - expected).total_seconds()) < 60
    assert send(scim_a, "get", f"Users/{agent.pk}").status_code == 404
    assert send(scim_a, "delete", f"Users/{agent.pk}").status_code == 404
    # Nothing is erased before its date...
    assert agents_erase_due(actor=Actor.system("tests")) == 0
    # ...re-creating the userName and externalId gives a new resource...
    again = send(scim_a, "post", "Users", new_user(email, externalId=external_id))
    assert again.status_code == 201, again.json()
    assert again.json()["id"] != str(agent.pk)
    assert Agent.objects.get(email=email).pk != agent.pk
    # ...and once the date is past, the deleted row's personal data is gone for good.
    assert agents_erase_due(actor=Actor.system("tests"), now=expected + timedelta(days=1)) == 1
    agent.refresh_from_db()
    assert agent.email == f"deleted-{agent.pk}@invalid"
    assert (agent.deleted_email, agent.external_id, agent.given_name, agent.usual_name) == (
        "",
        "",
        "",
        "",
    )
    assert agent.sub is None and agent.deleted_at is not None and agent.erase_after is None
    assert AuditEvent.objects.filter(action="agent.erase", object_id=str(agent.pk)).exists()
    # Erased, it stays gone for the directory.
    assert send(scim_a, "get", f"Users/{agent.pk}").status_code == 404
    listed = send(scim_a, "get", "Users?count=200").json()["Resources"]
    assert str(agent.pk) not in {r["id"] for r in listed}


def test_patch_paths_and_groups_membership(world, scim_a):
    agent = world.agent_a
    ops = {
        "schemas": [PATCH],
        "Operations": [
            {"op": "add", "path": "name.givenName", "value": "Anne"},
            {"op": "replace", "path": f"{ENTERPRISE}:department", "value": "SG"},
            {"op": "add", "path": "externalId", "value": "X1"},
        ],
    }
    response = send(scim_a, "patch", f"Users/{agent.pk}?attributes=name", ops)
    assert response.status_code == 200
    assert response.json()["name"]["givenName"] == "Anne"
    agent.refresh_from_db()
    assert (agent.given_name, agent.organizational_unit, agent.external_id) == ("Anne", "SG", "X1")
    readonly = {
        "schemas": [PATCH],
        "Operations": [{"op": "replace", "path": "groups", "value": [{"value": "x"}]}],
    }
    refused = send(scim_a, "patch", f"Users/{agent.pk}", readonly)
    assert refused.status_code == 400 and refused.json()["scimType"] == "mutability"
    group = send(
        scim_a,
        "post",
        "Groups",
        {"schemas": [GROUP], "displayName": "DNUM", "members": [{"value": str(agent.pk)}]},
    )
    assert group.status_code == 201
    user = send(scim_a, "get", f"Users/{agent.pk}").json()
    assert user["groups"][0]["display"] == "DNUM"
    members = send(scim_a, "get", f'Groups?filter=members.value eq "{agent.pk}"').json()
    assert members["totalResults"] == 1
    remove = {
        "schemas": [PATCH],
        "Operations": [{"op": "remove", "path": f'members[value eq "{agent.pk}"]'}],
    }
    assert send(scim_a, "patch", f"Groups/{group.json()['id']}", remove).status_code in (200, 204)
    assert not DirectoryGroup.objects.get().members.exists()


# -- Filters and pagination ----------------------------------------------------------


@pytest.fixture
def directory(world, scim_a):
    for given, usual, ext in [
        ("Anne", "Durand", "A1"),
        ("Bruno", "Dupont", "B2"),
        ("Chloé", "Martin", ""),
    ]:
        email = f"{given.lower()}.{usual.lower()}@alpha.gouv.fr"
        send(
            scim_a,
            "post",
            "Users",
            new_user(email, externalId=ext or None, name={"givenName": given, "familyName": usual}),
        )
    return scim_a


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('userName eq "ANNE.DURAND@alpha.gouv.fr"', {"anne.durand"}),
        ('userName co "dup"', {"bruno.dupont"}),
        ('userName sw "ch"', {"chloé.martin"}),
        ('externalId eq "B2"', {"bruno.dupont"}),
        ('externalId eq "b2"', set()),  # externalId is case-exact
        ('emails.value eq "anne.durand@alpha.gouv.fr"', {"anne.durand"}),
        ('emails[type eq "work" and value co "martin"]', {"chloé.martin"}),
        ('displayName eq "Bruno Dupont"', {"bruno.dupont"}),
        ('displayName co "an" and externalId pr', {"anne.durand"}),
        ('externalId eq "A1" or externalId eq "B2"', {"anne.durand", "bruno.dupont"}),
        ('name.familyName sw "Du" and not (externalId eq "A1")', {"bruno.dupont"}),
        ('userName ew "@alpha.gouv.fr" and active eq false', set()),
    ],
)
def test_filters(directory, expression, expected):
    response = send(directory, "get", "Users?" + _query({"filter": expression}))
    assert response.status_code == 200, response.json()
    # The world's own agents (agentN@, random French names) are left out of the count.
    found = {
        r["userName"].split("@")[0]
        for r in response.json()["Resources"]
        if not r["userName"].startswith("agent")
    }
    assert found == expected


def _query(params):
    from urllib.parse import urlencode

    return urlencode(params)


@pytest.mark.parametrize(
    ("expression", "scim_type"),
    [
        ('nickName eq "x"', "invalidFilter"),
        ("userName eq", "invalidFilter"),
        ('userName zz "x"', "invalidFilter"),
        ('((userName eq "x"', "invalidFilter"),
        ('active co "tr"', "invalidFilter"),
    ],
)
def test_bad_filters_are_refused_precisely(directory, expression, scim_type):
    response = send(directory, "get", "Users?" + _query({"filter": expression}))
    assert response.status_code == 400
    assert response.json()["scimType"] == scim_type
    assert response.json()["detail"]


def test_pagination_and_search_endpoint(directory):
    first = send(directory, "get", "Users?startIndex=1&count=2").json()
    second = send(directory, "get", "Users?startIndex=3&count=2").json()
    assert first["totalResults"] == second["totalResults"] >= 5
    assert first["itemsPerPage"] == 2 and second["startIndex"] == 3
    ids = [r["id"] for r in first["Resources"] + second["Resources"]]
    assert len(set(ids)) == 4
    search = send(
        directory,
        "post",
        "Users/.search",
        {"schemas": [SEARCH], "filter": 'userName sw "anne"', "attributes": ["userName"]},
    )
    assert search.status_code == 200
    resource = search.json()["Resources"][0]
    assert resource["userName"] == "anne.durand@alpha.gouv.fr" and "name" not in resource
    root = send(
        directory,
        "post",
        ".search",
        # The full name: the factories' random first names may start with "Anne" too.
        {"schemas": [SEARCH], "filter": 'displayName sw "Anne Dur"'},
    )
    assert root.json()["totalResults"] == 1


# -- ETags -----------------------------------------------------------------------------


def test_if_match_guards_writes(world, scim_a):
    url = f"Users/{world.agent_a.pk}"
    etag = send(scim_a, "get", url)["ETag"]
    assert send(scim_a, "get", url, HTTP_IF_NONE_MATCH=etag).status_code == 304
    patch = {
        "schemas": [PATCH],
        "Operations": [{"op": "replace", "path": "name.familyName", "value": "Neuf"}],
    }
    stale = 'W/"0000"'
    refused = send(scim_a, "patch", url, patch, HTTP_IF_MATCH=stale)
    assert refused.status_code == 412
    world.agent_a.refresh_from_db()
    assert world.agent_a.usual_name != "Neuf"
    ok = send(scim_a, "patch", url, patch, HTTP_IF_MATCH=etag)
    assert ok.status_code in (200, 204)
    assert ok["ETag"] != etag
    assert send(scim_a, "delete", url, HTTP_IF_MATCH=etag).status_code == 412


# -- Malformed input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "scim_type"),
    [
        ("{not json", 400, "invalidSyntax"),
        ("[]", 400, "invalidSyntax"),
        ({"schemas": ["urn:example:unknown"], "userName": "x@alpha.gouv.fr"}, 400, None),
        (
            {"schemas": [USER], "userName": "x@alpha.gouv.fr", "active": "perhaps"},
            400,
            "invalidValue",
        ),
        ({"schemas": [USER], "userName": ["x@alpha.gouv.fr"]}, 400, "invalidValue"),
        ({"schemas": [USER], "name": {"givenName": "Sans"}}, 400, None),
        ({"schemas": [USER], "userName": "pas-un-email"}, 400, "invalidValue"),
        (
            {"schemas": [USER], "userName": "x@alpha.gouv.fr", "name": {"givenName": "a" * 151}},
            400,
            "invalidValue",
        ),
    ],
)
def test_malformed_users_are_refused_and_nothing_written(world, scim_a, body, status, scim_type):
    before = Agent.objects.count()
    events = AuditEvent.objects.count()
    response = send(scim_a, "post", "Users", body)
    assert response.status_code == status, response.content
    error = response.json()
    assert error["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert error["detail"]
    if scim_type:
        assert error["scimType"] == scim_type
    assert (Agent.objects.count(), AuditEvent.objects.count()) == (before, events)


def test_wrong_patch_and_unknown_routes(world, scim_a):
    url = f"Users/{world.agent_a.pk}"
    bad_op = {"schemas": [PATCH], "Operations": [{"op": "explode", "path": "active"}]}
    assert send(scim_a, "patch", url, bad_op).status_code == 400
    bad_path = {
        "schemas": [PATCH],
        "Operations": [{"op": "replace", "path": "name[[.x", "value": "x"}],
    }
    response = send(scim_a, "patch", url, bad_path)
    assert response.status_code == 400 and response.json()["scimType"] in (
        "invalidPath",
        "noTarget",
    )
    # An attribute the service does not keep (Okta's nickName) is accepted and dropped.
    etag = send(scim_a, "get", url)["ETag"]
    ignored = {
        "schemas": [PATCH],
        "Operations": [{"op": "replace", "path": "nickName", "value": "x"}],
    }
    response = send(scim_a, "patch", url, ignored)
    assert response.status_code == 200 and "nickName" not in response.json()
    assert response["ETag"] == etag
    assert send(scim_a, "get", "Nope").status_code == 404
    assert send(scim_a, "get", "Users/not-a-uuid").status_code == 404
    assert send(scim_a, "post", "Users", "{}", CONTENT_TYPE="text/plain").status_code == 400
    huge = send(scim_a, "post", "Users", "x" * 1_000_001)
    assert huge.status_code == 413


@pytest.mark.django_db(transaction=True)
def test_concurrent_directory_creations_never_overbook(world):
    """Eight directory requests at once against two free seats: exactly two win."""
    pool = LicencePool.objects.get(ministry=world.a)
    pool.seats = Agent.objects.filter(ministry=world.a, is_active=True).count() + 2
    pool.save()
    _, clear = directory_token_issue(actor=Actor.system("tests"), ministry=world.a)
    statuses = []
    barrier = threading.Barrier(8)

    def create(n):
        client = Client(HTTP_AUTHORIZATION=f"Bearer {clear}")
        barrier.wait()
        try:
            response = send(client, "post", "Users", new_user(f"c{n}@alpha.gouv.fr"))
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201, 201] + [409] * 6
    assert Agent.objects.filter(ministry=world.a, is_active=True).count() == pool.seats


def test_a_bad_attributes_parameter_is_refused_before_any_write(world, scim_a):
    """POST, PATCH and PUT check every part of the request before writing: a bad
    ``attributes`` answers 400 and nothing is written (PATCH and PUT used to write)."""
    url = f"Users/{world.agent_a.pk}"
    before = world.agent_a.usual_name
    events = AuditEvent.objects.count()
    patch = {
        "schemas": [PATCH],
        "Operations": [{"op": "replace", "path": "name.familyName", "value": "Neuf"}],
    }
    for method, body in (("patch", patch), ("put", new_user(world.agent_a.email))):
        refused = send(scim_a, method, f"{url}?attributes=name[", body)
        assert refused.status_code == 400, refused.content
        assert refused.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
        world.agent_a.refresh_from_db()
        assert world.agent_a.usual_name == before
    assert AuditEvent.objects.count() == events
    refused = send(scim_a, "post", "Users?attributes=name[", new_user("neuf@alpha.gouv.fr"))
    assert refused.status_code == 400
    assert not Agent.objects.filter(email="neuf@alpha.gouv.fr").exists()
    created = send(scim_a, "post", "Users?attributes=userName", new_user("neuf@alpha.gouv.fr"))
    assert created.status_code == 201 and "name" not in created.json()
    assert created.json()["userName"] == "neuf@alpha.gouv.fr"


def test_active_may_be_left_out(world, scim_a):
    """A new agent is active; a replacement without it keeps the agent's state."""
    created = send(scim_a, "post", "Users", {"schemas": [USER], "userName": "sans@alpha.gouv.fr"})
    assert created.status_code == 201 and created.json()["active"] is True
    url = f"Users/{created.json()['id']}"
    off = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": False}]}
    assert send(scim_a, "patch", url, off).json()["active"] is False
    body = {"schemas": [USER], "userName": "sans@alpha.gouv.fr", "name": {"givenName": "Sans"}}
    replaced = send(scim_a, "put", url, body)
    assert replaced.status_code == 200 and replaced.json()["active"] is False
    # It cannot be removed: an agent always has a state.
    remove = {"schemas": [PATCH], "Operations": [{"op": "remove", "path": "active"}]}
    refused = send(scim_a, "patch", url, remove)
    assert refused.status_code == 400 and refused.json()["scimType"] == "mutability"
