"""Okta's provisioning requests, replayed as its public "SCIM 2.0 Protocol Reference"
shows them (developer.okta.com/docs/reference/scim/scim-20): the userName probe,
create, list, get, PUT, deactivation and password sync by PATCH, and Group Push
(create, rename, membership changes, delete).

Only the email domain is adapted (``okta.local`` becomes the test ministry's
``alpha.gouv.fr``), and ids are the ones this server issued.
"""

import json

import pytest

from accounts.models import Agent
from audit.models import AuditEvent
from scim.models import DirectoryGroup
from tests.scim.test_scim import scim_client

DOMAIN = "alpha.gouv.fr"
USER_NAME = f"test.user@{DOMAIN}"
PASSWORD = "1mz050nq"


def okta(client, method, path, body=None):
    """A request as the Okta SCIM Client 1.0.0 sends it."""
    kwargs = {"content_type": "application/scim+json", "HTTP_USER_AGENT": "Okta SCIM Client 1.0.0"}
    if body is not None:
        kwargs["data"] = json.dumps(body)
    return getattr(client, method)(f"/scim/v2/{path}", **kwargs)


def create_body():
    """The reference's "Create the User" request."""
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": USER_NAME,
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": True, "value": USER_NAME, "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": PASSWORD,
        "active": True,
    }


def patch_op(*operations):
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": list(operations),
    }


@pytest.fixture
def directory(world):
    return scim_client(world.a)


@pytest.fixture
def created(directory):
    response = okta(directory, "post", "Users", create_body())
    assert response.status_code == 201, response.json()
    return response.json()


def test_probe_then_create_then_conflict(world, directory):
    probe = okta(
        directory,
        "get",
        "Users?filter=userName%20eq%20%22test.user%40alpha.gouv.fr%22&startIndex=1&count=100",
    )
    assert probe.status_code == 200
    assert probe.json()["totalResults"] == 0 and probe.json()["Resources"] == []
    response = okta(directory, "post", "Users", create_body())
    assert response.status_code == 201, response.json()
    user = response.json()
    assert user["userName"] == USER_NAME and user["externalId"] == "00ujl29u0le5T6Aj10h7"
    assert user["displayName"] == "Test User" and user["active"] is True
    assert user["emails"] == [{"value": USER_NAME, "type": "work", "primary": True}]
    # locale and password are accepted and not kept; the password is nowhere.
    assert "locale" not in user and "password" not in user
    agent = Agent.objects.get(pk=user["id"])
    assert agent.ministry == world.a and not agent.has_usable_password()
    events = AuditEvent.objects.filter(object_id=str(agent.pk))
    assert PASSWORD not in json.dumps(list(events.values_list("data", flat=True)))
    again = okta(directory, "get", "Users?filter=userName%20eq%20%22test.user%40alpha.gouv.fr%22")
    assert again.json()["totalResults"] == 1
    duplicate = okta(directory, "post", "Users", create_body())
    assert duplicate.status_code == 409 and duplicate.json()["scimType"] == "uniqueness"


def test_retrieve_users_by_page_and_one(directory, created):
    page = okta(directory, "get", "Users?startIndex=1&count=100").json()
    assert isinstance(page["totalResults"], int) and isinstance(page["startIndex"], int)
    assert created["id"] in {r["id"] for r in page["Resources"]}
    one = okta(directory, "get", f"Users/{created['id']}")
    assert one.status_code == 200 and one.json()["userName"] == USER_NAME


def test_update_user_by_put(directory, created):
    """The reference's PUT: the whole user, with its id, a middleName, the emails'
    display, an empty groups list and meta (none of which is an error)."""
    body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": created["id"],
        "userName": USER_NAME,
        "name": {"givenName": "Another", "middleName": "Excited", "familyName": "User"},
        "emails": [{"primary": True, "value": USER_NAME, "type": "work", "display": USER_NAME}],
        "active": True,
        "groups": [],
        "meta": {"resourceType": "User"},
    }
    response = okta(directory, "put", f"Users/{created['id']}", body)
    assert response.status_code == 200, response.json()
    assert response.json()["name"] == {"givenName": "Another", "familyName": "User"}
    assert Agent.objects.get(pk=created["id"]).given_name == "Another"


def test_put_renaming_the_user_with_the_old_work_email_renames_it(directory, created):
    """A PUT carrying a new userName and the emails Okta last read: the address that
    changed wins. A personal (home) address is neither kept nor an error."""
    body = {
        **create_body(),
        "id": created["id"],
        "userName": f"new.name@{DOMAIN}",
        "emails": [
            {"primary": True, "value": USER_NAME, "type": "work"},
            {"value": "perso@example.com", "type": "home"},
        ],
    }
    response = okta(directory, "put", f"Users/{created['id']}", body)
    assert response.status_code == 200, response.json()
    assert response.json()["emails"] == [
        {"value": f"new.name@{DOMAIN}", "type": "work", "primary": True}
    ]
    assert Agent.objects.get(pk=created["id"]).email == f"new.name@{DOMAIN}"


def test_put_naming_another_id_is_refused(world, directory, created):
    body = {**create_body(), "id": str(world.agent_a.pk), "name": {"givenName": "Autre"}}
    response = okta(directory, "put", f"Users/{created['id']}", body)
    assert response.status_code == 400 and response.json()["scimType"] == "invalidValue"
    assert Agent.objects.get(pk=created["id"]).given_name == "Test"
    world.agent_a.refresh_from_db()
    assert world.agent_a.given_name != "Autre"


