"""API authentication: the two header styles, bad keys, rate limits per key and per address, key management."""

from __future__ import annotations

import io
import logging
import time

import pytest
from django.core.management import CommandError, call_command

import anchor_site.api
from tasks_app.api_keys import api_key_create, api_key_revoke
from tasks_app.models import ApiKey, AuditLog

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("mo")


@pytest.fixture
def key(owner):
    return api_key_create(user=owner, name="tests")


def _list(client, headers, **extra):
    return client.get("/api/v1/tasks", headers=headers, **extra)


def _avoid_window_edge():
    # Limits count per clock minute; a test that straddles two minutes would see its counter reset.
    left = 60 - time.time() % 60
    if left < 3:
        time.sleep(left + 0.1)


def test_a_bearer_key_and_the_anchor_api_key_header_both_work(client, key):
    _, raw = key
    assert _list(client, {"Authorization": f"Bearer {raw}"}).status_code == 200
    assert _list(client, {"Authorization": f"bearer {raw}"}).status_code == 200
    assert _list(client, {"anchor-api-key": raw}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic bW86cHc="},
        {"Authorization": "Bearer ak_this-key-was-never-issued-0123456789abcdef"},
        {"Authorization": "Bearer not-even-key-shaped"},
        {"anchor-api-key": "ak_this-key-was-never-issued-0123456789abcdef"},
    ],
    ids=["missing", "empty bearer", "basic auth", "wrong key", "garbage", "wrong header key"],
)
def test_missing_or_wrong_keys_are_a_401_in_the_error_format(client, headers):
    response = _list(client, headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert response.json()["error"]["message"].endswith("; create one on /api-keys/ in the dashboard")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_key_or_password_sent_under_another_scheme_is_a_401_and_never_logged(client, key, settings, caplog):
    # django-ninja logged such a header in full under DEBUG ("Unexpected auth - 'Token ak_…'").
    settings.DEBUG = True
    _, raw = key
    basic = "Basic YWRtaW46c2VjcmV0LXB3"  # admin:secret-pw
    with caplog.at_level(logging.DEBUG):
        for header in (f"Token {raw}", basic, raw):
            response = _list(client, {"Authorization": header})
            assert response.status_code == 401, header
            assert response.json()["error"]["code"] == "unauthenticated"
    assert raw not in caplog.text and "YWRtaW46c2VjcmV0LXB3" not in caplog.text


def test_a_revoked_key_is_a_401(client, key):
    row, raw = key
    api_key_revoke(key=row)
    assert _list(client, {"Authorization": f"Bearer {raw}"}).status_code == 401


def test_a_key_of_a_deactivated_user_is_a_401(client, key, owner):
    owner.is_active = False
    owner.save()
    assert _list(client, {"Authorization": f"Bearer {key[1]}"}).status_code == 401


def test_a_keys_last_use_is_recorded_and_refreshed_at_most_once_a_minute(client, key):
    from datetime import timedelta

    from django.utils import timezone

    row, raw = key
    assert row.last_used_at is None
    assert _list(client, {"Authorization": f"Bearer {raw}"}).status_code == 200
    row.refresh_from_db()
    assert row.last_used_at is not None and timezone.now() - row.last_used_at < timedelta(seconds=30)

    recent = timezone.now() - timedelta(seconds=20)
    ApiKey.objects.filter(pk=row.pk).update(last_used_at=recent)
    assert _list(client, {"Authorization": f"Bearer {raw}"}).status_code == 200
    row.refresh_from_db()
    assert row.last_used_at == recent  # used within the minute: no write

    stale = timezone.now() - timedelta(minutes=5)
    ApiKey.objects.filter(pk=row.pk).update(last_used_at=stale)
    assert _list(client, {"Authorization": f"Bearer {raw}"}).status_code == 200
    row.refresh_from_db()
    assert timezone.now() - row.last_used_at < timedelta(seconds=30)


def test_each_key_is_rate_limited_per_minute_with_retry_after(client, key, owner, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 3
    _avoid_window_edge()
    headers = {"Authorization": f"Bearer {key[1]}"}
    assert [_list(client, headers).status_code for _ in range(3)] == [200, 200, 200]
    response = _list(client, headers)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 60
    # Another key of the same user has its own budget.
    other = api_key_create(user=owner, name="other")[1]
    assert _list(client, {"Authorization": f"Bearer {other}"}).status_code == 200


def test_failed_authentications_are_throttled_per_address_even_for_a_right_key(client, key, settings):
    settings.API_AUTH_FAILURES_PER_MINUTE = 3
    _avoid_window_edge()
    wrong = {"Authorization": "Bearer ak_guess-0123456789abcdefghijklmnop"}
    assert [_list(client, wrong).status_code for _ in range(3)] == [401, 401, 401]
    for headers in (wrong, {"Authorization": f"Bearer {key[1]}"}):
        response = _list(client, headers)
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "too_many_auth_failures"
        assert 1 <= int(response["Retry-After"]) <= 60
    # Another address is not affected; a forged X-Forwarded-For does not make one (we are not behind a proxy).
    assert _list(client, {"Authorization": f"Bearer {key[1]}"}, REMOTE_ADDR="10.1.2.3").status_code == 200
    forged = _list(client, {"Authorization": f"Bearer {key[1]}", "X-Forwarded-For": "10.9.9.9"})
    assert forged.status_code == 429


def test_the_api_keeps_working_quickly_when_redis_is_down(client, key, monkeypatch, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    monkeypatch.setattr(anchor_site.api, "_redis_client", None)
    monkeypatch.setattr(anchor_site.api, "_redis_down_until", 0.0)
    started = time.monotonic()
    assert _list(client, {"Authorization": f"Bearer {key[1]}"}).status_code == 200
    assert _list(client, {"Authorization": "Bearer ak_wrong-0123456789abcdefghij"}).status_code == 401
    assert _list(client, {"Authorization": f"Bearer {key[1]}"}).status_code == 200
    assert time.monotonic() - started < 2  # one failed connection, then Redis is left alone for a while


def test_the_schema_and_the_docs_need_no_key(client):
    schema = client.get("/api/v1/openapi.json")
    assert schema.status_code == 200
    assert schema.json()["openapi"].startswith("3.")
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.content.decode().lower()
    # The page's inline script runs under the site's CSP because it is allowed by its hash.
    assert "'sha256-" in docs["Content-Security-Policy"] or "<script>" not in docs.content.decode()


# -- the create_api_key command ------------------------------------------------------------------------


def test_create_api_key_prints_a_working_key_once(client, owner):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", "--user", "mo", "--name", "CI", stdout=out, stderr=err)
    raw = out.getvalue().strip()
    assert raw.startswith("ak_")
    row = ApiKey.objects.get(user=owner)
    assert row.name == "CI" and row.hashed == ApiKey.hash(raw) and raw not in str(row.__dict__)
    assert row.id in err.getvalue()
    assert _list(client, {"Authorization": f"Bearer {raw}"}).status_code == 200
    assert AuditLog.objects.filter(action="api_key.create", object_id=row.id).exists()


def test_create_api_key_revoke_stops_the_key(client, key):
    row, raw = key
    out = io.StringIO()
    call_command("create_api_key", "--revoke", row.id, stdout=out, stderr=io.StringIO())
    assert "Revoked" in out.getvalue()
    assert _list(client, {"Authorization": f"Bearer {raw}"}).status_code == 401
    assert AuditLog.objects.filter(action="api_key.revoke", object_id=row.id).exists()


@pytest.mark.parametrize("args", [["--user", "nobody"], ["--revoke", "key_nope"], []])
def test_create_api_key_refuses_bad_arguments(args):
    with pytest.raises(CommandError):
        call_command("create_api_key", *args, stdout=io.StringIO(), stderr=io.StringIO())


def test_the_api_docs_say_where_to_get_a_key(client):
    description = client.get("/api/v1/openapi.json").json()["info"]["description"]
    assert "/api-keys/" in description and "admin" in description and "manage.py create_api_key" in description
