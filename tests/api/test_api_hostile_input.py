"""Regressions of what the API fuzzing found: NUL bytes reaching PostgreSQL (500),
responses the committed schema did not describe."""

from pathlib import Path

import pytest
import yaml

from accounts.models import ApiToken
from scim.models import DirectoryToken
from tests.factories import MediaNodeFactory
from tests.support.clients import client_as, client_with_token

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
SCHEMA = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())


def refusing(client):
    """A client that returns a 500 instead of raising the view's exception."""
    client.raise_request_exception = False
    return client


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/agents/", {"email": "x@alpha.gouv.fr"}),
        ("/api/v1/api-tokens/", {"name": "x", "role": "auditor"}),
        ("/api/v1/directory-tokens/", {}),
        ("/api/v1/role-grants/", {"role": "auditor"}),
        (
            "/api/v1/licence-pools/",
            {
                "starts_on": "2026-01-01",
                "ends_on": "2026-12-31",
                "seats": 3,
                "foreign_price_eur": "1",
                "sovereign_cost_eur": "1",
            },
        ),
    ],
)
def test_a_nul_in_a_ministry_code_is_a_field_error(world, path, body):
    """A ministry named with a NUL byte is a 400 on the field, not a database error."""
    client = refusing(client_as(world.operator))
    response = client.post(path, {**body, "ministry": "alpha\x00"}, format="json")
    assert response.status_code == 400, response.content[:300]
    assert response.json()["ministry"] == ["Null characters are not allowed."]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/ministries/alpha%00/",
        "/api/v1/media-nodes/paris-1%00/",
        "/api/v1/rooms/abc%00/",
        "/api/v1/rooms/abc%00/join/",
        "/api/v1/no-such-thing/",
    ],
)
def test_a_url_naming_nothing_is_a_json_404(world, path):
    """Lookups are slugs: anything else (a NUL) is a 404 with the API's JSON body."""
    MediaNodeFactory(name="paris-1")
    response = refusing(client_as(world.operator)).get(path)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_the_console_keeps_its_html_404(world):
    """Outside /api/ the 404 is still the page."""
    response = client_as(world.operator).get("/console/nowhere/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_savings_of_a_ministry_named_with_nul_is_a_400(world):
    """``?ministry=`` with a NUL byte names no ministry: 400, as an unknown code."""
    response = refusing(client_as(world.operator)).get(
        "/api/v1/licence-pools/savings/", {"ministry": "alpha\x00"}
    )
    assert response.status_code == 400
    assert "ministry" in response.json()


def test_national_staff_have_no_ministry_and_the_schema_says_so(world):
    """The operator lists agents with no ministry; Agent.ministry is nullable."""
    body = client_as(world.operator).get("/api/v1/agents/", {"limit": 500}).json()
    assert None in {agent["ministry"] for agent in body["results"]}
    assert SCHEMA["components"]["schemas"]["Agent"]["properties"]["ministry"]["nullable"]


def test_revoking_a_token_answers_200_with_the_token_as_documented(world):
    """DELETE of an API or directory token returns the revoked token: 200, documented."""
    admin = client_as(world.admin_a)
    client_with_token(world.admin_a, world.a, "auditor")
    token = ApiToken.objects.get(ministry=world.a)
    response = admin.delete(f"/api/v1/api-tokens/{token.pk}/")
    assert response.status_code == 200 and response.json()["revoked_at"]
    admin.post("/api/v1/directory-tokens/", {"ministry": "alpha"}, format="json")
    directory = DirectoryToken.objects.get(ministry=world.a)
    response = admin.delete(f"/api/v1/directory-tokens/{directory.pk}/")
    assert response.status_code == 200 and response.json()["revoked_at"]
    paths = SCHEMA["paths"]
    for path in ("/api/v1/api-tokens/{id}/", "/api/v1/directory-tokens/{id}/"):
        assert "200" in paths[path]["delete"]["responses"]
        assert "204" not in paths[path]["delete"]["responses"]


def test_every_operation_documents_its_refusals():
    """401 and 403 everywhere, 404 with a path parameter, 400 with input; JSON bodies."""
    for path, operations in SCHEMA["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"401", "403"} <= set(responses), (method, path)
            if "{" in path:
                assert "404" in responses, (method, path)
            if "requestBody" in operation:
                assert {"400", "415"} <= set(responses), (method, path)
            for code, response in responses.items():
                if code.startswith(("4", "5")):
                    assert "application/json" in response["content"], (method, path, code)
