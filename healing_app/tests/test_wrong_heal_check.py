"""The wrong-heal check: a heal whose run went to pages the task's successful runs never visit is refused,
and a loop over pages or a page addressed by a run's params is not mistaken for one."""

from __future__ import annotations

import pytest

from healing_app import pipeline
from healing_app.models import HealingEvent
from tasks_app import services
from tasks_app.models import Run

pytestmark = pytest.mark.django_db

SITE = "https://shop.example.com"
LOOP = '''def run(page, params):
    titles = []
    for path in ["/a", "/b"]:
        page.goto(params["base_url"] + path)
        titles.append(page.inner_text("h1.title"))
    return {"titles": titles}
'''


def _step(line, action, path, outcome="ok", selector=None):
    return {"line": line, "action": action, "url": SITE + path, "outcome": outcome, "selector": selector}


def _event(code: str, usual: list[dict], healed: list[dict], *, usual_params=None, healed_params=None) -> HealingEvent:
    task = services.task_create(name="t", code=code, params={"base_url": SITE}, self_healing=True)
    version = task.current_version
    Run.objects.create(task=task, version=version, status=Run.Status.SUCCEEDED, trace=usual, params=usual_params or {})
    run = Run.objects.create(task=task, version=version, status=Run.Status.HEALED, trace=healed, params=healed_params or {})
    return HealingEvent.objects.create(task=task, run=run, error_type="element_not_found", original_version=version,
                                       status=HealingEvent.Status.HEALING)


def _loop_trace(second_page: str, outcome: str = "ok"):
    return [_step(4, "goto", "/a"), _step(5, "inner_text", "/a", selector="h1.title"),
            _step(4, "goto", second_page), _step(5, "inner_text", second_page, outcome, "h1.heading")]


def test_a_loop_over_pages_is_compared_pass_by_pass():
    event = _event(LOOP, _loop_trace("/b"), _loop_trace("/b", "recovered"))
    assert pipeline._path_divergence(event) is None


def test_a_loop_pass_that_ends_on_another_page_is_a_wrong_heal():
    event = _event(LOOP, _loop_trace("/b"), _loop_trace("/checkout", "recovered"))
    assert pipeline._path_divergence(event) == (
        "wrong heal refused: after the takeover, line 4 ran on /checkout, where the task's successful runs are on /b"
    )


def test_a_page_addressed_by_a_runs_params_is_the_same_page_for_other_values():
    code = 'def run(page, params):\n    page.goto(params["base_url"] + "/users/" + params["user_id"])\n' \
           '    return page.inner_text("h1.name")\n'
    usual = [_step(2, "goto", "/users/7"), _step(3, "inner_text", "/users/7", selector="h1.name")]
    healed = [_step(2, "goto", "/users/42"), _step(3, "inner_text", "/users/42", "recovered", "h1.fullname")]
    event = _event(code, usual, healed, usual_params={"user_id": "7"}, healed_params={"user_id": "42"})
    assert pipeline._path_divergence(event) is None

    healed[1]["url"] = SITE + "/admin/42"
    event = _event(code, usual, healed, usual_params={"user_id": "7"}, healed_params={"user_id": "42"})
    assert "line 3 ran on /admin/{user_id}, where the task's successful runs are on /users/{user_id}" in \
        pipeline._path_divergence(event)


SEND = '''def run(page, params):
    page.goto(params["base_url"] + "/contact")
    page.click("#send")
    return page.inner_text(".confirmation")
'''


def test_a_step_in_a_frame_ran_on_the_page_the_frame_shows():
    # The form moved into an iframe: the submission loads /thanks in the frame, and the page stays on /contact.
    usual = [_step(2, "goto", "/contact"), _step(3, "click", "/thanks"), _step(4, "inner_text", "/thanks")]
    healed = [_step(2, "goto", "/contact"), {**_step(3, "click", "/contact", "recovered"), "frame_url": SITE + "/thanks"},
              {**_step(4, "inner_text", "/contact", "recovered"), "frame_url": SITE + "/thanks"}]
    assert pipeline._path_divergence(_event(SEND, usual, healed)) is None

    healed[1]["frame_url"] = healed[2]["frame_url"] = SITE + "/newsletter/subscribed"
    assert pipeline._path_divergence(_event(SEND, usual, healed)) == (
        "wrong heal refused: after the takeover, line 3 ran on /contact in /newsletter/subscribed, "
        "where the task's successful runs are on /thanks"
    )
