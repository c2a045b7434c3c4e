"""Dashboard pages for webhook endpoints, mounted at /webhooks/."""

from django.urls import path

from healing_app import webhooks_views as views

app_name = "webhooks"

urlpatterns = [
    path("", views.endpoint_list, name="list"),
    path("new/", views.endpoint_create, name="create"),
    path("<id:endpoint_id>/", views.endpoint_detail, name="detail"),
    path("<id:endpoint_id>/live/", views.endpoint_detail_part, name="detail_part"),
    path("<id:endpoint_id>/edit/", views.endpoint_edit, name="edit"),
    path("<id:endpoint_id>/delete/", views.endpoint_delete, name="delete"),
    path("<id:endpoint_id>/test/", views.endpoint_send_test, name="send_test"),
    path("<id:endpoint_id>/rotate-secret/", views.endpoint_rotate_secret, name="rotate_secret"),
    path("<id:endpoint_id>/secret/", views.endpoint_secret, name="secret"),
    path("<id:endpoint_id>/enabled/", views.endpoint_set_enabled, name="set_enabled"),
    path("<id:endpoint_id>/deliveries/<int:delivery_id>/redeliver/", views.delivery_redeliver, name="redeliver"),
]
