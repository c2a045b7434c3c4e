"""The Python client against a scripted HTTP transport: requests, typed results, errors and retries.

The end-to-end behaviour against a real server is tested in the product's suite (tests/test_seed_snippets.py).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import httpx
import pytest

import anchor_sdk._http
from anchor_sdk import (
    Anchor,
    APIConnectionError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ValidationError,
)

TASK = {
    "id": "task_1",
    "name": "form_submission",
    "prompt": "Fill out the contact form",
    "self_healing": True,
    "self_healing_config": {"auto_deploy": True, "trigger_on": ["timeout"], "max_attempts": 3, "validation_required": True},
    "current_version": 1,
    "code_status": "ready",
    "params": {},
    "secret_keys": [],
    "healing_agent": "",
    "created_at": "2026-01-02T03:04:05.123Z",
    "updated_at": "2026-01-02T03:04:05.123Z",
}


class Server:
    """Answers requests from a script of (status, body, headers) and records what it was sent."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body, headers = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if body is None:
            return httpx.Response(status, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    def body(self, index: int = -1):
        content = self.requests[index].content
        return json.loads(content) if content else None


def ok(body, status=200):
    return (status, body, {})


def error(status, code, message="nope", field=None, headers=None):
    return (status, {"error": {"code": code, "message": message, "field": field}}, headers or {})


@pytest.fixture(autouse=True)
def no_sleeping(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(anchor_sdk._http.time, "sleep", slept.append)
    return slept


def client(server: Server, **kwargs) -> Anchor:
    return Anchor(api_key="ak_test", base_url="http://anchor.test", http_client=httpx.Client(transport=httpx.MockTransport(server)), **kwargs)


def test_create_sends_only_the_given_fields_with_the_key_and_returns_a_typed_task():
    server = Server(ok(TASK, 201))
    task = client(server).tasks.create(name="form_submission", self_healing=True, self_healing_config={"auto_deploy": True})
    request = server.requests[0]
    assert (request.method, str(request.url)) == ("POST", "http://anchor.test/api/v1/tasks")
    assert request.headers["Authorization"] == "Bearer ak_test"
    assert server.body() == {"name": "form_submission", "self_healing": True, "self_healing_config": {"auto_deploy": True}}
    assert task.id == "task_1"
    assert task.self_healing_config.auto_deploy is True
    assert task.self_healing_config.trigger_on == ["timeout"]
    assert task.created_at == datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=timezone.utc)


def test_update_is_a_patch_of_only_what_is_given():
    server = Server(ok(TASK))
    client(server).tasks.update(task_id="task_1", self_healing=False)
    assert (server.requests[0].method, server.requests[0].url.path) == ("PATCH", "/api/v1/tasks/task_1")
    assert server.body() == {"self_healing": False}


def test_update_sends_a_schedule_and_null_to_remove_a_budget():
    server = Server(ok({**TASK, "schedule": "0 9 * * 1", "monthly_budget_usd": None}))
    task = client(server).tasks.update("task_1", schedule="0 9 * * 1", monthly_budget_usd=None)
    assert server.body() == {"schedule": "0 9 * * 1", "monthly_budget_usd": None}
    assert (task.schedule, task.monthly_budget_usd) == ("0 9 * * 1", None)


def test_the_base_url_comes_from_the_environment_and_gets_the_api_prefix(monkeypatch):
    monkeypatch.setenv("ANCHOR_BASE_URL", "http://from-env:9000/")
    assert Anchor(api_key="ak_x").base_url == "http://from-env:9000/api/v1"
    assert Anchor(api_key="ak_x", base_url="http://given/api/v1").base_url == "http://given/api/v1"


def test_a_key_is_required(monkeypatch):
    monkeypatch.delenv("ANCHOR_API_KEY", raising=False)
    with pytest.raises(ValueError):
        Anchor()


def test_healing_events_are_a_plain_list_gathered_from_every_page():
    event = {"id": "heal_1", "timestamp": "2026-01-02T03:04:05Z", "error_type": "timeout", "status": "deployed", "new_version": 2}
    server = Server(
        ok({"data": [event], "next_cursor": "c1"}),
        ok({"data": [{**event, "id": "heal_2", "new_version": None}], "next_cursor": None}),
    )
    events = client(server).tasks.get_healing_events(task_id="task_1")
    assert [e.id for e in events] == ["heal_1", "heal_2"]
    assert events[0].error_type == "timeout" and events[0].status == "deployed" and events[0].new_version == 2
    assert events[0].timestamp == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert server.requests[1].url.params["cursor"] == "c1"


def test_a_list_is_a_page_that_can_walk_the_rest():
    server = Server(ok({"data": [TASK], "next_cursor": "c1"}), ok({"data": [{**TASK, "id": "task_2"}], "next_cursor": None}))
    page = client(server).tasks.list(limit=1)
    assert len(page) == 1 and page.has_more
    assert [t.id for t in page.auto_paging_iter()] == ["task_1", "task_2"]


def test_delete_returns_nothing():
    server = Server((204, None, {}))
    assert client(server).tasks.delete("task_1") is None
    assert server.requests[0].method == "DELETE"


@pytest.mark.parametrize(
    "status, code, exception",
    [
        (400, "invalid_input", ValidationError),
        (401, "unauthenticated", AuthenticationError),
        (403, "permission_denied", PermissionDeniedError),
        (404, "not_found", NotFoundError),
        (409, "already_decided", ConflictError),
    ],
)
def test_errors_become_exceptions_with_the_apis_code_and_field(status, code, exception):
    server = Server(error(status, code, "max_attempts must be between 1 and 10", "self_healing_config.max_attempts"))
    with pytest.raises(exception) as caught:
        client(server).tasks.update("task_1", self_healing_config={"max_attempts": 99})
    assert (caught.value.status_code, caught.value.code) == (status, code)
    assert caught.value.field == "self_healing_config.max_attempts"
    assert len(server.requests) == 1  # a client error is never retried


def test_429_is_retried_after_the_time_the_server_asks(no_sleeping):
    server = Server(error(429, "rate_limited", headers={"Retry-After": "7"}), ok(TASK))
    assert client(server).tasks.get("task_1").id == "task_1"
    assert no_sleeping == [7.0]


def test_429_that_persists_raises_rate_limit_error_with_retry_after():
    server = Server(error(429, "rate_limited", headers={"Retry-After": "3"}))
    with pytest.raises(RateLimitError) as caught:
        client(server, max_retries=2).tasks.get("task_1")
    assert caught.value.retry_after == 3.0
    assert len(server.requests) == 3


def test_server_errors_are_retried_with_growing_backoff_for_reads(no_sleeping):
    server = Server(error(500, "internal_error"), error(502, "bad_gateway"), ok(TASK))
    assert client(server, max_retries=3).tasks.get("task_1").id == "task_1"
    assert len(server.requests) == 3 and len(no_sleeping) == 2


def test_a_post_that_failed_with_500_is_not_repeated_because_it_may_have_taken_effect():
    server = Server(error(500, "internal_error"), ok(TASK, 201))
    with pytest.raises(ServerError):
        client(server).tasks.create(name="x")
    assert len(server.requests) == 1


def test_a_post_answered_503_is_retried():
    server = Server(error(503, "service_unavailable"), ok({"id": "run_1", "status": "queued"}, 202))
    run = client(server).tasks.run("task_1", params={"a": 1})
    assert (run.id, run.status) == ("run_1", "queued")
    assert server.body() == {"params": {"a": 1}}


def test_an_unreachable_server_is_an_api_connection_error():
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    anchor = Anchor(api_key="ak_x", base_url="http://nowhere.test", http_client=httpx.Client(transport=httpx.MockTransport(refuse)))
    with pytest.raises(APIConnectionError):
        anchor.tasks.get("task_1")


def test_approve_and_reject_post_their_comment():
    event = {"id": "heal_1", "status": "deployed", "timestamp": "2026-01-02T03:04:05Z"}
    server = Server(ok(event))
    anchor = client(server)
    assert anchor.healing_events.approve("heal_1").status == "deployed"
    assert server.body() == {}
    anchor.healing_events.reject("heal_1", comment="wrong button")
    assert server.requests[-1].url.path == "/api/v1/healing-events/heal_1/reject"
    assert server.body() == {"comment": "wrong button"}


def test_ids_are_escaped_in_paths():
    server = Server(ok(TASK))
    client(server).tasks.get("../admin")
    assert server.requests[0].url.raw_path == b"/api/v1/tasks/..%2Fadmin"


def test_a_post_whose_connection_never_opened_is_retried():
    """A connect timeout, like a refused connection, means the server never saw the request."""
    attempts = []

    def flaky(request):
        attempts.append(request.method)
        if len(attempts) == 1:
            raise httpx.ConnectTimeout("timed out while connecting", request=request)
        return httpx.Response(202, json={"id": "run_1", "status": "queued"})

    anchor = Anchor(api_key="ak_x", base_url="http://anchor.test", max_retries=2,
                    http_client=httpx.Client(transport=httpx.MockTransport(flaky)))
    run = anchor.tasks.run("task_1", params={"a": 1})
    assert (run.id, attempts) == ("run_1", ["POST", "POST"])


def test_a_429_asking_for_longer_than_the_longest_backoff_is_raised_at_once(monkeypatch):
    slept = []
    monkeypatch.setattr("anchor_sdk._http.time.sleep", slept.append)
    server = Server(error(429, "too_many_auth_failures", headers={"Retry-After": "55"}), ok({"id": "task_1"}))
    with pytest.raises(RateLimitError) as raised:
        client(server, max_retries=3).tasks.get("task_1")
    assert raised.value.retry_after == 55 and slept == [] and len(server.requests) == 1
