"""A dashboard or admin form larger than DATA_UPLOAD_MAX_MEMORY_SIZE gets a 413 page saying so, never a traceback
(Django's own answer: a bare 400, or under DEBUG its debugging page). The API's JSON 413 is in test_api_tasks."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.test.client import RequestFactory
from django.urls import reverse

from tasks_app.models import Task

pytestmark = pytest.mark.django_db

CODE = "def run(page, params):\n    return 1\n"


def _pasted_params(megabytes: float) -> dict:
    return {"name": "t", "prompt": "p", "code": CODE, "max_attempts": "3", "trigger_on": ["timeout"],
            "params": json.dumps({"k": "x" * int(megabytes * 1024 * 1024)})}


@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize("url, layout", [
    ("task-new", '<a class="brand" href="/">⚓ Anchor</a>'),  # the dashboard's, with its menu
    ("admin:tasks_app_task_add", '<div id="site-name">'),
])
def test_a_form_over_the_limit_gets_a_413_page_in_its_layout_naming_the_limit(client, admin_user, settings, debug, url, layout):
    settings.DEBUG = debug
    client.force_login(admin_user)
    response = client.post(reverse(url), _pasted_params(3))
    assert response.status_code == 413
    html = response.content.decode()
    assert "Traceback" not in html and "RequestDataTooBig" not in html
    assert layout in html and "Form too large</h1>" in html
    assert "was 3.0\xa0MB, but it may be at most 2.5\xa0MB, so nothing was saved" in html
    assert "params (at most 64 KB of JSON)" in html and "code (at most 256 KB)" in html
    assert not Task.objects.exists()


@pytest.mark.parametrize("url", ["task-new", "admin:tasks_app_task_add"])
def test_the_413_page_cannot_be_framed_like_every_other_page(client, admin_user, url):
    client.force_login(admin_user)
    response = client.post(reverse(url), _pasted_params(3))
    assert response.status_code == 413
    assert response["X-Frame-Options"] == "DENY"


def test_a_form_within_the_limit_is_read_as_before(client, admin_user):
    client.force_login(admin_user)
    response = client.post(reverse("task-new"), _pasted_params(0.01))
    assert response.status_code == 302 and Task.objects.count() == 1


class _ClientGoneAway(io.RawIOBase):
    def read(self, *args):
        raise OSError("connection reset by peer")

    readline = read


def test_a_form_whose_sender_went_away_mid_upload_is_no_500(caplog):
    """Reading the form first must not turn a dropped upload into a logged server error: CSRF refuses it (403)."""
    environ = RequestFactory()._base_environ(
        PATH_INFO=reverse("task-new"), REQUEST_METHOD="POST", CONTENT_TYPE="application/x-www-form-urlencoded",
        CONTENT_LENGTH="1000", **{"wsgi.input": _ClientGoneAway()},
    )
    statuses = []
    WSGIHandler()(environ, lambda status, headers, *args: statuses.append(status))
    assert statuses == ["403 Forbidden"]
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
