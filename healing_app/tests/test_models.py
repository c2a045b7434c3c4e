import itertools

import pytest

from healing_app.models import HealingEvent, InvalidTransition

S = HealingEvent.Status
ALLOWED = {
    (S.TRIGGERED, S.HEALING),
    (S.TRIGGERED, S.FAILED),
    (S.HEALING, S.VALIDATING),
    (S.HEALING, S.PENDING_REVIEW),
    (S.HEALING, S.DEPLOYED),
    (S.HEALING, S.FAILED),
    (S.VALIDATING, S.PENDING_REVIEW),
    (S.VALIDATING, S.DEPLOYED),
    (S.VALIDATING, S.FAILED),
    (S.PENDING_REVIEW, S.DEPLOYED),
    (S.PENDING_REVIEW, S.REJECTED),
}


@pytest.mark.parametrize(("current", "wanted"), sorted(itertools.product(S.values, S.values)))
def test_every_transition_is_allowed_or_refused_as_designed(current, wanted):
    event = HealingEvent(status=current, timeline=[])
    if (current, wanted) in ALLOWED:
        event.transition_to(wanted)
        assert event.status == wanted
        assert event.timeline[-1]["status"] == wanted
    else:
        assert not event.can_transition_to(wanted)
        with pytest.raises(InvalidTransition):
            event.transition_to(wanted)
        assert event.status == current


def test_final_states_are_final():
    for status in HealingEvent.FINAL:
        assert HealingEvent.TRANSITIONS[status] == frozenset()
