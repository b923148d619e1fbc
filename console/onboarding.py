"""The console's ministry onboarding wizard: one form per step, a draft in the session.

Each step checks its own fields (with the services' own rules, so the messages are
the ones the API gives); nothing is written until the review step is confirmed,
which calls ``ministry_onboard`` once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from accounts.identifiers import validate_agent_email, validate_siren
from accounts.ministries import ministry_identifiers_check, residency_tags_clean, rollout_goal_clean
from accounts.models import Ministry

SESSION_KEY = "ministry_onboarding"
MILESTONE_ROWS = 5


def _split(text: str) -> list[str]:
    """Values typed one per line (commas, semicolons and spaces also separate them)."""
    return [v for v in re.split(r"[\s,;]+", text or "") if v]


class DsfrForm(forms.Form):
    """Widgets carry the DSFR classes; errors are rendered by the console's templates."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            css = "fr-select" if isinstance(field.widget, forms.Select) else "fr-input"
            field.widget.attrs.setdefault("class", css)

    def full_clean(self):
        super().full_clean()
        # DSFR marks a field in error on the input itself, tied to its message.
        for name in self.errors:
            if name in self.fields:
                attrs = self.fields[name].widget.attrs
                attrs["class"] = f"{attrs.get('class', 'fr-input')} fr-input--error"
                attrs["aria-describedby"] = f"{self.add_prefix(name)}-error"

    def add_service_errors(self, exc: ValidationError, fields: dict[str, str]) -> None:
        """Put a service's errors on this form's fields (``fields`` maps their names)."""
        for key, messages in exc.message_dict.items():
            self.add_error(fields.get(key), messages)


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self):
        super().__init__(format="%Y-%m-%d")


class IdentityForm(DsfrForm):
    code = forms.SlugField(
        label=_("Code"),
        max_length=32,
        help_text=_("Short lower-case identifier, used in addresses: for example “interieur”."),
    )
    name = forms.CharField(label=_("Name"), max_length=200)
    siren = forms.CharField(
        label=_("SIREN"),
        max_length=9,
        help_text=_("The 9 digits of the legal entity."),
        validators=[validate_siren],
    )

    def clean_code(self):
        code = self.cleaned_data["code"].lower()
        if Ministry.objects.filter(code=code).exists():
            raise ValidationError(_("A ministry with this code already exists."))
        return code

    def clean_siren(self):
        siren = self.cleaned_data["siren"].strip()
        if Ministry.objects.filter(siren=siren).exists():
            raise ValidationError(_("A ministry with this SIREN already exists."))
        return siren


