"""API clients as the callers of the tests: a console session or an API token."""

from rest_framework.test import APIClient

from tests.factories import api_token_issued


def client_as(user) -> APIClient:
    """An API client logged in with a session (as the console does), asking for English."""
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    if user is not None:
        client.force_login(user)
    return client


def client_with_token(admin, ministry, role: str) -> APIClient:
    """An API client carrying a fresh API token of ``ministry`` with ``role``."""
    _, clear = api_token_issued(admin, ministry, role)
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {clear}", HTTP_ACCEPT_LANGUAGE="en")
