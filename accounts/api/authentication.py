"""Bearer API tokens for ministry automation."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from accounts.tokens import api_token_authenticate


class ApiTokenPrincipal:
    """The caller behind an API token: acts only through the token's ministry and role."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, token):
        self.api_token = token
        self.ministry_id = token.ministry_id
        self.email = f"api-token:{token.prefix}"

    def __str__(self) -> str:
        return self.email


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer vcp_…``; any other scheme is left to session auth."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: expected 'Bearer <token>'."
            )
        try:
            clear = header[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Malformed API token.") from exc
        try:
            token = api_token_authenticate(clear=clear)
        except ValueError as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from exc
        return ApiTokenPrincipal(token), token

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Describes the bearer token in the OpenAPI schema."""

    target_class = "accounts.api.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "Ministry API token (vcp_…)."}
