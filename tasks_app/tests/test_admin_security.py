"""The admin's security rules: keys keep their user, history is not deleted, deletes are audited, secrets are
shown once on an uncached page, actions need the change permission, and a bad id is never a 500."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from healing_app.tests.factories import pending_event
from tasks_app import services
from tasks_app.api_keys import api_key_create
from tasks_app.models import ApiKey, AuditLog, ElementFingerprint, Run, Task
from tests.admin_urls import admin_object_url

pytestmark = pytest.mark.django_db

CODE = 'def run(page, params):\n    return 1\n'


def _staff(django_user_model, username: str, *codenames: str):
    user = django_user_model.objects.create_user(username, password=None, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", password=None)


@pytest.fixture
def root_client(client, root):
    client.force_login(root)
    return client


def _action(client, model: str, action: str, ids: list, **extra):
    data = {"action": action, "_selected_action": ids, **extra}
    return client.post(reverse(f"admin:{model}_changelist"), data)


# -- API keys ---------------------------------------------------------------------------------------------


def test_a_keys_user_cannot_be_changed_in_the_admin_and_a_rename_is_audited(client, django_user_model, root):
    sam = _staff(django_user_model, "sam", "view_apikey", "change_apikey")
    key, _ = api_key_create(user=sam, name="laptop")
    client.force_login(sam)
    url = admin_object_url(key)
    assert 'name="user"' not in client.get(url).content.decode()

    response = client.post(url, {"user": root.pk, "name": "desktop"})
    assert response.status_code == 302
    key.refresh_from_db()
    assert (key.user, key.name) == (sam, "desktop")
    log = AuditLog.objects.get(action="api_key.update", object_id=key.pk)
    assert (log.actor_label, log.data) == ("sam via admin", {"changed": ["name"], "name": "desktop"})


def test_only_a_superuser_may_create_a_key_for_someone_else(client, django_user_model, root):
    sam = _staff(django_user_model, "sam", "view_apikey", "add_apikey")
    client.force_login(sam)
    add = reverse("admin:tasks_app_apikey_add")
    response = client.post(add, {"user": root.pk, "name": "as root"})
    assert response.status_code == 200
    assert "user" in response.context["adminform"].form.errors
    assert not ApiKey.objects.exists()

    assert client.post(add, {"user": sam.pk, "name": "mine"}).status_code == 302
    assert ApiKey.objects.get().user == sam


def test_a_superuser_may_create_a_key_for_someone_else(root_client, member):
    root_client.post(reverse("admin:tasks_app_apikey_add"), {"user": member.pk, "name": "for mo"})
    assert ApiKey.objects.get().user == member
    assert AuditLog.objects.get(action="api_key.create").actor_label == "root via admin"


def test_a_new_key_is_shown_once_on_an_uncached_page_not_in_a_message_cookie(root_client, root):
    posted = root_client.post(reverse("admin:tasks_app_apikey_add"), {"user": root.pk, "name": "ci"})
    assert posted.status_code == 302  # Post/Redirect/Get: a reload does not make a second key
    response = root_client.get(posted["Location"])
    assert "no-store" in response["Cache-Control"]
    raw = response.context["raw"]
    assert raw and raw in response.content.decode()
    for answer in (posted, response):  # never in a cookie (a message's)
        assert all(raw not in morsel.value for morsel in answer.cookies.values())
    assert raw not in posted["Location"]
    assert ApiKey.objects.get().hashed == ApiKey.hash(raw)

    reloaded = root_client.get(posted["Location"]).content.decode()
    assert raw not in reloaded and 'id="key-shown-once"' in reloaded
    assert ApiKey.objects.count() == 1
    change = root_client.get(admin_object_url(ApiKey.objects.get()))
    assert raw not in change.content.decode()


def test_a_key_revoked_before_its_page_was_shown_is_not_shown(root_client, root):
    posted = root_client.post(reverse("admin:tasks_app_apikey_add"), {"user": root.pk, "name": "ci"})
    _action(root_client, "tasks_app_apikey", "revoke_selected", [ApiKey.objects.get().pk])
    page = root_client.get(posted["Location"])
    assert page.context["raw"] == ""
    assert 'id="key-shown-once"' in page.content.decode()


def test_the_shown_once_page_takes_only_get(root_client, root):
    posted = root_client.post(reverse("admin:tasks_app_apikey_add"), {"user": root.pk, "name": "ci"})
    assert root_client.post(posted["Location"]).status_code == 405
    assert root_client.head(posted["Location"]).status_code == 405
    assert root_client.get(posted["Location"]).context["raw"]  # a HEAD or POST did not take it


def test_revoking_keys_needs_the_change_permission(client, django_user_model, root):
    key, _ = api_key_create(user=root, name="root's")
    client.force_login(_staff(django_user_model, "viv", "view_apikey"))
    _action(client, "tasks_app_apikey", "revoke_selected", [key.pk])
    key.refresh_from_db()
    assert key.revoked_at is None
    assert not AuditLog.objects.filter(action="api_key.revoke").exists()


def test_keys_are_revoked_not_deleted(root_client, root):
    key, _ = api_key_create(user=root, name="ci")
    assert root_client.post(admin_object_url(key, "delete"), {"post": "yes"}).status_code == 403
    _action(root_client, "tasks_app_apikey", "delete_selected", [key.pk], post="yes")  # not offered
    _action(root_client, "tasks_app_apikey", "revoke_selected", [key.pk])
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert AuditLog.objects.filter(action="api_key.revoke", actor_label="root via admin").exists()


# -- deletes ----------------------------------------------------------------------------------------------


def test_runs_are_not_deleted_in_the_admin(root_client):
    task = services.task_create(name="t", code=CODE)
    run = Run.objects.create(task=task, version=task.current_version)
    assert root_client.post(admin_object_url(run, "delete"), {"post": "yes"}).status_code == 403
    _action(root_client, "tasks_app_run", "delete_selected", [run.pk], post="yes")  # not offered
    assert Run.objects.filter(pk=run.pk).exists()


def test_deleting_tasks_with_delete_selected_goes_through_the_service_and_is_audited(root_client):
    event = pending_event()  # a task with versions, a run and a heal: its history goes with it
    other = services.task_create(name="other", code=CODE)
    response = _action(root_client, "tasks_app_task", "delete_selected", [event.task_id, other.pk], post="yes")
    assert response.status_code == 302
    assert not Task.objects.exists()
    logs = AuditLog.objects.filter(action="task.delete", actor_label="root via admin")
    assert sorted(logs.values_list("object_id", flat=True)) == sorted([event.task_id, other.pk])


def test_a_running_task_is_not_deleted_in_the_admin_and_the_page_says_why(root_client):
    task = services.task_create(name="t", code=CODE)
    run = Run.objects.create(task=task, version=task.current_version, status=Run.Status.RUNNING)

    page = root_client.get(admin_object_url(task, "delete"))
    assert f"{run.pk} is running; cancel it, or delete the task when it has ended" in page.content.decode()
    root_client.post(admin_object_url(task, "delete"), {"post": "yes"})
    _action(root_client, "tasks_app_task", "delete_selected", [task.pk], post="yes")

    assert Task.objects.filter(pk=task.pk).exists()
    assert not AuditLog.objects.filter(action="task.delete").exists()


def test_deleting_a_task_from_its_page_is_audited(root_client):
    task = services.task_create(name="t", code=CODE)
    Run.objects.create(task=task, version=task.current_version)
    response = root_client.post(admin_object_url(task, "delete"), {"post": "yes"})
    assert response.status_code == 302
    assert not Task.objects.filter(pk=task.pk).exists()
    assert AuditLog.objects.filter(action="task.delete", object_id=task.pk).exists()


@pytest.mark.parametrize("kind", ["event", "run", "fingerprint"])
def test_records_written_by_the_product_have_no_save_button_and_refuse_a_posted_save(root_client, kind):
    """Every field is read-only, and a Save wrote the whole row back from the copy loaded with the page:
    a heal rejected meanwhile went back to pending review, a finished run back to running, unaudited."""
    from healing_app.models import HealingEvent

    event = pending_event()
    obj = {
        "event": event,
        "run": event.run,
        "fingerprint": ElementFingerprint.objects.create(task=event.task, step_key="3:click:#submit", selector="#submit"),
    }[kind]
    page = root_client.get(admin_object_url(obj))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert root_client.post(admin_object_url(obj), {"_save": "Save"}).status_code == 403
    assert HealingEvent.objects.get(pk=event.pk).status == HealingEvent.Status.PENDING_REVIEW


def test_forgetting_a_fingerprint_is_audited(root_client):
    task = services.task_create(name="t", code=CODE)
    one, two, three = (
        ElementFingerprint.objects.create(task=task, step_key=f"{n}:click:#b{n}", selector=f"#b{n}") for n in (1, 2, 3)
    )
    delete = admin_object_url(one, "delete")
    assert root_client.post(delete, {"post": "yes"}).status_code == 302
    _action(root_client, "tasks_app_elementfingerprint", "delete_selected", [two.pk, three.pk], post="yes")
    assert not ElementFingerprint.objects.exists()
    logs = AuditLog.objects.filter(action="fingerprint.delete", actor_label="root via admin")
    assert sorted(log.data["step_key"] for log in logs) == ["1:click:#b1", "2:click:#b2", "3:click:#b3"]


# -- ids that cannot name a row ---------------------------------------------------------------------------

BAD_IDS = ["%00", "a%00b", "x" * 300]
# Every model whose admin pages take a text id (integer ids are refused by Django before any query).
TEXT_ID_MODELS = ["tasks_app_task", "tasks_app_run", "tasks_app_apikey", "healing_app_healingevent",
                  "healing_app_webhookendpoint"]


@pytest.mark.parametrize("model", TEXT_ID_MODELS)
@pytest.mark.parametrize("page", ["change", "delete", "history"])
def test_a_bad_id_in_an_admin_url_is_not_found_not_a_500(root_client, model, page):
    for bad in BAD_IDS:
        url = reverse(f"admin:{model}_{page}", args=["ID"]).replace("/ID/", f"/{bad}/")
        response = root_client.get(url)
        if "%00" in bad:  # NulInUrlMiddleware answers before the admin sees it
            assert response.status_code == 404, (url, response.status_code)
        else:  # to the admin index ("doesn't exist"); a delete page the model does not offer is refused first
            assert response.status_code in (302, 403), (url, response.status_code)


def test_a_forged_action_selection_with_a_bad_id_does_nothing(root_client):
    task = services.task_create(name="t", code=CODE)
    response = _action(root_client, "tasks_app_task", "delete_selected", ["a\x00b", task.pk], post="yes")
    assert response.status_code == 302
    assert Task.objects.filter(pk=task.pk).exists()


# -- people ---------------------------------------------------------------------------------------------------


def test_who_may_review_and_whose_password_changed_are_in_the_audit_log_without_the_password(root_client, member):
    from healing_app.permissions import reviewers_group

    group = reviewers_group()
    form = {
        "username": member.username, "first_name": "", "last_name": "", "email": "", "is_active": "on",
        "groups": [group.pk], "last_login_0": "", "last_login_1": "", "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
    }
    assert root_client.post(admin_object_url(member), form).status_code == 302
    assert member.groups.filter(pk=group.pk).exists()
    granted = AuditLog.objects.get(action="user.update", object_id=str(member.pk))
    assert granted.actor_label == "root via admin" and "Groups" in str(granted.data["changes"])

    password = reverse("admin:auth_user_password_change", args=[member.pk])
    new_password = "N3w-pass-phrase-42"
    form = {"password1": new_password, "password2": new_password, "usable_password": "true"}
    assert root_client.post(password, form).status_code == 302
    assert AuditLog.objects.filter(action="user.update", object_id=str(member.pk)).count() == 2
    assert new_password not in str(list(AuditLog.objects.values_list("data", flat=True)))


def test_a_staff_member_changing_their_own_password_in_the_admin_is_audited_without_it(root_client, root):
    root.set_password("pw-root-123!")
    root.save()
    root_client.force_login(root)
    page = reverse("admin:password_change")
    refused = root_client.post(page, {"old_password": "wrong", "new_password1": "x", "new_password2": "x"})
    assert refused.status_code == 200 and not AuditLog.objects.exists()
    new_password = "N3w-pass-phrase-43"
    form = {"old_password": "pw-root-123!", "new_password1": new_password, "new_password2": new_password}
    assert root_client.post(page, form).status_code == 302
    entry = AuditLog.objects.get(action="user.update", object_id=str(root.pk))
    assert entry.actor_label == "root via admin" and entry.data == {"changes": ["password"]}
    assert new_password not in str(entry.data)


def test_adding_and_deleting_a_group_in_the_admin_is_audited(root_client):
    assert root_client.post(reverse("admin:auth_group_add"), {"name": "auditors", "permissions": []}).status_code == 302
    group = Group.objects.get(name="auditors")
    assert AuditLog.objects.get(action="group.create").data == {"name": "auditors"}
    assert root_client.post(admin_object_url(group, "delete"), {"post": "yes"}).status_code == 302
    deleted = AuditLog.objects.get(action="group.delete")
    assert (deleted.object_id, deleted.actor_label) == (str(group.pk), "root via admin")
