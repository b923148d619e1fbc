"""Microsoft Entra ID's provisioning requests, replayed as its public documentation
shows them: "Tutorial: Develop and plan provisioning for a SCIM endpoint in Microsoft
Entra ID" (use-scim-to-provision-users-and-groups, section "SCIM protocol requests
and responses") and "Known issues and resolutions with SCIM 2.0 protocol compliance"
(application-provisioning-config-problem-scim-compatibility: the requests sent with
and without the ``aadOptscim062020`` flag).

Only the email domain is adapted (``testuser.com``, ``microsoft.com`` become the test
ministry's ``alpha.gouv.fr``), and ids are the ones this server issued. The one other
adaptation is said where it is made: the tutorial's create sends a userName and a
work email that differ; an agent has one address, so the replay maps both to it
(and the literal pair is shown to get a precise 400).
"""

import json

import pytest

from accounts.models import Agent
from audit.models import AuditEvent
from scim.models import DirectoryGroup
from tests.scim.test_scim import ENTERPRISE, scim_client

DOMAIN = "alpha.gouv.fr"
USER_NAME = f"Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee@{DOMAIN}"
OTHER_MAIL = f"Test_User_11bb11bb-cc22-dd33-ee44-55ff55ff55ff@{DOMAIN}"


def entra(client, method, path, body=None, **headers):
    """A request as Entra's provisioning service sends it (application/scim+json)."""
    kwargs = {"content_type": "application/scim+json", **headers}
    if body is not None:
        kwargs["data"] = json.dumps(body)
    return getattr(client, method)(f"/scim/v2/{path}", **kwargs)


def create_user_body(user_name=USER_NAME, mail=USER_NAME):
    """Tutorial, "Create User" request (mail: see the module's docstring)."""
    return {
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        ],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": user_name,
        "active": True,
        "emails": [{"primary": True, "type": "work", "value": mail}],
        "meta": {"resourceType": "User"},
        "name": {
            "formatted": "givenName familyName",
            "familyName": "familyName",
            "givenName": "givenName",
        },
        "roles": [],
    }


@pytest.fixture
def directory(world):
    return scim_client(world.a)


@pytest.fixture
def created(directory):
    response = entra(directory, "post", "Users", create_user_body())
    assert response.status_code == 201, response.json()
    return response.json()


def patch_op(*operations):
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": list(operations),
    }


# -- Users -------------------------------------------------------------------------------


def test_create_user_as_the_tutorial_sends_it(world, created):
    assert created["userName"] == USER_NAME.lower()
    assert created["externalId"] == "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"
    assert created["name"] == {"familyName": "familyName", "givenName": "givenName"}
    assert created["emails"] == [{"value": USER_NAME.lower(), "type": "work", "primary": True}]
    assert created["active"] is True
    # Attributes not kept (name.formatted, roles, meta) are neither errors nor stored.
    assert "roles" not in created
    agent = Agent.objects.get(pk=created["id"])
    assert (agent.ministry, agent.email, agent.given_name, agent.usual_name) == (
        world.a,
        USER_NAME.lower(),
        "givenName",
        "familyName",
    )


def test_create_with_two_different_addresses_is_refused_precisely(world, directory):
    """The tutorial's literal pair: userName and the work email differ. An agent has one
    professional address, so the directory must map both to it (docs/scim.md)."""
    before = Agent.objects.count()
    response = entra(directory, "post", "Users", create_user_body(mail=OTHER_MAIL))
    assert response.status_code == 400
    error = response.json()
    assert error["scimType"] == "invalidValue"
    assert 'emails[type eq "work"].value' in error["detail"]
    assert OTHER_MAIL.lower() in error["detail"] and USER_NAME.lower() in error["detail"]
    assert Agent.objects.count() == before


