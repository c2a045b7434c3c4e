"""The healing events API: a task's history, one event in full, approve and reject with the reviewer permission."""

from __future__ import annotations

import json
import re
import threading
from datetime import timedelta

import httpx
import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.utils import timezone

from healing_app.models import HealingEvent, Review, WebhookDelivery
from healing_app.webhook_services import webhook_endpoint_create
from tasks_app import services
from tasks_app.api_keys import api_key_create
from tasks_app.models import AuditLog, CodeVersion, Run, Task

CODE = 'def run(page, params):\n    page.goto(params["base_url"])\n    page.click("#submit")\n    return {}\n'
HEALED = CODE.replace("#submit", "button[data-test=send]")


@pytest.fixture
def member_key(django_user_model):
    user = django_user_model.objects.create_user("mo")
    return api_key_create(user=user, name="member")[1]


@pytest.fixture
def reviewer_user(django_user_model):
    # get_or_create: a transactional test before this one flushed the group its migration made.
    group, _ = Group.objects.get_or_create(name="reviewers")
    group.permissions.add(Permission.objects.get(codename="review_healingevent"))
    user = django_user_model.objects.create_user("rita")
    user.groups.add(group)
    return user


@pytest.fixture
def reviewer_key(reviewer_user):
    return api_key_create(user=reviewer_user, name="reviewer")[1]


