"""Ministries (tenants), agents (the user model), role grants and API tokens."""

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _

from accounts.identifiers import validate_email_domain, validate_siren, validate_siret
from controlplane.models import BaseModel


class Ministry(BaseModel):
    """A tenant: one ministry or agency with its identifiers and policies."""

    class State(models.TextChoices):
        PILOT = "pilot", _("Pilot")
        ROLLING_OUT = "rolling_out", _("Rolling out")
        GENERALISED = "generalised", _("Generalised")
        SUSPENDED = "suspended", _("Suspended")

    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=200)
    siren = models.CharField(_("SIREN"), max_length=9, unique=True, validators=[validate_siren])
    state = models.CharField(_("state"), max_length=16, choices=State, default=State.PILOT)
    jit_provisioning = models.BooleanField(
        _("create agents at first login"),
        default=False,
        help_text=_("Agents unknown to the directory are created at their first login."),
    )
    residency_tags = models.JSONField(
        _("residency tags"),
        default=list,
        blank=True,
        help_text=_("Tags a media node must carry to host this ministry's meetings."),
    )
    retention_days = models.PositiveIntegerField(
        _("retention of personal usage data (days)"), default=365
    )
    rollout_target_agents = models.PositiveIntegerField(
        _("rollout goal: agents"), null=True, blank=True
    )
    rollout_target_date = models.DateField(_("rollout goal: date"), null=True, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("ministry")
        verbose_name_plural = _("ministries")
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["pilot", "rolling_out", "generalised", "suspended"]),
                name="ministry_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class RolloutMilestone(models.Model):
    """A step towards a ministry's rollout goal: so many agents logged in within 30
    days by a date (``accounts.selectors.ministry_rollout_progress``)."""

    ministry = models.ForeignKey(Ministry, on_delete=models.CASCADE, related_name="milestones")
    due_on = models.DateField(_("due on"))
    target_agents = models.PositiveIntegerField(_("agents logged in within 30 days"))
    label = models.CharField(_("label"), max_length=200, blank=True)

    class Meta:
        ordering = ["due_on"]
        constraints = [
            models.UniqueConstraint(fields=["ministry", "due_on"], name="milestone_unique_date"),
        ]

    def __str__(self) -> str:
        return f"{self.due_on}: {self.target_agents}"


class MinistryDomain(models.Model):
    """An email domain of a ministry; the database lets one ministry own it."""

    ministry = models.ForeignKey(Ministry, on_delete=models.CASCADE, related_name="domains")
    domain = models.CharField(max_length=253, unique=True, validators=[validate_email_domain])

    class Meta:
        ordering = ["domain"]
        constraints = [
            models.CheckConstraint(
                condition=Q(domain=Lower("domain")), name="ministry_domain_lowercase"
            ),
        ]

    def __str__(self) -> str:
        return self.domain


class MinistrySiret(models.Model):
    """A SIRET (establishment) of a ministry; the database lets one ministry own it."""

    ministry = models.ForeignKey(Ministry, on_delete=models.CASCADE, related_name="sirets")
    siret = models.CharField(max_length=14, unique=True, validators=[validate_siret])

    class Meta:
        ordering = ["siret"]

    def __str__(self) -> str:
        return self.siret


class AgentManager(BaseUserManager):
    """Agents are created without a usable password: they log in through ProConnect."""

    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **fields):
        agent = self.model(email=self.normalize_email(email).lower(), **fields)
        if password:
            agent.set_password(password)
        else:
            agent.set_unusable_password()
        agent.save(using=self._db)
        return agent

    def create_superuser(self, email: str, password: str | None = None, **fields):
        fields.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **fields)


class Agent(BaseModel, AbstractBaseUser, PermissionsMixin):
    """A public servant; bound to the identity provider's ``sub`` at first login."""

    sub = models.CharField(
        _("identity provider subject"), max_length=255, null=True, blank=True, unique=True
    )
    email = models.EmailField(_("email"), max_length=254, unique=True)
    given_name = models.CharField(_("given name"), max_length=150, blank=True)
    usual_name = models.CharField(_("usual name"), max_length=150, blank=True)
    ministry = models.ForeignKey(
        Ministry,
        on_delete=models.PROTECT,
        related_name="agents",
        null=True,
        blank=True,
        verbose_name=_("ministry"),
    )
    external_id = models.CharField(_("directory identifier"), max_length=255, blank=True)
    organizational_unit = models.CharField(_("organisational unit"), max_length=255, blank=True)
    # Kept from the ministry's directory (SCIM core and enterprise attributes).
    title = models.CharField(_("job title"), max_length=128, blank=True, default="", db_default="")
    preferred_language = models.CharField(
        _("preferred language"), max_length=35, blank=True, default="", db_default=""
    )
    employee_number = models.CharField(
        _("employee number"), max_length=64, blank=True, default="", db_default=""
    )
    manager = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="reports",
        verbose_name=_("manager"),
    )
    is_active = models.BooleanField(_("active"), default=True)
    is_staff = models.BooleanField(_("Django admin access"), default=False)
    deactivated_at = models.DateTimeField(_("deactivated at"), null=True, blank=True)
    erase_after = models.DateTimeField(
        _("personal data erased after"),
        null=True,
        blank=True,
        help_text=_("Set when the directory deletes the agent, from the ministry's retention."),
    )
    # A directory's DELETE: the agent is gone for the directory (404, no uniqueness
    # clash): their address moves to deleted_email (erased with the rest after the
    # retention) and email holds a placeholder, so the address is free again.
    deleted_at = models.DateTimeField(_("deleted by the directory at"), null=True, blank=True)
    deleted_email = models.EmailField(
        _("email before deletion"), max_length=254, blank=True, default="", db_default=""
    )

    objects = AgentManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["usual_name", "given_name", "email"]
        verbose_name = _("agent")
        verbose_name_plural = _("agents")
        constraints = [
            # Emails are stored lower-case, so uniqueness is case-insensitive.
            models.CheckConstraint(condition=Q(email=Lower("email")), name="agent_email_lowercase"),
            models.UniqueConstraint(
                fields=["ministry", "external_id"],
                condition=~Q(external_id="") & Q(deleted_at__isnull=True),
                name="agent_external_id_unique_per_ministry",
            ),
            models.CheckConstraint(
                condition=Q(is_active=True) | Q(deactivated_at__isnull=False),
                name="agent_deactivated_has_date",
            ),
        ]
        indexes = [models.Index(fields=["ministry", "is_active"])]

    def __str__(self) -> str:
        return self.full_name or self.email

    @property
    def full_name(self) -> str:
        return f"{self.given_name} {self.usual_name}".strip()