def test_get_user_and_get_user_by_query(directory, created):
    got = entra(directory, "get", f"Users/{created['id']}")
    assert got.status_code == 200 and got.json()["userName"] == USER_NAME.lower()
    # The probe before every create: userName eq, with Entra's casing.
    found = entra(directory, "get", f'Users?filter=userName eq "{USER_NAME}"').json()
    assert found["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
    assert found["totalResults"] == 1 and found["Resources"][0]["id"] == created["id"]
    by_mail = entra(directory, "get", f'Users?filter=emails[type eq "work"].value eq "{USER_NAME}"')
    assert by_mail.json()["totalResults"] == 1
    # With the aadOptscim062020 flag in the tenant URL, Entra sends it in every query.
    flagged = entra(directory, "get", f'Users?aadOptscim062020&filter=userName eq "{USER_NAME}"')
    assert flagged.status_code == 200 and flagged.json()["totalResults"] == 1
    none = entra(directory, "get", 'Users?filter=userName eq "non-existent user"').json()
    assert (none["totalResults"], none["Resources"]) == (0, [])
    missing = entra(directory, "get", "Users/5171a35d82074e068ce2")
    assert missing.status_code == 404
    assert missing.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


def test_update_user_multi_valued_properties(directory, created):
    """Tutorial, "Update User [Multi-valued properties]": the work email and the family
    name, with Entra's capitalised op. A new work email alone renames the agent."""
    body = patch_op(
        {
            "op": "Replace",
            "path": 'emails[type eq "work"].value',
            "value": f"updatedEmail@{DOMAIN}",
        },
        {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
    )
    response = entra(directory, "patch", f"Users/{created['id']}", body)
    assert response.status_code == 200, response.json()
    user = response.json()
    assert user["userName"] == f"updatedemail@{DOMAIN}"
    assert user["emails"][0]["value"] == f"updatedemail@{DOMAIN}"
    assert user["name"]["familyName"] == "updatedFamilyName"
    agent = Agent.objects.get(pk=created["id"])
    assert (agent.email, agent.usual_name) == (f"updatedemail@{DOMAIN}", "updatedFamilyName")


def test_update_user_single_valued_properties(directory, created):
    """Tutorial, "Update User [Single-valued properties]": a new userName; the work email
    follows (the agent has one address)."""
    new = f"5b50642d-79fc-4410-9e90-4c077cdd1a59@{DOMAIN}"
    body = patch_op({"op": "Replace", "path": "userName", "value": new})
    response = entra(directory, "patch", f"Users/{created['id']}", body)
    assert response.status_code == 200, response.json()
    assert response.json()["emails"] == [{"value": new, "type": "work", "primary": True}]
    assert Agent.objects.get(pk=created["id"]).email == new


def test_a_rename_sends_user_name_and_work_email_together(world, directory, created):
    url = f"Users/{created['id']}"
    both = patch_op(
        {"op": "Replace", "path": "userName", "value": f"jeanne.martin@{DOMAIN}"},
        {
            "op": "Replace",
            "path": 'emails[type eq "work"].value',
            "value": f"Jeanne.Martin@{DOMAIN}",
        },
    )
    assert entra(directory, "patch", url, both).status_code == 200
    assert Agent.objects.get(pk=created["id"]).email == f"jeanne.martin@{DOMAIN}"
    # Still within the ministry's domains...
    outside = patch_op(
        {"op": "Replace", "path": "userName", "value": "jeanne.martin@bravo.gouv.fr"},
        {
            "op": "Replace",
            "path": 'emails[type eq "work"].value',
            "value": "jeanne.martin@bravo.gouv.fr",
        },
    )
    refused = entra(directory, "patch", url, outside)
    assert refused.status_code == 400 and refused.json()["scimType"] == "invalidValue"
    # ...and two different new addresses are refused, naming both; nothing changes.
    split = patch_op(
        {"op": "Replace", "path": "userName", "value": f"a@{DOMAIN}"},
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": f"b@{DOMAIN}"},
    )
    refused = entra(directory, "patch", url, split)
    assert refused.status_code == 400 and refused.json()["scimType"] == "invalidValue"
    assert f"a@{DOMAIN}" in refused.json()["detail"] and f"b@{DOMAIN}" in refused.json()["detail"]
    assert Agent.objects.get(pk=created["id"]).email == f"jeanne.martin@{DOMAIN}"


@pytest.mark.parametrize(
    "operations",
    [
        # Without the aadOptscim062020 flag: one Replace per attribute.
        [
            {"op": "Replace", "path": "displayName", "value": "Pvlo"},
            {
                "op": "Replace",
                "path": 'emails[type eq "work"].value',
                "value": f"TestBcwqnm@{DOMAIN}",
            },
            {"op": "Replace", "path": "name.givenName", "value": "Gtfd"},
            {"op": "Replace", "path": "name.familyName", "value": "Pkqf"},
            {"op": "Replace", "path": "externalId", "value": "Eqpj"},
            {"op": "Replace", "path": f"{ENTERPRISE}:employeeNumber", "value": "Eqpj"},
        ],
        # With the flag: a value object whose keys are attribute paths.
        [
            {
                "op": "replace",
                "path": 'emails[type eq "work"].value',
                "value": f"TestBcwqnm@{DOMAIN}",
            },
            {
                "op": "replace",
                "value": {
                    "displayName": "Bjfe",
                    "name.givenName": "Gtfd",
                    "name.familyName": "Pkqf",
                    f"{ENTERPRISE}:employeeNumber": "Eqpj",
                },
            },
        ],
    ],
    ids=["without-flag", "aadOptscim062020"],
)
def test_replace_multiple_attributes_with_and_without_the_flag(directory, created, operations):
    response = entra(directory, "patch", f"Users/{created['id']}", patch_op(*operations))
    assert response.status_code == 200, response.json()
    agent = Agent.objects.get(pk=created["id"])
    assert (agent.email, agent.given_name, agent.usual_name, agent.employee_number) == (
        f"testbcwqnm@{DOMAIN}",
        "Gtfd",
        "Pkqf",
        "Eqpj",
    )
    # displayName is derived from the names: the written one is accepted, not kept.
    assert response.json()["displayName"] == "Gtfd Pkqf"
    assert response.json()[ENTERPRISE]["employeeNumber"] == "Eqpj"


@pytest.mark.parametrize("op", ["Add", "add"], ids=["without-flag", "aadOptscim062020"])
def test_add_a_single_value_attribute_not_kept(directory, created, op):
    """nickName is not kept: accepted, nothing changes (not even the version)."""
    url = f"Users/{created['id']}"
    etag = entra(directory, "get", url)["ETag"]
    response = entra(
        directory, "patch", url, patch_op({"op": op, "path": "nickName", "value": "Babs"})
    )
    assert response.status_code == 200 and response["ETag"] == etag
    assert "nickName" not in response.json()


@pytest.mark.parametrize("value", ["False", False], ids=["without-flag", "aadOptscim062020"])
def test_disable_user(world, directory, created, value):
    body = patch_op({"op": "Replace", "path": "active", "value": value})
    response = entra(directory, "patch", f"Users/{created['id']}", body)
    assert response.status_code == 200 and response.json()["active"] is False
    agent = Agent.objects.get(pk=created["id"])
    assert not agent.is_active and agent.deactivated_at
    enable = patch_op({"op": "Replace", "path": "active", "value": "True"})
    assert entra(directory, "patch", f"Users/{created['id']}", enable).json()["active"] is True


def test_delete_user(directory, created):
    assert entra(directory, "delete", f"Users/{created['id']}").status_code == 204
    assert entra(directory, "get", f"Users/{created['id']}").status_code == 404


def test_create_with_the_default_attribute_mappings(world, directory):
    """Every attribute of Entra's default user mappings (the tutorial's table): kept
    when the agent has a column for it, accepted and dropped otherwise."""
    manager = entra(
        directory, "post", "Users", create_user_body(f"chef@{DOMAIN}", f"chef@{DOMAIN}")
    )
    manager_id = manager.json()["id"]
    body = {
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        ],
        "externalId": "jdupont",
        "userName": f"jeanne.dupont@{DOMAIN}",
        "active": True,
        "displayName": "Jeanne Dupont",
        "title": "Cheffe de bureau",
        "preferredLanguage": "fr-FR",
        "emails": [{"primary": True, "type": "work", "value": f"jeanne.dupont@{DOMAIN}"}],
        "name": {"formatted": "Jeanne Dupont", "familyName": "Dupont", "givenName": "Jeanne"},
        "phoneNumbers": [
            {"type": "work", "value": "+33 1 23 45 67 89"},
            {"type": "mobile", "value": "+33 6 12 34 56 78"},
            {"type": "fax", "value": "+33 1 23 45 67 00"},
        ],
        "addresses": [
            {
                "type": "work",
                "formatted": "20 avenue de Ségur",
                "streetAddress": "20 avenue de Ségur",
                "locality": "Paris",
                "region": "Île-de-France",
                "postalCode": "75007",
                "country": "FR",
                "primary": True,
            }
        ],
        "roles": [],
        ENTERPRISE: {"employeeNumber": "A-1234", "department": "DNUM/SDIT", "manager": manager_id},
    }
    response = entra(directory, "post", "Users", body)
    assert response.status_code == 201, response.json()
    user = response.json()
    assert (user["title"], user["preferredLanguage"]) == ("Cheffe de bureau", "fr-FR")
    assert user[ENTERPRISE]["employeeNumber"] == "A-1234"
    assert user[ENTERPRISE]["department"] == "DNUM/SDIT"
    assert user[ENTERPRISE]["manager"] == {
        "value": manager_id,
        "$ref": f"http://testserver/scim/v2/Users/{manager_id}",
    }
    assert "phoneNumbers" not in user and "addresses" not in user
    agent = Agent.objects.get(pk=user["id"])
    assert (agent.title, agent.preferred_language, agent.employee_number) == (
        "Cheffe de bureau",
        "fr-FR",
        "A-1234",
    )
    assert (agent.organizational_unit, str(agent.manager_id)) == ("DNUM/SDIT", manager_id)
    for expression in (
        'title eq "Cheffe de bureau"',
        'preferredLanguage eq "fr-fr"',
        f'{ENTERPRISE}:employeeNumber eq "A-1234"',
        f'{ENTERPRISE}:manager.value eq "{manager_id}"',
    ):
        found = entra(directory, "get", f"Users?filter={expression}").json()
        assert [r["id"] for r in found["Resources"]] == [user["id"]], expression
    event = AuditEvent.objects.get(action="agent.create", object_id=str(agent.pk))
    assert "+33" not in json.dumps(event.data)  # what is not kept is not recorded either


def test_manager_is_patched_as_a_bare_id_and_must_be_of_the_ministry(world, directory, created):
    """Entra sends the manager as the SCIM id string, in an Add once both users exist."""
    url = f"Users/{created['id']}"
    path = f"{ENTERPRISE}:manager"
    chef = str(world.agent_a.pk)
    response = entra(directory, "patch", url, patch_op({"op": "Add", "path": path, "value": chef}))
    assert response.status_code == 200, response.json()
    assert response.json()[ENTERPRISE]["manager"]["value"] == chef
    assert str(Agent.objects.get(pk=created["id"]).manager_id) == chef
    # Another ministry's agent, an unknown id, the agent itself: 400, nothing changes.
    for wrong in (str(world.agent_b.pk), "f648f8d5ea4e4cd38e9c", created["id"]):
        refused = entra(
            directory, "patch", url, patch_op({"op": "Replace", "path": path, "value": wrong})
        )
        assert refused.status_code == 400, wrong
        assert refused.json()["scimType"] == "invalidValue"
        assert world.agent_b.email not in refused.json()["detail"]
    assert str(Agent.objects.get(pk=created["id"]).manager_id) == chef
    removed = entra(directory, "patch", url, patch_op({"op": "Remove", "path": path}))
    assert removed.status_code == 200 and ENTERPRISE not in removed.json()
    assert Agent.objects.get(pk=created["id"]).manager_id is None


def test_title_and_preferred_language_paths(directory, created):
    url = f"Users/{created['id']}"
    body = patch_op(
        {"op": "Add", "path": "title", "value": "Chargé de mission"},
        {"op": "Add", "path": "preferredLanguage", "value": "en-US"},
    )
    assert entra(directory, "patch", url, body).status_code == 200
    agent = Agent.objects.get(pk=created["id"])
    assert (agent.title, agent.preferred_language) == ("Chargé de mission", "en-US")
    bad = patch_op({"op": "Replace", "path": "preferredLanguage", "value": "pas une langue"})
    refused = entra(directory, "patch", url, bad)
    assert refused.status_code == 400 and refused.json()["scimType"] == "invalidValue"
    long = patch_op({"op": "Replace", "path": "title", "value": "x" * 129})
    refused = entra(directory, "patch", url, long).json()
    # The same one-line detail as a POST's, not pydantic's report.
    assert refused["detail"] == "String should have at most 128 characters: title"


# -- Groups --------------------------------------------------------------------------------


@pytest.fixture
def group(directory):
    """Tutorial, "Create Group": Entra adds its ADSCIM Group schema URN."""
    body = {
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:Group",
            "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group",
        ],
        "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
        "displayName": "displayName",
        "meta": {"resourceType": "Group"},
    }
    response = entra(directory, "post", "Groups", body)
    assert response.status_code == 201, response.json()
    return response.json()


