"""The management commands people type: they parse their arguments and do what the README says."""

import json

import pytest
from django.core.management import CommandError, call_command

from tasks_app import services
from tasks_app.demo.seed import demo_seed
from tasks_app.demo.site import demo_site_version
from tasks_app.models import Run
from tasks_app.tests.sites import serve

pytestmark = pytest.mark.django_db


def _call(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_demo_site_shows_switches_and_runs(queues):
    demo_seed()
    assert "version 1" in _call("demo_site")
    assert "now on version 2" in _call("demo_site", "2")
    assert demo_site_version() == 2
    output = _call("demo_site", "1", "--run")
    assert demo_site_version() == 1
    started = Run.objects.filter(status=Run.Status.QUEUED)
    assert started.count() == 2
    assert all(run.pk in output for run in started)


def test_demo_site_refuses_an_unknown_version():
    demo_seed()
    with pytest.raises(CommandError, match="invalid choice"):
        _call("demo_site", "7")
    assert demo_site_version() == 1


CODE = '''def run(page, params):
    page.goto(params["url"])
    return {"title": page.inner_text("h1")}
'''


def test_run_task_runs_the_chosen_code_version_and_prints_its_steps():
    with serve({"/": "<h1>Hello</h1><h2>World</h2>"}) as site:
        task = services.task_create(name="greeting", code=CODE, params={"url": site("/")})
        first = task.current_version
        services.version_deploy(
            task=task,
            version=services.version_create(task=task, code=CODE.replace('"h1"', '"h2"'), source="manual"),
        )
        assert json.loads(_call("run_task", task.pk).split("succeeded", 1)[1]) == {"title": "World"}
        output = _call("run_task", "greeting", "--code-version", str(first.number))
    assert f"v{first.number}" in output and "inner_text h1" in output
    assert json.loads(output.split("succeeded", 1)[1]) == {"title": "Hello"}


def test_run_task_names_what_is_wrong():
    task = services.task_create(name="t", code=CODE)
    with pytest.raises(CommandError, match="no task"):
        _call("run_task", "nope")
    with pytest.raises(CommandError, match="has no version 9"):
        _call("run_task", task.pk, "--code-version", "9")
    with pytest.raises(CommandError, match="--params is not JSON"):
        _call("run_task", task.pk, "--params", "{oops")


def test_setup_admin_makes_a_reviewing_superuser_once_and_audits_it(settings, tmp_path):
    from django.contrib.auth import get_user_model

    from tasks_app.models import AuditLog

    settings.VAR_DIR = tmp_path
    assert "Log in as: admin / " in _call("setup_admin")
    _call("setup_admin")  # again: nothing new to audit
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.groups.filter(name="reviewers").exists()
    entries = AuditLog.objects.filter(object_type="user", object_id=str(admin.pk)).order_by("created_at")
    assert [(e.action, e.actor_label) for e in entries] == [
        ("user.create", "system via setup_admin command"), ("user.update", "system via setup_admin command")
    ]
    assert (tmp_path / "admin_password.txt").read_text() not in json.dumps([e.data for e in entries])
