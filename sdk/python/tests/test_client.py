"""The Python client against a scripted HTTP transport: requests, typed results, errors and retries.

The end-to-end behaviour against a real server is tested in the product's suite (tests/test_seed_snippets.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
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
    WebhookDelivery,
    WebhookEndpoint,
    WebhookVerificationError,
    verify_webhook,
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


def test_healing_events_limit_zero_asks_for_nothing_and_a_negative_limit_is_refused():
    server = Server(ok({"data": [], "next_cursor": None}))
    assert client(server).tasks.get_healing_events(task_id="task_1", limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        client(server).tasks.get_healing_events(task_id="task_1", limit=-5)
    assert server.requests == []


def test_healing_events_stop_at_the_limit():
    event = {"id": "heal_1", "timestamp": "2026-01-02T03:04:05Z", "error_type": "timeout", "status": "deployed"}
    server = Server(ok({"data": [event, {**event, "id": "heal_2"}], "next_cursor": "c1"}))
    events = client(server).tasks.get_healing_events(task_id="task_1", limit=2)
    assert [e.id for e in events] == ["heal_1", "heal_2"]
    assert len(server.requests) == 1 and server.requests[0].url.params["limit"] == "2"


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


def test_cancel_posts_to_the_run_and_returns_it_with_the_time_the_cancel_was_asked_for():
    server = Server(ok({"id": "run_1", "status": "running", "cancel_requested_at": "2026-01-02T03:04:05Z"}, status=202))
    run = client(server).runs.cancel("run_1")
    assert (server.requests[0].method, server.requests[0].url.path) == ("POST", "/api/v1/runs/run_1/cancel")
    assert run.status == "running" and not run.finished
    assert run.cancel_requested_at.isoformat() == "2026-01-02T03:04:05+00:00"


def test_healing_events_list_is_the_review_queue_across_tasks_or_one_tasks_heals():
    server = Server(ok({"data": [{"id": "heal_1", "status": "pending_review"}], "next_cursor": None}))
    anchor = client(server)
    page = anchor.healing_events.list(status="pending_review", limit=10)
    assert [event.id for event in page] == ["heal_1"]
    assert server.requests[0].url.path == "/api/v1/healing-events"
    assert dict(server.requests[0].url.params) == {"status": "pending_review", "limit": "10"}
    anchor.healing_events.list("task_1", error_type="timeout")
    assert dict(server.requests[1].url.params) == {"task": "task_1", "error_type": "timeout"}


def test_deploy_version_sends_its_reason_only_when_given():
    server = Server(ok(TASK))
    anchor = client(server)
    anchor.tasks.deploy_version("task_1", 1)
    assert server.requests[0].url.path == "/api/v1/tasks/task_1/versions/1/deploy"
    assert server.body(0) == {}
    anchor.tasks.deploy_version("task_1", 1, reason="v2 broke checkout")
    assert server.body(1) == {"reason": "v2 broke checkout"}


@pytest.mark.parametrize("call", [
    lambda anchor: anchor.runs.cancel(""),
    lambda anchor: anchor.tasks.get(None),
    lambda anchor: anchor.healing_events.approve("  "),
])
def test_a_missing_id_is_a_type_error_before_any_request(call):
    server = Server(ok(TASK))
    with pytest.raises(TypeError, match="an id is required"):
        call(client(server))
    assert server.requests == []


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


# -- webhooks ---------------------------------------------------------------------------------------------

ENDPOINT = {
    "id": "wh_1",
    "url": "https://hooks.example.test/anchor",
    "description": "ops channel",
    "event_types": ["healing.deployed"],
    "task": None,
    "enabled": True,
    "disabled_reason": "",
    "disabled_at": None,
    "consecutive_failures": 0,
    "previous_secret_expires_at": None,
    "created_at": "2026-01-02T03:04:05Z",
}
DELIVERY = {
    "id": 7,
    "endpoint": "wh_1",
    "message_id": "msg_1",
    "event_type": "webhook.test",
    "attempt": 1,
    "trigger": "test",
    "status": "pending",
    "response_code": None,
    "response_excerpt": "",
    "duration_ms": None,
    "error": "",
    "payload": {"type": "webhook.test", "timestamp": "2026-01-02T03:04:05Z", "data": {"endpoint": "wh_1"}},
    "next_attempt_at": "2026-01-02T03:04:05Z",
    "sent_at": None,
    "created_at": "2026-01-02T03:04:05Z",
}


def test_webhook_create_sends_only_the_given_fields_and_returns_the_secret_once():
    server = Server(ok({**ENDPOINT, "secret": "whsec_c2VjcmV0"}, 201))
    endpoint = client(server).webhooks.create(url="https://hooks.example.test/anchor", event_types=["healing.deployed"])
    assert (server.requests[0].method, server.requests[0].url.path) == ("POST", "/api/v1/webhooks")
    assert server.body() == {"url": "https://hooks.example.test/anchor", "event_types": ["healing.deployed"]}
    assert isinstance(endpoint, WebhookEndpoint)
    assert (endpoint.id, endpoint.secret, endpoint.event_types, endpoint.enabled) == ("wh_1", "whsec_c2VjcmV0", ["healing.deployed"], True)
    assert endpoint.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert "whsec_" not in repr(endpoint)  # a secret does not end up in logs


def test_webhook_create_with_a_task_and_a_description():
    server = Server(ok({**ENDPOINT, "task": "task_1", "secret": "whsec_c2VjcmV0"}, 201))
    endpoint = client(server).webhooks.create(url="https://h.test/", task="task_1", description="ops channel")
    assert server.body() == {"url": "https://h.test/", "task": "task_1", "description": "ops channel"}
    assert endpoint.task == "task_1"


def test_webhook_list_get_and_delete():
    server = Server(ok({"data": [ENDPOINT], "next_cursor": "c1"}), ok({"data": [{**ENDPOINT, "id": "wh_2"}], "next_cursor": None}))
    anchor = client(server)
    page = anchor.webhooks.list(limit=1)
    assert (server.requests[0].method, server.requests[0].url.path) == ("GET", "/api/v1/webhooks")
    assert server.requests[0].url.params["limit"] == "1"
    assert [e.id for e in page.auto_paging_iter()] == ["wh_1", "wh_2"]
    assert page[0].secret is None
    assert server.requests[1].url.params["cursor"] == "c1"

    server = Server(ok(ENDPOINT))
    assert client(server).webhooks.get("wh_1").url == "https://hooks.example.test/anchor"
    assert (server.requests[0].method, server.requests[0].url.path) == ("GET", "/api/v1/webhooks/wh_1")

    server = Server((204, None, {}))
    assert client(server).webhooks.delete("wh_1") is None
    assert (server.requests[0].method, server.requests[0].url.path) == ("DELETE", "/api/v1/webhooks/wh_1")


def test_webhook_update_patches_only_what_is_given_and_null_for_every_task():
    server = Server(ok({**ENDPOINT, "enabled": True, "task": None}))
    endpoint = client(server).webhooks.update("wh_1", enabled=True, task=None)
    assert (server.requests[0].method, server.requests[0].url.path) == ("PATCH", "/api/v1/webhooks/wh_1")
    assert server.body() == {"enabled": True, "task": None}
    assert (endpoint.enabled, endpoint.task) == (True, None)

    server = Server(ok(ENDPOINT))
    client(server).webhooks.update("wh_1", url="https://new.test/", event_types=[], description="")
    assert server.body() == {"url": "https://new.test/", "event_types": [], "description": ""}


def test_webhook_rotate_secret_returns_the_new_secret():
    answer = {"secret": "whsec_bmV3", "previous_secret_expires_at": "2026-01-03T03:04:05Z"}
    server = Server(ok(answer))
    anchor = client(server)
    rotated = anchor.webhooks.rotate_secret("wh_1")
    assert (server.requests[0].method, server.requests[0].url.path) == ("POST", "/api/v1/webhooks/wh_1/rotate-secret")
    assert server.body() is None  # the server's default grace period
    assert rotated.secret == "whsec_bmV3"
    assert rotated.previous_secret_expires_at == datetime(2026, 1, 3, 3, 4, 5, tzinfo=timezone.utc)
    assert "whsec_" not in repr(rotated)
    anchor.webhooks.rotate_secret("wh_1", grace_seconds=0)
    assert server.body() == {"grace_seconds": 0}


def test_webhook_send_test_and_redeliver_return_the_queued_attempt():
    server = Server(ok(DELIVERY, 202))
    anchor = client(server)
    delivery = anchor.webhooks.send_test("wh_1")
    assert (server.requests[0].method, server.requests[0].url.path) == ("POST", "/api/v1/webhooks/wh_1/test")
    assert server.requests[0].content == b""
    assert isinstance(delivery, WebhookDelivery)
    assert (delivery.id, delivery.message_id, delivery.trigger, delivery.status) == (7, "msg_1", "test", "pending")
    assert delivery.payload["data"] == {"endpoint": "wh_1"}
    assert delivery.next_attempt_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    again = anchor.webhooks.redeliver("wh_1", 7)
    assert (server.requests[1].method, server.requests[1].url.path) == ("POST", "/api/v1/webhooks/wh_1/deliveries/7/redeliver")
    assert again.message_id == "msg_1"


def test_webhook_deliveries_are_a_filtered_page():
    server = Server(
        ok({"data": [{**DELIVERY, "status": "failed"}], "next_cursor": "c1"}),
        ok({"data": [{**DELIVERY, "id": 6, "status": "failed"}], "next_cursor": None}),
    )
    page = client(server).webhooks.list_deliveries("wh_1", status="failed", message_id="msg_1", limit=1)
    request = server.requests[0]
    assert (request.method, request.url.path) == ("GET", "/api/v1/webhooks/wh_1/deliveries")
    assert dict(request.url.params) == {"status": "failed", "message_id": "msg_1", "limit": "1"}
    assert [d.id for d in page.auto_paging_iter()] == [7, 6]
    assert dict(server.requests[1].url.params) == {"status": "failed", "message_id": "msg_1", "limit": "1", "cursor": "c1"}


def test_webhook_ids_are_escaped_in_paths():
    server = Server(ok(DELIVERY, 202))
    client(server).webhooks.send_test("../admin")
    assert server.requests[0].url.raw_path == b"/api/v1/webhooks/..%2Fadmin/test"


# -- verify_webhook -----------------------------------------------------------------------------------------

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"the previous secret, 32 bytes!!").decode()
NOW = 1767225600  # 2026-01-01T00:00:00Z
BODY = '{"type":"healing.deployed","timestamp":"2026-01-01T00:00:00+00:00","data":{"id":"heal_1","status":"deployed"}}'


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """The signature Anchor sends, computed from the Standard Webhooks spec (not from the code under test)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(*signatures: str, timestamp: int = NOW, msg_id: str = "msg_1") -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": " ".join(signatures)}


