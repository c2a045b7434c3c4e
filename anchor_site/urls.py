from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from anchor_site.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/", api.urls),
    path("django-rq/", include("django_rq.urls")),
    path("demo-site/", include("tasks_app.demo.urls")),
    path("webhooks/", include("healing_app.webhooks_urls")),
    path("", include("tasks_app.urls")),
    path("", include("healing_app.urls")),
]
