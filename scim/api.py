"""API for ministry admins to connect their directory: issue, list and revoke its token."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from accounts.models import Ministry
from accounts.selectors import ministry_administrable
from audit.actor import Actor
from controlplane.api import (
    TOO_MANY_TOKENS,
    ScopedChoicesMixin,
    SlugChoiceField,
    TokenIssueThrottle,
)
from scim import tokens
from scim.models import DirectoryToken


class DirectoryTokenSerializer(serializers.ModelSerializer):
    """A directory token's metadata; the secret itself is shown once, at issue.

    ``state``: active, expiring (within SCIM_TOKEN_WARN_DAYS), overlap (replaced,
    usable until ``expires_at``), expired or revoked."""

    ministry = serializers.SlugRelatedField(slug_field="code", read_only=True)
    created_by = serializers.EmailField(source="created_by.email", read_only=True, allow_null=True)
    state = serializers.SerializerMethodField()

    class Meta:
        model = DirectoryToken
        fields = ["id", "ministry", "prefix", "created_by", "created_at", "expires_at"]
        fields += ["replaced_at", "last_used_at", "revoked_at", "state"]
        read_only_fields = fields

    def get_state(self, token) -> str:
        return token.state()


class DirectoryTokenIssueSerializer(ScopedChoicesMixin, serializers.Serializer):
    """Input of a token issue: the ministry whose directory it is for, and optionally
    the token's lifetime and how long the token it replaces stays valid (0: not at
    all). Bounds are checked by the service, with the settings' limits."""

    ministry = SlugChoiceField(slug_field="code", queryset=Ministry.objects.none())
    expires_in_days = serializers.IntegerField(required=False, min_value=1)
    overlap_days = serializers.IntegerField(required=False, min_value=0)


class DirectoryTokenIssuedSerializer(DirectoryTokenSerializer):
    """Returned once, at issue, with the SCIM base URL to configure in the directory."""

    token = serializers.CharField(read_only=True)
    scim_url = serializers.CharField(read_only=True)

    class Meta(DirectoryTokenSerializer.Meta):
        fields = [*DirectoryTokenSerializer.Meta.fields, "token", "scim_url"]
        read_only_fields = fields


class DirectoryTokenViewSet(mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """Directory (SCIM) tokens: one current per ministry; issuing one replaces it, the
    replaced one staying valid for the overlap."""

    serializer_class = DirectoryTokenSerializer
    throttle_classes = [TokenIssueThrottle]

    def get_queryset(self):
        # Readers (auditors included) see the metadata; only admins issue and revoke.
        return tokens.directory_token_list(user=self.request.user)

    @extend_schema(
        request=DirectoryTokenIssueSerializer,
        responses={201: DirectoryTokenIssuedSerializer, 429: TOO_MANY_TOKENS},
    )
    def create(self, request):
        data = DirectoryTokenIssueSerializer(
            data=request.data, ministries=ministry_administrable(user=request.user)
        )
        data.is_valid(raise_exception=True)
        token, clear = tokens.directory_token_issue(
            actor=Actor.from_request(request), **data.validated_data
        )
        token.token = clear
        token.scim_url = request.build_absolute_uri("/scim/v2/")
        return Response(DirectoryTokenIssuedSerializer(token).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: DirectoryTokenSerializer})
    def destroy(self, request, pk=None):
        """Revoke the token: the directory's sync stops at once."""
        token = tokens.directory_token_revoke(
            actor=Actor.from_request(request), token=self.get_object()
        )
        return Response(DirectoryTokenSerializer(token).data)


router = SimpleRouter()
router.register("directory-tokens", DirectoryTokenViewSet, basename="directory-token")
urlpatterns = router.urls
