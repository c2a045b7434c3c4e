"""Shared fixtures for the whole suite."""

from __future__ import annotations

import os
import uuid

import pytest

# pytest-playwright keeps an event loop running in the main thread for its session-scoped browser, so
# Django would refuse every later synchronous database call "from an async context". The tests are
# synchronous; Playwright's documented fix for Django is this flag.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def _own_rate_limit_counters(settings):
    """Each test counts its API requests under a rate-limit prefix of its own: the tests share one Redis, and a
    count left by another test (or another run of the suite) would throttle this one."""
    settings.API_RATE_LIMIT_PREFIX = f"test:{uuid.uuid4().hex}"


@pytest.fixture
def reviewer(django_user_model):
    from healing_app.permissions import reviewers_group

    user = django_user_model.objects.create_user("rita", password="pw-rita-123!")
    user.groups.add(reviewers_group())
    return user


@pytest.fixture
def member(django_user_model):
    return django_user_model.objects.create_user("mo", password="pw-mo-123!")


@pytest.fixture
def queues():
    """Empty RQ queues on the tests' own Redis database, before and after the test."""
    import django_rq

    connection = django_rq.get_connection("runs")
    connection.flushdb()
    yield connection
    connection.flushdb()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Browser tests go last: pytest-playwright's session browser keeps an event loop running in the main
    thread from its first test on, and async_to_sync (Channels tests) refuses to run beside it."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
