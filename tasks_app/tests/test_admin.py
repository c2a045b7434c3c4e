import pytest
from django.urls import reverse

from healing_app.models import HealingEvent
from tasks_app import services
from tasks_app.models import AuditLog, CodeVersion, Task
from tests.admin_urls import admin_object_url
from tests.browser import scenario

CODE = 'def run(page, params):\n    page.goto(params["base_url"])\n    return 1\n'
pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, django_user_model):
    admin = django_user_model.objects.create_superuser("admin", "a@example.com", "pw-admin-123!")
    client.force_login(admin)
    return client


def _form(task: Task, **overrides) -> dict:
    config = task.config
    data = {
        "name": task.name,
        "prompt": task.prompt,
        "params": "{}",
        "code": task.current_version.code,
        "self_healing": "on" if task.self_healing else "",
        "healing_agent": "",
        "monthly_budget_usd": "",
        "schedule": "",
        "trigger_on": config["trigger_on"],
        "max_attempts": str(config["max_attempts"]),
        "new_secrets": "",
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": "0",
    }
    if config["auto_deploy"]:
        data["auto_deploy"] = "on"
    if config["validation_required"]:
        data["validation_required"] = "on"
    data.update(overrides)
    return {k: v for k, v in data.items() if v != ""}


def test_editing_code_in_the_admin_creates_a_manual_version(staff_client):
    task = services.task_create(name="t", code=CODE)
    new_code = CODE.replace("return 1", "return 2")
    response = staff_client.post(admin_object_url(task), _form(task, code=new_code))
    assert response.status_code == 302, response.content.decode()[:2000]
    task.refresh_from_db()
    assert task.current_version.number == 2
    assert task.current_version.source == CodeVersion.Source.MANUAL
    assert task.versions.get(number=1).code == CODE


def test_admin_config_edit_goes_through_validation(staff_client):
    task = services.task_create(name="t", code=CODE)
    response = staff_client.post(
        admin_object_url(task), _form(task, max_attempts="11", self_healing="on")
    )
    assert response.status_code == 200
    assert "max_attempts" in response.context["adminform"].form.errors
    task.refresh_from_db()
    assert task.self_healing is False


def test_admin_toggles_self_healing_and_config(staff_client):
    task = services.task_create(name="t", code=CODE)
    response = staff_client.post(
        admin_object_url(task),
        _form(task, self_healing="on", auto_deploy="on", max_attempts="5", trigger_on=["timeout", "captcha_detected"]),
    )
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.self_healing is True
    assert task.config == {
        "auto_deploy": True, "max_attempts": 5, "trigger_on": ["timeout", "captcha_detected"], "validation_required": True
    }
    assert task.versions.count() == 1  # unchanged code makes no new version


def test_admin_code_with_syntax_error_is_shown_on_the_field(staff_client):
    task = services.task_create(name="t", code=CODE)
    response = staff_client.post(
        admin_object_url(task), _form(task, code="def run(page, params)\n  x")
    )
    assert response.status_code == 200
    assert "line 1" in str(response.context["adminform"].form.errors["code"])
    assert task.versions.count() == 1


def test_secrets_never_appear_in_the_admin(staff_client):
    task = services.task_create(name="t", code=CODE, secrets={"password": "s3cr3t-admin-value"})
    page = staff_client.get(admin_object_url(task)).content.decode()
    assert "s3cr3t-admin-value" not in page
    assert "password" in page  # the name is shown, so operators know a secret is stored


def test_bad_secret_names_and_params_are_shown_on_their_fields(staff_client):
    task = services.task_create(name="t", code=CODE)
    url = admin_object_url(task)
    response = staff_client.post(url, _form(task, new_secrets='{"a b {{}}": "x"}'))
    assert response.status_code == 200
    assert "must start with a letter" in str(response.context["adminform"].form.errors["new_secrets"])
    response = staff_client.post(url, _form(task, params='{"limit": NaN}'))
    assert response.status_code == 200
    assert "limit: must be a finite number" in str(response.context["adminform"].form.errors["params"])
    task.refresh_from_db()
    assert task.secret_keys == [] and task.params == {}


def test_the_admin_deploy_action_refuses_a_draft_waiting_for_review(staff_client):
    task = services.task_create(name="t", code=CODE, params={"base_url": "http://127.0.0.1:9"})
    event = HealingEvent.objects.get(pk=scenario.event_pending_make(task.pk))
    response = staff_client.post(
        reverse("admin:tasks_app_codeversion_changelist"),
        {"action": "deploy_selected", "_selected_action": [event.new_version_id]},
        follow=True,
    )
    said = [str(m) for m in response.context["messages"]]
    assert said[0].startswith(f"Not deployed: {task.pk} v2: ") and f"waiting for review in {event.pk}" in said[0]
    assert "Deployed 0 version(s)." in response.content.decode()
    task.refresh_from_db()
    assert task.current_version.number == 1


