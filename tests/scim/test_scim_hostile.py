"""SCIM under hostile input: every bad request gets a SCIM error body with the right
status and scimType (never Django's 500 page) and writes nothing; deleted agents are
gone for the directory; concurrent writes answer 409 naming the attribute; one
language per answer."""

import io
import json
import threading
import time
from datetime import timedelta

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.models import Agent
from audit.actor import Actor
from audit.models import AuditEvent
from scim.models import DirectoryGroup
from scim.services import agents_erase_due
from tests.scim.test_scim import GROUP, PATCH, SEARCH, USER, new_user, scim_client, send

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


@pytest.fixture
def scim_a(world):
    return scim_client(world.a)


def written():
    """What a refused request must leave as it was."""
    return (
        Agent.objects.count(),
        DirectoryGroup.objects.count(),
        AuditEvent.objects.count(),
        sorted(Agent.objects.values_list("email", "external_id", "given_name", "is_active")),
    )


def refused(response, status, scim_type, *words):
    """The answer is RFC 7644's error body with ``status``, ``scimType`` and a detail
    naming each of ``words``."""
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == "application/scim+json"
    body = response.json()
    assert body["schemas"] == [ERROR]
    assert body["status"] == str(status)
    assert body.get("scimType") == scim_type, body
    for word in words:
        assert word in body["detail"], body
    return body


# -- Bounds ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, attribute",
    [
        ("startIndex=9223372036854775808", "startIndex"),
        ("startIndex=99999999999999999999999", "startIndex"),
        ("count=9223372036854775808", "count"),
        ("startIndex=abc", "startIndex"),
        ("count=1.5", "count"),
    ],
)
def test_paging_out_of_range_or_not_integers(scim_a, query, attribute):
    refused(send(scim_a, "get", f"Users?{query}"), 400, "invalidValue", attribute)
    search = {"schemas": [SEARCH]}
    name, _, value = query.partition("=")
    search[name] = int(value) if value.isdigit() else value
    refused(send(scim_a, "post", "Users/.search", search), 400, "invalidValue", attribute)


def test_paging_below_one_reads_as_rfc_7644_says(world, scim_a):
    """startIndex below 1 is 1 and a negative count is 0 (RFC 7644 §3.4.2.4)."""
    body = send(scim_a, "get", "Users?startIndex=-5&count=1").json()
    assert body["startIndex"] == 1 and body["itemsPerPage"] == 1
    assert send(scim_a, "get", "Users?count=-3").json()["itemsPerPage"] == 0


def test_deep_nesting_is_invalid_syntax(scim_a):
    before = written()
    for depth in (40, 1_500, 100_000):
        nested = "[" * depth + "]" * depth
        body = f'{{"schemas": ["{USER}"], "userName": "deep@alpha.gouv.fr", "name": {nested}}}'
        refused(send(scim_a, "post", "Users", body), 400, "invalidSyntax", "nested")
    assert written() == before


@pytest.mark.parametrize(
    "extra, attribute",
    [
        ({"externalId": "x" * 256}, "externalId"),
        ({"name": {"givenName": "x" * 151}}, "name.givenName"),
        ({"name": {"familyName": "x" * 151}}, "name.familyName"),
    ],
)
def test_strings_longer_than_their_column(world, scim_a, extra, attribute):
    before = written()
    response = send(scim_a, "post", "Users", new_user("long@alpha.gouv.fr", **extra))
    refused(response, 400, "invalidValue", attribute)
    # The same on a replacement and a PATCH.
    agent = world.agent_a
    put = send(scim_a, "put", f"Users/{agent.pk}", new_user(agent.email, **extra))
    refused(put, 400, "invalidValue", attribute)
    assert written() == before


