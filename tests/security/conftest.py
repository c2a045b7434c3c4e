"""Fixtures of the security tests: a site with one of everything (task, versions, a heal waiting for
review, a webhook endpoint and a delivery, an API key) and a staff reviewer who may use every page."""

from __future__ import annotations

import ipaddress

import pytest


@pytest.fixture
def boss(django_user_model):
    """A superuser in the reviewers group: no page refuses them for lack of rights, only for lack of a token."""
    from healing_app.permissions import reviewers_group

    user = django_user_model.objects.create_superuser("boss", password="pw-boss-123!")
    user.groups.add(reviewers_group())
    return user


@pytest.fixture
def world(boss, monkeypatch):
    from healing_app import ssrf
    from healing_app.models import WebhookDelivery
    from healing_app.tests.factories import pending_event
    from healing_app.webhook_services import webhook_endpoint_create
    from tasks_app.api_keys import api_key_create

    # No DNS here: the receiver's public name resolves to a public documentation address.
    real = ssrf.resolve
    monkeypatch.setattr(ssrf, "resolve", lambda host, port: [ipaddress.ip_address("93.184.215.14")]
                        if host == "hooks.example.test" else real(host, port))
    event = pending_event()
    endpoint, _ = webhook_endpoint_create(actor=boss, url="https://hooks.example.test/anchor", description="ops")
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, message_id="msg_security", event_type="healing.deployed", payload={"x": 1})
    key, _ = api_key_create(user=boss, name="security")
    return {"task": event.task, "event": event, "endpoint": endpoint, "delivery": delivery, "key": key}

