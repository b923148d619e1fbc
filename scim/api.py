"""API for ministry admins to connect their directory: issue, list and revoke its token."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from accounts.access import access_for
from accounts.models import Ministry
from accounts.selectors import ministry_administrable
from audit.actor import Actor
from controlplane.api import (
    TOO_MANY_TOKENS,
    ScopedChoicesMixin,
    SlugChoiceField,
    TokenIssueThrottle,
)
from scim import services
from scim.models import DirectoryToken


class DirectoryTokenSerializer(serializers.ModelSerializer):
    """A directory token's metadata; the secret itself is shown once, at issue."""

    ministry = serializers.SlugRelatedField(slug_field="code", read_only=True)
    created_by = serializers.EmailField(source="created_by.email", read_only=True, allow_null=True)

    class Meta:
        model = DirectoryToken
        fields = ["id", "ministry", "prefix", "created_by", "created_at", "last_used_at"]
        fields += ["revoked_at"]
        read_only_fields = fields


class DirectoryTokenIssueSerializer(ScopedChoicesMixin, serializers.Serializer):
    """Input of a token issue: the ministry whose directory it is for."""

    ministry = SlugChoiceField(slug_field="code", queryset=Ministry.objects.none())


class DirectoryTokenIssuedSerializer(DirectoryTokenSerializer):
    """Returned once, at issue, with the SCIM base URL to configure in the directory."""

    token = serializers.CharField(read_only=True)
    scim_url = serializers.CharField(read_only=True)

    class Meta(DirectoryTokenSerializer.Meta):
        fields = [*DirectoryTokenSerializer.Meta.fields, "token", "scim_url"]
        read_only_fields = fields


class DirectoryTokenViewSet(mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """Directory (SCIM) tokens: one live per ministry; issuing one revokes the previous."""

    serializer_class = DirectoryTokenSerializer
    throttle_classes = [TokenIssueThrottle]

    def get_queryset(self):
        # Readers (auditors included) see the metadata; only admins issue and revoke.
        readable = access_for(self.request.user).readable_ministries
        tokens = DirectoryToken.objects.select_related("ministry", "created_by")
        if readable is None:
            return tokens
        return tokens.filter(ministry_id__in=readable)

    @extend_schema(
        request=DirectoryTokenIssueSerializer,
        responses={201: DirectoryTokenIssuedSerializer, 429: TOO_MANY_TOKENS},
    )
    def create(self, request):
        data = DirectoryTokenIssueSerializer(
            data=request.data, ministries=ministry_administrable(user=request.user)
        )
        data.is_valid(raise_exception=True)
        token, clear = services.directory_token_issue(
            actor=Actor.from_request(request), **data.validated_data
        )
        token.token = clear
        token.scim_url = request.build_absolute_uri("/scim/v2/")
        return Response(DirectoryTokenIssuedSerializer(token).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: DirectoryTokenSerializer})
    def destroy(self, request, pk=None):
        """Revoke the token: the directory's sync stops at once."""
        token = services.directory_token_revoke(
            actor=Actor.from_request(request), token=self.get_object()
        )
        return Response(DirectoryTokenSerializer(token).data)


router = SimpleRouter()
router.register("directory-tokens", DirectoryTokenViewSet, basename="directory-token")
urlpatterns = router.urls