def test_long_user_name_and_group_strings(scim_a):
    before = written()
    long_address = "a" * 64 + "." + "b" * 200 + "@alpha.gouv.fr"
    refused(send(scim_a, "post", "Users", new_user(long_address)), 400, "invalidValue", "userName")
    group = {"schemas": [GROUP], "displayName": "g" * 201}
    refused(send(scim_a, "post", "Groups", group), 400, "invalidValue", "displayName")
    group = {"schemas": [GROUP], "displayName": "g", "externalId": "e" * 256}
    refused(send(scim_a, "post", "Groups", group), 400, "invalidValue", "externalId")
    assert written() == before


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x07", "\x1b", "\x7f", "\n", "\t"])
def test_control_characters_anywhere_are_invalid_values(world, scim_a, char):
    before = written()
    bodies = [
        new_user(f"ctl{char}x@alpha.gouv.fr"),
        new_user("ctl@alpha.gouv.fr", externalId=f"id{char}"),
        new_user("ctl@alpha.gouv.fr", name={"givenName": f"An{char}ne"}),
        {**new_user("ctl@alpha.gouv.fr"), f"key{char}": "x"},
    ]
    for body in bodies:
        refused(send(scim_a, "post", "Users", body), 400, "invalidValue", "control character")
    patch = {
        "schemas": [PATCH],
        "Operations": [{"op": "replace", "path": "externalId", "value": f"x{char}"}],
    }
    response = send(scim_a, "patch", f"Users/{world.agent_a.pk}", patch)
    refused(response, 400, "invalidValue", "control character")
    group = {"schemas": [GROUP], "displayName": f"Te{char}am"}
    refused(send(scim_a, "post", "Groups", group), 400, "invalidValue", "displayName")
    assert written() == before


def test_line_breaks_are_let_through_to_attributes_we_do_not_store():
    """RFC 7643 lets a formatted address hold line breaks: the body check lets them
    through (the attributes we store refuse them, as above); never in a name."""
    from scim2_models import InvalidValueException

    from scim.protocol import _check_tree

    _check_tree({"addresses": [{"formatted": "1 rue de la Paix\n75002 Paris\tFrance"}]})
    with pytest.raises(InvalidValueException):
        _check_tree({"addresses": [{"formatted": "nul\x00"}]})
    with pytest.raises(InvalidValueException):
        _check_tree({"addresses\n": "x"})


@pytest.mark.parametrize(
    "address",
    [
        "a@b@alpha.gouv.fr",
        '"a b"@alpha.gouv.fr',
        '"anne"@alpha.gouv.fr',
        "<script>@alpha.gouv.fr",
        "anne<script>@alpha.gouv.fr",
        "anne@[127.0.0.1]",
        "anne@127.0.0.1",
        "anne(comment)@alpha.gouv.fr",
        ".anne@alpha.gouv.fr",
        "anne.@alpha.gouv.fr",
        "an..ne@alpha.gouv.fr",
        "an ne@alpha.gouv.fr",
        "anne@alpha.gouv.fr.",
        "@alpha.gouv.fr",
        "anne",
    ],
)
def test_malformed_addresses_are_refused(world, scim_a, address):
    before = written()
    refused(send(scim_a, "post", "Users", new_user(address)), 400, "invalidValue", "userName")
    agent = world.agent_a
    put = send(scim_a, "put", f"Users/{agent.pk}", new_user(address))
    refused(put, 400, "invalidValue", "userName")
    assert written() == before


@pytest.mark.parametrize(
    "address",
    [
        "prenom.nom@alpha.gouv.fr",
        "jean-pierre.dupont-durand@alpha.gouv.fr",
        "anne.durand+visio@alpha.gouv.fr",
        "o'neil@alpha.gouv.fr",
        "Prenom.Nom@ALPHA.gouv.fr",
        "agent_42@alpha.gouv.fr",
    ],
)
def test_ordinary_addresses_are_accepted(scim_a, address):
    response = send(scim_a, "post", "Users", new_user(address))
    assert response.status_code == 201, response.json()
    assert response.json()["userName"] == address.lower()


