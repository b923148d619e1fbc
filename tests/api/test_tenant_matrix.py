"""The tenant matrix over every route of the project: ministry A's callers against
ministry B's objects.

``ROUTES`` holds one or more probes for each URL pattern the resolver knows (API,
SCIM, console, OIDC, hooks, health, Django admin); a route without a probe fails
``test_every_route_is_in_the_matrix``. Each probe states the status every caller
gets, and for every caller of A (anything but the national auditor and the probe's
rightful caller):

- nothing of B appears in the response (codes, emails, ids it did not send);
- B's objects are exactly as they were;
- a refused write (4xx, or a redirect to a login page) changed nothing at all.

Columns of the status strings, in order::

    anon  agent_a  admin_a  admin_tok_a  auditor_a  auditor_tok_a  national  scim_a | allowed

``allowed`` is the probe's rightful caller (B's admin, an operator, B's directory),
which shows the probe reaches a real object rather than a typo.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.import_jobs import agent_import_job_create
from accounts.models import Agent, AgentImportJob, ApiToken, Ministry, RoleGrant
from accounts.tokens import api_token_create
from audit.actor import Actor
from audit.models import AuditEvent
from licensing.models import LicencePool
from media_nodes.models import MediaNode
from rooms.models import Room
from rooms.services import room_create
from scim.models import DirectoryGroup, DirectoryToken
from scim.tokens import directory_token_issue
from tests.factories import AgentFactory, DailyUsageFactory, MediaNodeFactory
from usage.models import MonthlyReport
from usage.reports import monthly_report_generate

pytestmark = pytest.mark.django_db

CALLERS = [
    "anonymous",
    "agent_a",
    "admin_a",
    "admin_token_a",
    "auditor_a",
    "auditor_token_a",
    "national_auditor",
    "scim_a",
]
SCIM_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
SCIM_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
SCIM_PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SCIM_SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


@dataclass
class Probe:
    """One request of the matrix: ``route`` is the pattern as the resolver spells it."""

    route: str
    method: str
    url: Callable  # scene -> path (with query string)
    codes: str  # see the module docstring
    allowed: str = "admin_b"
    body: Callable | None = None  # scene -> dict
    kind: str = "json"  # json | multipart | scim
    name: str = ""
    shows_b: bool = False  # the rightful caller's answer lists B's objects

    @property
    def expected(self) -> dict[str, int]:
        left, _, right = self.codes.partition("|")
        codes = [int(code) for code in left.split()]
        assert len(codes) == len(CALLERS), self.codes
        return {**dict(zip(CALLERS, codes, strict=True)), "allowed": int(right)}

    @property
    def label(self) -> str:
        return self.name or f"{self.method.upper()} {self.route}"


def P(route, method, url, codes, **kw) -> Probe:
    """A probe; ``url`` may be a plain string."""
    return Probe(route, method, url if callable(url) else (lambda s, u=url: u), codes, **kw)


def csv_file(scene):
    return {
        "ministry": "bravo",
        "file": SimpleUploadedFile("agents.csv", b"email\nnew@bravo.gouv.fr\n"),
    }


def scim_user(scene):
    return {"schemas": [SCIM_USER], "userName": scene.agent_b.email, "active": False}


def scim_group(scene):
    return {"schemas": [SCIM_GROUP], "displayName": "Renamed"}


def scim_patch(scene):
    return {
        "schemas": [SCIM_PATCH],
        "Operations": [{"op": "replace", "path": "displayName", "value": "Patched"}],
    }


def scim_user_patch(scene):
    return {
        "schemas": [SCIM_PATCH],
        "Operations": [{"op": "replace", "path": "active", "value": False}],
    }


def scim_search(scene):
    return {"schemas": [SCIM_SEARCH], "filter": f'userName eq "{scene.agent_b.email}"'}


API = "api/v1/^"
# Read of a B object by A's callers: 404 (it does not exist for them); nationals read.
READ_B = "401 404 404 404 404 404 200 401 | 200"
# Write on a B object: A's admins 404 (not theirs), auditors and agents 403.
WRITE_B = "401 403 404 404 403 403 403 401 | 200"
LIST = "401 200 200 200 200 200 200 401 | 200"
ROUTES: list[Probe] = [
    # -- REST API (api/v1/) ---------------------------------------------------------
    P(f"{API}ministries/$", "get", "/api/v1/ministries/", LIST, shows_b=True),
    P(
        f"{API}ministries/$",
        "post",
        "/api/v1/ministries/",
        "401 403 403 403 403 403 403 401 | 201",
        body=lambda s: {"code": "charlie", "name": "C", "siren": "110014016"},
        allowed="operator",
    ),
    P(f"{API}ministries/(?P<code>[-a-zA-Z0-9_]+)/$", "get", "/api/v1/ministries/bravo/", READ_B),
    P(
        f"{API}ministries/(?P<code>[-a-zA-Z0-9_]+)/$",
        "patch",
        "/api/v1/ministries/bravo/",
        "401 403 404 404 403 403 403 401 | 200",
        body=lambda s: {"name": "Renamed"},
        allowed="operator",
    ),
    P(f"{API}agents/$", "get", "/api/v1/agents/", LIST, shows_b=True),
    P(
        f"{API}agents/$",
        "post",
        "/api/v1/agents/",
        "401 403 400 400 403 403 403 401 | 201",
        body=lambda s: {"ministry": "bravo", "email": "new@bravo.gouv.fr"},
    ),
    P(f"{API}agents/(?P<pk>[^/.]+)/$", "get", lambda s: f"/api/v1/agents/{s.agent_b.pk}/", READ_B),
    P(
        f"{API}agents/(?P<pk>[^/.]+)/$",
        "patch",
        lambda s: f"/api/v1/agents/{s.agent_b.pk}/",
        WRITE_B,
        body=lambda s: {"usual_name": "Changed"},
    ),
    P(
        f"{API}agents/(?P<pk>[^/.]+)/deactivate/$",
        "post",
        lambda s: f"/api/v1/agents/{s.agent_b.pk}/deactivate/",
        WRITE_B,
    ),
    P(
        f"{API}agents/(?P<pk>[^/.]+)/reactivate/$",
        "post",
        lambda s: f"/api/v1/agents/{s.leaver_b.pk}/reactivate/",
        WRITE_B,
    ),
    P(f"{API}role-grants/$", "get", "/api/v1/role-grants/", LIST, shows_b=True),
    P(
        f"{API}role-grants/$",
        "post",
        "/api/v1/role-grants/",
        "401 403 400 400 403 403 403 401 | 201",
        body=lambda s: {"agent": str(s.agent_b.pk), "role": "auditor", "ministry": "bravo"},
    ),
    P(
        f"{API}role-grants/(?P<pk>[^/.]+)/$",
        "get",
        lambda s: f"/api/v1/role-grants/{s.grant_b.pk}/",
        READ_B,
    ),
    P(
        f"{API}role-grants/(?P<pk>[^/.]+)/$",
        "delete",
        lambda s: f"/api/v1/role-grants/{s.grant_b.pk}/",
        "401 403 404 404 403 403 403 401 | 204",
    ),
    P(f"{API}api-tokens/$", "get", "/api/v1/api-tokens/", LIST, shows_b=True),
    P(
        f"{API}api-tokens/$",
        "post",
        "/api/v1/api-tokens/",
        "401 403 400 400 403 403 403 401 | 201",
        body=lambda s: {"name": "x", "ministry": "bravo", "role": "auditor"},
    ),
    P(
        f"{API}api-tokens/(?P<pk>[^/.]+)/$",
        "get",
        lambda s: f"/api/v1/api-tokens/{s.token_b.pk}/",
        READ_B,
    ),
    P(
        f"{API}api-tokens/(?P<pk>[^/.]+)/$",
        "delete",
        lambda s: f"/api/v1/api-tokens/{s.token_b.pk}/",
        WRITE_B,
    ),
    P(f"{API}agent-imports/$", "get", "/api/v1/agent-imports/", LIST, shows_b=True),
    P(
        f"{API}agent-imports/$",
        "post",
        "/api/v1/agent-imports/",
        "401 403 400 400 403 403 403 401 | 202",
        body=csv_file,
        kind="multipart",
    ),
    P(
        f"{API}agent-imports/(?P<pk>[^/.]+)/$",
        "get",
        lambda s: f"/api/v1/agent-imports/{s.import_b.pk}/",
        READ_B,
    ),
    P(
        f"{API}agent-imports/(?P<pk>[^/.]+)/errors/$",
        "get",
        lambda s: f"/api/v1/agent-imports/{s.import_b.pk}/errors/",
        READ_B,
    ),
    P(
        f"{API}onboardings/$",
        "post",
        "/api/v1/onboardings/",
        "401 403 403 403 403 403 403 401 | 201",
        body=lambda s: {"code": "charlie", "name": "C", "siren": "110014016"},
        allowed="operator",
    ),
    P(f"{API}audit-events/$", "get", "/api/v1/audit-events/", LIST, shows_b=True),
    P(
        f"{API}audit-events/(?P<sequence>[^/.]+)/$",
        "get",
        lambda s: f"/api/v1/audit-events/{s.event_b.sequence}/",
        READ_B,
    ),
    P(f"{API}licence-pools/$", "get", "/api/v1/licence-pools/", LIST, shows_b=True),
    P(
        f"{API}licence-pools/$",
        "post",
        "/api/v1/licence-pools/",
        "401 403 400 400 403 403 403 401 | 201",
        body=lambda s: {
            "ministry": "bravo",
            "starts_on": "2030-01-01",
            "ends_on": "2030-12-31",
            "seats": 5,
            "foreign_price_eur": "100.00",
            "sovereign_cost_eur": "10.00",
        },
        allowed="operator",
    ),
    P(
        f"{API}licence-pools/savings/$",
        "get",
        "/api/v1/licence-pools/savings/?ministry=bravo",
        "401 400 400 400 400 400 200 401 | 200",
    ),
    P(
        f"{API}licence-pools/(?P<pk>[^/.]+)/$",
        "get",
        lambda s: f"/api/v1/licence-pools/{s.pool_b.pk}/",
        READ_B,
    ),
    P(f"{API}directory-tokens/$", "get", "/api/v1/directory-tokens/", LIST, shows_b=True),
    P(
        f"{API}directory-tokens/$",
        "post",
        "/api/v1/directory-tokens/",
        "401 403 400 400 403 403 403 401 | 201",
        body=lambda s: {"ministry": "bravo"},
    ),
    P(
        f"{API}directory-tokens/(?P<pk>[^/.]+)/$",
        "get",
        lambda s: f"/api/v1/directory-tokens/{s.directory_token_b.pk}/",
        READ_B,
    ),
    P(
        f"{API}directory-tokens/(?P<pk>[^/.]+)/$",
        "delete",
        lambda s: f"/api/v1/directory-tokens/{s.directory_token_b.pk}/",
        WRITE_B,
    ),
    # Media nodes are the platform's: operators only, whoever asks.
    P(
        f"{API}media-nodes/$",
        "get",
        "/api/v1/media-nodes/",
        "401 403 403 403 403 403 403 401 | 200",
        allowed="operator",
    ),
    P(
        f"{API}media-nodes/$",
        "post",
        "/api/v1/media-nodes/",
        "401 403 403 403 403 403 403 401 | 400",
        body=lambda s: {"name": "x", "url": "http://127.0.0.1:1", "api_key": "k"},
        allowed="operator",
    ),
    P(
        f"{API}media-nodes/(?P<name>[-a-zA-Z0-9_]+)/$",
        "get",
        "/api/v1/media-nodes/paris-1/",
        "401 403 403 403 403 403 403 401 | 200",
        allowed="operator",
    ),
    P(
        f"{API}media-nodes/(?P<name>[-a-zA-Z0-9_]+)/$",
        "delete",
        "/api/v1/media-nodes/paris-1/",
        "401 403 403 403 403 403 403 401 | 204",
        allowed="operator",
    ),
    *[
        P(
            f"{API}media-nodes/(?P<name>[-a-zA-Z0-9_]+)/{action}/$",
            "post",
            f"/api/v1/media-nodes/paris-1/{action}/",
            "401 403 403 403 403 403 403 401 | 200",
            allowed="operator",
        )
        for action in ("cordon", "drain", "enable")
    ],
    # Rooms are the agents' own (sessions only): a caller creates in their ministry.
    P(f"{API}rooms/$", "get", "/api/v1/rooms/", LIST, allowed="agent_b", shows_b=True),
    P(
        f"{API}rooms/$",
        "post",
        "/api/v1/rooms/",
        "401 201 201 403 201 403 403 401 | 201",
        body=lambda s: {"name": "Point", "access": "ministry"},
        allowed="agent_b",
    ),
    P(
        f"{API}rooms/(?P<slug>[-a-zA-Z0-9_]+)/$",
        "get",
        lambda s: f"/api/v1/rooms/{s.room_b.slug}/",
        "401 404 404 404 404 404 200 401 | 200",
        allowed="agent_b",
    ),
    P(
        f"{API}rooms/(?P<slug>[-a-zA-Z0-9_]+)/$",
        "patch",
        lambda s: f"/api/v1/rooms/{s.room_b.slug}/",
        "401 404 404 403 404 403 403 401 | 200",
        body=lambda s: {"name": "Renamed"},
        allowed="agent_b",
    ),
    P(
        f"{API}rooms/(?P<slug>[-a-zA-Z0-9_]+)/$",
        "delete",
        lambda s: f"/api/v1/rooms/{s.room_b.slug}/",
        "401 404 404 403 404 403 403 401 | 204",
        allowed="agent_b",
    ),
    P(
        f"{API}rooms/(?P<slug>[-a-zA-Z0-9_]+)/invite/$",
        "post",
        lambda s: f"/api/v1/rooms/{s.room_b.slug}/invite/",
        "401 404 404 403 404 403 403 401 | 200",
        body=lambda s: {"emails": [s.agent_a.email]},
        allowed="agent_b",
    ),
    P(
        f"{API}rooms/(?P<slug>[-a-zA-Z0-9_]+)/join/$",
        "post",
        lambda s: f"/api/v1/rooms/{s.room_b.slug}/join/",
        "401 403 403 403 403 403 403 401 | 200",
        allowed="agent_b",
    ),
    P(f"{API}usage/daily/$", "get", "/api/v1/usage/daily/?ministry=bravo", LIST, shows_b=True),
    P(f"{API}rollout/$", "get", "/api/v1/rollout/", LIST, shows_b=True),
    P(
        "api/v1/exports/",
        "get",
        "/api/v1/exports/?from=2026-01-01&to=2026-01-31&ministry=bravo",
        "401 403 404 404 404 404 200 401 | 200",
    ),
    # The schema is public; a directory token is not an API token (401).
    P("api/v1/schema/", "get", "/api/v1/schema/", "200 200 200 200 200 200 200 401 | 200"),
    P("api/v1/docs/", "get", "/api/v1/docs/", "200 200 200 200 200 200 200 401 | 200"),
    # -- SCIM (scim/v2/): only a directory token, and only its ministry's resources --
    *[
        P(
            f"scim/v2/{route}",
            "get",
            f"/scim/v2/{path}",
            "401 401 401 401 401 401 401 200 | 200",
            allowed="scim_b",
        )
        for route, path in [
            ("ServiceProviderConfig", "ServiceProviderConfig"),
            ("ResourceTypes", "ResourceTypes"),
            ("ResourceTypes/<str:type_id>", "ResourceTypes/User"),
            ("Schemas", "Schemas"),
            ("Schemas/<str:schema_id>", "Schemas/" + SCIM_USER),
        ]
    ],
    P(
        "scim/v2/.search",
        "post",
        "/scim/v2/.search",
        "401 401 401 401 401 401 401 200 | 200",
        body=scim_search,
        kind="scim",
        allowed="scim_b",
        shows_b=True,
    ),
    P(
        "scim/v2/Users",
        "get",
        lambda s: f"/scim/v2/Users?filter=userName%20eq%20%22{s.agent_b.email}%22",
        "401 401 401 401 401 401 401 200 | 200",
        allowed="scim_b",
        shows_b=True,
    ),
    P(
        "scim/v2/Users",
        "post",
        "/scim/v2/Users",
        "401 401 401 401 401 401 401 400 | 409",
        body=scim_user,
        kind="scim",
        allowed="scim_b",
        name="POST scim/v2/Users (B's agent)",
    ),
    P(
        "scim/v2/Users/.search",
        "post",
        "/scim/v2/Users/.search",
        "401 401 401 401 401 401 401 200 | 200",
        body=scim_search,
        kind="scim",
        allowed="scim_b",
        shows_b=True,
    ),
    *[
        P(
            "scim/v2/Users/<str:resource_id>",
            method,
            lambda s: f"/scim/v2/Users/{s.agent_b.pk}",
            f"401 401 401 401 401 401 401 404 | {ok}",
            body=body,
            kind="scim",
            allowed="scim_b",
        )
        for method, body, ok in [
            ("get", None, 200),
            ("put", scim_user, 200),
            ("patch", scim_user_patch, 200),
            ("delete", None, 204),
        ]
    ],
    P(
        "scim/v2/Groups",
        "get",
        "/scim/v2/Groups",
        "401 401 401 401 401 401 401 200 | 200",
        allowed="scim_b",
        shows_b=True,
    ),
    P(
        "scim/v2/Groups",
        "post",
        "/scim/v2/Groups",
        "401 401 401 401 401 401 401 400 | 201",
        body=lambda s: {
            "schemas": [SCIM_GROUP],
            "displayName": "With B",
            "members": [{"value": str(s.agent_b.pk)}],
        },
        kind="scim",
        allowed="scim_b",
        name="POST scim/v2/Groups (with B's agent as a member)",
    ),
    P(
        "scim/v2/Groups/.search",
        "post",
        "/scim/v2/Groups/.search",
        "401 401 401 401 401 401 401 200 | 200",
        body=lambda s: {"schemas": [SCIM_SEARCH], "filter": 'displayName eq "Équipe B"'},
        kind="scim",
        allowed="scim_b",
        shows_b=True,
    ),
    *[
        P(
            "scim/v2/Groups/<str:resource_id>",
            method,
            lambda s: f"/scim/v2/Groups/{s.group_b.pk}",
            f"401 401 401 401 401 401 401 404 | {ok}",
            body=body,
            kind="scim",
            allowed="scim_b",
        )
        for method, body, ok in [
            ("get", None, 200),
            ("put", scim_group, 200),
            ("patch", scim_patch, 204),  # a group PATCH answers 204 (Entra's shape)
            ("delete", None, 204),
        ]
    ],
    P(
        "scim/v2/^(?P<rest>.*)$",
        "get",
        "/scim/v2/Nothing",
        "404 404 404 404 404 404 404 404 | 404",
        allowed="scim_b",
    ),
    # -- Console (console/): B's pages are 404 or 403 to A ------------------------------
    P("console/", "get", "/console/", "302 200 200 302 200 302 200 302 | 200"),
    P("console/connexion/", "get", "/console/connexion/", "200 302 302 200 302 200 302 200 | 302"),
    P(
        "console/deconnexion/",
        "post",
        "/console/deconnexion/",
        "302 302 302 302 302 302 302 302 | 302",
    ),
    P(
        "console/imports/",
        "get",
        "/console/imports/",
        "302 200 200 302 200 302 200 302 | 200",
        shows_b=True,
    ),
    P(
        "console/imports/",
        "post",
        "/console/imports/",
        "302 403 200 302 403 302 403 302 | 302",
        body=csv_file,
        kind="multipart",
    ),
    P(
        "console/imports/<uuid:pk>/",
        "get",
        lambda s: f"/console/imports/{s.import_b.pk}/",
        "302 404 404 302 404 302 200 302 | 200",
    ),
    P(
        "console/imports/<uuid:pk>/",
        "post",
        lambda s: f"/console/imports/{s.import_b.pk}/",
        "302 404 404 302 404 302 403 302 | 302",
    ),
    P(
        "console/ministeres/nouveau/",
        "get",
        "/console/ministeres/nouveau/",
        "302 403 403 302 403 302 403 302 | 200",
        allowed="operator",
    ),
    P(
        "console/ministeres/nouveau/<int:step>/",
        "get",
        "/console/ministeres/nouveau/1/",
        "302 403 403 302 403 302 403 302 | 200",
        allowed="operator",
    ),
    P(
        "console/ministeres/<slug:code>/",
        "get",
        "/console/ministeres/bravo/",
        "302 404 404 302 404 302 200 302 | 200",
    ),
    P(
        "console/ministeres/<slug:code>/etat/",
        "post",
        "/console/ministeres/bravo/etat/",
        "302 403 403 302 403 302 403 302 | 302",
        body=lambda s: {"state": "suspended"},
        kind="multipart",
        allowed="operator",
    ),
    P(
        "console/ministeres/<slug:code>/annuaire/",
        "get",
        "/console/ministeres/bravo/annuaire/",
        "302 403 403 302 403 302 403 302 | 200",
    ),
    P(
        "console/ministeres/<slug:code>/annuaire/",
        "post",
        "/console/ministeres/bravo/annuaire/",
        "302 403 403 302 403 302 403 302 | 302",
        body=lambda s: {"action": "revoke", "token": str(s.directory_token_b.pk)},
        kind="multipart",
    ),
    P(
        "console/reunions/",
        "get",
        "/console/reunions/",
        "302 200 200 302 200 302 200 302 | 200",
        allowed="agent_b",
        shows_b=True,
    ),
    P(
        "console/reunions/",
        "post",
        "/console/reunions/",
        "302 302 302 302 302 302 200 302 | 302",
        body=lambda s: {"name": "Point", "access": "ministry"},
        kind="multipart",
        allowed="agent_b",
    ),
    P(
        "console/reunions/<slug:slug>/",
        "get",
        lambda s: f"/console/reunions/{s.room_b.slug}/",
        "302 403 403 302 403 302 403 302 | 200",
        allowed="agent_b",
    ),
    P(
        "console/reunions/<slug:slug>/",
        "post",
        lambda s: f"/console/reunions/{s.room_b.slug}/",
        "302 403 403 302 403 302 403 302 | 200",
        allowed="agent_b",
    ),
    P(
        "console/noeuds/",
        "get",
        "/console/noeuds/",
        "302 403 403 302 403 302 403 302 | 200",
        allowed="operator",
    ),
    P(
        "console/noeuds/<slug:name>/etat/",
        "post",
        "/console/noeuds/paris-1/etat/",
        "302 403 403 302 403 302 403 302 | 302",
        body=lambda s: {"state": "cordoned"},
        kind="multipart",
        allowed="operator",
    ),
    P(
        "console/tableau-de-bord/",
        "get",
        "/console/tableau-de-bord/",
        "302 403 302 302 302 302 200 302 | 302",
    ),
    P(
        "console/tableau-de-bord/<slug:code>/",
        "get",
        "/console/tableau-de-bord/bravo/",
        "302 403 403 302 403 302 200 302 | 200",
    ),
    P(
        "console/mes-donnees/",
        "get",
        "/console/mes-donnees/",
        "302 200 200 302 200 302 200 302 | 200",
    ),
    P(
        "console/mes-donnees/",
        "post",
        "/console/mes-donnees/",
        "302 200 200 302 200 302 200 302 | 200",
    ),
    P(
        "console/confidentialite/",
        "get",
        "/console/confidentialite/",
        "200 200 200 200 200 200 200 200 | 200",
    ),
    P("console/exports/", "get", "/console/exports/", "302 403 200 302 200 302 200 302 | 200"),
    P(
        "console/exports/",
        "post",
        "/console/exports/",
        "302 403 404 302 404 302 200 302 | 200",
        body=lambda s: {
            "dataset": "usage",
            "format": "csv",
            "from": "2026-01-01",
            "to": "2026-01-31",
            "granularity": "day",
            "delimiter": ";",
            "ministry": "bravo",
        },
        kind="multipart",
    ),
    P(
        "console/rapports/",
        "get",
        "/console/rapports/",
        "302 403 200 302 200 302 200 302 | 200",
        shows_b=True,
    ),
    P(
        "console/rapports/<uuid:pk>/",
        "get",
        lambda s: f"/console/rapports/{s.report_b.pk}/",
        "302 403 404 302 404 302 200 302 | 200",
    ),
    # -- The rest: nothing of a ministry behind them ----------------------------------
    P("", "get", "/", "302 302 302 302 302 302 302 302 | 302"),
    P("healthz", "get", "/healthz", "200 200 200 200 200 200 200 200 | 200"),
    P("readyz", "get", "/readyz", "200 200 200 200 200 200 200 200 | 200"),
    # The test client calls from 127.0.0.1, inside METRICS_ALLOWED_NETWORKS: everyone
    # passes the network guard (tests/controlplane/test_metrics.py checks the guard
    # itself), and no ministry's data is in the figures.
    P("metrics", "get", "/metrics", "200 200 200 200 200 200 200 200 | 200"),
    P(
        "oidc/authenticate/",
        "get",
        "/oidc/authenticate/",
        "302 302 302 302 302 302 302 302 | 302",
    ),
    P("oidc/callback/", "get", "/oidc/callback/", "400 400 400 400 400 400 400 400 | 400"),
    P("oidc/logout/", "post", "/oidc/logout/", "302 302 302 302 302 302 302 302 | 302"),
    P(
        "oidc/logout/callback/",
        "get",
        "/oidc/logout/callback/",
        "400 400 400 400 400 400 400 400 | 400",
    ),
    P(
        "hooks/livekit/",
        "post",
        "/hooks/livekit/",
        "401 401 401 401 401 401 401 401 | 401",
        body=lambda s: {"event": "room_finished"},
    ),
    P(
        "i18n/setlang/",
        "post",
        "/i18n/setlang/",
        "302 302 302 302 302 302 302 302 | 302",
        body=lambda s: {"language": "en"},
        kind="multipart",
    ),
]


# What the Django admin answers a superuser (who shows the route is real), when it is
# not a page: a redirect (an object that is no group), a refusal (the audit trail is
# read-only), a 404 (nothing there).
ADMIN_SUPERUSER = {
    "admin/login/": 302,
    "admin/logout/": 405,
    "admin/autocomplete/": 403,
    "admin/r/<path:content_type_id>/<path:object_id>/": 404,
    "admin/audit/auditevent/add/": 403,
    "admin/audit/auditevent/<path:object_id>/delete/": 403,
    "admin/audit/auditevent/<path:object_id>/": 302,
    "admin/(?P<url>.*)$": 404,
}


def _admin_probes() -> list[Probe]:
    """The Django admin is for Django staff only (``is_staff``), which no role gives:
    every route of it sends every caller of the matrix to its login page."""
    probes = []
    for route in _routes():
        if not route.startswith("admin/"):
            continue
        path = "/" + route.replace("<path:object_id>", "{event}").replace(
            "<path:content_type_id>", "1"
        )
        path = path.replace("^(?P<app_label>auth|dsfr|audit)/$", "audit/")
        path = path.replace("(?P<url>.*)$", "nothing/")
        superuser = ADMIN_SUPERUSER.get(route, 302 if "<path:object_id>/" in route else 200)
        if "auditevent/<path:object_id>/" in route and route.endswith(("change/", "history/")):
            superuser = 200
        callers = "200 " * 8 if route == "admin/login/" else "302 " * 8
        probes.append(
            Probe(
                route,
                "get",
                lambda s, p=path: p.format(event=s.event_b.pk),
                f"{callers}| {superuser}",
                allowed="superuser",
            )
        )
    return probes


def _routes(resolver=None, prefix="") -> list[str]:
    """Every URL pattern of the project, spelled as prefix + pattern, recursively."""
    routes = []
    for pattern in (resolver or get_resolver()).url_patterns:
        if isinstance(pattern, URLResolver):
            routes += _routes(pattern, prefix + str(pattern.pattern))
        else:
            routes.append(prefix + str(pattern.pattern))
    return routes


MATRIX = ROUTES + _admin_probes()


def test_every_route_is_in_the_matrix():
    """A new URL pattern must get its probes here; a probe must name a real route."""
    routes = set(_routes())
    covered = {probe.route for probe in MATRIX}
    assert routes - covered == set(), "routes without a probe"
    assert covered - routes == set(), "probes of routes that do not exist"


# -- The scene: two ministries, B with one object of every kind --------------------


@pytest.fixture
def scene(world):
    """World plus, in B, one object of every kind; callers of A, B and the platform."""
    system = Actor.system("tests")
    admin_b = Actor(user=world.admin_b, label="admin b")
    world.grant_b = RoleGrant.objects.get(agent=world.admin_b)
    world.token_b, _ = api_token_create(
        actor=admin_b, ministry=world.b, role="auditor", name="B sync"
    )
    world.directory_token_b, scim_b = directory_token_issue(actor=system, ministry=world.b)
    _, scim_a = directory_token_issue(actor=system, ministry=world.a)
    world.leaver_b = AgentFactory(ministry=world.b, is_active=False, deactivated_at=timezone.now())
    world.import_b = agent_import_job_create(
        actor=admin_b, ministry=world.b, content=b"email\nx@bravo.gouv.fr\n"
    )
    AgentImportJob.objects.filter(pk=world.import_b.pk).update(state="done")
    world.pool_b = LicencePool.objects.get(ministry=world.b)
    world.room_b = room_create(actor=Actor(user=world.agent_b, label="b"), name="Équipe B")
    world.group_b = DirectoryGroup.objects.create(ministry=world.b, display_name="Équipe B")
    world.group_b.members.add(world.agent_b)
    DailyUsageFactory(ministry=world.b, day=date(2026, 1, 5), meetings=3)
    world.report_b = monthly_report_generate(actor=system, ministry=world.b, month=date(2026, 1, 1))
    world.event_b = AuditEvent.objects.filter(ministry_id=world.b.pk).first()
    MediaNodeFactory(name="paris-1")
    world.superuser = AgentFactory(ministry=None, is_staff=True, is_superuser=True)

    def session(user):
        client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
        client.force_login(user)
        return client

    def bearer(clear):
        return APIClient(HTTP_AUTHORIZATION=f"Bearer {clear}", HTTP_ACCEPT_LANGUAGE="en")

    def token(ministry, admin, role):
        return bearer(
            api_token_create(
                actor=Actor(user=admin, label="t"), ministry=ministry, role=role, name="t"
            )[1]
        )

    world.clients = {
        "anonymous": APIClient(HTTP_ACCEPT_LANGUAGE="en"),
        "agent_a": session(world.agent_a),
        "admin_a": session(world.admin_a),
        "admin_token_a": token(world.a, world.admin_a, "ministry_admin"),
        "auditor_a": session(world.auditor_a),
        "auditor_token_a": token(world.a, world.admin_a, "auditor"),
        "national_auditor": session(world.national_auditor),
        "scim_a": bearer(scim_a),
        "admin_b": session(world.admin_b),
        "agent_b": session(world.agent_b),
        "operator": session(world.operator),
        "superuser": session(world.superuser),
        "scim_b": bearer(scim_b),
    }
    for client in world.clients.values():
        client.raise_request_exception = False
    return world


def b_markers(scene) -> set[str]:
    """Strings that name B or one of its objects."""
    b = scene.b
    return {
        "bravo",
        str(b.pk),
        scene.agent_b.email,
        scene.admin_b.email,
        scene.leaver_b.email,
        str(scene.agent_b.pk),
        str(scene.admin_b.pk),
        scene.token_b.prefix,
        scene.directory_token_b.prefix,
        scene.room_b.slug,
        str(scene.import_b.pk),
        str(scene.pool_b.pk),
        str(scene.group_b.pk),
        str(scene.report_b.pk),
        "Équipe B",
    }


def b_snapshot(scene):
    """B's objects, as a refused or foreign request must leave them."""
    b = scene.b
    return (
        list(Ministry.objects.filter(pk=b.pk).values_list("code", "name", "state")),
        sorted(
            Agent.objects.filter(ministry=b).values_list(
                "email", "usual_name", "is_active", "erase_after"
            )
        ),
        sorted(RoleGrant.objects.filter(ministry=b).values_list("agent__email", "role")),
        sorted(ApiToken.objects.filter(ministry=b).values_list("prefix", "revoked_at")),
        sorted(DirectoryToken.objects.filter(ministry=b).values_list("prefix", "revoked_at")),
        sorted(LicencePool.objects.filter(ministry=b).values_list("seats", "ends_on")),
        sorted(AgentImportJob.objects.filter(ministry=b).values_list("pk", "state")),
        sorted(Room.objects.filter(ministry=b).values_list("slug", "name", "deleted_at")),
        sorted(
            DirectoryGroup.objects.filter(ministry=b).values_list("display_name", "members__email")
        ),
        sorted(MonthlyReport.objects.filter(ministry=b).values_list("pk", "sha256")),
    )


