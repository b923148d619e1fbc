"""A SCIM create answers from the row it created: the same body and version as a
read, without reading it back."""

import json

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audit.actor import Actor
from scim.services import directory_token_issue

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
