"""Serializers of the accounts API: outputs carry the caller's abilities."""

from rest_framework import serializers

from accounts.access import access_for
from accounts.models import (
    TOKEN_ROLE_CHOICES,
    Agent,
    AgentImportJob,
    ApiToken,
    Ministry,
    Role,
    RoleGrant,
    RolloutMilestone,
)
from controlplane.api import ScopedChoicesMixin, SlugChoiceField


def _access(serializer):
    return access_for(serializer.context["request"].user)


class IdentifierListField(serializers.ListField):
    """A list of strings in and out; read from a related manager's ``attribute``."""

    def __init__(self, *, attribute: str, **kwargs):
        self.attribute = attribute
        super().__init__(**kwargs)

    def to_representation(self, data):
        return [getattr(item, self.attribute) for item in data.all()]


class RolloutMilestoneSerializer(serializers.ModelSerializer):
    """A step towards the rollout goal: so many agents logged in within
    30 days by a date."""

    class Meta:
        model = RolloutMilestone
        fields = ["due_on", "target_agents", "label"]


class MinistrySerializer(serializers.ModelSerializer):
    """A ministry with its email domains, SIRETs, rollout goal and milestones."""

    domains = IdentifierListField(
        attribute="domain", child=serializers.CharField(max_length=253), required=False
    )
    sirets = IdentifierListField(
        attribute="siret", child=serializers.CharField(max_length=14), required=False
    )
    residency_tags = serializers.ListField(
        child=serializers.CharField(max_length=50), required=False
    )
    rollout_target_agents = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    milestones = RolloutMilestoneSerializer(many=True, required=False)
    abilities = serializers.SerializerMethodField()

    class Meta:
        model = Ministry
        fields = [
            "id",
            "code",
            "name",
            "siren",
            "state",
            "jit_provisioning",
            "residency_tags",
            "retention_days",
            "domains",
            "sirets",
            "rollout_target_agents",
            "rollout_target_date",
            "milestones",
            "created_at",
            "updated_at",
            "abilities",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        # Uniqueness is checked by the service, with the message naming the field.
        extra_kwargs = {"code": {"validators": []}, "siren": {"validators": []}}

    def get_abilities(self, obj) -> dict[str, bool]:
        access = _access(self)
        return {"update": access.operator, "manage_agents": access.can_admin(obj.pk)}


class MinistryUpdateSerializer(MinistrySerializer):
    """Updates may not change a ministry's code or SIREN."""

    class Meta(MinistrySerializer.Meta):
        read_only_fields = ["id", "code", "siren", "created_at", "updated_at"]


class AgentSerializer(serializers.ModelSerializer):
    """An agent as admins see them (``ministry`` null: national staff)."""

    ministry = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    abilities = serializers.SerializerMethodField()

    class Meta:
        model = Agent
        fields = [
            "id",
            "email",
            "given_name",
            "usual_name",
            "ministry",
            "external_id",
            "organizational_unit",
            "is_active",
            "deactivated_at",
            "deleted_at",
            "erase_after",
            "sub",
            "created_at",
            "updated_at",
            "abilities",
        ]
        read_only_fields = fields

    def get_abilities(self, obj) -> dict[str, bool]:
        can = _access(self).can_admin(obj.ministry_id)
        return {
            "update": can and obj.deleted_at is None,
            "deactivate": can and obj.is_active,
            "reactivate": can and not obj.is_active and obj.deleted_at is None,
        }


class AgentCreateSerializer(ScopedChoicesMixin, serializers.Serializer):
    """Input of agent creation: the ministry is named by its code."""

    ministry = SlugChoiceField(slug_field="code", queryset=Ministry.objects.none())
    email = serializers.EmailField(max_length=254)
    given_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    usual_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    external_id = serializers.CharField(max_length=255, required=False, allow_blank=True)
    organizational_unit = serializers.CharField(max_length=255, required=False, allow_blank=True)


class AgentUpdateSerializer(serializers.Serializer):
    """Input of agent updates: directory attributes and email."""

    email = serializers.EmailField(max_length=254, required=False)
    given_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    usual_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    external_id = serializers.CharField(max_length=255, required=False, allow_blank=True)
    organizational_unit = serializers.CharField(max_length=255, required=False, allow_blank=True)


class RoleGrantSerializer(ScopedChoicesMixin, serializers.ModelSerializer):
    """A role held by an agent, on a ministry or nationally (ministry null)."""

    agent = serializers.PrimaryKeyRelatedField(queryset=Agent.objects.none())
    agent_email = serializers.EmailField(source="agent.email", read_only=True)
    ministry = SlugChoiceField(
        slug_field="code", queryset=Ministry.objects.none(), allow_null=True, required=False
    )
    role = serializers.ChoiceField(choices=Role.choices)

    class Meta:
        model = RoleGrant
        fields = ["id", "agent", "agent_email", "role", "ministry", "created_at"]
        read_only_fields = ["id", "created_at"]
        validators: list = []


class ApiTokenSerializer(serializers.ModelSerializer):
    """Token metadata; the secret itself is never returned after creation."""

    ministry = serializers.SlugRelatedField(slug_field="code", read_only=True)
    created_by = serializers.EmailField(source="created_by.email", read_only=True, allow_null=True)

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "ministry",
            "role",
            "prefix",
            "created_by",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
        ]
        read_only_fields = fields