def test_verify_webhook_accepts_what_the_products_signing_library_signs():
    standardwebhooks = pytest.importorskip("standardwebhooks")
    body = json.dumps({"type": "webhook.test", "timestamp": "2026-01-01T00:00:00+00:00",
                       "data": {"endpoint": "wh_1", "message": "naïve café ✓"}}, separators=(",", ":"), ensure_ascii=False)
    at = datetime.now(timezone.utc)
    # As healing_app/webhooks.signature_headers does it.
    signature = standardwebhooks.Webhook(SECRET).sign(msg_id="msg_1", timestamp=at, data=body)
    message = verify_webhook(body.encode(), headers(signature, timestamp=int(at.timestamp())), SECRET)
    assert message["data"]["message"] == "naïve café ✓"
    # ...and a message the SDK accepts, the library accepts too (same reading of the headers).
    assert standardwebhooks.Webhook(SECRET).verify(body, headers(signature, timestamp=int(at.timestamp()))) == message


def test_verify_webhook_returns_the_parsed_message_and_reads_headers_in_any_case():
    signed = {"Webhook-Id": "msg_1", "WEBHOOK-TIMESTAMP": str(NOW), "Webhook-Signature": sign(SECRET, "msg_1", NOW, BODY)}
    message = verify_webhook(BODY.encode(), signed, SECRET, now=NOW + 10)
    assert message == {"type": "healing.deployed", "timestamp": "2026-01-01T00:00:00+00:00",
                       "data": {"id": "heal_1", "status": "deployed"}}
    assert verify_webhook(BODY, signed, SECRET, now=datetime.fromtimestamp(NOW, timezone.utc)) == message  # str body


