import pytest
from django.core.exceptions import PermissionDenied

from healing_app import pipeline
from healing_app.models import HealingEvent, Review
from healing_app.services import AlreadyDecided, Superseded, healing_approve, healing_reject
from healing_app.tests.factories import CODE_V1, pending_event
from tasks_app import services as task_services
from tasks_app.config import InputError
from tasks_app.models import AuditLog

pytestmark = pytest.mark.django_db


def test_reviewer_approval_deploys_the_new_version(reviewer):
    event = pending_event()
    healing_approve(event=event, reviewer=reviewer, comment="looks right")
    event.refresh_from_db()
    event.task.refresh_from_db()
    assert event.status == HealingEvent.Status.DEPLOYED
    assert event.task.current_version == event.new_version
    assert Review.objects.get(event=event).decision == Review.Decision.APPROVED
    assert AuditLog.objects.filter(action="healing.approved", object_id=event.pk, actor=reviewer).exists()


def test_non_reviewer_cannot_approve_or_reject(member):
    event = pending_event()
    with pytest.raises(PermissionDenied):
        healing_approve(event=event, reviewer=member)
    with pytest.raises(PermissionDenied):
        healing_reject(event=event, reviewer=member, comment="no")
    event.refresh_from_db()
    assert event.status == HealingEvent.Status.PENDING_REVIEW
    assert event.task.current_version == event.original_version


def test_reject_needs_a_comment_and_keeps_the_current_version(reviewer):
    event = pending_event()
    with pytest.raises(InputError) as caught:
        healing_reject(event=event, reviewer=reviewer, comment="  ")
    assert caught.value.field == "comment"
    healing_reject(event=event, reviewer=reviewer, comment="wrong button")
    event.refresh_from_db()
    assert event.status == HealingEvent.Status.REJECTED
    assert event.review_comment == "wrong button"
    assert event.task.current_version == event.original_version


def test_a_rejection_is_recorded_as_a_rejected_review_and_audited(reviewer):
    event = pending_event()
    healing_reject(event=event, reviewer=reviewer, comment="  wrong button  ")
    event.refresh_from_db()
    assert (event.reviewer, event.decided_at is not None) == (reviewer, True)
    review = Review.objects.get(event=event)
    assert (review.decision, review.reviewer, review.comment) == (Review.Decision.REJECTED, reviewer, "wrong button")
    audit = AuditLog.objects.get(object_id=event.pk, action__startswith="healing.")
    assert (audit.action, audit.actor, audit.data) == ("healing.rejected", reviewer, {"comment": "wrong button"})


def test_a_second_decision_changes_nothing(reviewer):
    event = pending_event()
    healing_approve(event=event, reviewer=reviewer)
    with pytest.raises(AlreadyDecided):
        healing_approve(event=event, reviewer=reviewer)
    with pytest.raises(AlreadyDecided):
        healing_reject(event=event, reviewer=reviewer, comment="late")
    assert Review.objects.filter(event=event).count() == 1


def test_approval_refuses_a_heal_built_on_code_that_has_since_changed(reviewer):
    event = pending_event()
    task_services.task_update(task=event.task, code=CODE_V1.replace("True", "False"))
    with pytest.raises(Superseded):
        healing_approve(event=event, reviewer=reviewer)
    event.refresh_from_db()
    assert event.status == HealingEvent.Status.PENDING_REVIEW


def test_a_rejected_heals_element_is_never_chosen_for_its_step_again(reviewer):
    event = pending_event()
    healing_reject(event=event, reviewer=reviewer, comment="wrong button")
    assert pipeline._rejected_elements(event.task, event.step_key) == [event.chosen_element]


def test_rejecting_a_superseded_heal_clears_it_without_holding_its_element_against_the_step(reviewer):
    """The task's code changed since the heal, so it could only be rejected: that is no verdict on the element."""
    event = pending_event()
    task_services.task_update(task=event.task, code=CODE_V1.replace("True", "False"))
    healing_reject(event=event, reviewer=reviewer, comment="stale, the code changed")
    event.refresh_from_db()
    assert event.status == HealingEvent.Status.REJECTED
    assert Review.objects.get(event=event).superseded
    audit = AuditLog.objects.get(object_id=event.pk, action="healing.rejected")
    assert audit.data == {"comment": "stale, the code changed", "superseded": True}
    assert pipeline._rejected_elements(event.task, event.step_key) == []


def test_a_validation_with_other_output_fails_the_heal_and_says_both_outputs_as_json(db):
    from healing_app import pipeline
    from tasks_app.models import Run

    event = pending_event()
    Run.objects.filter(pk=event.run_id).update(output={"prices": ["9.99", None]})
    validation = Run.objects.create(
        task=event.task, version=event.new_version, purpose=Run.Purpose.VALIDATION, status=Run.Status.SUCCEEDED,
        output={"prices": ["10.49", None]},
    )
    HealingEvent.objects.filter(pk=event.pk).update(status=HealingEvent.Status.VALIDATING, validation_run=validation)

    pipeline.validation_finished(run=validation)

    event.refresh_from_db()
    assert event.status == HealingEvent.Status.FAILED
    assert event.reason == (
        'validation output {"prices": ["10.49", null]} differs from the healed run\'s {"prices": ["9.99", null]}'
    )
    assert event.task.current_version == event.original_version


def _validated(event, *, output):
    """The event's validation run ended successfully with `output`; returns that run."""
    from tasks_app.models import Run

    validation = Run.objects.create(
        task=event.task, version=event.new_version, purpose=Run.Purpose.VALIDATION, status=Run.Status.SUCCEEDED,
        output=output,
    )
    HealingEvent.objects.filter(pk=event.pk).update(status=HealingEvent.Status.VALIDATING, validation_run=validation)
    return validation


def test_a_validated_heal_auto_deploys_once_and_a_repeated_finish_changes_nothing(db):
    from healing_app import pipeline
    from tasks_app.models import Run

    event = pending_event(auto_deploy=True)
    Run.objects.filter(pk=event.run_id).update(output={"ok": True})
    validation = _validated(event, output={"ok": True})

    pipeline.validation_finished(run=validation)
    pipeline.validation_finished(run=validation)  # the job delivered twice

    event.refresh_from_db()
    event.task.refresh_from_db()
    assert event.status == HealingEvent.Status.DEPLOYED and event.decided_at is not None
    assert event.task.current_version == event.new_version
    assert AuditLog.objects.filter(action="version.deploy", object_id=event.task_id).count() == 1


def test_a_heal_whose_task_code_changed_during_validation_is_superseded_not_deployed(db):
    from healing_app import pipeline
    from tasks_app.models import Run

    event = pending_event(auto_deploy=True)
    Run.objects.filter(pk=event.run_id).update(output={"ok": True})
    validation = _validated(event, output={"ok": True})
    manual = task_services.task_update(task=event.task, code=CODE_V1.replace("True", "False")).current_version

    pipeline.validation_finished(run=validation)

    event.refresh_from_db()
    event.task.refresh_from_db()
    assert event.status == HealingEvent.Status.FAILED and event.reason.startswith("superseded")
    assert event.task.current_version == manual
