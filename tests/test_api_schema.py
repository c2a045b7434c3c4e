"""The OpenAPI schema is valid, and fuzzing every operation from it finds no server errors.

Schemathesis generates requests from /api/v1/openapi.json (valid and invalid ones) and sends them
in-process to the WSGI app with a real API key. Path ids point at real rows part of the time, so the
fuzzing reaches past the 404s into the endpoints' own validation. Bounded to a few examples per
operation so the suite stays fast.
"""

from __future__ import annotations

import random

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis import checks

from anchor_site.api import api
from healing_app.models import HealingEvent
from tasks_app import services
from tasks_app.api_keys import api_key_create
from tasks_app.models import CodeVersion, Run

CODE = 'def run(page, params):\n    page.goto(params["base_url"])\n    return {}\n'


# The schema is built in-process (no request, so no database connection before the test database exists);
# the generated requests go to the WSGI app.
schema = schemathesis.openapi.from_dict(api.get_openapi_schema())
schema.app = get_wsgi_application()
# The coverage phase's hundreds of boundary cases per operation would take minutes; random valid and
# invalid requests (both generation modes) within max_examples keep this under a minute.
schema.config.phases.coverage.enabled = False


@pytest.fixture
def keep_test_connection():
    """Requests go straight to the WSGI handler, which closes the database connection after each one;
    that would end the test's transaction. Django's own test client switches this off the same way."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_world(db, django_user_model, settings, keep_test_connection):
    """A reviewer's key and one of each thing a path can name: a task with two versions, a run, an event."""
    from django.contrib.auth.models import Group

    settings.API_RATE_LIMIT_PER_MINUTE = 100_000
    user = django_user_model.objects.create_user("fuzzer")
    user.groups.add(Group.objects.get(name="reviewers"))
    _, raw = api_key_create(user=user, name="fuzz")
    task = services.task_create(name="fuzzed", code=CODE, params={"base_url": "http://127.0.0.1:9"})
    healed = services.version_create(task=task, code=CODE.replace("{}", "{'ok': 1}"), source=CodeVersion.Source.HEALED)
    run = Run.objects.create(task=task, version=task.current_version)
    event = HealingEvent.objects.create(
        task=task, run=run, status=HealingEvent.Status.PENDING_REVIEW, error_type="timeout",
        original_version=task.current_version, new_version=healed,
    )
    return {"headers": {"Authorization": f"Bearer {raw}"}, "task_id": task.pk, "run_id": run.pk, "event_id": event.pk}


def test_the_openapi_schema_is_valid_openapi_3(client):
    document = client.get("/api/v1/openapi.json", HTTP_HOST="localhost").json()
    assert document["openapi"].startswith("3.")
    schemathesis.openapi.from_dict(document).validate()  # against the OpenAPI meta-schema
    paths = document["paths"]
    for path in ("/api/v1/tasks", "/api/v1/tasks/{task_id}", "/api/v1/tasks/{task_id}/runs", "/api/v1/runs/{run_id}",
                 "/api/v1/tasks/{task_id}/healing-events", "/api/v1/healing-events/{event_id}/approve"):
        assert path in paths
    schemes = document["components"]["securitySchemes"]
    assert {scheme["type"] for scheme in schemes.values()} == {"http", "apiKey"}


def test_the_schema_declares_the_refusals_each_change_can_meet(client):
    """SDK generators and readers learn from the schema that a change may be forbidden (403) or refused by the
    object's state (409); those answers were sent but not declared on most endpoints."""
    paths = client.get("/api/v1/openapi.json", HTTP_HOST="localhost").json()["paths"]
    expected = {
        ("/api/v1/tasks/{task_id}", "patch"): {"403"},
        ("/api/v1/tasks/{task_id}", "delete"): {"403", "409"},
        ("/api/v1/tasks/{task_id}/versions/{number}/deploy", "post"): {"403", "409"},
        ("/api/v1/tasks/{task_id}/runs", "post"): {"403"},
        ("/api/v1/runs/{run_id}/cancel", "post"): {"403", "409"},
        ("/api/v1/healing-events/{event_id}/approve", "post"): {"403", "409"},
        ("/api/v1/healing-events/{event_id}/reject", "post"): {"403", "409"},
    }
    for (path, method), codes in expected.items():
        assert codes <= set(paths[path][method]["responses"]), (path, method)


@schema.parametrize()
@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_fuzzing_finds_no_server_errors(case, fuzz_world):
    rng = random.Random(repr(case.path_parameters))
    for name in ("task_id", "run_id", "event_id"):
        if case.path_parameters and name in case.path_parameters and rng.random() < 0.7:
            case.path_parameters[name] = fuzz_world[name]
    case.call_and_validate(
        headers={**(case.headers or {}), **fuzz_world["headers"], "Host": "localhost"},
        # The API checks more than a schema can say (a blank name, code that does not parse), so
        # schema-valid requests may rightly get a 400; every other check applies.
        excluded_checks=[checks.positive_data_acceptance],
    )
