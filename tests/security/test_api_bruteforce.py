"""API key guessing is throttled per client address: after API_AUTH_FAILURES_PER_MINUTE failures (the
deployment's configured value, 20 by default) every request from that address gets 429, whichever header
style, endpoint or method it uses, even with a right key; other addresses are not affected."""

from __future__ import annotations

import time

import pytest

from tasks_app.api_keys import api_key_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def raw_key(member):
    return api_key_create(user=member, name="security")[1]


def _fresh_window():
    # Limits count per clock minute; a test straddling two minutes would see its counter reset.
    left = 60 - time.time() % 60
    if left < 5:
        time.sleep(left + 0.1)


def _guess(n: int) -> str:
    return f"ak_guess-{n:04d}-0123456789abcdefghijklmnop"


def test_guessing_keys_is_cut_off_after_the_configured_failures(client, raw_key, settings):
    from django.conf import settings as live

    limit = live.API_AUTH_FAILURES_PER_MINUTE
    assert limit == 20  # the shipped default is what is tested
    _fresh_window()
    attempts = []
    for n in range(limit):
        # Spread over both header styles, several endpoints and methods: they all count together.
        kind = n % 4
        if kind == 0:
            response = client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {_guess(n)}"})
        elif kind == 1:
            response = client.get("/api/v1/healing-events/heal_x", headers={"anchor-api-key": _guess(n)})
        elif kind == 2:
            response = client.post("/api/v1/tasks", data={}, content_type="application/json",
                                   headers={"Authorization": f"Bearer {_guess(n)}"})
        else:
            response = client.delete("/api/v1/tasks/task_x", headers={"anchor-api-key": _guess(n)})
        attempts.append(response.status_code)
    assert attempts == [401] * limit

    blocked = client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {_guess(999)}"})
    assert blocked.status_code == 429
    assert blocked.json()["error"]["code"] == "too_many_auth_failures"
    assert 1 <= int(blocked["Retry-After"]) <= 60
    # A right key from the same address is refused too: the guesser must not learn that it guessed right.
    right = client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {raw_key}"})
    assert right.status_code == 429
    # Another client is not punished for it.
    assert client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {raw_key}"}, REMOTE_ADDR="10.20.30.40").status_code == 200


def test_a_forged_x_forwarded_for_does_not_reset_the_count_when_not_behind_a_proxy(client, settings):
    settings.API_AUTH_FAILURES_PER_MINUTE = 3
    settings.SECURE_PROXY_SSL_HEADER = None
    _fresh_window()
    codes = [
        client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {_guess(n)}", "X-Forwarded-For": f"10.0.0.{n}"}).status_code
        for n in range(5)
    ]
    assert codes == [401, 401, 401, 429, 429]


def test_behind_the_proxy_each_real_client_is_counted_apart(client, raw_key, settings):
    settings.API_AUTH_FAILURES_PER_MINUTE = 3
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    _fresh_window()
    # nginx appends the client it saw last; whatever the client put in front is ignored.
    attacker = {"X-Forwarded-For": "1.2.3.4, 203.0.113.7"}
    codes = [client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {_guess(n)}", **attacker}).status_code
             for n in range(4)]
    assert codes == [401, 401, 401, 429]
    rotating = {"X-Forwarded-For": "9.9.9.9, 203.0.113.7"}
    assert client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {_guess(9)}", **rotating}).status_code == 429
    other = {"X-Forwarded-For": "198.51.100.2"}
    assert client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {raw_key}", **other}).status_code == 200
