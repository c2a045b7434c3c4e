import pytest
from django.core.exceptions import PermissionDenied

from tasks_app import services
from tasks_app.audit import Actor
from tasks_app.config import InputError
from tasks_app.models import AuditLog, CodeVersion, Run, Task

CODE = '''def run(page, params):
    page.goto(params["base_url"])
    return {"ok": True}
'''
pytestmark = pytest.mark.django_db


def test_create_with_code_makes_version_one_current():
    task = services.task_create(name="form", prompt="Fill the form", code=CODE, self_healing=True)
    assert task.current_version.number == 1
    assert task.current_version.source == CodeVersion.Source.INITIAL
    assert task.id.startswith("task_")
    assert AuditLog.objects.filter(object_id=task.pk, action="task.create").exists()


def test_create_without_code_or_llm_says_code_is_needed(settings):
    settings.OPENAI_API_KEY = settings.OPENAI_BASE_URL = ""
    task = services.task_create(name="data_extraction", prompt="Extract prices")
    assert task.current_version is None
    assert task.code_status == Task.CodeStatus.NEEDS_CODE


@pytest.mark.parametrize("llm", [True, False])
@pytest.mark.parametrize("prompt", ["", "  \n ", None])
def test_a_task_without_code_needs_a_prompt_to_write_it_from(settings, llm, prompt):
    """With neither, nothing could ever run it: configuring an LLM would not help, it has nothing to go on."""
    settings.OPENAI_API_KEY = "sk-test" if llm else ""
    with pytest.raises(InputError) as refused:
        services.task_create(name="t", prompt=prompt)
    assert (refused.value.field, refused.value.message) == ("prompt", "required when there is no code: the code is written from it")
    assert not Task.objects.exists()
    assert services.task_create(name="t", prompt=prompt, code=CODE).current_version.number == 1


def test_an_update_may_empty_the_prompt_of_a_task_with_code_but_not_of_one_waiting_for_code(settings):
    settings.OPENAI_API_KEY = settings.OPENAI_BASE_URL = ""
    with_code = services.task_create(name="t", prompt="Fill the form", code=CODE)
    assert services.task_update(task=with_code, prompt="").prompt == ""
    waiting = services.task_create(name="t", prompt="Fill the form")
    with pytest.raises(InputError) as refused:
        services.task_update(task=waiting, prompt=" ")
    assert refused.value.field == "prompt"
    assert Task.objects.get(pk=waiting.pk).prompt == "Fill the form"
    assert services.task_update(task=waiting, prompt="", code=CODE).current_version.number == 1


def test_a_task_made_with_neither_code_nor_a_prompt_before_the_rule_still_takes_other_changes(settings):
    settings.OPENAI_API_KEY = settings.OPENAI_BASE_URL = ""
    task = services.task_create(name="t", prompt="Fill the form")
    Task.objects.filter(pk=task.pk).update(prompt="")  # as tasks were made before a prompt was required
    task = services.task_update(task=Task.objects.get(pk=task.pk), name="renamed", self_healing=True)
    assert (task.name, task.self_healing) == ("renamed", True)
    with pytest.raises(InputError) as refused:
        services.task_update(task=task, prompt=" ")
    assert refused.value.field == "prompt"