def snapshot(scene):
    """Everything: what a refused write must leave as it was."""
    return (
        b_snapshot(scene),
        sorted(Ministry.objects.values_list("code", "name", "state")),
        sorted(Agent.objects.values_list("email", "usual_name", "is_active")),
        sorted(RoleGrant.objects.values_list("agent__email", "role", "ministry__code")),
        ApiToken.objects.filter(revoked_at__isnull=True).count(),
        DirectoryToken.objects.filter(revoked_at__isnull=True).count(),
        LicencePool.objects.count(),
        AgentImportJob.objects.count(),
        sorted(Room.objects.values_list("slug", "name", "deleted_at")),
        sorted(DirectoryGroup.objects.values_list("display_name", flat=True)),
        sorted(MediaNode.objects.values_list("name", "state")),
    )


def send(client, probe: Probe, scene):
    url = probe.url(scene)
    body = probe.body(scene) if probe.body else None
    method = getattr(client, probe.method)
    if probe.kind == "scim":
        payload = json.dumps(body) if body is not None else ""
        return method(url, payload, content_type="application/scim+json"), url + payload
    if probe.kind == "multipart":
        return method(url, body or {}, format="multipart"), url + str(body)
    return method(url, body, format="json"), url + json.dumps(body or {})


def _content(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode(errors="replace")
    return response.content.decode(errors="replace")


@pytest.mark.parametrize("probe", MATRIX, ids=[p.label for p in MATRIX])
def test_the_matrix(scene, probe):
    """Each caller gets the status of the table; A's callers see and change nothing of
    B, and a refused write changes nothing at all. The rightful caller goes last."""
    got, problems, markers = {}, [], b_markers(scene)
    for caller in [*CALLERS, "allowed"]:
        client = scene.clients[probe.allowed if caller == "allowed" else caller]
        before, before_b = snapshot(scene), b_snapshot(scene)
        response, sent = send(client, probe, scene)
        text = _content(response)
        got[caller] = response.status_code
        expected = probe.expected[caller]
        if response.status_code != expected:
            problems.append(f"{caller}: {response.status_code}, not {expected}: {text[:200]}")
            continue
        # The marker check below means something: B's own callers do see them.
        if caller == "allowed" and probe.shows_b and not any(m in text for m in markers):
            problems.append(f"allowed: none of B's objects in {text[:200]}")
        if caller in ("allowed", "national_auditor"):
            continue
        leaks = [m for m in markers if m not in sent and m in text]
        if leaks:
            problems.append(f"{caller} sees B: {leaks}")
        if b_snapshot(scene) != before_b:
            problems.append(f"{caller} changed B's objects")
        refused = expected >= 400 or (expected == 302 and _to_login(response))
        if probe.method != "get" and refused and snapshot(scene) != before:
            problems.append(f"{caller}: a refused write changed something")
    if os.environ.get("MATRIX_DISCOVER"):
        codes = " ".join(str(got[c]) for c in CALLERS)
        print(f'MATRIX {probe.label!r}: "{codes} | {got["allowed"]}"')
    assert not problems, "\n".join(problems)


def _to_login(response) -> bool:
    return bool(re.search(r"/(connexion|login)/", response.get("Location", "")))
