from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import path

from healing_app import views

urlpatterns = [
    path("", views.queue, name="queue"),
    path("events/rows/", views.queue_rows, name="queue-rows"),
    path("events/<id:event_id>/", views.event_detail, name="event-detail"),
    path("events/<id:event_id>/part/<slug:part>/", views.event_part, name="event-part"),
    path("events/<id:event_id>/screenshot.png", views.event_screenshot, name="event-screenshot"),
    path("events/<id:event_id>/approve/", views.event_approve, name="event-approve"),
    path("events/<id:event_id>/reject/", views.event_reject, name="event-reject"),
    path("overview/", views.overview, name="overview"),
]

# Under daphne with DEBUG on (development, the browser tests) nothing else serves /static/;
# staticfiles_urlpatterns() is empty when DEBUG is off, where a proxy or collectstatic output serves them.
urlpatterns += staticfiles_urlpatterns()
