"""A change and the webhook deliveries that tell about it commit together (an outbox), so a process dying between
the two cannot leave, say, a deployed heal that no subscriber ever hears of. A fan-out that fails stands in for
that death here: the change it belongs to must roll back with it."""

import pytest

from healing_app import pipeline
from healing_app.models import HealingEvent
from healing_app.services import healing_approve, healing_reject
from healing_app.tests.factories import pending_event
from tasks_app import services as task_services
from tasks_app.models import Run

pytestmark = pytest.mark.django_db


class FanOutDied(Exception):
    pass


@pytest.fixture
def fan_out_dies(monkeypatch):
    def die(**_):
        raise FanOutDied

    monkeypatch.setattr("healing_app.webhooks.webhooks_fan_out", die)


def test_an_approval_whose_deliveries_are_not_recorded_deploys_nothing(reviewer, fan_out_dies):
    event = pending_event()
    with pytest.raises(FanOutDied):
        healing_approve(event=event, reviewer=reviewer, comment="ok")
    event.refresh_from_db()
    event.task.refresh_from_db()
    assert event.status == HealingEvent.Status.PENDING_REVIEW
    assert event.task.current_version == event.original_version
    assert not event.reviews.exists()


def test_a_rejection_whose_deliveries_are_not_recorded_is_not_recorded_either(reviewer, fan_out_dies):
    event = pending_event()
    with pytest.raises(FanOutDied):
        healing_reject(event=event, reviewer=reviewer, comment="wrong button")
    event.refresh_from_db()
    assert event.status == HealingEvent.Status.PENDING_REVIEW
    assert event.review_comment == ""


def test_an_auto_deploy_whose_deliveries_are_not_recorded_deploys_nothing(fan_out_dies):
    event = pending_event(auto_deploy=True)
    validation = Run.objects.create(
        task=event.task, version=event.new_version, purpose=Run.Purpose.VALIDATION, status=Run.Status.SUCCEEDED,
        output=event.run.output,
    )
    HealingEvent.objects.filter(pk=event.pk).update(status=HealingEvent.Status.VALIDATING, validation_run=validation)
    with pytest.raises(FanOutDied):
        pipeline.validation_finished(run=validation)
    event.refresh_from_db()
    event.task.refresh_from_db()
    assert event.status == HealingEvent.Status.VALIDATING
    assert event.task.current_version == event.original_version


def test_a_failed_validation_whose_deliveries_are_not_recorded_stays_validating(fan_out_dies):
    event = pending_event()
    validation = Run.objects.create(
        task=event.task, version=event.new_version, purpose=Run.Purpose.VALIDATION, status=Run.Status.FAILED,
    )
    HealingEvent.objects.filter(pk=event.pk).update(status=HealingEvent.Status.VALIDATING, validation_run=validation)
    with pytest.raises(FanOutDied):
        pipeline.validation_finished(run=validation)
    event.refresh_from_db()
    assert event.status == HealingEvent.Status.VALIDATING


def test_a_queued_run_whose_deliveries_are_not_recorded_is_not_created(fan_out_dies):
    task = pending_event().task
    runs_before = Run.objects.count()
    with pytest.raises(FanOutDied):
        task_services.run_enqueue(task=task)
    assert Run.objects.count() == runs_before
