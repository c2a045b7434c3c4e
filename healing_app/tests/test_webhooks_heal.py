"""A full heal, end to end, as a webhook receiver sees it: the documented events, in order, each signed.

Real Chromium, real RQ queues and the product's worker (the `drain` fixture), and a real receiver on localhost.
The sequences asserted here are the ones docs/webhooks.md documents.
"""

from __future__ import annotations

import pytest
from standardwebhooks import Webhook

from healing_app.models import HealingEvent
from healing_app.services import healing_approve
from healing_app.tests.test_heal_e2e import (
    V1_BUTTON,
    contact_page,
    contact_site,
    make_task,
    run_now,
    site_version,
)
from healing_app.tests.test_webhooks_receiver import Receiver
from healing_app.webhook_services import webhook_endpoint_create
from tasks_app.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = True  # the receiver is on loopback
    site_version["v"] = 1
    with Receiver() as running:
        yield running
    site_version["v"] = 1


def received(receiver: Receiver, secret: str) -> list[dict]:
    return [Webhook(secret).verify(r.body, r.headers) for r in receiver.requests]


def test_an_auto_deployed_heal_reaches_the_receiver_as_the_documented_sequence(receiver, drain):
    _, secret = webhook_endpoint_create(actor=None, url=receiver.url())
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=True)
        run_now(task, drain)
        site_version["v"] = 2
        healed = run_now(task, drain)
    assert healed.status == Run.Status.HEALED
    drain()  # any webhook still queued

    messages = received(receiver, secret)
    assert [m["type"] for m in messages] == ["healing.triggered", "run.healed", "task.version_deployed", "healing.deployed"]
    event = HealingEvent.objects.get(run=healed)
    triggered, run_healed, version_deployed, deployed = (m["data"] for m in messages)
    assert (triggered["id"], triggered["status"], triggered["error_type"]) == (event.pk, "triggered", "element_not_found")
    assert triggered["agent"] == "heuristic"  # the agent that takes over, named from the first message on
    assert (run_healed["run"], run_healed["status"]) == (healed.pk, "healed")
    # which failure was healed, and by which event: the run itself ended without an error
    assert (run_healed["error_type"], run_healed["healing_event"]) == ("element_not_found", event.pk)
    assert (version_deployed["task"], version_deployed["version"]) == (task.pk, event.new_version.number)
    assert (deployed["id"], deployed["status"], deployed["new_version"]) == (event.pk, "deployed", event.new_version.number)
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 4


def test_a_reviewed_heal_reaches_the_receiver_as_the_documented_sequence(receiver, drain, reviewer):
    _, secret = webhook_endpoint_create(actor=None, url=receiver.url())
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=False)
        run_now(task, drain)
        site_version["v"] = 2
        run_now(task, drain)
    event = HealingEvent.objects.get(task=task)
    healing_approve(event=event, reviewer=reviewer, comment="looks right")
    drain()

    messages = received(receiver, secret)
    assert [m["type"] for m in messages] == [
        "healing.triggered",
        "run.healed",
        "healing.pending_review",
        "task.version_deployed",
        "healing.deployed",
    ]
    assert messages[2]["data"]["status"] == "pending_review"


def test_a_heal_refused_after_the_run_reaches_the_receiver_as_the_documented_sequence(receiver, drain):
    _, secret = webhook_endpoint_create(actor=None, url=receiver.url())
    with contact_site(1) as site:
        task = make_task(site, auto_deploy=True)
        run_now(task, drain)
        # The button is gone; in its place a look-alike that only leads to the newsletter page.
        site.pages["/contact"] = contact_page(1).replace(
            V1_BUTTON, '<button type="button" class="btn primary" onclick="location = \'/newsletter\'">Send</button>')
        run_now(task, drain)
    drain()

    # The agent completed the run with the look-alike, then the fix was refused (the run left the task's pages).
    messages = received(receiver, secret)
    assert [m["type"] for m in messages] == ["healing.triggered", "run.healed", "healing.failed"]
    event = HealingEvent.objects.get(task=task)
    assert (messages[2]["data"]["id"], messages[2]["data"]["status"]) == (event.pk, "failed")
    assert messages[2]["data"]["reason"] == event.reason != ""
