"""A heal that arrives at the draft of another heal of the same version (validating, waiting or rejected) is that
heal again: one review, and a rejection sticks. Timeouts aside: a wait is sized from how slow the page was."""

from __future__ import annotations

import pytest

from healing_app import pipeline
from healing_app.codegen import set_step_timeout
from healing_app.models import HealingEvent
from healing_app.tests.factories import CODE_V1, pending_event
from tasks_app import services
from tasks_app.models import CodeVersion

pytestmark = pytest.mark.django_db


def test_a_draft_that_differs_from_a_rejected_one_only_in_its_timeout_is_the_same_fix():
    rejected = pending_event()
    slow_fix = services.version_create(task=rejected.task, code=set_step_timeout(CODE_V1, line=3, timeout_ms=13000),
                                       source=CodeVersion.Source.HEALED, parent=rejected.original_version)
    HealingEvent.objects.filter(pk=rejected.pk).update(status=HealingEvent.Status.REJECTED, new_version=slow_fix)
    again = HealingEvent.objects.create(task=rejected.task, original_version=rejected.original_version,
                                        status=HealingEvent.Status.HEALING, error_type="timeout")

    assert pipeline._same_fix(again, set_step_timeout(CODE_V1, line=3, timeout_ms=14000)) == rejected
    assert pipeline._same_fix(again, set_step_timeout(CODE_V1, line=2, timeout_ms=13000)) is None  # another line
