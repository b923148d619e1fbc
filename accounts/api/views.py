"""API viewsets of ministries, agents, role grants and API tokens.

Each builds its queryset from a selector scoped to the caller, parses input with
a serializer and hands the write to one service.
"""

import django_filters
from django.conf import settings
from django.db.models import Q
from django.http import HttpResponse
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from accounts import selectors
from accounts.agents import agent_create, agent_deactivate, agent_reactivate, agent_update
from accounts.api.serializers import (
    AgentCreateSerializer,
    AgentImportJobCreateSerializer,
    AgentImportJobSerializer,
    AgentSerializer,
    AgentUpdateSerializer,
    ApiTokenCreatedSerializer,
    ApiTokenCreateSerializer,
    ApiTokenSerializer,
    MinistrySerializer,
    MinistryUpdateSerializer,
    OnboardingSerializer,
    RoleGrantSerializer,
)
from accounts.grants import role_grant_create, role_grant_delete
from accounts.import_jobs import agent_import_job_create
from accounts.ministries import ministry_create, ministry_update
from accounts.models import Agent, Ministry
from accounts.onboarding import ministry_onboard
from accounts.tokens import api_token_create, api_token_revoke
from audit.actor import Actor
from controlplane.api import SLUG_LOOKUP, TOO_MANY_TOKENS, TokenIssueThrottle