def test_task_params_and_run_params_are_capped_as_json_naming_the_limit():
    """One task's params are on every page of the task list, and each run keeps its own copy."""
    limit = services.PARAMS_MAX_BYTES
    just_fits = {"k": "x" * (limit - len('{"k":""}'))}
    task = services.task_create(name="t", code=CODE, params=just_fits)
    too_big = {"k": "é" * (limit // 2)}  # two bytes each in UTF-8: it is bytes that count
    with pytest.raises(InputError) as refused:
        services.task_create(name="t", code=CODE, params=too_big)
    assert (refused.value.field, refused.value.message) == ("params", "must be at most 64 KB as JSON (these are 65 KB)")
    with pytest.raises(InputError, match="must be at most 64 KB as JSON"):
        services.task_update(task=task, params={"k": "x" * 2_000_000})
    with pytest.raises(InputError) as refused:
        services.run_enqueue(task=task, params={"k": "x" * 2_400_000})
    assert (refused.value.field, refused.value.message) == ("params", "must be at most 64 KB as JSON (these are 2344 KB)")
    assert not Run.objects.exists()
    assert services.run_create(task=task, params=just_fits).params == just_fits


def test_update_keeps_config_keys_that_were_not_given():
    task = services.task_create(name="t", code=CODE, self_healing_config={"auto_deploy": True, "max_attempts": 4})
    task = services.task_update(task=task, self_healing_config={"trigger_on": ["captcha_detected"]})
    assert task.config == {
        "auto_deploy": True,
        "max_attempts": 4,
        "trigger_on": ["captcha_detected"],
        "validation_required": True,
    }


def test_updating_code_adds_a_manual_version_and_keeps_the_old_one():
    task = services.task_create(name="t", code=CODE)
    first = task.current_version
    task = services.task_update(task=task, code=CODE.replace("True", "False"), actor=Actor(via="test"))
    assert task.current_version.number == 2
    assert task.current_version.source == CodeVersion.Source.MANUAL
    assert task.current_version.parent == first
    first.refresh_from_db()
    assert "True" in first.code


def test_versions_are_immutable():
    task = services.task_create(name="t", code=CODE)
    version = task.current_version
    version.code = "def run(page, params):\n    return 1\n"
    with pytest.raises(ValueError, match="immutable"):
        version.save()


def test_rollback_deploys_an_earlier_version_without_new_code():
    task = services.task_create(name="t", code=CODE)
    first = task.current_version
    task = services.task_update(task=task, code=CODE.replace("True", "False"))
    task = services.version_deploy(task=task, version=first, reason="rollback")
    assert task.current_version == first
    assert task.versions.count() == 2


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("def run(page, params)\n    pass\n", "line 1"),
        ("def go(page, params):\n    pass\n", "run(page, params)"),
        ("def run(page, params):\n    pass\n" + "#" * 300_000, "256"),
    ],
)
def test_bad_code_is_refused_with_line_and_reason(code, fragment):
    with pytest.raises(InputError) as caught:
        services.task_create(name="t", code=code)
    assert caught.value.field == "code"
    assert fragment in caught.value.message
    assert not Task.objects.exists()


def test_secrets_are_encrypted_at_rest_and_never_in_the_audit_log():
    task = services.task_create(name="t", code=CODE, secrets={"password": "hunter2-very-secret"})
    stored = Task.objects.values_list("secrets_encrypted", flat=True).get(pk=task.pk)
    assert "hunter2" not in stored
    assert Task.objects.get(pk=task.pk).secrets == {"password": "hunter2-very-secret"}
    services.task_update(task=task, secrets={"password": "another-secret-value"})
    logged = " ".join(str(row.data) for row in AuditLog.objects.all())
    assert "hunter2" not in logged and "another-secret-value" not in logged
    assert "password" in logged


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "t", "params": ["a"]}, "params"),
        ({"name": "t", "params": {"secrets": {"a": "b"}}}, "params.secrets"),
        ({"name": "t", "secrets": {"a": 1}}, "secrets"),
        ({"name": "t", "self_healing": "yes"}, "self_healing"),
        ({"name": "t", "healing_agent": "gpt"}, "healing_agent"),
        ({"name": "t", "schedule": "every minute"}, "schedule"),
        ({"name": "t", "schedule": "0 9 30 2 *"}, "schedule"),  # February 30th: valid fields, never fires
    ],
)
def test_bad_task_fields_are_refused_naming_the_field(kwargs, field):
    with pytest.raises(InputError) as caught:
        services.task_create(**kwargs)
    assert caught.value.field == field


def test_run_needs_code():
    task = services.task_create(name="t", prompt="Fill out the contact form")
    with pytest.raises(InputError) as caught:
        services.run_enqueue(task=task)
    assert caught.value.field == "code"


@pytest.mark.parametrize("status", ["healing", "validating"])
def test_the_draft_of_a_heal_still_at_work_cannot_be_deployed_by_hand(status, reviewer):
    """Deploying it would put unvalidated machine-written code live with no review."""
    from healing_app.models import HealingEvent
    from healing_app.tests.factories import pending_event

    event = pending_event()
    HealingEvent.objects.filter(pk=event.pk).update(status=status)
    with pytest.raises(services.DraftNotDeployable, match="still") as refused:
        services.version_deploy(task=event.task, version=event.new_version, actor=Actor(user=reviewer))
    assert refused.value.code == "heal_in_progress" and refused.value.event_id == event.pk
    assert Task.objects.get(pk=event.task_id).current_version == event.original_version
    assert not AuditLog.objects.filter(action="version.deploy").exists()