def test_one_validator_for_api_and_csv(world):
    """The API and the CSV import refuse what SCIM refuses."""
    from tests.support.clients import client_as

    response = client_as(world.admin_a).post(
        "/api/v1/agents/",
        {"ministry": "alpha", "email": "a@b@alpha.gouv.fr"},
        format="json",
    )
    assert response.status_code == 400 and "email" in response.json()

    from accounts.imports import _check_row

    assert _check_row({"email": "<script>@alpha.gouv.fr"}, {"alpha.gouv.fr"})[0] == "email"
    assert _check_row({"email": "prenom.nom@alpha.gouv.fr"}, {"alpha.gouv.fr"}) is None


# -- Filters -------------------------------------------------------------------------


def _or_chain(terms: int) -> str:
    return " or ".join(f'userName eq "u{i}@alpha.gouv.fr"' for i in range(terms))


def test_filter_terms_are_bounded(scim_a):
    assert send(scim_a, "get", "Users", data={"filter": _or_chain(50)}).status_code == 200
    response = send(scim_a, "get", "Users", data={"filter": _or_chain(51)})
    refused(response, 400, "invalidFilter", "50")
    search = {"schemas": [SEARCH], "filter": _or_chain(51)}
    refused(send(scim_a, "post", "Users/.search", search), 400, "invalidFilter", "50")
    refused(send(scim_a, "post", ".search", search), 400, "invalidFilter", "50")


def test_huge_or_chain_is_refused_at_once(scim_a):
    started = time.monotonic()
    response = send(scim_a, "get", "Users", data={"filter": _or_chain(23_000)})
    refused(response, 400, "invalidFilter", "characters")
    assert time.monotonic() - started < 2


def test_filter_nesting_is_bounded(scim_a):
    deep = "(" * 200 + 'userName eq "x@alpha.gouv.fr"' + ")" * 200
    refused(send(scim_a, "get", "Users", data={"filter": deep}), 400, "invalidFilter", "nested")
    quoted = 'userName eq "((((((((((((((((((((((((((((((@alpha.gouv.fr"'
    assert send(scim_a, "get", "Users", data={"filter": quoted}).status_code == 200


# -- Deletion and erasure ---------------------------------------------------------------


def _delete(world, scim_a, erase=False):
    agent = world.agent_a
    Agent.objects.filter(pk=agent.pk).update(external_id="dir-1")
    group = {"schemas": [GROUP], "displayName": "Team", "members": [{"value": str(agent.pk)}]}
    group_id = send(scim_a, "post", "Groups", group).json()["id"]
    assert send(scim_a, "delete", f"Users/{agent.pk}").status_code == 204
    if erase:
        later = timezone.now() + timedelta(days=world.a.retention_days + 1)
        assert agents_erase_due(actor=Actor.system("tests"), now=later) == 1
    return agent, group_id


@pytest.mark.parametrize("erase", [False, True], ids=["deleted", "erased"])
def test_deleted_and_erased_agents_are_gone_everywhere(world, scim_a, erase):
    agent, group_id = _delete(world, scim_a, erase=erase)
    email = Agent.objects.get(pk=agent.pk).deleted_email if not erase else None
    refused(send(scim_a, "get", f"Users/{agent.pk}"), 404, None)
    refused(send(scim_a, "put", f"Users/{agent.pk}", new_user("x@alpha.gouv.fr")), 404, None)
    refused(send(scim_a, "patch", f"Users/{agent.pk}", {"schemas": [PATCH]}), 404, None)
    listed = send(scim_a, "get", "Users?count=200").json()["Resources"]
    assert str(agent.pk) not in {r["id"] for r in listed}
    for query in (f'id eq "{agent.pk}"', 'externalId eq "dir-1"', 'userName ew "@invalid"'):
        assert send(scim_a, "get", "Users", data={"filter": query}).json()["totalResults"] == 0
    if email:
        found = send(scim_a, "get", "Users", data={"filter": f'userName eq "{email}"'})
        assert found.json()["totalResults"] == 0
    assert send(scim_a, "get", f"Groups/{group_id}").json().get("members") is None
    patch = {
        "schemas": [PATCH],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": str(agent.pk)}]}],
    }
    refused(send(scim_a, "patch", f"Groups/{group_id}", patch), 400, "invalidValue", "Member")


