"""The task pages through Django's test client: list, detail, settings, Run now, diff and rollback."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from django.test import Client
from django.urls import reverse

from healing_app.models import HealingEvent
from tasks_app import execution, services
from tasks_app.api_keys import api_key_create
from tasks_app.audit import Actor
from tasks_app.models import AuditLog, CodeVersion, Run, Task
from tests.browser import scenario

pytestmark = pytest.mark.django_db


@pytest.fixture
def task():
    return scenario.task_make()


@pytest.fixture
def healed(task):
    """The task with a healed v2 waiting for review, and its runs."""
    scenario.event_pending_make(task.pk)
    return Task.objects.get(pk=task.pk)


def _login(client, user):
    client.force_login(user)
    return client


def test_task_list_links_each_task(client, member, task):
    scenario.task_make("Newsletter signup")
    html = _login(client, member).get(reverse("task-list")).content.decode()
    assert reverse("task-detail", args=[task.pk]) in html and "Newsletter signup" in html
    html = client.get(reverse("task-list"), {"q": "newsletter"}).content.decode()
    assert "Newsletter signup" in html and "Contact form" not in html


def test_task_list_query_count_does_not_grow_with_tasks(client, member, django_assert_max_num_queries):
    client = _login(client, member)
    for i in range(3):
        scenario.task_make(f"task {i}")
    with django_assert_max_num_queries(8) as few:
        client.get(reverse("task-list"))
    for i in range(20):
        scenario.task_make(f"more {i}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(reverse("task-list"))


def test_task_page_shows_config_versions_runs_and_heals(client, reviewer, healed):
    html = _login(client, reviewer).get(reverse("task-detail", args=[healed.pk])).content.decode()
    assert 'id="current-version">Current version: <strong>v1</strong>' in html
    assert "Roll back to" not in html and "Deploy v2" not in html and "Review<span class=\"visually-hidden\"> v2 in heal_" in html
    assert 'data-live-steps="run_' in html and "button[data-test=send]" in html
    assert "Pending review" in html
    assert 'id="run-now"' in html
    assert re.search(r'<input type="checkbox" name="self_healing" id="id_self_healing" checked', html)
    assert 'value="3" min="1" max="10"' in html  # max_attempts
    assert "Compare versions" in html


def test_task_page_query_count_is_constant(client, reviewer, healed, django_assert_max_num_queries):
    client = _login(client, reviewer)
    with django_assert_max_num_queries(12) as few:
        client.get(reverse("task-detail", args=[healed.pk]))
    for _ in range(3):
        scenario.event_pending_make(healed.pk)
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(reverse("task-detail", args=[healed.pk]))


def test_diff_between_two_versions(client, member, healed):
    html = _login(client, member).get(reverse("task-detail", args=[healed.pk]), {"a": 1, "b": 2}).content.decode()
    assert 'class="diff diff-side"' in html and 'class="diff diff-inline"' in html
    assert "diff-del" in html and "diff-add" in html and "button[data-test=send]" in html
    html = client.get(reverse("task-detail", args=[healed.pk]), {"a": 1, "b": 9}).content.decode()
    assert "Both versions must exist" in html


def test_the_default_comparison_follows_new_versions_live_but_a_chosen_one_stays(client, member, task):
    client = _login(client, member)
    part_url = reverse("task-part", args=[task.pk, "diff"])

    html = client.get(reverse("task-detail", args=[task.pk])).content.decode()
    assert f'data-live-src="{part_url}"' in html and "this task has only v1" in html
    chosen = client.get(reverse("task-detail", args=[task.pk]), {"a": 1, "b": 1}).content.decode()
    assert f'data-live-src="{part_url}"' not in chosen

    services.version_create(task=task, code=task.current_version.code + "\n", source="healed")  # a heal's draft, say
    part = client.get(part_url).content.decode()

    assert part.startswith('<div id="task-diff">') and "this task has only" not in part
    assert 'name="a" value="1"' in part and 'name="b" value="2"' in part  # v1, and the draft after it


def test_saving_healing_settings_calls_task_update(client, member, task):
    response = _login(client, member).post(
        reverse("task-config", args=[task.pk]),
        {"trigger_on": ["timeout", "captcha_detected"], "max_attempts": "5", "auto_deploy": "on"},
    )
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.self_healing is False
    assert task.config["trigger_on"] == ["timeout", "captcha_detected"]
    assert task.config["max_attempts"] == 5 and task.config["auto_deploy"] is True
    assert task.config["validation_required"] is False


def test_bad_settings_are_shown_next_to_the_field(client, member, task):
    response = _login(client, member).post(
        reverse("task-config", args=[task.pk]), {"self_healing": "on", "max_attempts": "99", "trigger_on": ["bogus"]}
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert re.search(r'id="id_max_attempts"[^>]*aria-invalid="true"', html)
    assert 'id="id_max_attempts_error">Ensure this value is less than or equal to 10.' in html
    assert 'id="trigger_on-error">Select a valid choice.' in html
    task.refresh_from_db()
    assert task.config["max_attempts"] == 3
    # The refused form was shown at the form's own address; Enter in the address bar leads back to the task.
    reloaded = client.get(reverse("task-config", args=[task.pk]))
    assert (reloaded.status_code, reloaded["Location"]) == (302, reverse("task-detail", args=[task.pk]))


def test_switching_review_off_on_someone_elses_task_with_secrets_is_refused_on_the_form(client, member, django_user_model):
    owner = django_user_model.objects.create_user("olga")
    task = services.task_create(
        name="Payroll", code=scenario.CODE_V1, secrets={"password": "hunter2"}, self_healing=True, actor=Actor(user=owner)
    )
    response = _login(client, member).post(
        reverse("task-config", args=[task.pk]),
        {"self_healing": "on", "trigger_on": ["timeout"], "max_attempts": "3", "auto_deploy": "on", "validation_required": "on"},
    )
    assert response.status_code == 403
    assert "only its owner, a reviewer or staff may let its heals deploy without a reviewer" in response.content.decode()
    task.refresh_from_db()
    assert task.config["auto_deploy"] is False


def test_self_healing_with_no_failure_types_ticked_is_refused_next_to_the_field(client, member, task):
    # Nothing ticked used to be saved, and later failures then silently went unhealed.
    response = _login(client, member).post(
        reverse("task-config", args=[task.pk]), {"self_healing": "on", "max_attempts": "3", "validation_required": "on"}
    )
    assert response.status_code == 400
    assert 'id="trigger_on-error">must list at least one failure type (self-healing on or off is what starts or stops healing)' in (
        response.content.decode()
    )
    task.refresh_from_db()
    assert task.config["trigger_on"] == ["timeout", "element_not_found", "navigation_error"]


@pytest.mark.parametrize("method, path", [("post", "/api/v1/tasks"), ("patch", "/api/v1/tasks/{id}")])
def test_the_api_refuses_an_empty_trigger_list_naming_the_field_as_the_dashboard_does(
    client, member, task, settings, method, path
):
    _, raw = api_key_create(user=member, name="tests")
    body = {"name": "t", "self_healing": True, "self_healing_config": {"trigger_on": []}}
    response = getattr(client, method)(
        path.format(id=task.pk), data=json.dumps(body), content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"] == {
        "code": "invalid_input",
        "field": "self_healing_config.trigger_on",
        "message": "must list at least one failure type (self-healing on or off is what starts or stops healing)",
    }
    task.refresh_from_db()
    assert task.config["trigger_on"] == ["timeout", "element_not_found", "navigation_error"]


def test_run_now_queues_a_run(client, member, task):
    response = _login(client, member).post(reverse("task-run", args=[task.pk]), follow=True)
    run = Run.objects.get(task=task)
    assert run.status == Run.Status.QUEUED and run.requested_by == member
    assert f"Run {run.pk} queued".encode() in response.content
    assert AuditLog.objects.get(action="run.enqueue").actor_label == "mo via dashboard"


def test_a_queued_run_has_a_cancel_button_that_ends_it(client, member, task):
    client = _login(client, member)
    client.post(reverse("task-run", args=[task.pk]))
    run = Run.objects.get(task=task)
    assert f'data-run-cancel="{run.pk}"' in client.get(reverse("task-detail", args=[task.pk])).content.decode()

    response = client.post(reverse("run-cancel", args=[run.pk]), follow=True)

    run.refresh_from_db()
    assert (run.status, run.error_type) == (Run.Status.FAILED, "cancelled")
    html = response.content.decode()
    assert f"Run {run.pk} cancelled before it started." in html and f'data-run-cancel="{run.pk}"' not in html
    assert AuditLog.objects.get(action="run.cancel").actor_label == "mo via dashboard"
    again = client.post(reverse("run-cancel", args=[run.pk]), follow=True)
    assert f"Not cancelled: {run.pk} has already finished (failed)." in again.content.decode()


def test_a_running_run_shows_it_is_being_cancelled(client, member, task):
    client = _login(client, member)
    client.post(reverse("task-run", args=[task.pk]))
    run = execution.run_claim(Run.objects.get(task=task).pk)

    html = client.post(reverse("run-cancel", args=[run.pk]), follow=True).content.decode()

    assert f"Run {run.pk} is being cancelled; it stops within a few seconds." in html
    assert f'data-run-cancelling="{run.pk}"' in html and f'data-run-cancel="{run.pk}"' not in html
    assert Run.objects.get(pk=run.pk).cancel_requested_at is not None


def test_cancelling_on_the_runs_own_page_stays_on_it(client, member, task):
    client = _login(client, member)
    run = execution.run_claim(services.run_create(task=task, actor=Actor(user=member)).pk)
    page = client.get(reverse("run-detail", args=[run.pk])).content.decode()
    assert '<input type="hidden" name="back_to" value="run">' in page

    response = client.post(reverse("run-cancel", args=[run.pk]), {"back_to": "run"})

    assert response.status_code == 302 and response["Location"] == reverse("run-detail", args=[run.pk])
    listed = client.get(reverse("task-detail", args=[task.pk])).content.decode()
    assert 'name="back_to"' not in listed  # from the task page, back to the task page


def test_someone_elses_run_shows_no_cancel_button_and_cannot_be_cancelled_from_the_dashboard(
    client, member, task, django_user_model
):
    olga = django_user_model.objects.create_user("olga")
    run = services.run_enqueue(task=task, actor=Actor(user=olga))
    Task.objects.filter(pk=task.pk).update(owner=olga)
    client = _login(client, member)
    assert f'data-run-cancel="{run.pk}"' not in client.get(reverse("task-detail", args=[task.pk])).content.decode()
    assert f'data-run-cancel="{run.pk}"' not in client.get(reverse("run-detail", args=[run.pk])).content.decode()
    assert client.post(reverse("run-cancel", args=[run.pk])).status_code == 403
    assert Run.objects.get(pk=run.pk).status == Run.Status.QUEUED
    client.force_login(olga)
    assert f'data-run-cancel="{run.pk}"' in client.get(reverse("run-detail", args=[run.pk])).content.decode()


def test_run_now_without_code_explains_why(client, member):
    task = services.task_create(name="no code yet", prompt="Fill out the contact form")
    response = _login(client, member).post(reverse("task-run", args=[task.pk]), follow=True)
    assert b"Not started:" in response.content and not Run.objects.filter(task=task).exists()


def test_run_now_without_code_lands_where_its_message_is_and_the_cards_say_why(client, member):
    task = services.task_create(name="no code yet", prompt="Fill out the contact form")
    response = _login(client, member).post(reverse("task-run", args=[task.pk]))
    # The message is at the top of the page: a jump to #runs scrolled it out of sight.
    assert response.status_code == 302 and response["Location"] == reverse("task-detail", args=[task.pk])
    html = client.get(response["Location"]).content.decode()
    assert "Not started: the task has no code yet" in html
    assert "“Run now” starts one" not in html and "No runs yet: the task has no code to run" in html
    assert '<td colspan="5" class="empty">No versions yet:' in html
    assert 'id="id_a"' not in html and "Comparing needs two versions; this task has none yet." in html


def test_compare_versions_is_offered_only_with_two_versions(client, member, task, healed):
    client = _login(client, member)
    html = client.get(reverse("task-detail", args=[scenario.task_make("one version").pk])).content.decode()
    assert 'id="id_a"' not in html and "Comparing needs two versions; this task has only v1." in html
    # v1 is current and v2 a heal's draft: the form offers v1 → v2, not v1 → v1.
    html = client.get(reverse("task-detail", args=[healed.pk])).content.decode()
    assert re.search(r'name="a" value="1"', html) and re.search(r'name="b" value="2"', html)


def test_a_draft_waiting_for_review_links_to_its_event_instead_of_deploying(client, reviewer, healed):
    client = _login(client, reviewer)
    event = HealingEvent.objects.get(task=healed)
    html = client.get(reverse("task-detail", args=[healed.pk])).content.decode()
    # A short label, so the button fits a half-width card at 1280 px; the heal's id is in the Note column.
    link = re.search(rf'<a href="{reverse("event-detail", args=[event.pk])}" class="button small"[^>]*>(.*?)</a>', html)
    assert link and link.group(1) == f'Review<span class="visually-hidden"> v2 in {event.pk}</span>'
    assert f"healed by {event.pk}" in html
    assert "Deploy v2" not in html
    # A hand-made POST is refused too: deploying it here would skip the review.
    response = client.post(reverse("task-deploy", args=[healed.pk]), {"version": "2"}, follow=True)
    assert f"Not deployed: version 2 is a healed draft waiting for review in {event.pk}" in response.content.decode()
    assert Task.objects.get(pk=healed.pk).current_version.number == 1
    assert HealingEvent.objects.get(pk=event.pk).status == HealingEvent.Status.PENDING_REVIEW


def test_rollback_by_a_reviewer(client, reviewer, healed):
    client = _login(client, reviewer)
    event = HealingEvent.objects.get(task=healed)
    client.post(reverse("event-approve", args=[event.pk]), {"comment": ""})
    assert Task.objects.get(pk=healed.pk).current_version.number == 2
    response = client.post(reverse("task-deploy", args=[healed.pk]), {"version": "1"}, follow=True)
    assert Task.objects.get(pk=healed.pk).current_version.number == 1
    assert b"Version 1 is now current" in response.content
    assert CodeVersion.objects.filter(task=healed).count() == 2  # a rollback writes no new code


@pytest.mark.parametrize("number", ["²", "٣", "", "0", "-1", "1.0", "9" * 26, "1\n"])
def test_deploying_a_version_that_is_not_a_plain_number_says_no_such_version(client, reviewer, healed, number):
    # "²".isdigit() is true but int("²") fails; int("٣") is 3. Only ASCII digits name a version.
    response = _login(client, reviewer).post(reverse("task-deploy", args=[healed.pk]), {"version": number}, follow=True)
    assert response.status_code == 200
    assert b"No such version of this task." in response.content
    assert Task.objects.get(pk=healed.pk).current_version.number == 1


def test_rollback_is_for_reviewers_only(client, member, healed):
    client = _login(client, member)
    assert b"Deploy v2" not in client.get(reverse("task-detail", args=[healed.pk])).content
    assert client.post(reverse("task-deploy", args=[healed.pk]), {"version": "2"}).status_code == 403
    assert Task.objects.get(pk=healed.pk).current_version.number == 1


def test_task_forms_need_a_csrf_token(member, task):
    client = Client(enforce_csrf_checks=True)
    client.force_login(member)
    assert client.post(reverse("task-run", args=[task.pk])).status_code == 403
    assert client.post(reverse("task-config", args=[task.pk]), {"max_attempts": "2"}).status_code == 403
    assert not Run.objects.filter(task=task).exists()


def test_task_parts_render_alone(client, member, healed):
    client = _login(client, member)
    parts = (("versions", 'id="current-version"'), ("runs", "data-live-steps"), ("events", "Pending review"),
             ("code", 'data-current-code="1"'))
    for part, marker in parts:
        html = client.get(reverse("task-part", args=[healed.pk, part])).content.decode()
        assert html.startswith(f'<div id="task-{part}">') and marker in html, part
    assert client.get(reverse("task-part", args=[healed.pk, "secrets"])).status_code == 404


def test_a_run_has_a_page_of_its_own_linked_from_its_task_and_its_heal(client, member, healed):
    client = _login(client, member)
    event = HealingEvent.objects.get(task=healed)
    run = event.run
    run_url = reverse("run-detail", args=[run.pk])
    assert f'href="{run_url}"' in client.get(reverse("task-detail", args=[healed.pk])).content.decode()
    assert f'href="{run_url}"' in client.get(reverse("event-detail", args=[event.pk])).content.decode()

    html = client.get(run_url).content.decode()

    assert f'<h1>Run <span class="mono">{run.pk}</span></h1>' in html
    assert f'href="{reverse("event-detail", args=[event.pk])}"' in html and "(pending review)" in html
    assert f'data-live-steps="{run.pk}"' in html and "button[data-test=send]" in html
    part = client.get(reverse("run-part", args=[run.pk])).content.decode()
    assert part.startswith('<div id="run-body">') and run.pk in part
    assert client.get(reverse("run-detail", args=["run_nope"])).status_code == 404
    own = services.run_create(task=healed, params={"name": "Ada Lovelace"})
    html = client.get(reverse("run-detail", args=[own.pk])).content.decode()
    assert '<pre class="code-block" id="run-params">{\n  &quot;name&quot;: &quot;Ada Lovelace&quot;\n}</pre>' in html


@pytest.mark.parametrize(
    ("settings_now", "error_type", "says"),
    [
        ({"self_healing": False}, "element_not_found", "(not healed: self-healing is off for this task;"),
        ({"self_healing_config": {"trigger_on": ["timeout"]}}, "element_not_found",
         "(not healed: this task heals only timeout failures (its trigger_on);"),
        ({}, "element_not_found", None),  # healing on for this failure: nothing to explain (its heal is linked)
        ({"self_healing": False}, "script_error", None),  # not a failure a heal mends
    ],
)
def test_a_failed_runs_page_says_when_the_tasks_settings_are_why_it_was_not_healed(
    client, member, task, settings_now, error_type, says
):
    services.task_update(task=task, **settings_now)
    run = services.run_create(task=task)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.FAILED, error_type=error_type, error_message="boom")

    html = _login(client, member).get(reverse("run-detail", args=[run.pk])).content.decode()

    if says is None:
        assert 'id="not-healed"' not in html
    else:
        assert says in unescape(html)
        assert f'href="{reverse("task-detail", args=[task.pk])}#config">change it in the task' in html


def test_a_failed_runs_page_shows_its_error_once_in_full_and_its_tasks_page_in_short(client, member, task):
    run = services.run_create(task=task)
    message = "no element matches #send: " + "x" * 400
    Run.objects.filter(pk=run.pk).update(status=Run.Status.FAILED, error_type="element_not_found", error_message=message)
    client = _login(client, member)

    html = client.get(reverse("run-detail", args=[run.pk])).content.decode()
    listed = client.get(reverse("task-detail", args=[task.pk])).content.decode()

    assert html.count("no element matches #send") == 1 and message in html
    assert listed.count("no element matches #send") == 1 and message not in listed


def test_unknown_task_is_404(client, member):
    assert _login(client, member).get(reverse("task-detail", args=["task_nope"])).status_code == 404


def test_anonymous_cannot_post(client, task):
    response = client.post(reverse("task-run", args=[task.pk]))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert not HealingEvent.objects.exists() and not Run.objects.filter(task=task).exists()


def test_comparing_a_version_number_beyond_the_database_range_is_a_form_error(client, member, healed):
    response = _login(client, member).get(reverse("task-detail", args=[healed.pk]), {"a": "1", "b": "9" * 26})
    assert response.status_code == 200
    assert "Ensure this value is less than or equal to 2147483647" in response.content.decode()


def test_a_rejected_draft_is_marked_and_cannot_be_deployed(client, reviewer, healed):
    event = HealingEvent.objects.get(task=healed)
    client = _login(client, reviewer)
    client.post(reverse("event-reject", args=[event.pk]), {"comment": "wrong button"})
    html = client.get(reverse("task-detail", args=[healed.pk])).content.decode()
    badge = 'class="badge badge-rejected" title="a discarded draft, kept for inspection">rejected'
    assert f'{badge}<span class="visually-hidden"> in {event.pk}</span>' in html
    assert "Deploy v2" not in html
    response = client.post(reverse("task-deploy", args=[healed.pk]), {"version": "2"}, follow=True)
    assert f"Not deployed: version 2 is a healed draft a reviewer rejected in {event.pk}" in response.content.decode()
    assert Task.objects.get(pk=healed.pk).current_version.number == 1


def test_the_draft_of_a_heal_being_validated_is_marked_and_has_no_deploy_button(client, reviewer, healed):
    event = HealingEvent.objects.get(task=healed)
    HealingEvent.objects.filter(pk=event.pk).update(status=HealingEvent.Status.VALIDATING)
    html = _login(client, reviewer).get(reverse("task-detail", args=[healed.pk])).content.decode()
    assert f'title="the draft of a heal still being validated">validating<span class="visually-hidden"> in {event.pk}' in html
    assert "Deploy v2" not in html


def test_a_drafts_diff_link_compares_it_with_the_version_it_healed(client, reviewer, healed):
    """v3, a second heal of v1, is diffed against v1, not against v2 (another draft)."""
    original = Task.objects.get(pk=healed.pk).current_version
    third = services.version_create(task=original.task, code=original.code + "# again\n",
                                    source=CodeVersion.Source.HEALED, parent=original)
    html = _login(client, reviewer).get(reverse("task-detail", args=[healed.pk])).content.decode()
    assert f'href="?a={original.number}&amp;b={third.number}#diff"' in html
    assert f'href="?a={third.number - 1}&amp;b={third.number}#diff"' not in html


def test_the_task_list_shows_the_tasks_own_last_run_not_a_validation(client, member, healed):
    # healed: its last normal run healed; the validation run of the draft (newer) succeeded.
    html = _login(client, member).get(reverse("task-list")).content.decode()
    row = html[html.index(reverse("task-detail", args=[healed.pk])):]
    row = row[: row.index("</tr>")]
    assert "badge-run-healed" in row and "badge-run-succeeded" not in row


def test_a_runs_output_is_shown_as_json_where_its_steps_are(client, member, task):
    Run.objects.create(task=task, version=task.current_version, status=Run.Status.SUCCEEDED,
                       output={"confirmation": "Thanks, Ada & co!", "sent": True, "price": None})
    Run.objects.create(task=task, version=task.current_version, status=Run.Status.FAILED, error_type="timeout")

    html = _login(client, member).get(reverse("task-part", args=[task.pk, "runs"])).content.decode()

    outputs = re.findall(r'<pre class="code-block" data-run-output="[^"]+">(.*?)</pre>', html, re.S)
    assert len(outputs) == 1  # the failed run returned nothing
    assert json.loads(unescape(outputs[0])) == {
        "confirmation": "Thanks, Ada & co!", "sent": True, "price": None,
    }


NEW_CODE = '''def run(page, params):
    page.goto(params["base_url"] + "/contact")
    page.get_by_role("button", name="Send").click()
    return {"sent": True}
'''


def _task_form(**fields) -> dict:
    form = {"name": "Newsletter", "prompt": "Sign up for the newsletter", "code": NEW_CODE,
            "params": '{"base_url": "http://shop.test"}', "trigger_on": ["element_not_found", "timeout"],
            "max_attempts": "3", "validation_required": "on", "self_healing": "on"}
    return {**form, **fields}


def test_a_member_creates_a_task_from_the_dashboard(client, member):
    client = _login(client, member)
    assert 'id="new-task"' in client.get(reverse("task-list")).content.decode()
    assert client.get(reverse("task-new")).status_code == 200

    response = client.post(reverse("task-new"), _task_form(code=NEW_CODE.replace("\n", "\r\n")))

    task = Task.objects.get(name="Newsletter")
    assert response.status_code == 302 and response["Location"] == reverse("task-detail", args=[task.pk])
    assert (task.owner, task.prompt, task.params) == (member, "Sign up for the newsletter", {"base_url": "http://shop.test"})
    assert task.current_version.code == NEW_CODE and task.current_version.source == CodeVersion.Source.INITIAL
    assert task.self_healing and sorted(task.config["trigger_on"]) == ["element_not_found", "timeout"]
    assert AuditLog.objects.filter(action="task.create", object_id=task.pk, actor_label__contains="dashboard").exists()


@pytest.mark.parametrize("fields, field, message", [
    ({"code": "def run(page):\n    pass\n"}, "code", "(page, params)"),
    ({"code": "def run(page, params):\n    return (\n"}, "code", "line"),
    ({"params": "[1, 2]"}, "params", ""),
    ({"params": "{not json"}, "params", ""),
    ({"params": '{"a": "\\ud800"}'}, "params", "a: "),  # a lone surrogate: the page showing it back was a 500
    ({"name": ""}, "name", "required"),
    ({"max_attempts": "0"}, "max_attempts", ""),
    ({"prompt": " ", "code": ""}, "prompt", "required when there is no code: the code is written from it"),
    ({"params": json.dumps({"k": "x" * 100_000})}, "params", "must be at most 64 KB as JSON (these are 98 KB)"),
])
def test_a_bad_field_is_shown_next_to_it_and_nothing_is_created(client, member, fields, field, message):
    response = _login(client, member).post(reverse("task-new"), _task_form(**fields))

    assert response.status_code == 400
    errors = response.context["form"].errors
    assert field in errors, errors
    assert message in " ".join(errors[field])
    assert f'id="id_{field}_error"' in response.content.decode()
    assert not Task.objects.exists()


def test_the_task_page_names_its_secrets_but_never_shows_their_values(client, member):
    task = services.task_create(name="login", code=NEW_CODE, secrets={"username": "ada", "password": "s3cret-pw"})
    html = _login(client, member).get(reverse("task-detail", args=[task.pk])).content.decode()
    assert "Secrets: <code>password</code>, <code>username</code>" in html
    assert "s3cret-pw" not in html


def test_the_new_task_page_speaks_of_a_new_task_and_the_edit_page_of_an_existing_one(client, member, task):
    client = _login(client, member)
    new = client.get(reverse("task-new")).content.decode()
    assert '<label for="id_new_secrets">Secrets</label>' in new and "Left empty, a configured LLM writes it" in new
    assert "Replace secrets" not in new and "source: manual" not in new
    edit = client.get(reverse("task-edit", args=[task.pk])).content.decode()
    assert '<label for="id_new_secrets">Replace secrets</label>' in edit and "source: manual" in edit


def test_a_refused_edit_keeps_the_stored_name_in_the_page_and_the_submitted_one_in_the_field(client, member, task):
    form = {**_task_form(name="Renamed"), "max_attempts": "0"}
    html = _login(client, member).post(reverse("task-edit", args=[task.pk]), form).content.decode()
    assert f"<h1>Edit {task.name}</h1>" in html and 'value="Renamed"' in html
    assert Task.objects.get(pk=task.pk).name == task.name


def test_a_refused_form_does_not_echo_the_secrets_typed_into_it_and_asks_for_them_again(client, member, task):
    form = _task_form(name="login", schedule="bad", new_secrets='{"password": "SEKRET-VALUE-9"}')
    for url in (reverse("task-new"), reverse("task-edit", args=[task.pk])):
        response = _login(client, member).post(url, form)
        assert response.status_code == 400
        assert "SEKRET-VALUE-9" not in response.content.decode()
        assert "type the secrets again" in str(response.context["form"].errors["new_secrets"])


def test_every_bad_field_is_shown_at_once_not_one_per_submit(client, member):
    response = _login(client, member).post(reverse("task-new"), _task_form(
        code="def run(page, params)\n  pass\n", new_secrets="[1]", monthly_budget_usd="-3", schedule="* * *",
        trigger_on=[], max_attempts="0",
    ))

    assert response.status_code == 400
    errors = response.context["form"].errors
    assert set(errors) == {"code", "new_secrets", "monthly_budget_usd", "schedule", "trigger_on", "max_attempts"}, errors
    assert not Task.objects.exists()


def test_bad_settings_are_all_shown_at_once(client, member, task):
    html = _login(client, member).post(
        reverse("task-config", args=[task.pk]), {"self_healing": "on", "max_attempts": "0"}
    ).content.decode()
    assert 'id="id_max_attempts_error">Ensure this value is greater than or equal to 1.' in html
    assert 'id="trigger_on-error">must list at least one failure type' in html


def test_editing_the_code_makes_a_new_current_version_and_saving_it_unchanged_does_not(client, member, task):
    client = _login(client, member)
    page = client.get(reverse("task-edit", args=[task.pk])).content.decode()
    assert "#submit" in page  # the current code, ready to edit

    form = _task_form(name=task.name, params=json.dumps(task.params), code=NEW_CODE)
    assert client.post(reverse("task-edit", args=[task.pk]), form).status_code == 302
    task.refresh_from_db()
    assert (task.current_version.number, task.current_version.code, task.name) == (2, NEW_CODE, "Contact form")

    assert client.post(reverse("task-edit", args=[task.pk]), form).status_code == 302
    assert task.versions.count() == 2


def test_only_the_owner_or_a_reviewer_edits_the_code_of_a_task_holding_secrets(client, member, django_user_model):
    owner = django_user_model.objects.create_user("olga")
    task = services.task_create(name="Login", code=NEW_CODE, secrets={"password": "hunter2"},
                                actor=Actor(user=owner))
    form = _task_form(name="Login", params="{}", code=NEW_CODE.replace("Send", "Go"))

    response = _login(client, member).post(reverse("task-edit", args=[task.pk]), form)

    assert response.status_code == 400
    assert "only its owner, a reviewer or staff may change its code" in " ".join(response.context["form"].non_field_errors())
    assert task.versions.count() == 1
    assert "hunter2" not in response.content.decode()
