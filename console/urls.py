"""Routes of the console."""

from django.urls import path

from console import views

app_name = "console"
urlpatterns = [
    path("", views.home, name="home"),
    path("connexion/", views.login_page, name="login"),
    path("deconnexion/", views.logout_view, name="logout"),
]