def test_deleted_values_are_free_again(world, scim_a):
    agent, _group = _delete(world, scim_a)
    email = Agent.objects.get(pk=agent.pk).deleted_email
    # The externalId goes to another agent, by PATCH...
    other = Agent.objects.filter(ministry=world.a, is_active=True).exclude(pk=agent.pk).first()
    patch = {
        "schemas": [PATCH],
        "Operations": [{"op": "replace", "path": "externalId", "value": "dir-1"}],
    }
    assert send(scim_a, "patch", f"Users/{other.pk}", patch).status_code == 200
    # ...and the address to a new resource.
    created = send(scim_a, "post", "Users", new_user(email, externalId="dir-2"))
    assert created.status_code == 201 and created.json()["id"] != str(agent.pk)
    # The API allows the address again too (its uniqueness ignores the deleted row).
    assert Agent.objects.filter(deleted_email=email, pk=agent.pk).exists()


def test_deleted_agents_next_login_does_not_land_on_the_deleted_row(world, scim_a):
    Agent.objects.filter(pk=world.agent_a.pk).update(sub="the-sub")
    agent, _group = _delete(world, scim_a)
    agent.refresh_from_db()
    assert agent.sub is None and not agent.is_active
    assert not Agent.objects.filter(sub="the-sub").exists()


# -- Protocol ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, method, allow",
    [
        ("Users", "delete", "GET, POST, HEAD"),
        ("Users/.search", "get", "POST"),
        ("ServiceProviderConfig", "post", "GET, HEAD"),
        ("Schemas", "put", "GET, HEAD"),
        (".search", "get", "POST"),
    ],
)
def test_405_names_the_allowed_methods(scim_a, path, method, allow):
    response = send(scim_a, method, path)
    refused(response, 405, None, method.upper())
    assert response["Allow"] == allow


def test_405_on_an_item_names_its_methods(world, scim_a):
    response = send(scim_a, "post", f"Users/{world.agent_a.pk}", new_user("x@alpha.gouv.fr"))
    refused(response, 405, None)
    assert response["Allow"] == "GET, PUT, PATCH, DELETE, HEAD"


def test_head_answers_like_get_without_a_body(world, scim_a):
    got = send(scim_a, "get", f"Users/{world.agent_a.pk}")
    head = scim_a.head(f"/scim/v2/Users/{world.agent_a.pk}")
    assert head.status_code == 200 and head.content == b""
    assert head["ETag"] == got["ETag"]
    assert scim_a.head("/scim/v2/Users").status_code == 200
    not_served = scim_a.head("/scim/v2/Users/.search")
    assert not_served.status_code == 405 and not_served["Allow"] == "POST"


def test_bodiless_answers_have_no_content_type(world, scim_a):
    got = send(scim_a, "get", f"Users/{world.agent_a.pk}")
    unchanged = scim_a.get(f"/scim/v2/Users/{world.agent_a.pk}", HTTP_IF_NONE_MATCH=got["ETag"])
    assert unchanged.status_code == 304 and "Content-Type" not in unchanged
    deleted = send(scim_a, "delete", f"Users/{world.agent_a.pk}")
    assert deleted.status_code == 204 and "Content-Type" not in deleted


def _wsgi(token, method, path, body: bytes, **environ):
    """Call the WSGI app as a server passing a chunked body does: no Content-Length."""
    captured = {}

    def start_response(status, headers):
        captured["status"], captured["headers"] = status, dict(headers)

    env = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "CONTENT_TYPE": "application/scim+json",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "REMOTE_ADDR": "127.0.0.1",
        **environ,
    }
    content = b"".join(WSGIHandler()(env, start_response))
    return int(captured["status"].split()[0]), json.loads(content or b"null")