@pytest.mark.parametrize("status, why", [
    ("pending_review", "is a healed draft waiting for review in"),
    ("rejected", "is a healed draft a reviewer rejected in"),
    ("failed", "is the draft of a heal that failed"),
    ("validating", "is the draft of a heal still being validated"),
])
def test_a_heals_draft_runs_only_in_its_validation_never_by_hand(status, why, reviewer):
    """Nobody accepted that code yet: run for real, it would get the task's secrets and any site it names."""
    from healing_app.models import HealingEvent
    from healing_app.tests.factories import pending_event

    event = pending_event()
    HealingEvent.objects.filter(pk=event.pk).update(status=status)
    with pytest.raises(InputError) as refused:
        services.run_enqueue(task=event.task, version=event.new_version, actor=Actor(user=reviewer))
    assert refused.value.field == "version" and why in refused.value.message
    assert not Run.objects.filter(version=event.new_version).exists()
    validation = services.run_create(task=event.task, version=event.new_version, purpose=Run.Purpose.VALIDATION)
    assert validation.version == event.new_version


def test_a_generated_version_nobody_deployed_does_not_run_by_hand_even_once_another_version_is_current(reviewer):
    task = services.task_create(name="t", prompt="Fill out the contact form")
    generated = services.version_create(task=task, code=CODE, source=CodeVersion.Source.GENERATED)
    with pytest.raises(InputError, match="generated from the prompt and nobody has deployed it yet"):
        services.run_enqueue(task=task, version=generated, actor=Actor(user=reviewer))
    task = services.task_update(task=task, code=CODE.replace("True", "False"))  # a person's own v2 goes live
    with pytest.raises(InputError, match="nobody has deployed it yet"):
        services.run_enqueue(task=task, version=generated, actor=Actor(user=reviewer))

    services.version_deploy(task=task, version=generated, actor=Actor(user=reviewer))
    task = services.task_update(task=Task.objects.get(pk=task.pk), code=CODE.replace("True", "None"))
    assert services.run_enqueue(task=task, version=generated, actor=Actor(user=reviewer)).version == generated


def test_on_a_task_with_secrets_only_those_who_may_change_its_code_run_another_version(django_user_model, member):
    owner = django_user_model.objects.create_user("olga")
    task = services.task_create(name="t", code=CODE, secrets={"pw": "s3cret"}, actor=Actor(user=owner))
    old = task.current_version
    task = services.task_update(task=task, code=CODE.replace("True", "False"), actor=Actor(user=owner))

    with pytest.raises(PermissionDenied, match="run a version other than the current one"):
        services.run_enqueue(task=task, version=old, actor=Actor(user=member))
    assert services.run_enqueue(task=task, actor=Actor(user=member)).version != old  # the current one: anyone
    assert services.run_enqueue(task=task, version=old, actor=Actor(user=owner)).version == old


def test_staff_holding_the_admins_task_permissions_answer_for_a_task_they_do_not_own(django_user_model, member):
    """Not the owner, not a reviewer: the admin's change_task lets them change a task holding secrets and cancel
    its runs, delete_task lets them delete it; a member who is not staff may do none of it, even with change_task."""
    from django.contrib.auth.models import Permission

    owner = django_user_model.objects.create_user("olga")
    task = services.task_create(name="t", code=CODE, secrets={"pw": "s3cret"}, actor=Actor(user=owner))
    editor = django_user_model.objects.create_user("ed", is_staff=True)
    editor.user_permissions.add(Permission.objects.get(codename="change_task", content_type__app_label="tasks_app"))
    deleter = django_user_model.objects.create_user("del", is_staff=True)
    deleter.user_permissions.add(Permission.objects.get(codename="delete_task", content_type__app_label="tasks_app"))

    # The permission alone, on someone who is not staff, is not enough.
    member.user_permissions.add(Permission.objects.get(codename="change_task", content_type__app_label="tasks_app"))
    member = django_user_model.objects.get(pk=member.pk)  # no cached permissions
    with pytest.raises(PermissionDenied):
        services.task_update(task=task, code=CODE.replace("True", "False"), actor=Actor(user=member))
    task = services.task_update(task=task, code=CODE.replace("True", "False"), actor=Actor(user=editor))
    assert task.current_version.number == 2

    run = services.run_create(task=task, actor=Actor(user=member))
    with pytest.raises(PermissionDenied):
        services.run_cancel(run=run, actor=Actor(user=deleter))
    assert services.run_cancel(run=run, actor=Actor(user=editor)).error_type == "cancelled"

    for not_allowed in (member, editor):
        with pytest.raises(PermissionDenied):
            services.task_delete(task=task, actor=Actor(user=not_allowed))
    services.task_delete(task=task, actor=Actor(user=deleter))
    assert not Task.objects.filter(pk=task.pk).exists()
