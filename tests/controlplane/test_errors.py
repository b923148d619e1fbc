"""The one error table: each domain error answers the same status and code on the API
and on SCIM, from ``controlplane.errors``."""

import json

import pytest
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db import OperationalError
from rest_framework.test import APIRequestFactory

from controlplane.api import exception_handler
from controlplane.errors import Conflict, Outage, error_describe
from controlplane.ratelimit import RateLimited
from licensing.services import NoFreeSeat
from media_nodes.placement import NoNodeAvailable
from media_nodes.queueing import QueueUnavailable

CASES = [
    (PermissionDenied("Only platform operators may do this."), 403, "refused"),
    (ObjectDoesNotExist(), 404, "not_found"),
    (Conflict("This address is taken."), 409, "conflict"),
    (NoFreeSeat(type("M", (), {"code": "alpha"})(), 10), 409, "no_free_seat"),
    (OperationalError("connection refused"), 503, "service_unavailable"),
    (NoNodeAvailable(size=10, tags=[]), 503, "no_node"),
    (QueueUnavailable(), 503, "placement_unavailable"),
    (RateLimited("scim", 7), 429, "rate_limited"),
]


@pytest.mark.parametrize(("exc", "status", "code"), CASES, ids=lambda v: str(v)[:20])
def test_the_api_and_scim_answer_each_error_alike(exc, status, code, rf):
    """The API's body carries the table's code and status; SCIM's error body the
    same status (and, where the table gives one, the same ``scimType``)."""
    from scim.protocol import scim_error_response  # imported here: slow to import at collection

    described = error_describe(exc)
    assert (described.status, described.code) == (status, code)
    request = APIRequestFactory().get("/api/v1/anything/")
    api = exception_handler(exc, {"request": request})
    assert api.status_code == status and api.data["code"] == code
    assert api.data["detail"] == described.detail
    scim = scim_error_response(described)
    body = json.loads(scim.content)
    assert scim.status_code == status and body["status"] == str(status)
    assert body["detail"] == described.detail
    assert body.get("scimType") == described.scim_type
    for header, value in described.headers.items():
        assert api[header] == scim[header] == value


def test_a_validation_error_keeps_its_fields_on_the_api():
    """A service's ValidationError answers 400 with the messages by field on the API,
    and ``invalidValue`` with the messages joined on SCIM."""
    exc = ValidationError({"email": ["Not a professional address."]})
    request = APIRequestFactory().post("/api/v1/agents/")
    api = exception_handler(exc, {"request": request})
    assert api.status_code == 400 and api.data == {"email": ["Not a professional address."]}
    described = error_describe(exc)
    assert (described.status, described.scim_type) == (400, "invalidValue")
    assert described.detail == "Not a professional address."


def test_anything_else_is_not_a_domain_error():
    """A bug is not in the table: the edges let it become a 500."""
    assert error_describe(KeyError("x")) is None
    assert error_describe(RuntimeError()) is None
    assert issubclass(NoNodeAvailable, Outage) and issubclass(QueueUnavailable, Outage)
