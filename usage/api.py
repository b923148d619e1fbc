"""Read-only API of usage: daily roll-ups and rollout per ministry (and nationally).

Any authenticated caller may ask; what comes back is scoped by the selectors, so a
caller without a role reads an empty list. Writes are answered 405.
"""

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from usage import selectors
from usage.models import DailyUsage


class DailyUsageSerializer(serializers.ModelSerializer):
    """One day of usage: ``ministry`` null is the national row, ``organizational_unit``
    empty the ministry as a whole."""

    ministry = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)

    class Meta:
        model = DailyUsage
        fields = [
            "day",
            "ministry",
            "organizational_unit",
            "meetings",
            "participant_minutes",
            "agents_in_meetings",
            "peak_concurrent",
            "average_meeting_seconds",
            "computed_at",
        ]
        read_only_fields = fields


class DailyUsageFilter(django_filters.FilterSet):
    """Filters: ministry (code), unit, from and to (days, inclusive), level."""

    ministry = django_filters.CharFilter(field_name="ministry__code", help_text="A ministry's code")
    unit = django_filters.CharFilter(field_name="organizational_unit", help_text="A unit")
    level = django_filters.ChoiceFilter(
        choices=[("national", "national"), ("ministry", "ministry"), ("unit", "unit")],
        method="filter_level",
        help_text="national rows, ministry totals or unit rows only",
    )

    class Meta:
        model = DailyUsage
        fields = []

    def filter_level(self, queryset, name, value):
        if value == "national":
            return queryset.filter(ministry__isnull=True)
        if value == "ministry":
            return queryset.filter(ministry__isnull=False, organizational_unit="")
        return queryset.exclude(organizational_unit="")


# "from" is a Python keyword: these two are added by name.
DailyUsageFilter.base_filters["from"] = django_filters.DateFilter(
    field_name="day", lookup_expr="gte", help_text="First day (YYYY-MM-DD)"
)
DailyUsageFilter.base_filters["to"] = django_filters.DateFilter(
    field_name="day", lookup_expr="lte", help_text="Last day (YYYY-MM-DD)"
)


class DailyUsageViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Daily usage rows of the caller's ministries (and national rows for national
    roles), oldest day first."""

    serializer_class = DailyUsageSerializer
    filterset_class = DailyUsageFilter
    permission_classes = [IsAuthenticated]

    def get_queryset(self):
        return selectors.daily_usage_list(user=self.request.user)


class MilestoneSerializer(serializers.Serializer):
    """A milestone of the goal, reached or not, late or not."""

    due_on = serializers.DateField()
    target_agents = serializers.IntegerField()
    label = serializers.CharField()
    reached = serializers.BooleanField()
    late = serializers.BooleanField()


class RolloutSerializer(serializers.Serializer):
    """Rollout of one ministry (``ministry`` null: national): agents, goal, forecast,
    seats and yearly savings."""

    ministry = serializers.CharField(allow_null=True)
    name = serializers.CharField(allow_null=True)
    agents_with_seat = serializers.IntegerField(
        help_text="Active (not deactivated) accounts: each uses a licence seat."
    )
    agents_logged_in = serializers.IntegerField(
        help_text="Agents with a seat who logged in within the last 30 days: what the "
        "rollout goal counts."
    )
    target_agents = serializers.IntegerField(allow_null=True)
    target_date = serializers.DateField(allow_null=True)
    progress_percent = serializers.IntegerField(allow_null=True)
    milestones = MilestoneSerializer(many=True)
    weekly_agents_in_meetings = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="Distinct agents with a meeting session in the 30 days before each of "
        "the last 9 weeks.",
    )
    trend_per_week = serializers.FloatField()
    projected_date = serializers.DateField(allow_null=True)
    status = serializers.ChoiceField(choices=["on_track", "at_risk", "late"], allow_null=True)
    seats = serializers.IntegerField()
    yearly_savings_eur = serializers.DecimalField(max_digits=14, decimal_places=2)


class RolloutViewSet(viewsets.ViewSet):
    """Rollout per ministry the caller reads, and nationally for national roles."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=RolloutSerializer(many=True))
    def list(self, request):
        entries = selectors.rollout_overview(user=request.user)
        return Response(RolloutSerializer(entries, many=True).data)


router = SimpleRouter()
router.register("usage/daily", DailyUsageViewSet, basename="usage-daily")
router.register("rollout", RolloutViewSet, basename="rollout")
urlpatterns = router.urls
