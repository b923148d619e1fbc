"""Context shared by every console page: the site's name and the caller's roles."""

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from accounts.access import access_for


def console(request):
    """Site title for DSFR's templates, demo flag, and the caller's access."""
    user = getattr(request, "user", None)
    return {
        "SITE_CONFIG": {
            "site_title": _("Visio of the State"),
            "site_tagline": _("Sovereign videoconferencing for public servants"),
        },
        "demo_login": settings.DEMO_LOGIN,
        "access": access_for(user) if user is not None else None,
    }
