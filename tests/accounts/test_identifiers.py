"""SIREN, SIRET and email-domain validation."""

import pytest
from django.core.exceptions import ValidationError

from accounts.identifiers import validate_email_domain, validate_siren, validate_siret


@pytest.mark.parametrize("siren", ["110044013", "130018153", "356000000"])
def test_valid_sirens_pass(siren):
    """Real-shaped SIRENs with a correct Luhn key are accepted."""
    validate_siren(siren)


@pytest.mark.parametrize(
    ("siren", "code"),
    [
        ("110044014", "siren_key"),
        ("11004401", "siren_format"),
        ("1100440130", "siren_format"),
        ("11004401a", "siren_format"),
        ("", "siren_format"),
    ],
)
def test_invalid_sirens_are_refused_with_the_reason(siren, code):
    """A wrong length, a non-digit or a wrong key each gives its own error code."""
    with pytest.raises(ValidationError) as exc:
        validate_siren(siren)
    assert exc.value.code == code


def test_siret_checks_both_keys():
    """A SIRET needs a valid SIREN and a valid key over all 14 digits."""
    validate_siret("11004401300016")
    with pytest.raises(ValidationError) as exc:
        validate_siret("11004401300017")
    assert exc.value.code == "siret_key"
    with pytest.raises(ValidationError):
        validate_siret("1100440130001")


def test_la_poste_sirets_follow_their_own_rule():
    """La Poste's establishments (SIREN 356000000) use the sum-of-digits rule."""
    validate_siret("35600000000047")  # digit sum 25, a multiple of 5
    with pytest.raises(ValidationError):
        validate_siret("35600000000048")


@pytest.mark.parametrize("domain", ["Intradef.gouv.fr", "gouv", "-a.gouv.fr", "a..fr", "a b.fr"])
def test_bad_domains_are_refused(domain):
    """Only lower-case DNS names with at least two labels are email domains."""
    with pytest.raises(ValidationError):
        validate_email_domain(domain)
