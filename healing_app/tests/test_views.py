"""The review dashboard's healing pages through Django's test client: access, filters, paging, decisions."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import re

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from healing_app.models import HealingEvent
from healing_app.permissions import reviewers_group
from tasks_app import services as services_for_tasks
from tasks_app.models import AuditLog, Task
from tests.browser import scenario

pytestmark = pytest.mark.django_db
Status = HealingEvent.Status


@pytest.fixture
def task():
    return scenario.task_make()


@pytest.fixture
def pending(task):
    return HealingEvent.objects.get(pk=scenario.event_pending_make(task.pk))


def _bulk_events(task, count, *, start=None, status=Status.FAILED, error_type="timeout"):
    start = start or timezone.now()
    HealingEvent.objects.bulk_create(
        HealingEvent(
            task=task, status=status, error_type=error_type, created_at=start - dt.timedelta(minutes=i),
            root_cause=f"cause {i}",
        )
        for i in range(count)
    )


def _login(client, user):
    client.force_login(user)
    return client


# -- access ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,args", [
    ("queue", []), ("queue-rows", []), ("overview", []), ("event-detail", ["heal_x"]), ("event-part", ["heal_x", "summary"]),
    ("event-screenshot", ["heal_x"]), ("task-list", []), ("task-detail", ["task_x"]),
])
def test_every_page_sends_anonymous_visitors_to_the_login_page(client, name, args):
    response = client.get(reverse(name, args=args))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_login_page_renders_a_labelled_form(client):
    response = client.get("/accounts/login/")
    html = response.content.decode()
    assert response.status_code == 200
    assert '<label for="id_username">' in html and '<label for="id_password">' in html


def test_login_then_queue(client, reviewer):
    response = client.post("/accounts/login/", {"username": "rita", "password": "pw-rita-123!"}, follow=True)
    assert response.redirect_chain[-1][0] == "/"
    assert b"Review queue" in response.content


# -- queue -----------------------------------------------------------------------------------------


def test_queue_shows_events_newest_first_and_the_pending_count(client, reviewer, task, pending):
    _bulk_events(task, 3, start=timezone.now() - dt.timedelta(days=1))
    html = _login(client, reviewer).get("/").content.decode()
    ids = re.findall(r'<tr data-id="(heal_[^"]+)"', html)
    assert ids[0] == pending.pk and len(ids) == 4
    assert '<strong id="pending-count">1</strong>' in html
    assert 'href="/webhooks/"' in html and 'href="/api/v1/docs"' in html
    assert 'href="/admin/"' not in html  # only staff reach the admin, so only staff see the link
    reviewer.is_staff = True
    reviewer.save()
    assert 'href="/admin/"' in client.get("/").content.decode()


def test_a_heal_that_ended_without_a_root_cause_says_why_in_the_queue(client, reviewer, task, pending):
    HealingEvent.objects.filter(pk=pending.pk).update(
        status=Status.FAILED, root_cause="", reason="locator abstained: two candidates too close"
    )
    html = _login(client, reviewer).get("/").content.decode()
    row = re.search(rf'<tr data-id="{pending.pk}".*?</tr>', html, re.S).group(0)
    assert "locator abstained: two candidates too close" in row


def test_queue_filters_by_status_error_type_task_agent_date_and_search(client, reviewer, task, pending):
    other = scenario.task_make("Newsletter signup")
    _bulk_events(other, 2, start=timezone.now() - dt.timedelta(days=10), error_type="navigation_error")
    client = _login(client, reviewer)

    def ids(**params):
        return re.findall(r'<tr data-id="(heal_[^"]+)"', client.get("/", params).content.decode())

    assert ids(status="pending_review") == [pending.pk]
    assert len(ids(error_type="navigation_error")) == 2
    assert ids(task=task.pk) == [pending.pk]
    assert len(ids(task="newsletter")) == 2
    assert ids(agent="heuristic") == [pending.pk]
    today = timezone.localdate()
    assert ids(since=(today - dt.timedelta(days=1)).isoformat()) == [pending.pk]
    assert len(ids(until=(today - dt.timedelta(days=5)).isoformat())) == 2
    assert ids(q="no longer matches") == [pending.pk]
    assert ids(q=pending.pk) == [pending.pk]
    assert ids(q=pending.pk.upper()) == ids(q=pending.pk.removeprefix("heal_")) == [pending.pk]  # as pasted
    assert len(ids(q="newsletter")) == 2


def test_queue_reports_a_bad_filter_instead_of_failing(client, reviewer, task, pending):
    response = _login(client, reviewer).get("/", {"status": "nonsense", "since": "2025-13-45"})
    assert response.status_code == 200
    assert b"Select a valid choice" in response.content
    assert pending.pk.encode() in response.content  # invalid filters are ignored, not applied half-way
    assert b'id="filter-errors"' in response.content  # and the page says so above the list


def test_an_impossible_date_range_is_reported_not_applied(client, reviewer, task, pending):
    response = _login(client, reviewer).get("/", {"since": "2026-11-28", "until": "2026-11-01"})
    html = response.content.decode()
    assert "must be on or after the From date" in html and 'id="filter-errors"' in html
    assert pending.pk in html


@pytest.mark.parametrize("url, extra", [("/", {}), ("/events/rows/", {}), ("/events/rows/", {"newer": "x"})])
def test_the_calendars_last_day_as_the_to_date_is_a_form_error(client, reviewer, task, pending, url, extra):
    # "To" ends where the next day starts: 9999-12-31 has none, and the query overflowed (a 500).
    response = _login(client, reviewer).get(url, {"until": "9999-12-31", **extra})
    assert response.status_code == 200
    if url == "/":
        assert b"Enter a valid date" in response.content
    if not extra:
        assert pending.pk.encode() in response.content  # the bad filter is ignored, not applied half-way


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_cursor_whose_date_leaves_the_calendar_in_utc_shows_the_first_page(client, reviewer, task, pending, stamp):
    cursor = base64.urlsafe_b64encode(f"{stamp}|heal_x".encode()).decode()
    for key in ("after", "before"):
        response = _login(client, reviewer).get("/", {key: cursor})
        assert response.status_code == 200
        assert pending.pk.encode() in response.content


def test_queue_pages_with_a_cursor_and_back(client, reviewer, task):
    _bulk_events(task, 120)
    client = _login(client, reviewer)
    first = client.get("/").content.decode()
    page1 = re.findall(r'<tr data-id="(heal_[^"]+)"', first)
    after = re.search(r'rel="next" href="\?after=([\w-]+)"', first).group(1)
    second = client.get("/", {"after": after}).content.decode()
    page2 = re.findall(r'<tr data-id="(heal_[^"]+)"', second)
    third = client.get("/", {"after": re.search(r'rel="next" href="\?after=([\w-]+)"', second).group(1)}).content.decode()
    page3 = re.findall(r'<tr data-id="(heal_[^"]+)"', third)
    assert (len(page1), len(page2), len(page3)) == (50, 50, 20)
    assert not set(page1) & set(page2) and not set(page2) & set(page3)
    assert 'rel="next"' not in third
    before = re.search(r'rel="prev" href="\?before=([\w-]+)"', second).group(1)
    back = re.findall(r'<tr data-id="(heal_[^"]+)"', client.get("/", {"before": before}).content.decode())
    assert back == page1


def test_queue_pagination_keeps_filters(client, reviewer, task):
    _bulk_events(task, 60, status=Status.REJECTED)
    html = _login(client, reviewer).get("/", {"status": "rejected"}).content.decode()
    assert re.search(r'rel="next" href="\?status=rejected&amp;after=[\w-]+"', html)


def test_queue_query_count_does_not_grow_with_rows(client, reviewer, task, django_assert_max_num_queries):
    client = _login(client, reviewer)
    _bulk_events(task, 5)
    with django_assert_max_num_queries(5) as few:
        client.get("/")
    _bulk_events(task, 100, start=timezone.now() - dt.timedelta(days=3))
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get("/")


def test_queue_rows_fragment_has_the_rows_and_the_count(client, reviewer, pending):
    html = _login(client, reviewer).get(reverse("queue-rows"), {"status": "pending_review"}).content.decode()
    assert html.lstrip().startswith("{#") is False
    assert '<tbody id="queue-rows">' in html and pending.pk in html and 'id="pending-count">1<' in html


# -- event page ------------------------------------------------------------------------------------


def test_event_page_shows_the_evidence(client, reviewer, pending):
    html = _login(client, reviewer).get(reverse("event-detail", args=[pending.pk])).content.decode()
    for expected in (
        "#submit",  # failing selector
        "element_not_found",
        "TimeoutError: waiting for locator",
        "no longer matches",  # root cause
        'class="diff diff-side"', 'class="diff diff-inline"', "diff-del", "diff-add",
        "button[data-test=send]",
        "retry_step",  # the agent's trace
        "0.913",  # a candidate's score
        reverse("event-screenshot", args=[pending.pk]),
        "Succeeded",  # the validation run
        "pending_review",  # timeline
    ):
        assert expected in html, expected


def test_event_page_shows_timings_and_score_bars_relative_to_the_best(client, reviewer, pending):
    HealingEvent.objects.filter(pk=pending.pk).update(timings={"takeover_ms": 412, "generate_ms": 37})
    html = _login(client, reviewer).get(reverse("event-detail", args=[pending.pk])).content.decode()
    assert re.search(r'id="event-timings">takeover 412 ms · code generation 37 ms · validation run \d+ ms<', html)
    # The best candidate fills its bar; the others are shares of it, whatever the locator's scale.
    assert 'value="1.0" aria-label="score relative to the best"' in html
    assert f'value="{round(0.4121 / 0.9132, 3)}"' in html


def test_a_heal_whose_task_moved_on_can_only_be_rejected(client, reviewer, task, pending):
    client = _login(client, reviewer)
    assert "data-superseded" not in client.get("/").content.decode()
    services_for_tasks.task_update(task=task, code=task.current_version.code + "\n# edited by hand\n")
    html = client.get(reverse("event-detail", args=[pending.pk])).content.decode()
    assert 'id="superseded-note"' in html and "it is now v3" in html
    assert 'id="approve-button"' not in html and 'id="reject-button"' in html
    row = re.search(rf'<tr data-id="{pending.pk}".*?</tr>', client.get("/").content.decode(), re.S).group(0)
    assert "superseded, can only be rejected" in row  # the queue says so too, before anyone opens it


def test_event_screenshot_is_served_as_png(client, reviewer, pending):
    response = _login(client, reviewer).get(reverse("event-screenshot", args=[pending.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response.content.startswith(b"\x89PNG")


def test_event_page_query_count_is_constant(client, reviewer, pending, django_assert_max_num_queries):
    client = _login(client, reviewer)
    with django_assert_max_num_queries(6):  # session, user, the event with its joins, the user's permissions (2)
        client.get(reverse("event-detail", args=[pending.pk]))


def test_unknown_event_is_404(client, reviewer):
    assert _login(client, reviewer).get(reverse("event-detail", args=["heal_nope"])).status_code == 404


def test_reviewer_sees_approve_and_reject(client, reviewer, pending):
    html = _login(client, reviewer).get(reverse("event-detail", args=[pending.pk])).content.decode()
    assert 'id="approve-button"' in html and 'id="reject-button"' in html
    assert re.search(r'<textarea[^>]*name="comment"[^>]*required', html)


def test_non_reviewer_sees_no_buttons_and_a_forged_post_is_forbidden(client, member, pending):
    client = _login(client, member)
    html = client.get(reverse("event-detail", args=[pending.pk])).content.decode()
    assert "approve-button" not in html and "reject-button" not in html
    assert client.post(reverse("event-approve", args=[pending.pk])).status_code == 403
    assert client.post(reverse("event-reject", args=[pending.pk]), {"comment": "no"}).status_code == 403
    pending.refresh_from_db()
    assert pending.status == Status.PENDING_REVIEW


def test_approve_deploys_the_new_version(client, reviewer, pending):
    response = _login(client, reviewer).post(reverse("event-approve", args=[pending.pk]), follow=True)
    pending.refresh_from_db()
    task = Task.objects.get(pk=pending.task_id)
    assert pending.status == Status.DEPLOYED and pending.reviewer == reviewer
    assert task.current_version_id == pending.new_version_id
    assert b"Version 2 is now the task" in response.content
    assert b"Deployed by rita" in response.content
    labels = set(AuditLog.objects.filter(action__in=["healing.approved", "version.deploy"]).values_list("actor_label", flat=True))
    assert labels == {"rita via dashboard"}


def test_an_approval_by_a_since_deleted_user_is_not_shown_as_automatic(client, reviewer, django_user_model, pending):
    _login(client, reviewer).post(reverse("event-approve", args=[pending.pk]))
    reviewer.delete()
    other = django_user_model.objects.create_user("sam")
    other.groups.add(reviewers_group())
    page = _login(client, other).get(reverse("event-detail", args=[pending.pk])).content.decode()
    assert "Deployed by a user since deleted" in page and "automatically" not in page
    response = client.post(reverse("event-approve", args=[pending.pk]), follow=True)
    assert "Already deployed by a user since deleted" in response.content.decode()


def test_a_second_approval_is_told_who_decided_and_deploys_nothing(client, reviewer, django_user_model, pending):
    _login(client, reviewer).post(reverse("event-approve", args=[pending.pk]))
    second = django_user_model.objects.create_user("sam", password="pw-sam-123!")
    second.groups.add(*reviewer.groups.all())
    other = _login(Client(), second)
    response = other.post(reverse("event-approve", args=[pending.pk]))
    assert response.status_code == 409
    assert "Already deployed by rita" in response.content.decode()
    assert "nothing changed" in response.content.decode()
    assert AuditLog.objects.filter(action="version.deploy", object_id=pending.task_id).count() == 1
    response = other.post(reverse("event-reject", args=[pending.pk]), {"comment": "too late"})
    assert response.status_code == 409 and b"Already deployed by rita" in response.content


def test_reject_needs_a_comment(client, reviewer, pending):
    client = _login(client, reviewer)
    response = client.post(reverse("event-reject", args=[pending.pk]), {"comment": "   "})
    assert response.status_code == 400
    assert b"a comment is required to reject" in response.content
    assert b'aria-invalid="true"' in response.content
    pending.refresh_from_db()
    assert pending.status == Status.PENDING_REVIEW


def test_reject_with_a_comment(client, reviewer, pending):
    response = _login(client, reviewer).post(
        reverse("event-reject", args=[pending.pk]), {"comment": "picks the reset button"}, follow=True
    )
    pending.refresh_from_db()
    assert pending.status == Status.REJECTED and pending.review_comment == "picks the reset button"
    assert Task.objects.get(pk=pending.task_id).current_version_id == pending.original_version_id
    assert b"Rejected by rita" in response.content


@pytest.mark.parametrize("decision", ["event-reject", "event-approve"])
def test_a_comment_longer_than_the_api_allows_is_refused_not_cut(client, reviewer, pending, decision):
    # The service keeps the first 5000 characters; the API answers 400, and so does the dashboard.
    response = _login(client, reviewer).post(reverse(decision, args=[pending.pk]), {"comment": "x" * 100_000})
    html = response.content.decode()
    assert response.status_code == 400
    field = "reject-comment" if decision == "event-reject" else "approve-comment"
    assert f'id="{field}-error" role="alert">Ensure this value has at most 5000 characters (it has 100000).' in html
    assert re.search(rf'id="{field}"[^>]*aria-invalid="true"', html)
    assert "x" * 100_000 in html  # kept in the field, to be shortened rather than retyped
    pending.refresh_from_db()
    assert pending.status == Status.PENDING_REVIEW and pending.review_comment == ""


def test_a_reject_comment_of_5000_characters_with_browser_line_breaks_is_kept_whole(client, reviewer, pending):
    # The textarea's maxlength counts a line break once; the browser sends it as CRLF.
    comment = ("y" * 99 + "\n") * 50
    response = _login(client, reviewer).post(
        reverse("event-reject", args=[pending.pk]), {"comment": comment.replace("\n", "\r\n")}
    )
    assert response.status_code == 302
    pending.refresh_from_db()
    assert pending.status == Status.REJECTED and pending.review_comment == comment.strip()


def test_decisions_need_a_csrf_token(reviewer, pending):
    client = Client(enforce_csrf_checks=True)
    client.force_login(reviewer)
    assert client.post(reverse("event-approve", args=[pending.pk])).status_code == 403
    pending.refresh_from_db()
    assert pending.status == Status.PENDING_REVIEW
    page = client.get(reverse("event-detail", args=[pending.pk])).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert client.post(reverse("event-approve", args=[pending.pk]), {"csrfmiddlewaretoken": token}).status_code == 302
    pending.refresh_from_db()
    assert pending.status == Status.DEPLOYED


def test_decisions_are_post_only_and_their_address_visited_leads_to_the_heal(client, reviewer, pending):
    client = _login(client, reviewer)
    for name in ("event-approve", "event-reject"):
        visited = client.get(reverse(name, args=[pending.pk]))
        assert (visited.status_code, visited["Location"]) == (302, reverse("event-detail", args=[pending.pk]))
    pending.refresh_from_db()
    assert pending.status == Status.PENDING_REVIEW


def test_event_parts_render_alone(client, reviewer, pending):
    client = _login(client, reviewer)
    summary = client.get(reverse("event-part", args=[pending.pk, "summary"])).content.decode()
    evidence = client.get(reverse("event-part", args=[pending.pk, "evidence"])).content.decode()
    assert summary.startswith('<div id="event-summary">') and "Pending review" in summary
    assert evidence.startswith('<div id="event-evidence">') and "diff-add" in evidence
    assert client.get(reverse("event-part", args=[pending.pk, "nope"])).status_code == 404


def test_a_failed_heal_shows_what_it_has_and_no_new_version(client, reviewer, task):
    event_id = scenario.event_pending_make(task.pk, final=Status.FAILED)
    html = _login(client, reviewer).get(reverse("event-detail", args=[event_id])).content.decode()
    assert "The heal failed" in html and "No new version was written." in html and "approve-button" not in html


def test_event_text_is_escaped(client, reviewer, pending):
    HealingEvent.objects.filter(pk=pending.pk).update(root_cause="<script>alert(1)</script>")
    html = _login(client, reviewer).get(reverse("event-detail", args=[pending.pk])).content.decode()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


# -- overview --------------------------------------------------------------------------------------


def test_overview_draws_charts(client, reviewer, task, pending):
    cache.clear()  # the overview is cached for a minute
    _bulk_events(task, 10, error_type="navigation_error")
    HealingEvent.objects.filter(pk=pending.pk).update(status=Status.DEPLOYED, decided_at=timezone.now())
    response = _login(client, reviewer).get(reverse("overview"))
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count("<svg") == 5
    assert "Runs and failures per day" in html and "navigation_error".replace("_", " ") in html
    assert "style=" not in html  # the CSP forbids inline styles


def test_overview_charts_name_their_y_axis_units(client, reviewer, task, pending):
    cache.clear()
    html = _login(client, reviewer).get(reverse("overview")).content.decode()
    for unit in ("runs", "min", "USD"):
        assert re.search(rf'<text class="chart-label" x="\d+" y="\d+" text-anchor="end">{unit}</text>', html), unit


@pytest.mark.parametrize("days", [7, 14, 29, 30, 31, 60, 90])
@pytest.mark.parametrize("kind", ["line", "stacked_bars"])
def test_chart_day_labels_never_overlap_and_today_is_labelled(days, kind):
    from healing_app import charts

    labels = [(dt.date(2025, 12, 31) - dt.timedelta(days=days - 1 - i)).isoformat() for i in range(days)]
    if kind == "line":
        svg = charts.line(title="t", labels=labels, values=[1.0] * days)
    else:
        svg = charts.stacked_bars(title="t", labels=labels, series=[("n", "s-ok", [1] * days)])
    shown = re.findall(r'<text class="chart-label" x="([\d.]+)" y="\d+" text-anchor="(\w+)">(\d\d-\d\d)</text>', svg)
    assert shown[-1][2] == "12-31" and len(shown) >= 4
    width = 5 * 6.5  # "11-24" at 11px
    spans = [(float(x) - (width if anchor == "end" else width / 2), float(x) + (0 if anchor == "end" else width / 2))
             for x, anchor, _ in shown]
    for (_, right), (left, _) in itertools.pairwise(spans):
        assert left - right >= 4, (days, shown)


def test_queue_rows_fragment_can_send_just_one_changed_row(client, reviewer, task, pending):
    _bulk_events(task, 3, start=timezone.now() - dt.timedelta(days=2))
    client = _login(client, reviewer)
    html = client.get(reverse("queue-rows"), {"only": pending.pk}).content.decode()
    assert re.findall(r'<tr data-id="(heal_[^"]+)"', html) == [pending.pk]
    assert 'data-more="0"' in html and 'id="pending-count">1<' in html
    # A row that no longer matches the page's filters comes back empty, so the page drops it.
    html = client.get(reverse("queue-rows"), {"only": pending.pk, "status": "failed"}).content.decode()
    assert re.findall(r'<tr data-id="(heal_[^"]+)"', html) == []


def test_queue_rows_fragment_sends_the_rows_above_the_top(client, reviewer, task):
    _bulk_events(task, 5, start=timezone.now() - dt.timedelta(days=2))
    client = _login(client, reviewer)
    top = re.search(r'data-cursor="([\w-]+)"', client.get("/").content.decode()).group(1)
    newer = HealingEvent.objects.get(pk=scenario.event_pending_make(task.pk))
    html = client.get(reverse("queue-rows"), {"newer": top}).content.decode()
    assert re.findall(r'<tr data-id="(heal_[^"]+)"', html) == [newer.pk]
    _bulk_events(task, 60)  # more news than a page holds: the page is told to reload its rows
    assert 'data-more="1"' in client.get(reverse("queue-rows"), {"newer": top}).content.decode()


def test_the_validation_runs_output_is_shown_as_json(client, reviewer, task, pending):
    from tasks_app.models import Run

    validation = Run.objects.create(
        task=task, version=pending.new_version, purpose=Run.Purpose.VALIDATION, status=Run.Status.SUCCEEDED,
        output={"products": "Mug 12.00", "in_stock": True, "note": None},
    )
    HealingEvent.objects.filter(pk=pending.pk).update(validation_run=validation)
    html = _login(client, reviewer).get(reverse("event-detail", args=[pending.pk])).content.decode()
    assert "&quot;in_stock&quot;: true" in html and "&quot;note&quot;: null" in html
    assert "True" not in html.split("Validation run", 1)[1].split("Steps of this run", 1)[0]


def test_a_failed_heals_page_does_not_promise_what_will_never_come(client, reviewer, task):
    _bulk_events(task, 1, status=Status.FAILED, error_type="captcha_detected")
    event = HealingEvent.objects.get(task=task)
    html = _login(client, reviewer).get(reverse("event-detail", args=[event.pk])).content.decode()
    assert "No new version was written." in html and "No validation run." in html and "No agent took over." in html
    assert " yet" not in re.sub(r"<[^>]+>", " ", html.split('id="diff"', 1)[1])  # nothing "not … yet" in the body