def test_the_admin_cancels_selected_runs_and_says_which_it_could_not(staff_client):
    from tasks_app.models import AuditLog, Run

    task = services.task_create(name="t", code=CODE)
    queued = services.run_create(task=task)
    finished = services.run_create(task=task)
    Run.objects.filter(pk=finished.pk).update(status=Run.Status.SUCCEEDED)

    response = staff_client.post(
        reverse("admin:tasks_app_run_changelist"),
        {"action": "cancel_selected", "_selected_action": [queued.pk, finished.pk]},
        follow=True,
    )

    said = [str(message) for message in response.context["messages"]]  # the admin shows them capitalised
    assert said == [f"Not cancelled: {finished.pk}: {finished.pk} has already finished (succeeded)", "Cancelled 1 run(s)."]
    assert Run.objects.get(pk=queued.pk).error_type == "cancelled"
    assert AuditLog.objects.get(action="run.cancel").actor_label == "admin via admin"


@pytest.mark.parametrize("field, value, form_field, message", [
    ("params", "[1, 2]", "params", "must be an object"),
    ("params", '{"a": "\\ud800"}', "params", "a: "),
    ("params", '{"k": "' + "x" * 70_000 + '"}', "params", "must be at most 64 KB as JSON (these are 69 KB)"),
    ("schedule", "every minute", "schedule", ""),
    ("schedule", "61 * * * *", "schedule", ""),
    ("prompt", "p" * 20_001, "prompt", "at most 20000 characters"),
    ("new_secrets", "[1]", "new_secrets", "must be an object of string names"),
    ("new_secrets", '{"a": {"b": 1}}', "new_secrets", "must be an object of string names"),
    ("monthly_budget_usd", "-5", "monthly_budget_usd", "between 0 and"),
])
def test_every_bad_value_is_shown_on_its_field_not_a_500(staff_client, field, value, form_field, message):
    task = services.task_create(name="t", code=CODE)
    response = staff_client.post(admin_object_url(task), _form(task, **{field: value}))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert form_field in errors and message in str(errors[form_field])


def test_a_task_added_with_neither_code_nor_a_prompt_is_refused_on_the_prompt(staff_client):
    data = {"name": "t", "prompt": " ", "trigger_on": ["timeout"], "max_attempts": "3",
            "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0"}
    response = staff_client.post(reverse("admin:tasks_app_task_add"), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["prompt"] == ["required when there is no code: the code is written from it"]
    assert not Task.objects.exists()


def test_the_monthly_budget_is_saved_and_audited(staff_client):
    task = services.task_create(name="t", code=CODE)
    response = staff_client.post(admin_object_url(task), _form(task, monthly_budget_usd="5"))
    assert response.status_code == 302
    task.refresh_from_db()
    assert str(task.monthly_budget_usd) == "5.0000"
    assert AuditLog.objects.get(action="task.update", object_id=task.pk).data == {"monthly_budget_usd": "5.0000"}


def test_versions_are_read_only_and_never_deleted_in_the_admin(staff_client):
    task = services.task_create(name="t", code=CODE)
    version = task.current_version
    page = staff_client.get(admin_object_url(version)).content.decode()
    assert 'name="_save"' not in page and "deletelink" not in page
    assert staff_client.post(admin_object_url(version, "delete"), {"post": "yes"}).status_code == 403
    assert CodeVersion.objects.filter(pk=version.pk).exists()


def test_fingerprints_are_recorded_by_runs_not_added_in_the_admin(staff_client):
    assert staff_client.get(reverse("admin:tasks_app_elementfingerprint_add")).status_code == 403


def test_an_id_the_admin_must_quote_opens_from_the_changelists_link(staff_client):
    """The admin reads `_22` in a URL's id as a quoted `"`: an id like `task_22…` (one in 170) only opens
    through the quoted link the admin writes, and the tests' own URLs are built the same way."""
    task = Task.objects.create(id="task_22abc", name="quoted")

    changelist = staff_client.get(reverse("admin:tasks_app_task_changelist")).content.decode()
    assert admin_object_url(task) in changelist
    assert reverse("admin:tasks_app_task_change", args=[task.pk]) not in changelist
    page = staff_client.get(admin_object_url(task))
    assert page.status_code == 200
    assert page.context["original"] == task


def test_the_add_form_shows_no_id_version_or_code_status_before_the_task_exists(staff_client):
    page = staff_client.get(reverse("admin:tasks_app_task_add")).content.decode()
    assert 'name="code"' in page and 'name="prompt"' in page
    assert "Code status" not in page and "Current version" not in page
    task = services.task_create(name="t", code=CODE)
    assert "Code status" in staff_client.get(admin_object_url(task)).content.decode()
