"""pipeline.takeover: the event of a run that an agent is completing."""

from __future__ import annotations

import pytest

from healing_app import pipeline
from healing_app.agents.base import TakeoverOutcome
from healing_app.models import HealingEvent
from tasks_app import services
from tasks_app.models import Run

pytestmark = pytest.mark.django_db

CODE = 'def run(page, params):\n    page.click("#submit")\n    return 1\n'
FAILURE = {"type": "timeout", "message": "Timeout 5000ms exceeded", "action": "click", "selector": "#submit",
           "line": 2, "step_key": "2:click:#submit", "url": "http://shop.test/"}


class SlowAgent:
    """Stands in for an agent that waits a long while for a page: what does the event say meanwhile?"""

    kind = "heuristic"

    def __init__(self):
        self.seen: list[str] = []

    def take_over(self, context, handover) -> TakeoverOutcome:
        self.seen.append(HealingEvent.objects.get(task_id=context.task_id).status)
        return TakeoverOutcome(recovered=False, reason="the element never showed")


class GiveUpAgent:
    kind = "heuristic"

    def take_over(self, context, handover) -> TakeoverOutcome:
        return TakeoverOutcome(recovered=False, reason="the element never showed")


class Handover:
    def __init__(self):
        self.aborted: str | None = None

    def abort(self, reason: str) -> None:
        self.aborted = reason


def test_the_event_is_healing_while_the_agent_works_and_failed_when_it_gives_up(monkeypatch):
    task = services.task_create(name="t", code=CODE, self_healing=True)
    run = Run.objects.create(task=task, version=task.current_version, status=Run.Status.RUNNING)
    agent, handover = SlowAgent(), Handover()
    monkeypatch.setattr(pipeline, "agent_for", lambda task: agent)

    pipeline.takeover(run=run, failure=FAILURE, handover=handover)

    event = HealingEvent.objects.get(run=run)
    assert agent.seen == [HealingEvent.Status.HEALING]
    assert [entry["status"] for entry in event.timeline] == ["triggered", "healing", "failed"]
    assert event.timeline[1]["note"] == "heuristic agent took over"
    assert (event.status, event.reason, handover.aborted) == ("failed", "the element never showed", "the element never showed")


def test_a_heal_whose_run_a_person_cancelled_does_not_use_up_an_attempt(monkeypatch):
    task = services.task_create(name="t", code=CODE, self_healing=True, self_healing_config={"max_attempts": 1})
    monkeypatch.setattr(pipeline, "agent_for", lambda task: GiveUpAgent())
    cancelled = Run.objects.create(task=task, version=task.current_version, status=Run.Status.RUNNING)
    pipeline.takeover(run=cancelled, failure=FAILURE, handover=Handover())
    Run.objects.filter(pk=cancelled.pk).update(status=Run.Status.FAILED, error_type="cancelled")

    later = Run.objects.create(task=task, version=task.current_version, status=Run.Status.RUNNING)
    pipeline.takeover(run=later, failure=FAILURE, handover=Handover())

    event = HealingEvent.objects.get(run=later)
    assert event.attempt == 1 and event.reason == "the element never showed"  # a heal loop of its own

    last = Run.objects.create(task=task, version=task.current_version, status=Run.Status.RUNNING)
    pipeline.takeover(run=last, failure=FAILURE, handover=Handover())
    assert HealingEvent.objects.get(run=last).reason.startswith("max_attempts (1) already used")


class OutlivedAgent:
    """Works on while maintenance, believing the run lost, fails its heal."""

    kind = "heuristic"

    def take_over(self, context, handover) -> TakeoverOutcome:
        event = HealingEvent.objects.get(task_id=context.task_id)
        pipeline.heal_fail(event.pk, "the run did not complete after the takeover: the worker was lost")
        return TakeoverOutcome(recovered=False, reason="the element never showed")


