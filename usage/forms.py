"""The parameters of an export, checked the same way for the API and the console."""

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from usage.exports import DATASETS, DELIMITERS, FORMATS, GRANULARITIES, ExportRequest


class _Choice(forms.ChoiceField):
    """A choice whose error names the values allowed."""

    def validate(self, value):
        if value and not self.valid_value(value):
            raise ValidationError(
                _("Unknown value “%(value)s”: choose one of %(allowed)s."),
                code="invalid_choice",
                params={
                    "value": value,
                    "allowed": ", ".join(str(key) for key, _label in self.choices),
                },
            )


def _choice(name, values, default: str, labels: dict | None = None) -> forms.ChoiceField:
    return _Choice(
        label=name,
        choices=[(v, (labels or {}).get(v, v)) for v in values],
        required=False,
        initial=default,
    )


class ExportForm(forms.Form):
    """dataset, format, from, to, granularity, ministry (code), unit, delimiter."""

    DEFAULTS = {"dataset": "usage", "format": "csv", "granularity": "day", "delimiter": ";"}

    dataset = _choice(
        _("Data"),
        DATASETS,
        "usage",
        {"usage": _("Usage by period"), "sessions": _("Participant sessions")},
    )
    format = _choice(
        _("Format"),
        FORMATS,
        "csv",
        {"csv": "CSV", "xlsx": "Excel (XLSX)", "jsonl": "JSON Lines"},
    )
    granularity = _choice(
        _("Granularity"),
        GRANULARITIES,
        "day",
        {"day": _("Day"), "week": _("Week"), "month": _("Month")},
    )
    delimiter = _choice(
        _("CSV delimiter"),
        DELIMITERS,
        ";",
        {";": _("Semicolon (French Excel)"), ",": _("Comma")},
    )
    ministry = forms.SlugField(label=_("Ministry"), required=False, max_length=32)
    unit = forms.CharField(
        label=_("Organisational unit"),
        required=False,
        max_length=255,
        help_text=_("Empty: each ministry's totals; * : one row per unit."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # ``from`` is a Python keyword: these two are declared here.
        date_errors = {"invalid": _("Enter a date as YYYY-MM-DD.")}
        self.fields["from"] = forms.DateField(
            label=_("From"), input_formats=["%Y-%m-%d"], error_messages=date_errors
        )
        self.fields["to"] = forms.DateField(
            label=_("To"), input_formats=["%Y-%m-%d"], error_messages=date_errors
        )

    def clean(self):
        data = super().clean()
        for name, default in self.DEFAULTS.items():
            if not data.get(name) and name not in self.errors:
                data[name] = default
        first, last = data.get("from"), data.get("to")
        if first and last:
            if first > last:
                self.add_error("to", _("The end of the period is before its start."))
            elif (last - first).days + 1 > settings.EXPORT_MAX_DAYS:
                self.add_error(
                    "to",
                    _("The period is %(days)d days long; the limit is %(max)d days.")
                    % {"days": (last - first).days + 1, "max": settings.EXPORT_MAX_DAYS},
                )
        return data

    def error_dict(self) -> dict[str, list[str]]:
        """Errors as the API returns them: field name to messages."""
        return {
            name: [e["message"] for e in errors]
            for name, errors in self.errors.get_json_data().items()
        }

    def export_request(self, *, ministry) -> ExportRequest:
        data = self.cleaned_data
        return ExportRequest(
            dataset=data["dataset"],
            format=data["format"],
            first_day=data["from"],
            last_day=data["to"],
            granularity=data["granularity"],
            ministry=ministry,
            unit=data.get("unit") or "",
            delimiter=data["delimiter"],
        )