def test_group_create_get_and_get_by_display_name(directory, group):
    assert group["displayName"] == "displayName"
    assert group["externalId"] == "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159"
    got = entra(directory, "get", f"Groups/{group['id']}?excludedAttributes=members")
    assert got.status_code == 200 and "members" not in got.json()
    found = entra(
        directory, "get", 'Groups?excludedAttributes=members&filter=displayName eq "displayName"'
    ).json()
    assert found["totalResults"] == 1 and found["Resources"][0]["id"] == group["id"]


def test_group_update_non_member_attributes(directory, group):
    name = "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"
    body = patch_op({"op": "Replace", "path": "displayName", "value": name})
    response = entra(directory, "patch", f"Groups/{group['id']}", body)
    assert response.status_code == 204 and not response.content  # as the tutorial answers
    got = entra(directory, "get", f"Groups/{group['id']}")
    assert got["ETag"] == response["ETag"]
    assert DirectoryGroup.objects.get(pk=group["id"]).display_name == name


@pytest.mark.parametrize(
    "remove",
    [
        lambda member: {
            "op": "Remove",
            "path": "members",
            "value": [{"$ref": None, "value": member}],
        },
        lambda member: {"op": "remove", "path": f'members[value eq "{member}"]'},
    ],
    ids=["tutorial-and-without-flag", "aadOptscim062020"],
)
def test_group_add_and_remove_members(world, directory, group, created, remove):
    url = f"Groups/{group['id']}"
    member, other = created["id"], str(world.agent_a.pk)
    add = patch_op(
        {"op": "Add", "path": "members", "value": [{"$ref": None, "value": member}]},
        {"op": "Add", "path": "members", "value": [{"$ref": None, "value": other}]},
    )
    assert entra(directory, "patch", url, add).status_code in (200, 204)
    members = DirectoryGroup.objects.get(pk=group["id"]).members
    assert {str(pk) for pk in members.values_list("pk", flat=True)} == {member, other}
    assert entra(directory, "patch", url, patch_op(remove(member))).status_code in (200, 204)
    assert [str(pk) for pk in members.values_list("pk", flat=True)] == [other]
    # Another ministry's agent cannot be added.
    foreign = patch_op(
        {"op": "Add", "path": "members", "value": [{"value": str(world.agent_b.pk)}]}
    )
    refused = entra(directory, "patch", url, foreign)
    assert refused.status_code == 400 and refused.json()["scimType"] == "invalidValue"