def test_verify_webhook_during_a_rotation_accepts_either_secret():
    both = headers(sign(SECRET, "msg_1", NOW, BODY), sign(OLD_SECRET, "msg_1", NOW, BODY))
    assert verify_webhook(BODY, both, SECRET, now=NOW)["type"] == "healing.deployed"
    assert verify_webhook(BODY, both, OLD_SECRET, now=NOW)["type"] == "healing.deployed"
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    with pytest.raises(WebhookVerificationError):
        verify_webhook(BODY, both, other, now=NOW)


def test_verify_webhook_refuses_a_changed_body():
    tampered = BODY.replace('"deployed"}', '"rejected"}')
    with pytest.raises(WebhookVerificationError) as caught:
        verify_webhook(tampered, headers(sign(SECRET, "msg_1", NOW, BODY)), SECRET, now=NOW)
    assert caught.value.code == "invalid_signature"
    assert "raw body" in str(caught.value)


def test_verify_webhook_refuses_a_wrong_secret_a_changed_id_or_timestamp():
    wrong = "whsec_" + base64.b64encode(b"y" * 32).decode()
    signature = sign(SECRET, "msg_1", NOW, BODY)
    for args in [
        (headers(signature), wrong),
        (headers(signature, msg_id="msg_2"), SECRET),
        (headers(signature, timestamp=NOW + 1), SECRET),
    ]:
        with pytest.raises(WebhookVerificationError) as caught:
            verify_webhook(BODY, *args, now=NOW)
        assert caught.value.code == "invalid_signature"