def make_pending_event(*, minutes_ago: int = 0) -> HealingEvent:
    """A task whose heal waits for review: v1 failed, v2 is the healed draft."""
    task = services.task_create(name="form_submission", code=CODE, self_healing=True)
    healed = services.version_create(task=task, code=HEALED, source=CodeVersion.Source.HEALED, parent=task.current_version)
    run = Run.objects.create(task=task, version=task.current_version, status=Run.Status.HEALED)
    return HealingEvent.objects.create(
        task=task,
        run=run,
        status=HealingEvent.Status.PENDING_REVIEW,
        error_type="element_not_found",
        error_message="waiting for locator('#submit')",
        failing_step={"line": 3, "action": "click", "selector": "#submit"},
        agent_kind="heuristic",
        agent_trace=[{"steps": [{"did": "click", "selector": "button[data-test=send]"}]}],
        candidate_scores=[{"selector": "button[data-test=send]", "score": 0.91}],
        root_cause="`#submit` on line 3 no longer matches; the button is now `button[data-test=send]`",
        original_version=task.current_version,
        new_version=healed,
        prompt_tokens=120,
        completion_tokens=30,
        timeline=[{"status": "triggered"}, {"status": "healing"}, {"status": "pending_review"}],
        created_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


def _post(client, key, path, body=None):
    data = json.dumps(body) if body is not None else ""
    return client.post(f"/api/v1{path}", data=data, content_type="application/json", headers={"Authorization": f"Bearer {key}"})


def _get(client, key, path):
    return client.get(f"/api/v1{path}", headers={"Authorization": f"Bearer {key}"})


@pytest.mark.django_db
def test_a_tasks_events_are_listed_newest_first_with_the_seeds_fields(client, member_key):
    event = make_pending_event()
    task = event.task
    older = HealingEvent.objects.create(
        task=task, error_type="timeout", status="failed", created_at=timezone.now() - timedelta(hours=1)
    )
    newest = HealingEvent.objects.create(task=task, error_type="navigation_error", status="triggered")
    body = _get(client, member_key, f"/tasks/{task.pk}/healing-events").json()
    assert [e["id"] for e in body["data"]] == [newest.pk, event.pk, older.pk]
    assert body["next_cursor"] is None
    first = body["data"][1]
    assert {k: first[k] for k in ("id", "error_type", "status", "new_version", "original_version")} == {
        "id": event.pk,
        "error_type": "element_not_found",
        "status": "pending_review",
        "new_version": 2,
        "original_version": 1,
    }
    assert first["timestamp"].startswith(event.created_at.strftime("%Y-%m-%dT%H:%M"))
    assert body["data"][0]["new_version"] is None


@pytest.mark.django_db
def test_a_tasks_events_page_by_cursor(client, member_key):
    event = make_pending_event()
    for minutes in range(1, 4):
        HealingEvent.objects.create(
            task=event.task, error_type="timeout", status="failed", created_at=timezone.now() - timedelta(minutes=minutes)
        )
    first = _get(client, member_key, f"/tasks/{event.task_id}/healing-events?limit=3").json()
    rest = _get(client, member_key, f"/tasks/{event.task_id}/healing-events?limit=3&cursor={first['next_cursor']}").json()
    ids = [e["id"] for e in first["data"] + rest["data"]]
    assert len(ids) == len(set(ids)) == 4
    assert rest["next_cursor"] is None


@pytest.mark.django_db
def test_the_review_queue_over_the_api_lists_every_tasks_events_filtered_and_paged(client, member_key, django_assert_max_num_queries):
    waiting = make_pending_event(minutes_ago=5)
    other_task_waiting = make_pending_event(minutes_ago=1)
    failed = HealingEvent.objects.create(task=waiting.task, error_type="timeout", status="failed")

    everything = _get(client, member_key, "/healing-events").json()
    assert [e["id"] for e in everything["data"]] == [failed.pk, other_task_waiting.pk, waiting.pk]
    with django_assert_max_num_queries(3):  # the API key and one page (2 today): not queries per event
        assert len(_get(client, member_key, "/healing-events?limit=3").json()["data"]) == 3
    queue = _get(client, member_key, "/healing-events?status=pending_review&limit=1").json()
    assert [e["id"] for e in queue["data"]] == [other_task_waiting.pk]
    rest = _get(client, member_key, f"/healing-events?status=pending_review&cursor={queue['next_cursor']}").json()
    assert [e["id"] for e in rest["data"]] == [waiting.pk] and rest["next_cursor"] is None
    one_task = _get(client, member_key, f"/healing-events?task={waiting.task_id}&error_type=timeout").json()
    assert [e["id"] for e in one_task["data"]] == [failed.pk]


@pytest.mark.django_db
@pytest.mark.parametrize("query, field, status", [
    ("status=approved", "status", 400),
    ("error_type=boom", "error_type", 400),
    ("limit=0", "limit", 400),
    ("cursor=nope", "cursor", 400),
    ("task=task_nope", "task", 400),
])
def test_bad_review_queue_filters_name_the_field(client, member_key, query, field, status):
    response = _get(client, member_key, f"/healing-events?{query}")
    assert response.status_code == status, response.content
    if field:
        assert response.json()["error"]["field"] == field


@pytest.mark.django_db
def test_one_event_comes_with_everything_the_dashboard_shows(client, member_key):
    event = make_pending_event()
    body = _get(client, member_key, f"/healing-events/{event.pk}").json()
    assert body["root_cause"].startswith("`#submit` on line 3")
    assert body["failing_step"]["selector"] == "#submit"
    assert body["agent"] == "heuristic"
    assert body["agent_trace"] and body["candidate_scores"][0]["score"] == 0.91
    assert body["cost"] == {"prompt_tokens": 120, "completion_tokens": 30, "usd": 0.0}
    assert [step["status"] for step in body["timeline"]] == ["triggered", "healing", "pending_review"]
    assert body["diff"]["from_version"] == 1 and body["diff"]["to_version"] == 2
    assert "+    page.click(\"button[data-test=send]\")" in body["diff"]["unified"]
    assert body["reviews"] == [] and body["reviewer"] is None


@pytest.mark.django_db
def test_unknown_events_and_tasks_are_a_404(client, member_key):
    assert _get(client, member_key, "/healing-events/heal_nope").status_code == 404
    assert _get(client, member_key, "/tasks/task_nope/healing-events").status_code == 404


@pytest.mark.django_db
def test_a_reviewer_approves_and_the_healed_version_is_deployed(client, reviewer_key, reviewer_user):
    event = make_pending_event()
    response = _post(client, reviewer_key, f"/healing-events/{event.pk}/approve", {"comment": "looks right"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["reviewer"], body["review_comment"]) == ("deployed", "rita", "looks right")
    assert Task.objects.get(pk=event.task_id).current_version.number == 2
    entry = AuditLog.objects.get(action="healing.approved", object_id=event.pk)
    assert entry.actor == reviewer_user and "via api key" in entry.actor_label


API_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.mark.django_db
def test_the_webhook_and_the_api_write_an_events_time_alike(client, reviewer_key, settings):
    """A subscriber matching a webhook to `GET /healing-events/{id}` compares equal strings, in the API's form."""
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    webhook_endpoint_create(actor=None, url="http://127.0.0.1:9/hook")
    event = make_pending_event()
    assert _post(client, reviewer_key, f"/healing-events/{event.pk}/approve").status_code == 200

    payload = WebhookDelivery.objects.get(event_type="healing.deployed").payload
    body = _get(client, reviewer_key, f"/healing-events/{event.pk}").json()
    assert payload["data"]["timestamp"] == body["timestamp"]
    assert re.fullmatch(API_TIME, body["timestamp"]), body["timestamp"]
    assert re.fullmatch(API_TIME, payload["timestamp"]), payload["timestamp"]
    assert re.fullmatch(API_TIME, body["timeline"][-1]["at"]), body["timeline"]


@pytest.mark.django_db
def test_approve_needs_no_body(client, reviewer_key):
    event = make_pending_event()
    assert _post(client, reviewer_key, f"/healing-events/{event.pk}/approve").status_code == 200


@pytest.mark.django_db
def test_a_reviewer_rejects_with_a_comment_and_nothing_is_deployed(client, reviewer_key):
    event = make_pending_event()
    response = _post(client, reviewer_key, f"/healing-events/{event.pk}/reject", {"comment": "wrong button"})
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "rejected"
    assert Task.objects.get(pk=event.task_id).current_version.number == 1
    assert Review.objects.get(event=event).comment == "wrong button"
    [review] = _get(client, reviewer_key, f"/healing-events/{event.pk}").json()["reviews"]
    assert (review["decision"], review["comment"], review["superseded"]) == ("rejected", "wrong button", False)


@pytest.mark.django_db
@pytest.mark.parametrize("body", [None, {}, {"comment": ""}, {"comment": "   "}, {"comment": 5}])
def test_reject_without_a_comment_is_a_400_naming_comment(client, reviewer_key, body):
    event = make_pending_event()
    response = _post(client, reviewer_key, f"/healing-events/{event.pk}/reject", body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == "comment"
    event.refresh_from_db()
    assert event.status == "pending_review"


@pytest.mark.django_db
@pytest.mark.parametrize("action, body", [("approve", None), ("reject", {"comment": "no"})])
def test_approve_and_reject_need_the_reviewer_permission(client, member_key, action, body):
    event = make_pending_event()
    response = _post(client, member_key, f"/healing-events/{event.pk}/{action}", body)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    event.refresh_from_db()
    assert event.status == "pending_review"
    assert Task.objects.get(pk=event.task_id).current_version.number == 1


@pytest.mark.django_db
@pytest.mark.parametrize("action, body", [("approve", None), ("reject", {"comment": "no"})])
def test_deciding_a_decided_event_is_a_409(client, reviewer_key, action, body):
    event = make_pending_event()
    assert _post(client, reviewer_key, f"/healing-events/{event.pk}/approve").status_code == 200
    response = _post(client, reviewer_key, f"/healing-events/{event.pk}/{action}", body)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already_decided"


@pytest.mark.django_db
def test_approving_a_heal_whose_task_changed_since_is_a_409(client, reviewer_key):
    event = make_pending_event()
    services.task_update(task=event.task, code=CODE.replace("#submit", "#send"))
    response = _post(client, reviewer_key, f"/healing-events/{event.pk}/approve")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "superseded"


@pytest.mark.django_db(transaction=True)
def test_concurrent_approvals_deploy_once_and_the_other_gets_a_409(live_server, reviewer_user):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite has no row locks, so concurrent approvals cannot race meaningfully")
    raw = api_key_create(user=reviewer_user, name="reviewer")[1]
    for _ in range(3):  # a few rounds, so the race is really run and not won by timing alone
        event = make_pending_event()
        barrier = threading.Barrier(2)
        statuses: list[int] = []

        def approve(event_id=event.pk, barrier=barrier, statuses=statuses):
            with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {raw}"}, timeout=30) as http:
                barrier.wait()
                statuses.append(http.post(f"/api/v1/healing-events/{event_id}/approve").status_code)

        threads = [threading.Thread(target=approve) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert sorted(statuses) == [200, 409]
        assert AuditLog.objects.filter(action="version.deploy", object_id=event.task_id).count() == 1
        assert Review.objects.filter(event=event).count() == 1
        assert Task.objects.get(pk=event.task_id).current_version.number == 2
