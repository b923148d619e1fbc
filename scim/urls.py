"""Routes of the SCIM 2.0 endpoint.

The views are imported at the first SCIM request, not when the URLs are loaded:
their resource models (scim2-models, on pydantic) take a second or more to import,
which every ``manage.py`` command and every test run would otherwise pay.
"""

from functools import cache

from django.urls import path, re_path
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt


def scim_view(name: str):
    """The view ``scim.views.<name>``, imported when first called. Every SCIM view is
    exempt from CSRF (directories authenticate with a bearer token, never a cookie),
    and the middleware reads that mark on this wrapper, before the view is imported."""
    real = cache(lambda: import_string(f"scim.views.{name}"))

    @csrf_exempt
    def view(request, *args, **kwargs):
        return real()(request, *args, **kwargs)

    view.__name__ = view.__qualname__ = name
    return view


app_name = "scim"
urlpatterns = [
    path("ServiceProviderConfig", scim_view("service_provider_config"), name="config"),
    path("ResourceTypes", scim_view("resource_types"), name="resource-types"),
    path("ResourceTypes/<str:type_id>", scim_view("resource_types"), name="resource-type"),
    path("Schemas", scim_view("schemas"), name="schemas"),
    path("Schemas/<str:schema_id>", scim_view("schemas"), name="schema"),
    path(".search", scim_view("root_search"), name="search"),
    path("Users", scim_view("users"), name="users"),
    path("Users/.search", scim_view("users_search"), name="users-search"),
    path("Users/<str:resource_id>", scim_view("user"), name="user"),
    path("Groups", scim_view("groups"), name="groups"),
    path("Groups/.search", scim_view("groups_search"), name="groups-search"),
    path("Groups/<str:resource_id>", scim_view("group"), name="group"),
    re_path(r"^(?P<rest>.*)$", scim_view("not_found")),
]
