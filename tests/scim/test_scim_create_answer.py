"""A SCIM create answers from the row it created: the same body and version as a
read, without reading it back."""

import json

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audit.actor import Actor
from scim.tokens import directory_token_issue

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def test_created_user_answer_is_what_a_read_returns_and_costs_no_read(world):
    """The 201's body, ETag and Location equal a GET's, and no query reads the agent
    or its groups after the transaction commits."""
    _, clear = directory_token_issue(actor=Actor.system("tests"), ministry=world.a)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {clear}")
    body = {
        "schemas": [USER, ENTERPRISE],
        "userName": "Paul.Durand@alpha.gouv.fr",
        "externalId": "E-7",
        "active": True,
        "name": {"givenName": "Paul", "familyName": "Durand"},
        ENTERPRISE: {"department": "DNUM"},
    }
    with CaptureQueriesContext(connection) as captured:
        created = client.post(
            "/scim/v2/Users", json.dumps(body), content_type="application/scim+json"
        )
    assert created.status_code == 201, created.json()
    sql = [q["sql"] for q in captured.captured_queries]
    last_write = max(i for i, s in enumerate(sql) if s.startswith(("INSERT", "WITH")))
    assert not [s for s in sql[last_write + 1 :] if s.startswith("SELECT")], sql[last_write:]
    read = client.get(f"/scim/v2/Users/{created.json()['id']}")
    assert read.status_code == 200
    assert created.json() == read.json()
    assert created["ETag"] == read["ETag"]
    assert created["Location"] == read.json()["meta"]["location"]


def _scim(world):
    _, clear = directory_token_issue(actor=Actor.system("tests"), ministry=world.a)
    return Client(HTTP_AUTHORIZATION=f"Bearer {clear}")


def _post(client, body):
    return client.post("/scim/v2/Users", json.dumps(body), content_type="application/scim+json")


def test_taken_values_answer_409_naming_the_attribute(world):
    """With no check before the insert, a taken userName (in any case) or externalId
    still answers 409 ``uniqueness`` naming it, and writes nothing."""
    client = _scim(world)
    first = {"schemas": [USER], "userName": "a.b@alpha.gouv.fr", "externalId": "X1", "active": True}
    assert _post(client, first).status_code == 201
    again = _post(client, {**first, "userName": "A.B@alpha.gouv.fr", "externalId": "X2"})
    assert (again.status_code, again.json()["scimType"]) == (409, "uniqueness")
    assert "userName" in again.json()["detail"]
    same_id = _post(client, {**first, "userName": "c.d@alpha.gouv.fr"})
    assert (same_id.status_code, same_id.json()["scimType"]) == (409, "uniqueness")
    assert "externalId" in same_id.json()["detail"]
    assert not world.a.agents.filter(email="c.d@alpha.gouv.fr").exists()


def test_an_address_outside_the_domains_is_refused_before_uniqueness(world):
    """Another ministry's agent's address sent to A is refused for its domain (400),
    never 409: A's directory does not learn that B holds it."""
    body = {"schemas": [USER], "userName": world.agent_b.email, "active": True}
    response = _post(_scim(world), body)
    assert response.status_code == 400, response.json()
    assert "domain" in response.json()["detail"]


def test_a_probe_by_username_costs_one_query_and_totals_stay_right(world):
    """Entra's probe (a filter matching nobody) reads one page and no COUNT; a page
    that is full, or past the end, still counts, so totalResults is always exact."""
    client = _scim(world)
    for i in range(3):
        _post(client, {"schemas": [USER], "userName": f"u{i}@alpha.gouv.fr", "active": True})
    probe = 'filter=userName eq "nobody@alpha.gouv.fr"'
    with CaptureQueriesContext(connection) as captured:
        answer = client.get(f"/scim/v2/Users?{probe}").json()
    assert (answer["totalResults"], answer["Resources"]) == (0, [])
    selects = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT")]
    assert len(selects) == 2, selects  # the token, then the page
    assert not any("COUNT(" in s for s in selects)
    total = world.a.agents.count()
    for query, expected_items in (
        ("startIndex=1&count=2", 2),  # a full page: counted
        (f"startIndex={total}&count=5", 1),  # the last, partial page
        (f"startIndex={total + 5}&count=5", 0),  # past the end: counted
        ("count=0", 0),  # no page at all: counted
    ):
        page = client.get(f"/scim/v2/Users?{query}").json()
        assert (page["totalResults"], page["itemsPerPage"]) == (total, expected_items), query