class ApiTokenCreateSerializer(ScopedChoicesMixin, serializers.Serializer):
    """Input of token creation."""

    name = serializers.CharField(max_length=100)
    ministry = SlugChoiceField(slug_field="code", queryset=Ministry.objects.none())
    role = serializers.ChoiceField(choices=TOKEN_ROLE_CHOICES)
    expires_in_days = serializers.IntegerField(min_value=1, required=False)


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    """Returned once, at creation: the only time the token is shown."""

    token = serializers.CharField(read_only=True)

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class AgentImportJobSerializer(serializers.ModelSerializer):
    """An import job as its page and API show it (the file itself is never returned)."""

    ministry = serializers.SlugRelatedField(slug_field="code", read_only=True)
    has_errors = serializers.SerializerMethodField()

    class Meta:
        model = AgentImportJob
        fields = [
            "id",
            "ministry",
            "filename",
            "apply",
            "deactivate_missing",
            "state",
            "rows_total",
            "rows_done",
            "counts",
            "has_errors",
            "failure",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_has_errors(self, obj) -> bool:
        # Listed jobs carry it as an annotation (their CSV of errors is not loaded).
        flag = getattr(obj, "has_errors", None)
        return bool(obj.errors_csv) if flag is None else flag


class AgentImportJobCreateSerializer(ScopedChoicesMixin, serializers.Serializer):
    """Upload of a CSV export: a preview unless ``apply`` is true."""

    ministry = SlugChoiceField(slug_field="code", queryset=Ministry.objects.none())
    file = serializers.FileField()
    apply = serializers.BooleanField(default=False)
    deactivate_missing = serializers.BooleanField(default=False)
    delimiter = serializers.ChoiceField(choices=[",", ";"], required=False, allow_blank=True)


class LicencePoolInputSerializer(serializers.Serializer):
    """The seats given at onboarding."""

    starts_on = serializers.DateField()
    ends_on = serializers.DateField()
    seats = serializers.IntegerField(min_value=0)
    foreign_price_eur = serializers.DecimalField(max_digits=10, decimal_places=2, min_value=0)
    sovereign_cost_eur = serializers.DecimalField(max_digits=10, decimal_places=2, min_value=0)


class OnboardingSerializer(MinistrySerializer):
    """A new ministry with its seats and its first admins, in one request."""

    admins = serializers.ListField(
        child=serializers.EmailField(), required=False, write_only=True, max_length=50
    )
    licence_pool = LicencePoolInputSerializer(required=False, write_only=True)

    class Meta(MinistrySerializer.Meta):
        fields = [*MinistrySerializer.Meta.fields, "admins", "licence_pool"]