@pytest.mark.django_db(transaction=True)
def test_chunked_body_is_read(world):
    from scim.tokens import directory_token_issue

    _, clear = directory_token_issue(actor=Actor.system("tests"), ministry=world.a)
    body = json.dumps(new_user("chunked@alpha.gouv.fr")).encode()
    status, answer = _wsgi(clear, "POST", "/scim/v2/Users", body)
    assert status == 201, answer
    assert Agent.objects.filter(email="chunked@alpha.gouv.fr").exists()
    status, answer = _wsgi(clear, "POST", "/scim/v2/Users", b"x" * 1_000_001)
    assert status == 413 and answer["status"] == "413"


def test_invalid_json_and_wrong_shapes_agree_between_post_and_patch(world, scim_a):
    """Not JSON: invalidSyntax on every write; a value of the wrong type:
    invalidValue on every write; never pydantic's raw text."""
    agent = world.agent_a
    for method, path in (("post", "Users"), ("patch", f"Users/{agent.pk}")):
        body = refused(send(scim_a, method, path, "{not json"), 400, "invalidSyntax", "JSON")
        assert "line 1 column" not in body["detail"]
        refused(send(scim_a, method, path, "[]"), 400, "invalidSyntax")
    for path, value, attribute in (
        ("userName", ["x"], "userName"),
        ("active", "maybe", "active"),
        ("name.givenName", 5, "givenName"),
        (f"{USER.replace('core', 'extension:enterprise')}:department", ["x"], "department"),
    ):
        operation = {"op": "replace", "path": path, "value": value}
        patch = {"schemas": [PATCH], "Operations": [operation]}
        response = send(scim_a, "patch", f"Users/{agent.pk}", patch)
        body = refused(response, 400, "invalidValue", attribute)
        assert "validation error" not in body["detail"] and "pydantic" not in body["detail"]
        french = send(scim_a, "patch", f"Users/{agent.pk}", patch, HTTP_ACCEPT_LANGUAGE="fr")
        assert attribute in refused(french, 400, "invalidValue", "doit")["detail"]
    wrong = new_user(agent.email, active="maybe")
    french = send(scim_a, "post", "Users", wrong, HTTP_ACCEPT_LANGUAGE="fr")
    assert refused(french, 400, "invalidValue")["detail"] == "active doit valoir true ou false."
    refused(send(scim_a, "put", f"Users/{agent.pk}", wrong), 400, "invalidValue", "active")
    refused(send(scim_a, "post", "Users", wrong), 400, "invalidValue", "active")


# -- Language ---------------------------------------------------------------------------


