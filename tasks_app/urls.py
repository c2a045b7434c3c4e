from django.urls import path

from tasks_app import views

urlpatterns = [
    path("tasks/", views.task_list, name="task-list"),
    path("tasks/new/", views.task_new, name="task-new"),
    path("tasks/<id:task_id>/", views.task_detail, name="task-detail"),
    path("tasks/<id:task_id>/edit/", views.task_edit, name="task-edit"),
    path("tasks/<id:task_id>/part/<slug:part>/", views.task_part, name="task-part"),
    path("tasks/<id:task_id>/config/", views.task_config, name="task-config"),
    path("tasks/<id:task_id>/run/", views.task_run, name="task-run"),
    path("tasks/<id:task_id>/deploy/", views.task_deploy, name="task-deploy"),
    path("runs/<id:run_id>/", views.run_detail, name="run-detail"),
    path("runs/<id:run_id>/part/", views.run_part, name="run-part"),
    path("runs/<id:run_id>/cancel/", views.run_cancel, name="run-cancel"),
]