def test_delete_group(directory, group):
    assert entra(directory, "delete", f"Groups/{group['id']}").status_code == 204
    assert not DirectoryGroup.objects.filter(pk=group["id"]).exists()


def test_schema_discovery(directory):
    response = entra(directory, "get", "Schemas")
    assert response.status_code == 200
    body = response.json()
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
    user = next(
        s for s in body["Resources"] if s["id"] == "urn:ietf:params:scim:schemas:core:2.0:User"
    )
    user_name = next(a for a in user["attributes"] if a["name"] == "userName")
    assert (user_name["required"], user_name["mutability"], user_name["uniqueness"]) == (
        True,
        "readWrite",
        "server",
    )


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ('phoneNumbers[type eq "work"].value', "+33 1 23 45 67 89"),
        ('phoneNumbers[type eq "mobile"].value', "+33 6 12 34 56 78"),
        ('addresses[type eq "work"].postalCode', "75007"),
        ('addresses[type eq "other"].formatted', "Bureau 12"),
        ('emails[type eq "other"].value', "perso@example.com"),
        ("name.formatted", "Jeanne Dupont"),
        ("roles", []),
        (f"{ENTERPRISE}:costCenter", "CC-1"),
        ("urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User:tag", "701984"),
    ],
)
def test_patch_of_an_attribute_not_kept_changes_nothing(directory, created, path, value):
    url = f"Users/{created['id']}"
    etag = entra(directory, "get", url)["ETag"]
    body = patch_op({"op": "Add", "path": path, "value": value})
    response = entra(directory, "patch", url, body)
    assert response.status_code == 200, response.json()
    assert response["ETag"] == etag
    assert Agent.objects.get(pk=created["id"]).email == USER_NAME.lower()