def test_a_heal_failed_meanwhile_by_maintenance_is_announced_failed_once(monkeypatch, public_webhook_host):
    from healing_app.models import WebhookDelivery
    from healing_app.tests.conftest import PUBLIC_HOST
    from healing_app.webhook_services import webhook_endpoint_create

    webhook_endpoint_create(actor=None, url=f"https://{PUBLIC_HOST}/hook", event_types=["healing.failed"])
    task = services.task_create(name="t", code=CODE, self_healing=True)
    run = Run.objects.create(task=task, version=task.current_version, status=Run.Status.RUNNING)
    monkeypatch.setattr(pipeline, "agent_for", lambda task: OutlivedAgent())

    pipeline.takeover(run=run, failure=FAILURE, handover=Handover())

    event = HealingEvent.objects.get(run=run)
    assert event.status == "failed" and event.reason.endswith("the worker was lost")  # the first verdict stands
    assert WebhookDelivery.objects.filter(event_type="healing.failed").count() == 1


def test_max_attempts_counts_per_failing_step_and_per_version(monkeypatch):
    """The budget is for one step of one version: another step, or the same step once the code changed, gets a
    heal loop of its own."""
    task = services.task_create(name="t", code=CODE, self_healing=True, self_healing_config={"max_attempts": 1})
    monkeypatch.setattr(pipeline, "agent_for", lambda task: GiveUpAgent())

    def heal(failure: dict) -> HealingEvent:
        task.refresh_from_db()
        run = Run.objects.create(task=task, version=task.current_version, status=Run.Status.RUNNING)
        pipeline.takeover(run=run, failure=failure, handover=Handover())
        return HealingEvent.objects.get(run=run)

    assert heal(FAILURE).reason == "the element never showed"
    assert heal(FAILURE).reason.startswith("max_attempts (1) already used")

    other_step = FAILURE | {"line": 3, "selector": "#other", "step_key": "3:click:#other"}
    other = heal(other_step)
    assert (other.attempt, other.reason) == (1, "the element never showed")

    services.task_update(task=task, code=CODE.replace("return 1", "return 2"))
    new_version = heal(FAILURE)
    assert new_version.original_version.number == 2
    assert (new_version.attempt, new_version.reason) == (1, "the element never showed")


class RecordingAgent(GiveUpAgent):
    def __init__(self):
        self.contexts = []

    def take_over(self, context, handover) -> TakeoverOutcome:
        self.contexts.append(context)
        return super().take_over(context, handover)


def test_the_agent_is_told_the_elements_and_pages_reviewers_rejected_for_this_step_only(monkeypatch):
    task = services.task_create(name="t", code=CODE, self_healing=True)
    for step_key, element_id, path in (("2:click:#submit", "send-message", "/contact-us"),
                                       ("3:click:#other", "newsletter-send", "/newsletter")):
        HealingEvent.objects.create(
            task=task, original_version=task.current_version, step_key=step_key, error_type="timeout",
            status=HealingEvent.Status.REJECTED, chosen_element={"id": element_id},
            recovery=[{"kind": "url", "old_path": "/contact", "new_path": path}],
        )
    HealingEvent.objects.create(  # failed, not rejected by a person: nothing to avoid
        task=task, original_version=task.current_version, step_key="2:click:#submit", error_type="timeout",
        status=HealingEvent.Status.FAILED, chosen_element={"id": "clear"},
        recovery=[{"kind": "url", "old_path": "/contact", "new_path": "/help"}],
    )
    agent = RecordingAgent()
    monkeypatch.setattr(pipeline, "agent_for", lambda task: agent)
    run = Run.objects.create(task=task, version=task.current_version, status=Run.Status.RUNNING)

    pipeline.takeover(run=run, failure=FAILURE, handover=Handover())

    [context] = agent.contexts
    assert context.rejected_elements == [{"id": "send-message"}]
    assert context.rejected_paths == ["/contact-us"]