def test_deactivate_user(directory, created):
    body = patch_op({"op": "replace", "value": {"active": False}})
    response = okta(directory, "patch", f"Users/{created['id']}", body)
    assert response.status_code == 200 and response.json()["active"] is False
    assert not Agent.objects.get(pk=created["id"]).is_active


def test_password_sync_is_accepted_and_never_stored(directory, created):
    url = f"Users/{created['id']}"
    etag = okta(directory, "get", url)["ETag"]
    events = AuditEvent.objects.count()
    for body in (
        patch_op({"op": "replace", "value": {"password": "t0p-s3cret"}}),
        patch_op({"op": "replace", "path": "password", "value": "t0p-s3cret"}),
    ):
        response = okta(directory, "patch", url, body)
        assert response.status_code == 200 and response["ETag"] == etag
        assert "t0p-s3cret" not in response.content.decode()
    assert not Agent.objects.get(pk=created["id"]).has_usable_password()
    assert AuditEvent.objects.count() == events


# -- Group Push ------------------------------------------------------------------------


@pytest.fixture
def group(directory):
    body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Test SCIMv2",
        "members": [],
    }
    response = okta(directory, "post", "Groups", body)
    assert response.status_code == 201, response.json()
    return response.json()


def test_group_create_and_retrieve(directory, group):
    assert group["displayName"] == "Test SCIMv2" and "id" in group
    assert okta(directory, "get", "Groups?startIndex=1&count=100").json()["totalResults"] == 1
    assert okta(directory, "get", f"Groups/{group['id']}").status_code == 200


def test_group_rename_with_its_id_in_the_value(directory, group):
    body = patch_op({"op": "replace", "value": {"id": group["id"], "displayName": "Test SCIMv20"}})
    response = okta(directory, "patch", f"Groups/{group['id']}", body)
    assert response.status_code == 204, response.content
    assert DirectoryGroup.objects.get(pk=group["id"]).display_name == "Test SCIMv20"


def test_group_membership_remove_add_and_replace_with_display(world, directory, group, created):
    url = f"Groups/{group['id']}"
    other = str(world.agent_a.pk)
    members = DirectoryGroup.objects.get(pk=group["id"]).members
    seed = patch_op({"op": "add", "path": "members", "value": [{"value": other, "display": "x"}]})
    assert okta(directory, "patch", url, seed).status_code == 204
    body = patch_op(
        {"op": "remove", "path": f'members[value eq "{other}"]'},
        {"op": "add", "path": "members", "value": [{"value": created["id"], "display": USER_NAME}]},
    )
    response = okta(directory, "patch", url, body)
    assert response.status_code == 204, response.content
    assert [str(pk) for pk in members.values_list("pk", flat=True)] == [created["id"]]
    full = patch_op(
        {
            "op": "replace",
            "path": "members",
            "value": [
                {"value": created["id"], "display": USER_NAME},
                {"value": other, "display": USER_NAME},
            ],
        }
    )
    assert okta(directory, "patch", url, full).status_code == 204
    assert {str(pk) for pk in members.values_list("pk", flat=True)} == {created["id"], other}


def test_group_delete(directory, group):
    assert okta(directory, "delete", f"Groups/{group['id']}").status_code == 204
    assert okta(directory, "get", f"Groups/{group['id']}").status_code == 404


def test_create_with_the_profile_attributes_okta_maps_by_default(world, directory):
    """Okta's SCIM app profile beyond the reference's example: what the agent has a
    column for is kept, the rest (nickName, profileUrl, timezone, userType, phones,
    addresses, the manager's displayName…) is accepted and dropped."""
    enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", enterprise],
        "userName": f"jean.martin@{DOMAIN}",
        "name": {
            "givenName": "Jean",
            "familyName": "Martin",
            "middleName": "Paul",
            "honorificPrefix": "M.",
        },
        "emails": [{"primary": True, "value": f"jean.martin@{DOMAIN}", "type": "work"}],
        "displayName": "Jean Martin",
        "nickName": "JM",
        "profileUrl": "https://intranet.example/jm",
        "title": "Adjoint",
        "userType": "Employee",
        "preferredLanguage": "fr",
        "locale": "fr-FR",
        "timezone": "Europe/Paris",
        "phoneNumbers": [{"value": "+33 6 00 00 00 00", "type": "mobile"}],
        "addresses": [{"locality": "Paris", "country": "FR", "type": "work"}],
        "externalId": "00ujl29u0le5T6Aj10h8",
        "groups": [],
        "password": PASSWORD,
        "active": True,
        enterprise: {
            "employeeNumber": "42",
            "costCenter": "CC",
            "organization": "Ministère",
            "division": "DNUM",
            "department": "SDIT",
            "manager": {"value": str(world.agent_a.pk), "displayName": "Chef"},
        },
    }
    response = okta(directory, "post", "Users", body)
    assert response.status_code == 201, response.json()
    agent = Agent.objects.get(pk=response.json()["id"])
    assert (agent.title, agent.preferred_language, agent.employee_number) == ("Adjoint", "fr", "42")
    assert (agent.organizational_unit, agent.manager_id) == ("SDIT", world.agent_a.pk)
    assert set(response.json()) >= {"title", "preferredLanguage", enterprise}
    assert not {"nickName", "profileUrl", "timezone", "locale", "userType"} & set(response.json())
    assert not agent.has_usable_password()
