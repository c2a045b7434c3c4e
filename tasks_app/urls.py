from django.urls import path

from tasks_app import views

urlpatterns = [
    path("tasks/", views.task_list, name="task-list"),
    path("tasks/<str:task_id>/", views.task_detail, name="task-detail"),
    path("tasks/<str:task_id>/part/<slug:part>/", views.task_part, name="task-part"),
    path("tasks/<str:task_id>/config/", views.task_config, name="task-config"),
    path("tasks/<str:task_id>/run/", views.task_run, name="task-run"),
    path("tasks/<str:task_id>/deploy/", views.task_deploy, name="task-deploy"),
]