def test_verify_webhook_refuses_a_timestamp_more_than_the_tolerance_off():
    old = headers(sign(SECRET, "msg_1", NOW - 301, BODY), timestamp=NOW - 301)
    with pytest.raises(WebhookVerificationError) as caught:
        verify_webhook(BODY, old, SECRET, now=NOW)
    assert caught.value.code == "timestamp_too_old"
    assert verify_webhook(BODY, old, SECRET, now=NOW, tolerance=600)["type"] == "healing.deployed"
    edge = headers(sign(SECRET, "msg_1", NOW - 300, BODY), timestamp=NOW - 300)
    assert verify_webhook(BODY, edge, SECRET, now=NOW)["type"] == "healing.deployed"

    future = headers(sign(SECRET, "msg_1", NOW + 301, BODY), timestamp=NOW + 301)
    with pytest.raises(WebhookVerificationError) as caught:
        verify_webhook(BODY, future, SECRET, now=NOW)
    assert caught.value.code == "timestamp_too_new"

    # Without `now`, the current time: a message signed long ago is refused.
    with pytest.raises(WebhookVerificationError) as caught:
        verify_webhook(BODY, headers(sign(SECRET, "msg_1", NOW, BODY)), SECRET)
    assert caught.value.code == "timestamp_too_old"


@pytest.mark.parametrize(
    "changes, code",
    [
        ({"webhook-id": ""}, "missing_header"),
        ({"webhook-signature": None}, "missing_header"),
        ({"webhook-timestamp": "1767225600.5"}, "invalid_timestamp"),
        ({"webhook-timestamp": "soon"}, "invalid_timestamp"),
        ({"webhook-timestamp": "9" * 5000}, "invalid_timestamp"),
        ({"webhook-signature": "v1a,c2lnbmF0dXJl v1,not*base64 nocomma"}, "invalid_signature"),
    ],
)
def test_verify_webhook_refuses_missing_or_malformed_headers(changes, code):
    given = {**headers(sign(SECRET, "msg_1", NOW, BODY)), **changes}
    given = {name: value for name, value in given.items() if value is not None}
    with pytest.raises(WebhookVerificationError) as caught:
        verify_webhook(BODY, given, SECRET, now=NOW)
    assert caught.value.code == code


def test_verify_webhook_skips_signatures_it_cannot_read_and_accepts_a_matching_one():
    given = headers("v1a,c2lnbmF0dXJl", "garbage", "v1,%%%", sign(SECRET, "msg_1", NOW, BODY))
    assert verify_webhook(BODY, given, SECRET, now=NOW)["data"]["id"] == "heal_1"


def test_verify_webhook_refuses_a_bad_secret_or_a_parsed_body():
    with pytest.raises(ValueError):
        verify_webhook(BODY, headers(sign(SECRET, "msg_1", NOW, BODY)), "whsec_not base64!", now=NOW)
    with pytest.raises(ValueError):
        verify_webhook(BODY, headers(sign(SECRET, "msg_1", NOW, BODY)), "whsec_", now=NOW)
    with pytest.raises(TypeError):
        verify_webhook(json.loads(BODY), headers(sign(SECRET, "msg_1", NOW, BODY)), SECRET, now=NOW)