def test_one_language_per_answer_english_by_default(world, scim_a):
    taken = new_user(world.agent_a.email)
    english = send(scim_a, "post", "Users", taken)
    refused(english, 409, "uniqueness", "already taken")
    assert english["Content-Language"] == "en"
    french = send(scim_a, "post", "Users", taken, HTTP_ACCEPT_LANGUAGE="fr-FR,fr;q=0.9")
    body = refused(french, 409, "uniqueness", "userName", "déjà")
    assert french["Content-Language"] == "fr"
    assert "already" not in body["detail"]
    # A service's refusal (the domain rule) follows the same language.
    outside = new_user("anne@elsewhere.fr")
    detail = refused(send(scim_a, "post", "Users", outside), 400, "invalidValue")["detail"]
    assert "is not one of the ministry" in detail
    fr = send(scim_a, "post", "Users", outside, HTTP_ACCEPT_LANGUAGE="fr")
    assert refused(fr, 400, "invalidValue")["detail"] != detail
    # An unknown language falls back to English; a 404 outside the routes too.
    de = send(scim_a, "get", "Users/nope", HTTP_ACCEPT_LANGUAGE="de")
    assert de["Content-Language"] == "en" and "not found" in de.json()["detail"]
    # In French the whole sentence is French, the resource's kind included.
    missing = send(scim_a, "get", "Groups/nope", HTTP_ACCEPT_LANGUAGE="fr").json()["detail"]
    assert missing == "Groupe « nope » introuvable."
    # scim2-models' own refusals and the filters' are reworded too.
    read_only = {
        "schemas": [PATCH],
        "Operations": [{"op": "replace", "path": "id", "value": "x"}],
    }
    url = f"Users/{world.agent_a.pk}"
    english = refused(send(scim_a, "patch", url, read_only), 400, "mutability")["detail"]
    french = send(scim_a, "patch", url, read_only, HTTP_ACCEPT_LANGUAGE="fr")
    assert refused(french, 400, "mutability", "id")["detail"] != english
    assert "lecture seule" in french.json()["detail"]
    for expression in ('zzz eq "x"', "userName eq", 'active eq "x"'):
        query = {"filter": expression}
        detail = refused(
            send(scim_a, "get", "Users", data=query, HTTP_ACCEPT_LANGUAGE="fr"),
            400,
            "invalidFilter",
        )["detail"]
        english = refused(send(scim_a, "get", "Users", data=query), 400, "invalidFilter")["detail"]
        assert detail != english, expression
    stranger = Client(HTTP_AUTHORIZATION="Bearer scim_made-up")
    unknown = send(stranger, "get", "Users", HTTP_ACCEPT_LANGUAGE="fr")
    assert refused(unknown, 401, None)["detail"].startswith("Jeton d’annuaire")
    unknown = send(stranger, "get", "Users")
    assert "directory token" in refused(unknown, 401, None)["detail"]
    nowhere = send(Client(), "get", "Nowhere", HTTP_ACCEPT_LANGUAGE="fr")
    assert nowhere["Content-Language"] == "fr" and "Rien" in nowhere.json()["detail"]


def test_console_stays_french_whatever_the_browser_says(world):
    from tests.support.clients import client_as

    page = client_as(world.admin_a).get("/", HTTP_ACCEPT_LANGUAGE="en")
    assert page.get("Content-Language", "fr") == "fr"


# -- Races ------------------------------------------------------------------------------


def _at_once(count, request):
    """Run ``request(i)`` in ``count`` threads released together; their answers."""
    barrier = threading.Barrier(count)
    answers = [None] * count

    def run(i):
        try:
            barrier.wait()
            answers[i] = request(i)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def _answer(response):
    return response.status_code, response.json() if response.content else None


@pytest.mark.django_db(transaction=True)
def test_ten_simultaneous_creates_of_one_user_name(world):
    _, clear = scim_token(world)
    answers = _at_once(
        10,
        lambda i: _answer(
            send(client(clear), "post", "Users", new_user("race@alpha.gouv.fr", externalId=f"e{i}"))
        ),
    )
    statuses = sorted(status for status, _ in answers)
    assert statuses == [201] + [409] * 9, answers
    for status, body in answers:
        if status == 409:
            assert body["scimType"] == "uniqueness" and "userName" in body["detail"], body
    assert Agent.objects.filter(email="race@alpha.gouv.fr").count() == 1


@pytest.mark.django_db(transaction=True)
def test_ten_simultaneous_creates_of_one_external_id(world):
    _, clear = scim_token(world)
    answers = _at_once(
        10,
        lambda i: _answer(
            send(client(clear), "post", "Users", new_user(f"r{i}@alpha.gouv.fr", externalId="same"))
        ),
    )
    assert sorted(s for s, _ in answers) == [201] + [409] * 9, answers
    for status, body in answers:
        if status == 409:
            assert body["scimType"] == "uniqueness" and "externalId" in body["detail"], body
    assert Agent.objects.filter(external_id="same").count() == 1


