"""The event and task pages in Chromium at 1280 px: long unbroken text wraps, the main actions stay in view.

Django's live server (WSGI, same test database) is enough here: these tests look at layout, not live updates.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from healing_app.models import HealingEvent
from tasks_app.models import Run, Task
from tests.browser import scenario
from tests.browser.live import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTH = 1280
LONG = "x" * 5000  # one unbroken "word", as long as a comment may be


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture
def signed_in(page, live_server, reviewer):
    client = Client()
    client.force_login(reviewer)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server.url}])
    page.set_viewport_size({"width": WIDTH, "height": 900})
    return page


def _page_width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def test_long_unbroken_text_on_the_event_page_wraps(signed_in, live_server, reviewer):
    task = scenario.task_make()
    event_id = scenario.event_pending_make(task.pk)
    event = HealingEvent.objects.get(pk=event_id)
    HealingEvent.objects.filter(pk=event_id).update(
        status=HealingEvent.Status.REJECTED,
        review_comment=LONG,
        reviewer=reviewer,
        decided_at=timezone.now(),
        root_cause="r" * 2000,
        reason="w" * 2000,
        error_message="e" * 2000,
        failing_step={**event.failing_step, "selector": "#" + "s" * 2000, "url": "http://example.com/" + "u" * 2000},
    )
    signed_in.goto(f"{live_server.url}/events/{event_id}/")
    assert signed_in.locator("blockquote.comment").is_visible()
    assert _page_width(signed_in) <= WIDTH


def test_the_task_page_keeps_its_review_button_in_view_and_wraps_long_text(signed_in, live_server):
    task = scenario.task_make("n" * 200)
    Task.objects.filter(pk=task.pk).update(prompt="p" * 3000)
    scenario.event_pending_make(task.pk)
    Run.objects.filter(task=task).update(error_type="timeout", error_message="m" * 300)
    signed_in.goto(f"{live_server.url}/tasks/{task.pk}/")
    assert _page_width(signed_in) <= WIDTH
    # The Versions card is half the page: its main action must show without scrolling the table sideways.
    button = signed_in.locator("#versions a.button", has_text="Review")
    box, card = button.bounding_box(), signed_in.locator("#versions .table-wrap").bounding_box()
    assert box["x"] + box["width"] <= card["x"] + card["width"]
    assert signed_in.locator("#versions .table-wrap").evaluate("el => el.scrollWidth <= el.clientWidth")
