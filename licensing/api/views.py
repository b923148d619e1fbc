"""API of licence pools: read within scope, created by operators."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts import selectors as account_selectors
from audit.actor import Actor
from licensing import selectors, services
from licensing.api.serializers import LicencePoolSerializer


class LicencePoolViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Licence pools of the caller's ministries."""

    serializer_class = LicencePoolSerializer
    filterset_fields = ["ministry__code"]

    def get_queryset(self):
        return selectors.licence_pool_list(user=self.request.user)

    def get_serializer(self, *args, **kwargs):
        if self.action == "create":
            kwargs["ministries"] = account_selectors.ministry_list(user=self.request.user)
        return super().get_serializer(*args, **kwargs)

    def perform_create(self, serializer):
        serializer.instance = services.licence_pool_create(
            actor=Actor.from_request(self.request), **serializer.validated_data
        )

    @extend_schema(
        parameters=[OpenApiParameter("ministry", str, description="A ministry's code")],
        responses=inline_serializer(
            "Savings",
            {
                "seats": serializers.IntegerField(),
                "agents_with_seat": serializers.IntegerField(),
                "foreign_cost_eur": serializers.DecimalField(max_digits=14, decimal_places=2),
                "sovereign_cost_eur": serializers.DecimalField(max_digits=14, decimal_places=2),
                "yearly_savings_eur": serializers.DecimalField(max_digits=14, decimal_places=2),
            },
        ),
    )
    @action(detail=False, methods=["get"])
    def savings(self, request):
        """Yearly savings of today's pools: one ministry, or all the caller reads."""
        ministry_id = None
        code = request.query_params.get("ministry")
        if code:
            # A NUL byte cannot even be compared by PostgreSQL: no ministry has it.
            readable = account_selectors.ministry_list(user=request.user)
            ministry = None if "\x00" in code else readable.filter(code=code).first()
            if ministry is None:
                return Response({"ministry": [f"Unknown ministry “{code}”."]}, status=400)
            ministry_id = ministry.pk
        figures = selectors.savings_current(user=request.user, ministry_id=ministry_id)
        return Response(
            {
                "seats": figures.seats,
                "agents_with_seat": figures.agents_with_seat,
                "foreign_cost_eur": f"{figures.foreign_cost_eur:.2f}",
                "sovereign_cost_eur": f"{figures.sovereign_cost_eur:.2f}",
                "yearly_savings_eur": f"{figures.yearly_savings_eur:.2f}",
            }
        )