@pytest.mark.django_db(transaction=True)
def test_simultaneous_renames_to_one_address(world):
    _, clear = scim_token(world)
    first = send(client(clear), "post", "Users", new_user("one@alpha.gouv.fr")).json()["id"]
    second = send(client(clear), "post", "Users", new_user("two@alpha.gouv.fr")).json()["id"]
    rename = {
        "schemas": [PATCH],
        "Operations": [{"op": "replace", "path": "userName", "value": "both@alpha.gouv.fr"}],
    }
    ids = [first, second] * 3
    answers = _at_once(
        6, lambda i: _answer(send(client(clear), "patch", f"Users/{ids[i]}", rename))
    )
    statuses = sorted(s for s, _ in answers)
    assert 409 in statuses and 500 not in statuses and 400 not in statuses, answers
    for status, body in answers:
        if status == 409:
            assert body["scimType"] == "uniqueness" and "userName" in body["detail"], body
    assert Agent.objects.filter(email="both@alpha.gouv.fr").count() == 1


@pytest.mark.django_db(transaction=True)
def test_group_delete_and_patch_at_once_is_no_outage(world):
    _, clear = scim_token(world)
    members = [
        send(client(clear), "post", "Users", new_user(f"m{i}@alpha.gouv.fr")).json()["id"]
        for i in range(6)
    ]
    for _round in range(3):
        group = {"schemas": [GROUP], "displayName": "Team", "members": [{"value": members[0]}]}
        group_id = send(client(clear), "post", "Groups", group).json()["id"]

        def act(i, group_id=group_id):
            if i % 2 == 0:
                return _answer(send(client(clear), "delete", f"Groups/{group_id}"))
            patch = {
                "schemas": [PATCH],
                "Operations": [
                    {"op": "add", "path": "members", "value": [{"value": m} for m in members]}
                ],
            }
            return _answer(send(client(clear), "patch", f"Groups/{group_id}", patch))

        answers = _at_once(4, act)
        assert {s for s, _ in answers} <= {200, 204, 404, 409}, answers
        assert 503 not in {s for s, _ in answers}


@pytest.mark.django_db(transaction=True)
def test_if_match_is_checked_under_the_row_lock(world):
    """Two writers holding the same version: one wins, the other gets 412 (no lost
    update), whatever the timing."""
    _, clear = scim_token(world)
    created = send(client(clear), "post", "Users", new_user("etag@alpha.gouv.fr"))
    etag, user_id = created["ETag"], created.json()["id"]

    def write(i):
        patch = {
            "schemas": [PATCH],
            "Operations": [{"op": "replace", "path": "externalId", "value": f"v{i}"}],
        }
        return _answer(send(client(clear), "patch", f"Users/{user_id}", patch, HTTP_IF_MATCH=etag))

    answers = _at_once(6, write)
    assert sorted(s for s, _ in answers) == [200] + [412] * 5, answers


def scim_token(world):
    from scim.tokens import directory_token_issue

    return directory_token_issue(actor=Actor.system("tests"), ministry=world.a)


def client(clear):
    return Client(HTTP_AUTHORIZATION=f"Bearer {clear}")


@pytest.mark.parametrize(
    "taken, attribute",
    [({"email": "agent"}, "userName"), ({"external_id": "dir-7"}, "externalId")],
)
def test_a_value_taken_past_the_checks_is_a_conflict(world, scim_a, monkeypatch, taken, attribute):
    """When a concurrent write takes the value between the checks and the insert, the
    database's constraint answers, by its name: 409 uniqueness naming the attribute."""
    import accounts.agents

    Agent.objects.filter(pk=world.agent_a.pk).update(external_id="dir-7")
    monkeypatch.setattr(accounts.agents, "_check_agent_email", lambda m, email, **kw: email)
    monkeypatch.setattr(accounts.agents, "_check_external_id", lambda *args, **kw: None)
    email = world.agent_a.email if "email" in taken else "libre@alpha.gouv.fr"
    before = written()
    response = send(scim_a, "post", "Users", new_user(email, externalId="dir-7"))
    refused(response, 409, "uniqueness", attribute)
    assert written() == before
    # The same on a rename.
    other = Agent.objects.filter(ministry=world.a).exclude(pk=world.agent_a.pk).first()
    response = send(scim_a, "put", f"Users/{other.pk}", new_user(email, externalId="dir-7"))
    refused(response, 409, "uniqueness", attribute)
    assert written() == before