class IdentifiersForm(DsfrForm):
    domains = forms.CharField(
        label=_("Email domains"),
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("One per line, for example “interieur.gouv.fr”."),
    )
    sirets = forms.CharField(
        label=_("SIRETs"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("One per line, 14 digits each. Agents are matched by SIRET first."),
    )

    def clean(self):
        data = super().clean()
        if "domains" in data:
            try:
                data["domains"], data["sirets"] = ministry_identifiers_check(
                    domains=_split(data["domains"]), sirets=_split(data.get("sirets", ""))
                )
            except ValidationError as exc:
                self.add_service_errors(exc, {"domains": "domains", "sirets": "sirets"})
        return data


class AdminsForm(DsfrForm):
    admins = forms.CharField(
        label=_("Email addresses of the first admins"),
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_(
            "One per line, in the ministry's email domains. Each gets the ministry admin "
            "role at their first ProConnect login."
        ),
    )

    def __init__(self, *args, domains: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.domains = domains

    def clean_admins(self):
        emails: list[str] = []
        for email in _split(self.cleaned_data["admins"]):
            email = email.lower()
            try:
                validate_agent_email(email)
            except ValidationError as exc:
                raise ValidationError(
                    _("“%(email)s” is not an email address.") % {"email": email}
                ) from exc
            if email.rpartition("@")[2] not in self.domains:
                raise ValidationError(
                    _("“%(email)s” is not in the ministry's email domains (%(domains)s).")
                    % {"email": email, "domains": ", ".join(self.domains)}
                )
            if email in emails:
                raise ValidationError(_("“%(value)s” is listed twice.") % {"value": email})
            emails.append(email)
        return emails


class LicencePoolForm(DsfrForm):
    seats = forms.IntegerField(
        label=_("Seats"), min_value=1, help_text=_("Agents that may be active at once.")
    )
    starts_on = forms.DateField(label=_("Period start"), widget=DateInput())
    ends_on = forms.DateField(label=_("Period end"), widget=DateInput())
    foreign_price_eur = forms.DecimalField(
        label=_("Yearly price of the foreign licence replaced, per seat (EUR)"),
        max_digits=10,
        decimal_places=2,
        min_value=0,
    )
    sovereign_cost_eur = forms.DecimalField(
        label=_("Yearly sovereign cost per seat (EUR)"),
        max_digits=10,
        decimal_places=2,
        min_value=0,
    )

    def clean(self):
        data = super().clean()
        if data.get("starts_on") and data.get("ends_on") and data["ends_on"] < data["starts_on"]:
            self.add_error("ends_on", _("The period ends before it starts."))
        return data


class RolloutForm(DsfrForm):
    rollout_target_agents = forms.IntegerField(
        label=_("Goal: agents logged in within 30 days"),
        min_value=1,
        help_text=_("Agents logged in within 30 days the ministry aims at."),
    )
    rollout_target_date = forms.DateField(label=_("Goal: date"), widget=DateInput())
    residency_tags = forms.CharField(
        label=_("Residency tags"),
        required=False,
        help_text=_(
            "Tags a media node must carry to host this ministry's meetings, separated by "
            "spaces: for example “secnumcloud”."
        ),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for i in range(MILESTONE_ROWS):
            self.fields[f"m{i}_due_on"] = forms.DateField(
                label=_("Date"), required=False, widget=DateInput()
            )
            self.fields[f"m{i}_target_agents"] = forms.IntegerField(
                label=_("Agents logged in within 30 days"), required=False, min_value=1
            )
            self.fields[f"m{i}_label"] = forms.CharField(
                label=_("Label"), required=False, max_length=200
            )
        for field in self.fields.values():
            field.widget.attrs.setdefault("class", "fr-input")

    def milestone_rows(self):
        """The milestone fields, row by row, for the template."""
        return [
            [self[f"m{i}_due_on"], self[f"m{i}_target_agents"], self[f"m{i}_label"]]
            for i in range(MILESTONE_ROWS)
        ]

    def clean_residency_tags(self):
        try:
            return residency_tags_clean(_split(self.cleaned_data["residency_tags"]))
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["residency_tags"]) from exc

    def clean(self):
        data = super().clean()
        milestones = []
        for i in range(MILESTONE_ROWS):
            due_on, agents = data.get(f"m{i}_due_on"), data.get(f"m{i}_target_agents")
            label = data.get(f"m{i}_label") or ""
            if due_on is None and agents is None and not label:
                continue
            if due_on is None and f"m{i}_due_on" not in self.errors:
                self.add_error(f"m{i}_due_on", _("A milestone needs a date."))
            if agents is None and f"m{i}_target_agents" not in self.errors:
                self.add_error(f"m{i}_target_agents", _("A milestone needs a number of agents."))
            milestones.append({"due_on": due_on, "target_agents": agents, "label": label})
        if self.errors:
            return data
        try:
            data["milestones"] = rollout_goal_clean(
                target_agents=data.get("rollout_target_agents"),
                target_date=data.get("rollout_target_date"),
                milestones=milestones,
            )
        except ValidationError as exc:
            self.add_service_errors(
                exc,
                {
                    "rollout_target_agents": "rollout_target_agents",
                    "rollout_target_date": "rollout_target_date",
                },
            )
        return data


@dataclass(frozen=True)
class Step:
    number: int
    title: str
    form: type[DsfrForm] | None
    # Fields of the onboarding service this step fills (to show its errors there).
    fields: tuple[str, ...] = ()


STEPS = [
    Step(1, _("Identity"), IdentityForm, ("code", "name", "siren")),
    Step(2, _("Email domains and SIRETs"), IdentifiersForm, ("domains", "sirets")),
    Step(3, _("First admins"), AdminsForm, ("admins",)),
    Step(4, _("Licence pool"), LicencePoolForm, ("licence_pool",)),
    Step(
        5,
        _("Rollout goal and residency"),
        RolloutForm,
        ("rollout_target_agents", "rollout_target_date", "milestones", "residency_tags"),
    ),
    Step(6, _("Review and confirm"), None),
]
LAST = len(STEPS)


def step_for_field(field: str) -> int | None:
    """The step where a service error on ``field`` belongs."""
    return next((s.number for s in STEPS if field in s.fields), None)


def draft_of(session) -> dict:
    return session.get(SESSION_KEY) or {}


def raw_step_data(step: Step, post) -> dict:
    """What the operator typed on a step, kept as typed (valid or not)."""
    names = list(step.form.base_fields)
    if step.form is RolloutForm:
        names += [
            f"m{i}_{f}" for i in range(MILESTONE_ROWS) for f in ("due_on", "target_agents", "label")
        ]
    return {name: post.get(name, "") for name in names}


def bound_form(step: Step, draft: dict, data=None) -> DsfrForm:
    """The step's form, bound to ``data`` or to the draft (unbound if the step is new)."""
    data = data if data is not None else draft.get(str(step.number))
    kwargs = {}
    if step.form is AdminsForm:
        identifiers = bound_form(STEPS[1], draft)
        kwargs["domains"] = identifiers.cleaned_data["domains"] if identifiers.is_valid() else []
    return step.form(data, **kwargs) if data is not None else step.form(**kwargs)


def first_incomplete_step(draft: dict, before: int) -> int | None:
    """The first step before ``before`` whose saved entries are missing or invalid."""
    for step in STEPS[: before - 1]:
        if str(step.number) not in draft or not bound_form(step, draft).is_valid():
            return step.number
    return None


def onboarding_arguments(draft: dict) -> dict:
    """The keyword arguments of ``ministry_onboard``, from a draft whose steps are valid."""
    data = {}
    for step in STEPS:
        if step.form:
            form = bound_form(step, draft)
            if not form.is_valid():
                raise ValueError(f"step {step.number} of the draft is not valid")
            data[step.number] = form.cleaned_data
    rollout = data[5]
    return {
        "code": data[1]["code"],
        "name": data[1]["name"],
        "siren": data[1]["siren"],
        "state": Ministry.State.PILOT,
        "domains": data[2]["domains"],
        "sirets": data[2]["sirets"],
        "admins": data[3]["admins"],
        "licence_pool": {
            k: data[4][k]
            for k in ("starts_on", "ends_on", "seats", "foreign_price_eur", "sovereign_cost_eur")
        },
        "rollout_target_agents": rollout["rollout_target_agents"],
        "rollout_target_date": rollout["rollout_target_date"],
        "milestones": rollout["milestones"],
        "residency_tags": rollout["residency_tags"],
    }
