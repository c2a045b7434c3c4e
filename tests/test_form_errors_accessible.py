"""Every form error is tied to its field for screen readers: each id an aria-describedby names is on the page.

Django gives a field with errors `aria-describedby="<id>_helptext <id>_error"`; a page whose error paragraph has
another id leaves that reference pointing at nothing."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from tasks_app import services

pytestmark = pytest.mark.django_db

CODE = 'def run(page, params):\n    page.goto(params["base_url"])\n'


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.described_by: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        self.described_by.update((attrs.get("aria-describedby") or "").split())


def _dangling(html: str) -> tuple[set[str], set[str]]:
    page = _References()
    page.feed(html)
    return page.described_by, page.described_by - page.ids


def test_every_error_and_help_text_a_field_points_at_is_on_the_page(client, member):
    task = services.task_create(name="t", code=CODE, params={"base_url": "http://shop.test"})
    bad_task = {"name": "", "prompt": "p", "code": "def run(page):\n    pass\n", "params": "[1]", "schedule": "bad",
                "max_attempts": "0", "trigger_on": ["element_not_found"], "monthly_budget_usd": "-1"}
    client.force_login(member)
    pages = {
        "new task": client.post(reverse("task-new"), bad_task),
        "task settings": client.post(reverse("task-config", args=[task.pk]), {"self_healing": "on", "max_attempts": "0"}),
        "queue filters": client.get(reverse("queue"), {"status": "nope", "until": "not a date"}),
        "new webhook": client.post(reverse("webhooks:create"), {"url": "ftp://example.test/"}),
        "new API key": client.post(reverse("api_keys:create"), {"name": ""}),
        "compare versions": client.get(reverse("task-detail", args=[task.pk]), {"a": "0", "b": "x"}),
    }
    client.logout()
    pages["login"] = client.post(reverse("login"), {"username": "", "password": ""})
    for name, response in pages.items():
        described_by, dangling = _dangling(response.content.decode())
        assert any(ref.endswith("_error") for ref in described_by), f"{name}: no field error was shown"
        assert not dangling, f"{name}: aria-describedby names {sorted(dangling)}, which the page does not have"
