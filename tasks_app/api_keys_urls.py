"""Dashboard pages for one's own API keys, mounted at /api-keys/."""

from django.urls import path

from tasks_app import api_keys_views as views

app_name = "api_keys"

urlpatterns = [
    path("", views.key_list, name="list"),
    path("new/", views.key_create, name="create"),
    path("new/shown-once/", views.key_created, name="created"),
    path("<id:key_id>/revoke/", views.key_revoke, name="revoke"),
]
