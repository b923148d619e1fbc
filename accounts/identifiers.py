"""Validation of French company identifiers (SIREN, SIRET) and email domains."""

import re

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

# La Poste's establishments do not follow the Luhn key (INSEE's documented exception).
LA_POSTE_SIREN = "356000000"
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)(?!-)([a-z0-9-]{1,63}(?<!-)\.)+[a-z]{2,63}$")


def luhn_valid(number: str) -> bool:
    """Return whether a string of digits passes the Luhn check."""
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def validate_siren(value: str) -> None:
    """A SIREN is 9 digits with a valid Luhn key."""
    if not (isinstance(value, str) and len(value) == 9 and value.isdigit()):
        raise ValidationError(_("A SIREN is exactly 9 digits."), code="siren_format")
    if not luhn_valid(value):
        raise ValidationError(_("This SIREN's check digit is wrong."), code="siren_key")


def validate_siret(value: str) -> None:
    """A SIRET is 14 digits: a valid SIREN then a key valid over the whole number."""
    if not (isinstance(value, str) and len(value) == 14 and value.isdigit()):
        raise ValidationError(_("A SIRET is exactly 14 digits."), code="siret_format")
    if value.startswith(LA_POSTE_SIREN):
        valid = sum(int(c) for c in value) % 5 == 0
    else:
        valid = luhn_valid(value[:9]) and luhn_valid(value)
    if not valid:
        raise ValidationError(_("This SIRET's check digit is wrong."), code="siret_key")


def validate_email_domain(value: str) -> None:
    """A lower-case DNS name with at least two labels, such as ``intradef.gouv.fr``."""
    if not (isinstance(value, str) and DOMAIN_RE.match(value)):
        raise ValidationError(
            _("“%(value)s” is not a valid lower-case email domain."),
            code="domain_format",
            params={"value": value},
        )


# An agent's address: a dot-atom local part (letters, accented ones included as
# RFC 6531 allows, digits and . _ % + ' -, no leading, trailing or doubled dot) at
# a lower-case ASCII DNS name. Stricter than
# RFC 5321 on purpose: no quoted local part, no IP literal, no comment, no second
# "@", no markup or control character, nothing a mail system would read otherwise.
EMAIL_LOCAL_RE = re.compile(r"^(?!\.)(?!.*\.\.)[\w.%+'-]{1,64}(?<!\.)$")
EMAIL_MAX_LENGTH = 254


def validate_agent_email(value: str) -> None:
    """The one email syntax check of the service, for the API, the CSV import, SCIM
    and the ProConnect login: ``local@domain`` as described above, at most 254
    characters."""
    local, at, domain = value.rpartition("@") if isinstance(value, str) else ("", "", "")
    valid = (
        at
        and len(value) <= EMAIL_MAX_LENGTH
        and EMAIL_LOCAL_RE.fullmatch(local)
        and DOMAIN_RE.fullmatch(domain.lower())
    )
    if not valid:
        raise ValidationError(_("This is not a valid email address."), code="email_format")
