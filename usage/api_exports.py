"""``GET /api/v1/exports/``: usage exports for auditors, admins and operators, streamed."""

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.actor import Actor
from usage import selectors
from usage.exports import (
    CONTENT_TYPES,
    DATASETS,
    DELIMITERS,
    FORMATS,
    GRANULARITIES,
    export_allowed,
    export_http_response,
    usage_export_open,
)
from usage.forms import ExportForm


class CanExportUsage(BasePermission):
    """Auditors, ministry admins and operators (and their API tokens)."""

    message = "Only auditors, ministry admins and operators export usage."

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated) and export_allowed(request.user)


def _parameter(name, description, *, enum=None, type_=str, required=False, default=None):
    return OpenApiParameter(
        name,
        type_,
        OpenApiParameter.QUERY,
        required=required,
        description=description,
        enum=enum,
        default=default,
    )


class ExportView(APIView):
    """Export usage as CSV, XLSX or JSON Lines, streamed from the database."""

    permission_classes = [CanExportUsage]

    def perform_content_negotiation(self, request, force=False):
        # ``format`` is the export's own parameter, not DRF's renderer override:
        # answers other than the file itself (errors) are always JSON.
        return JSONRenderer(), JSONRenderer.media_type

    @extend_schema(
        operation_id="exports_retrieve",
        summary="Export usage",
        description=(
            "Streams the export (recorded in the audit trail before the first byte). "
            "`usage`: daily roll-ups summed per day, week or month, per ministry "
            "(national rows, with an empty ministry, for operators and national "
            "auditors). `sessions`: one row per participant session, with a "
            "pseudonymous agent reference. CSV is UTF-8 with a byte-order mark. XLSX "
            "is built in constant memory into a temporary file before it is sent."
        ),
        parameters=[
            _parameter("dataset", "What to export.", enum=DATASETS, default="usage"),
            _parameter("format", "File format.", enum=FORMATS, default="csv"),
            _parameter(
                "from",
                "First day (YYYY-MM-DD, Europe/Paris).",
                type_=OpenApiTypes.DATE,
                required=True,
            ),
            _parameter(
                "to", "Last day, included (YYYY-MM-DD).", type_=OpenApiTypes.DATE, required=True
            ),
            _parameter(
                "granularity", "Periods of the usage dataset.", enum=GRANULARITIES, default="day"
            ),
            _parameter("ministry", "Ministry code (default: every ministry you read)."),
            _parameter(
                "unit",
                "Organisational unit. Usage: empty gives each ministry's totals, `*` one "
                "row per unit. Sessions: empty or `*` gives every unit.",
            ),
            _parameter("delimiter", "CSV delimiter.", enum=DELIMITERS, default=";"),
        ],
        responses={
            (200, CONTENT_TYPES["csv"].split(";")[0]): OpenApiTypes.BINARY,
            (200, CONTENT_TYPES["xlsx"]): OpenApiTypes.BINARY,
            (200, CONTENT_TYPES["jsonl"]): OpenApiTypes.BINARY,
            400: OpenApiResponse(
                OpenApiTypes.OBJECT, description="A parameter is wrong: messages by name."
            ),
            403: OpenApiResponse(OpenApiTypes.OBJECT, description="Not an exporting role."),
            404: OpenApiResponse(
                OpenApiTypes.OBJECT, description="No such ministry among those you read."
            ),
        },
    )
    def get(self, request):
        form = ExportForm(request.query_params)
        if not form.is_valid():
            return Response(form.error_dict(), status=status.HTTP_400_BAD_REQUEST)
        ministry = None
        if code := form.cleaned_data.get("ministry"):
            ministry = selectors.export_ministry_list(user=request.user).filter(code=code).first()
            if ministry is None:
                raise NotFound(f"No ministry “{code}” among those you read.")
        export = usage_export_open(
            actor=Actor.from_request(request),
            user=request.user,
            request=form.export_request(ministry=ministry),
        )
        return export_http_response(export)


urlpatterns = [path("exports/", ExportView.as_view(), name="usage-export")]
