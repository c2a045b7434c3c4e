"""The demo a new user sees (`make run`): both demo tasks break on version 2 of the bundled site and heal.

The demo site is served by the product itself, here by a live server; the product's worker runs in-process.
"""

from __future__ import annotations

import pytest

from healing_app.models import HealingEvent
from tasks_app import services
from tasks_app.demo.seed import demo_seed, demo_switch
from tasks_app.models import Run, Task

pytestmark = pytest.mark.django_db(transaction=True)


def play_the_demo(drain) -> tuple[Task, Task]:
    """What `manage.py demo_play` does: seed (or reset) the demo tasks, run them on version 1 of the site, where
    they succeed, then switch it to version 2 and let them break and heal. The contact task, then the catalog's."""
    contact, catalog = sorted(demo_seed(), key=lambda task: task.name != "demo: contact form")
    runs = [services.run_enqueue(task=task) for task in (contact, catalog)]
    drain()
    assert {run.status for run in Run.objects.filter(pk__in=[run.pk for run in runs])} == {Run.Status.SUCCEEDED}
    demo_switch(version=2)
    drain()
    return contact, catalog


def test_the_demo_heals_the_contact_form_and_the_moved_catalog(live_server, settings, drain):
    settings.ANCHOR_SITE_URL = live_server.url
    contact, catalog = play_the_demo(drain)

    contact_event = HealingEvent.objects.get(task=contact)
    assert contact_event.status == HealingEvent.Status.DEPLOYED
    contact.refresh_from_db()
    assert '[data-testid="send"]' in contact.current_version.code

    catalog_event = HealingEvent.objects.get(task=catalog)
    assert catalog_event.status == HealingEvent.Status.PENDING_REVIEW, catalog_event.reason
    assert catalog_event.error_type == "navigation_error"
    assert 'params["base_url"] + "/products"' in catalog_event.new_version.code
    catalog.refresh_from_db()
    assert catalog.current_version.number == 1  # auto_deploy is off: it waits for a reviewer
    healed_run = catalog_event.run
    assert healed_run.status == Run.Status.HEALED and "Brass compass" in str(healed_run.output)


def test_playing_the_demo_again_starts_from_the_seeded_code_and_heals_again(live_server, settings, drain):
    """`make run` plays the demo each time it starts: a second play breaks and heals the tasks again."""
    settings.ANCHOR_SITE_URL = live_server.url
    contact, _ = play_the_demo(drain)
    first_heal = HealingEvent.objects.get(task=contact)
    assert first_heal.status == HealingEvent.Status.DEPLOYED

    contact, catalog = play_the_demo(drain)  # its version 1 runs succeed: the seeded code is back
    assert contact.current_version.number == 1 and '"#submit"' in contact.current_version.code
    again = HealingEvent.objects.filter(task=contact).exclude(pk=first_heal.pk).get()
    assert again.status == HealingEvent.Status.DEPLOYED, again.reason
    waiting = HealingEvent.objects.filter(task=catalog).order_by("created_at")
    assert [event.status for event in waiting] == [HealingEvent.Status.PENDING_REVIEW, HealingEvent.Status.FAILED]
    assert waiting[1].reason.startswith("the same fix is already pending review")
