"""Routes of the console."""

from django.urls import path

from accounts.oidc.views import logout_view
from console import dashboards, directory, meetings, privacy, reports, views

app_name = "console"
urlpatterns = [
    path("", views.home, name="home"),
    path("connexion/", views.login_page, name="login"),
    path("deconnexion/", logout_view, name="logout"),
    path("imports/", views.imports, name="imports"),
    path("imports/<uuid:pk>/", views.import_detail, name="import"),
    path("ministeres/nouveau/", views.onboarding, name="onboarding-start"),
    path("ministeres/nouveau/<int:step>/", views.onboarding, name="onboarding"),
    path("ministeres/<slug:code>/", views.ministry_detail, name="ministry"),
    path("ministeres/<slug:code>/etat/", views.ministry_state, name="ministry-state"),
    path("ministeres/<slug:code>/annuaire/", directory.directory, name="directory"),
    path("reunions/", meetings.rooms, name="rooms"),
    path("reunions/<slug:slug>/", meetings.room, name="room"),
    path("noeuds/", meetings.nodes, name="nodes"),
    path("noeuds/<slug:name>/etat/", meetings.node_state, name="node-state"),
    path("tableau-de-bord/", dashboards.dashboard, name="dashboard"),
    path("tableau-de-bord/<slug:code>/", dashboards.dashboard, name="dashboard-ministry"),
    path("mes-donnees/", privacy.my_data, name="my-data"),
    path("confidentialite/", privacy.privacy, name="privacy"),
    path("exports/", reports.exports, name="exports"),
    path("rapports/", reports.reports, name="reports"),
    path("rapports/<uuid:pk>/", reports.report_download, name="report"),
]