class Role(models.TextChoices):
    """What a role grant lets its holder do."""

    OPERATOR = "operator", _("Platform operator")
    MINISTRY_ADMIN = "ministry_admin", _("Ministry admin")
    AUDITOR = "auditor", _("Auditor")


def role_scope_constraints(*, holder: str, prefix: str) -> list:
    """Operators are national, ministry admins need a ministry, auditors may be either;
    a holder has a role at most once per scope (NULL ministry included)."""
    return [
        models.CheckConstraint(
            condition=(
                Q(role="operator", ministry__isnull=True)
                | Q(role="ministry_admin", ministry__isnull=False)
                | Q(role="auditor")
            ),
            name=f"{prefix}_scope_valid",
        ),
        models.UniqueConstraint(
            fields=[holder, "role", "ministry"],
            condition=Q(ministry__isnull=False),
            name=f"{prefix}_unique_scoped",
        ),
        models.UniqueConstraint(
            fields=[holder, "role"],
            condition=Q(ministry__isnull=True),
            name=f"{prefix}_unique_national",
        ),
    ]


class RoleGrant(BaseModel):
    """A role held by an agent: operator (national), ministry admin, or auditor.

    An auditor grant without a ministry is a national auditor.
    """

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="grants")
    role = models.CharField(max_length=16, choices=Role)
    ministry = models.ForeignKey(
        Ministry, on_delete=models.CASCADE, related_name="grants", null=True, blank=True
    )
    granted_by = models.ForeignKey(
        Agent, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["created_at"]
        constraints = role_scope_constraints(holder="agent", prefix="role_grant")

    def __str__(self) -> str:
        scope = self.ministry.code if self.ministry_id else "national"
        return f"{self.agent.email}: {self.role} ({scope})"


TOKEN_ROLE_CHOICES = [(r.value, r.label) for r in (Role.MINISTRY_ADMIN, Role.AUDITOR)]


class ApiToken(BaseModel):
    """A bearer token for a ministry's automation, scoped to one ministry and one role.

    Only a SHA-256 digest is stored; the token itself is shown once, at creation.
    """

    name = models.CharField(max_length=100)
    ministry = models.ForeignKey(Ministry, on_delete=models.CASCADE, related_name="api_tokens")
    role = models.CharField(max_length=16, choices=TOKEN_ROLE_CHOICES)
    prefix = models.CharField(max_length=16, db_index=True)
    digest = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        Agent, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(role__in=["ministry_admin", "auditor"]), name="api_token_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class PendingRoleGrant(BaseModel):
    """A role promised to an email address (an admin named at onboarding); it becomes a
    RoleGrant when that person first logs in."""

    email = models.EmailField(max_length=254)
    role = models.CharField(max_length=16, choices=Role)
    ministry = models.ForeignKey(
        Ministry, on_delete=models.CASCADE, null=True, blank=True, related_name="pending_grants"
    )
    invited_by = models.ForeignKey(
        Agent, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(email=Lower("email")), name="pending_grant_email_lowercase"
            ),
            *role_scope_constraints(holder="email", prefix="pending_grant"),
        ]

    def __str__(self) -> str:
        return f"{self.email}: {self.role} (pending)"


class AgentImportJob(BaseModel):
    """One CSV import, run by a Celery task: its file, state, progress and outcome."""

    class State(models.TextChoices):
        PENDING = "pending", _("Pending")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    ministry = models.ForeignKey(Ministry, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(
        Agent, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    token_id = models.UUIDField(null=True, blank=True)
    # Kept in the database so that any worker can read it, whatever pod took the upload.
    content = models.BinaryField()
    filename = models.CharField(max_length=255, blank=True)
    delimiter = models.CharField(max_length=1, blank=True)
    deactivate_missing = models.BooleanField(default=False)
    apply = models.BooleanField(default=False, help_text=_("False: a preview only."))
    state = models.CharField(max_length=8, choices=State, default=State.PENDING)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict, blank=True)
    errors_csv = models.TextField(blank=True)
    failure = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"import {self.filename or self.pk} ({self.state})"