def test_a_login_with_a_malformed_address_is_refused(world):
    from accounts.login import LoginRefused, agent_login

    world.a.allow_creation_at_first_login = True
    before = written()
    for address in ("a@b@alpha.gouv.fr", '"a b"@alpha.gouv.fr', "<script>@alpha.gouv.fr"):
        with pytest.raises(LoginRefused) as exc:
            agent_login(claims={"sub": "s-1", "email": address, "siret": ""})
        assert exc.value.reason == "claims_missing"
    assert written() == before


def test_a_deleted_agent_cannot_be_reactivated_or_changed(world, scim_a):
    from tests.support.clients import client_as

    agent, _group = _delete(world, scim_a)
    admin = client_as(world.admin_a)
    shown = admin.get(f"/api/v1/agents/{agent.pk}/").json()
    assert shown["deleted_at"] and shown["abilities"]["reactivate"] is False
    response = admin.post(f"/api/v1/agents/{agent.pk}/reactivate/")
    assert response.status_code == 400
    assert shown["abilities"]["update"] is False
    response = admin.patch(
        f"/api/v1/agents/{agent.pk}/", {"email": "back@alpha.gouv.fr"}, format="json"
    )
    assert response.status_code == 400 and "deleted" in str(response.json())
    assert not Agent.objects.filter(email="back@alpha.gouv.fr").exists()
    agent.refresh_from_db()
    assert not agent.is_active


def test_role_invitations_use_the_same_email_check(world):
    from django.core.exceptions import ValidationError

    from accounts.grants import role_grant_invite
    from accounts.models import Role

    with pytest.raises(ValidationError) as exc:
        role_grant_invite(
            actor=Actor.system("tests"),
            email="a@b@alpha.gouv.fr",
            role=Role.MINISTRY_ADMIN,
            ministry=world.a,
        )
    assert "email" in exc.value.message_dict


@pytest.mark.django_db(transaction=True)
def test_simultaneous_group_creates_of_one_external_id(world):
    _, clear = scim_token(world)

    def create(i):
        group = {"schemas": [GROUP], "displayName": f"Team {i}", "externalId": "grp-1"}
        return _answer(send(client(clear), "post", "Groups", group))

    answers = _at_once(6, create)
    assert sorted(s for s, _ in answers) == [201] + [409] * 5, answers
    for status, body in answers:
        if status == 409:
            assert body["scimType"] == "uniqueness" and "externalId" in body["detail"], body
    assert DirectoryGroup.objects.filter(external_id="grp-1").count() == 1


def test_a_deadlock_is_retried_once_then_answers_409_not_an_outage(world, scim_a, monkeypatch):
    from django.db import OperationalError

    import scim.services

    class DeadlockDetected(Exception):
        sqlstate = "40P01"

    group = {"schemas": [GROUP], "displayName": "Team"}
    group_id = send(scim_a, "post", "Groups", group).json()["id"]
    real, calls = scim.services.group_replace, []

    def deadlocks(times):
        def replace(**kwargs):
            calls.append(1)
            if len(calls) <= times:
                raise OperationalError("deadlock detected") from DeadlockDetected()
            return real(**kwargs)

        return replace

    rename = {
        "schemas": [PATCH],
        "Operations": [{"op": "replace", "path": "displayName", "value": "Renamed"}],
    }
    monkeypatch.setattr(scim.services, "group_replace", deadlocks(1))
    assert send(scim_a, "patch", f"Groups/{group_id}", rename).status_code == 204
    assert len(calls) == 2
    calls.clear()
    monkeypatch.setattr(scim.services, "group_replace", deadlocks(5))
    response = send(
        scim_a,
        "patch",
        f"Groups/{group_id}",
        rename | {"Operations": [{"op": "replace", "path": "displayName", "value": "Again"}]},
    )
    refused(response, 409, None, "concurrent")
    assert DirectoryGroup.objects.get(pk=group_id).display_name == "Renamed"
