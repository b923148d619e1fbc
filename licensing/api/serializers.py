"""Serializers of licence pools."""

from rest_framework import serializers

from accounts.models import Ministry
from controlplane.api import ScopedChoicesMixin, SlugChoiceField
from licensing.models import LicencePool


class LicencePoolSerializer(ScopedChoicesMixin, serializers.ModelSerializer):
    """A pool: seats for a period, with the prices that make the savings."""

    ministry = SlugChoiceField(slug_field="code", queryset=Ministry.objects.none())

    class Meta:
        model = LicencePool
        fields = [
            "id",
            "ministry",
            "starts_on",
            "ends_on",
            "seats",
            "foreign_price_eur",
            "sovereign_cost_eur",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]