class MinistryViewSet(
    mixins.CreateModelMixin, mixins.UpdateModelMixin, viewsets.ReadOnlyModelViewSet
):
    """Ministries: everyone reads their own; operators read all and write."""

    serializer_class = MinistrySerializer
    lookup_field = "code"
    lookup_value_regex = SLUG_LOOKUP
    filterset_fields = ["state"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        return selectors.ministry_list(user=self.request.user)

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return MinistryUpdateSerializer
        return MinistrySerializer

    def perform_create(self, serializer):
        serializer.instance = ministry_create(
            actor=Actor.from_request(self.request), **serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = ministry_update(
            actor=Actor.from_request(self.request),
            ministry=serializer.instance,
            **serializer.validated_data,
        )
        # The response must show the identifiers just written, not the stale prefetch.
        serializer.instance = selectors.ministry_list(user=self.request.user).get(
            pk=serializer.instance.pk
        )


class AgentFilter(django_filters.FilterSet):
    """Filter agents by ministry code, state, unit, email or a free-text search."""

    ministry = django_filters.CharFilter(field_name="ministry__code")
    email = django_filters.CharFilter(lookup_expr="iexact")
    organizational_unit = django_filters.CharFilter()
    external_id = django_filters.CharFilter()
    search = django_filters.CharFilter(method="filter_search", label="Name or email contains")

    class Meta:
        model = Agent
        fields = ["ministry", "is_active", "email", "organizational_unit", "external_id"]

    def filter_search(self, queryset, name, value):
        return queryset.filter(
            Q(email__icontains=value)
            | Q(given_name__icontains=value)
            | Q(usual_name__icontains=value)
        )


class AgentViewSet(viewsets.ReadOnlyModelViewSet):
    """Agents of the caller's ministries; admins create, update and deactivate them."""

    serializer_class = AgentSerializer
    filterset_class = AgentFilter

    def get_queryset(self):
        return selectors.agent_list(user=self.request.user)

    @extend_schema(request=AgentCreateSerializer, responses={201: AgentSerializer})
    def create(self, request):
        data = AgentCreateSerializer(
            data=request.data, ministries=selectors.ministry_administrable(user=request.user)
        )
        data.is_valid(raise_exception=True)
        agent = agent_create(actor=Actor.from_request(request), **data.validated_data)
        return Response(self.get_serializer(agent).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=AgentUpdateSerializer, responses=AgentSerializer)
    def partial_update(self, request, pk=None):
        agent = self.get_object()
        data = AgentUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        agent = agent_update(actor=Actor.from_request(request), agent=agent, **data.validated_data)
        return Response(self.get_serializer(agent).data)

    @extend_schema(request=None, responses=AgentSerializer)
    @action(detail=True, methods=["post"])
    def deactivate(self, request, pk=None):
        """Deactivate the agent: no more logins, open sessions end."""
        agent = agent_deactivate(actor=Actor.from_request(request), agent=self.get_object())
        return Response(self.get_serializer(agent).data)

    @extend_schema(request=None, responses=AgentSerializer)
    @action(detail=True, methods=["post"])
    def reactivate(self, request, pk=None):
        """Give a deactivated agent their access back."""
        agent = agent_reactivate(actor=Actor.from_request(request), agent=self.get_object())
        return Response(self.get_serializer(agent).data)


class RoleGrantViewSet(
    mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet
):
    """Role grants within the caller's ministries."""

    serializer_class = RoleGrantSerializer
    filterset_fields = ["role", "agent"]

    def get_queryset(self):
        return selectors.role_grant_list(user=self.request.user)

    def get_serializer(self, *args, **kwargs):
        if self.action == "create":
            kwargs["agents"] = selectors.agent_list(user=self.request.user)
            kwargs["ministries"] = selectors.ministry_list(user=self.request.user)
        return super().get_serializer(*args, **kwargs)

    def perform_create(self, serializer):
        serializer.instance = role_grant_create(
            actor=Actor.from_request(self.request), **serializer.validated_data
        )

    def perform_destroy(self, instance):
        role_grant_delete(actor=Actor.from_request(self.request), grant=instance)


class ApiTokenViewSet(mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """API tokens: created by a ministry's admins, shown once, revoked by DELETE."""

    serializer_class = ApiTokenSerializer
    filterset_fields = ["role"]
    throttle_classes = [TokenIssueThrottle]

    def get_queryset(self):
        return selectors.api_token_list(user=self.request.user)

    @extend_schema(
        request=ApiTokenCreateSerializer,
        responses={201: ApiTokenCreatedSerializer, 429: TOO_MANY_TOKENS},
    )
    def create(self, request):
        data = ApiTokenCreateSerializer(
            data=request.data, ministries=selectors.ministry_administrable(user=request.user)
        )
        data.is_valid(raise_exception=True)
        token, clear = api_token_create(actor=Actor.from_request(request), **data.validated_data)
        token.token = clear
        return Response(ApiTokenCreatedSerializer(token).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: ApiTokenSerializer})
    def destroy(self, request, pk=None):
        """Revoke the token (it stays listed, with its revocation date)."""
        token = api_token_revoke(actor=Actor.from_request(request), token=self.get_object())
        return Response(ApiTokenSerializer(token).data)


# Room for the form's other fields and the multipart boundaries around the file.
UPLOAD_FORM_OVERHEAD = 64 * 1024


def _file_too_large(size: int) -> Response:
    message = _("The file is %(size)d MB; the limit is %(max)d MB.") % {
        "size": size // 1_000_000,
        "max": settings.AGENT_IMPORT_MAX_BYTES // 1_000_000,
    }
    return Response({"file": [message]}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)


class AgentImportJobViewSet(viewsets.ReadOnlyModelViewSet):
    """CSV imports: upload (a preview, or applied), follow their state, fetch rows in error."""

    serializer_class = AgentImportJobSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self):
        return selectors.agent_import_job_list(user=self.request.user)

    @extend_schema(
        request={"multipart/form-data": AgentImportJobCreateSerializer},
        responses={202: AgentImportJobSerializer},
    )
    def create(self, request):
        # A body announced far over the limit is refused before a byte of it is read.
        announced = int(request.META.get("CONTENT_LENGTH") or 0)
        if announced > settings.AGENT_IMPORT_MAX_BYTES + UPLOAD_FORM_OVERHEAD:
            return _file_too_large(announced)
        data = AgentImportJobCreateSerializer(
            data=request.data, ministries=selectors.ministry_administrable(user=request.user)
        )
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        if upload.size > settings.AGENT_IMPORT_MAX_BYTES:
            return _file_too_large(upload.size)
        job = agent_import_job_create(
            actor=Actor.from_request(request),
            ministry=data.validated_data["ministry"],
            content=upload.read(),
            filename=upload.name,
            delimiter=data.validated_data.get("delimiter") or "",
            deactivate_missing=data.validated_data["deactivate_missing"],
            apply=data.validated_data["apply"],
        )
        job.refresh_from_db()  # eager mode may already have run it
        return Response(AgentImportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={(200, "text/csv"): str})
    @action(detail=True, methods=["get"], url_path="errors")
    def errors_csv(self, request, pk=None):
        """The rows in error, with line, column and reason (UTF-8 with BOM, for Excel)."""
        job = self.get_object()
        response = HttpResponse("\ufeff" + job.errors_csv, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="errors-{job.pk}.csv"'
        return response


class OnboardingViewSet(viewsets.GenericViewSet):
    """Operators onboard a ministry: identity, domains, SIRETs, seats, first admins."""

    serializer_class = OnboardingSerializer
    queryset = Ministry.objects.none()

    @extend_schema(request=OnboardingSerializer, responses={201: MinistrySerializer})
    def create(self, request):
        data = OnboardingSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        ministry = ministry_onboard(actor=Actor.from_request(request), **data.validated_data)
        ministry = selectors.ministry_list(user=request.user).get(pk=ministry.pk)
        return Response(
            MinistrySerializer(ministry, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
        )
