"""The tasks API: create, list, get, update, delete, and code versions (list, get, diff, deploy)."""

from __future__ import annotations

import json

import pytest
from django.test import RequestFactory

from healing_app.models import HealingEvent
from healing_app.permissions import reviewers_group
from tasks_app.api_keys import api_key_create
from tasks_app.api_schemas import _cursor_scope, _encode_cursor
from tasks_app.models import AuditLog, CodeVersion, Run, Task
from tests.browser import scenario

pytestmark = pytest.mark.django_db

CODE_V1 = '''def run(page, params):
    page.goto(params["base_url"] + "/contact")
    page.click("#submit")
    return {"ok": True}
'''
CODE_V2 = CODE_V1.replace("#submit", "button[data-test=send]")


class Api:
    """The Django test client speaking JSON with an API key."""

    def __init__(self, client, raw_key: str):
        self.client = client
        self.headers = {"Authorization": f"Bearer {raw_key}"}

    def call(self, method: str, path: str, body=None, *, raw: str | None = None):
        data = raw if raw is not None else json.dumps(body) if body is not None else ""
        return getattr(self.client, method)(
            f"/api/v1{path}", data=data, content_type="application/json", headers=self.headers
        )

    def get(self, path):
        return self.call("get", path)

    def post(self, path, body=None, **kw):
        return self.call("post", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.call("patch", path, body, **kw)

    def delete(self, path):
        return self.call("delete", path)


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("mo")  # no password: hashing one costs a second per test


@pytest.fixture
def api(client, owner):
    _, raw = api_key_create(user=owner, name="tests")
    return Api(client, raw)


def _create(api, **fields):
    # A task needs code or a prompt to write it from; the prompt is the seed's.
    response = api.post("/tasks", {"name": "form_submission", "prompt": "Fill out the contact form on example.com", **fields})
    assert response.status_code == 201, response.content
    return response.json()


def test_create_returns_the_task_with_the_full_config_defaults_filled_in(api):
    body = _create(
        api,
        prompt="Fill out the contact form on example.com",
        self_healing=True,
        self_healing_config={"auto_deploy": True, "trigger_on": ["timeout", "element_not_found"]},
    )
    assert body["id"].startswith("task_")
    assert body["self_healing"] is True
    assert body["self_healing_config"] == {
        "auto_deploy": True,
        "trigger_on": ["timeout", "element_not_found"],
        "max_attempts": 3,
        "validation_required": True,
    }
    assert body["current_version"] is None
    assert set(body) == {
        "id", "name", "prompt", "self_healing", "self_healing_config", "current_version", "code_status",
        "params", "secret_keys", "healing_agent", "schedule", "monthly_budget_usd", "created_at", "updated_at",
    }
    assert (body["schedule"], body["monthly_budget_usd"]) == ("", None)
    assert Task.objects.get(pk=body["id"]).prompt == "Fill out the contact form on example.com"


def test_create_with_code_makes_it_version_1_and_current(api):
    body = _create(api, code=CODE_V1, params={"base_url": "http://127.0.0.1:9"})
    assert body["current_version"] == 1
    assert body["code_status"] == "ready"
    assert body["params"] == {"base_url": "http://127.0.0.1:9"}
    version = CodeVersion.objects.get(task_id=body["id"])
    assert (version.number, version.source, version.code) == (1, "initial", CODE_V1)


def test_secrets_are_write_only_and_only_their_names_come_back(api):
    body = _create(api, secrets={"password": "hunter2-very-secret"})
    assert body["secret_keys"] == ["password"]
    for response in (api.get(f"/tasks/{body['id']}"), api.get("/tasks")):
        assert "hunter2-very-secret" not in response.content.decode()
    assert Task.objects.get(pk=body["id"]).secrets == {"password": "hunter2-very-secret"}
    api.patch(f"/tasks/{body['id']}", {"secrets": {"token": "t0ken-value"}})
    assert api.get(f"/tasks/{body['id']}").json()["secret_keys"] == ["token"]


def test_get_returns_the_task_and_unknown_ids_are_a_json_404(api):
    body = _create(api)
    assert api.get(f"/tasks/{body['id']}").json() == body
    response = api.get("/tasks/task_doesnotexist")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_list_pages_by_cursor_newest_first_without_gaps_or_repeats(api):
    created = [_create(api, name=f"task {i}")["id"] for i in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = api.get(f"/tasks{query}").json()
        seen += [task["id"] for task in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(created))


@pytest.mark.parametrize(
    "query, field, message",
    [
        ("?cursor=not-a-cursor", "cursor", "is not a cursor this API returned"),
        ("?limit=0", "limit", "must be at least 1"),
        ("?limit=101", "limit", "must be at most 100"),
        ("?limit=abc", "limit", "must be an integer"),
    ],
)
def test_bad_paging_parameters_are_a_400_naming_them_in_plain_words(api, query, field, message):
    response = api.get(f"/tasks{query}")
    assert response.status_code == 400
    assert (response.json()["error"]["field"], response.json()["error"]["message"]) == (field, message)


def test_a_setting_out_of_its_range_is_refused_naming_the_bound(api):
    response = api.post("/tasks", {"name": "t", "self_healing_config": {"max_attempts": 11}})
    error = response.json()["error"]
    assert (error["field"], error["message"]) == ("self_healing_config.max_attempts", "must be at most 10")


def test_update_replaces_only_the_config_keys_given(api):
    body = _create(
        api,
        self_healing=True,
        self_healing_config={"auto_deploy": True, "validation_required": False, "max_attempts": 5},
    )
    response = api.patch(f"/tasks/{body['id']}", {"self_healing_config": {"max_attempts": 2}})
    assert response.status_code == 200, response.content
    assert response.json()["self_healing_config"] == {
        "auto_deploy": True,
        "trigger_on": ["timeout", "element_not_found", "navigation_error"],
        "max_attempts": 2,
        "validation_required": False,
    }


def test_update_changes_only_the_fields_given(api):
    body = _create(api, prompt="p", self_healing=True, params={"a": 1})
    updated = api.patch(f"/tasks/{body['id']}", {"self_healing": False}).json()
    assert updated["self_healing"] is False
    assert {k: updated[k] for k in ("name", "prompt", "params", "self_healing_config")} == {
        k: body[k] for k in ("name", "prompt", "params", "self_healing_config")
    }


def test_update_with_code_adds_a_manual_version_and_deploys_it(api):
    body = _create(api, code=CODE_V1)
    updated = api.patch(f"/tasks/{body['id']}", {"code": CODE_V2}).json()
    assert updated["current_version"] == 2
    version = CodeVersion.objects.get(task_id=body["id"], number=2)
    assert (version.source, version.parent.number) == ("manual", 1)


def test_schedule_and_monthly_budget_are_set_read_and_cleared_through_the_api(api):
    body = _create(api, code=CODE_V1, schedule="*/15 * * * *", monthly_budget_usd=2.5)
    assert (body["schedule"], body["monthly_budget_usd"]) == ("*/15 * * * *", 2.5)
    task = Task.objects.get(pk=body["id"])
    assert (task.schedule, str(task.monthly_budget_usd)) == ("*/15 * * * *", "2.5000")
    cleared = api.patch(f"/tasks/{body['id']}", {"schedule": "", "monthly_budget_usd": None}).json()
    assert (cleared["schedule"], cleared["monthly_budget_usd"]) == ("", None)
    assert api.get(f"/tasks/{body['id']}").json()["monthly_budget_usd"] is None
    negative_zero = api.patch(f"/tasks/{body['id']}", {"monthly_budget_usd": -0.0}).json()
    assert str(negative_zero["monthly_budget_usd"]) == "0.0"


def test_delete_removes_the_task(api):
    body = _create(api)
    response = api.delete(f"/tasks/{body['id']}")
    assert response.status_code == 204
    assert api.get(f"/tasks/{body['id']}").status_code == 404
    assert api.delete(f"/tasks/{body['id']}").status_code == 404


def test_deleting_a_task_deletes_the_webhook_endpoints_filtered_to_it_and_names_them_in_the_audit_log(api):
    from healing_app.models import WebhookEndpoint

    body = _create(api)
    only_it = WebhookEndpoint.objects.create(url="https://hooks.example.com/a", task_id=body["id"], secret="x")
    every_task = WebhookEndpoint.objects.create(url="https://hooks.example.com/b", secret="x")

    assert api.delete(f"/tasks/{body['id']}").status_code == 204

    assert list(WebhookEndpoint.objects.values_list("pk", flat=True)) == [every_task.pk]
    entry = AuditLog.objects.get(action="task.delete", object_id=body["id"])
    assert entry.data == {"name": "form_submission", "webhook_endpoints": [only_it.pk]}


def test_a_task_is_not_deleted_while_it_runs_or_heals_and_is_once_that_ended(api):
    body = _create(api, code=CODE_V1)
    task = Task.objects.get(pk=body["id"])
    run = Run.objects.create(task=task, version=task.current_version, status=Run.Status.RUNNING)

    response = api.delete(f"/tasks/{body['id']}")

    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "task_busy", "field": None, "message": f"{run.pk} is running; cancel it, or delete the task when it has ended",
    }
    Run.objects.filter(pk=run.pk).update(status=Run.Status.FAILED)
    event = HealingEvent.objects.create(task=task, run=run, original_version=task.current_version,
                                        error_type="timeout", status=HealingEvent.Status.VALIDATING)
    response = api.delete(f"/tasks/{body['id']}")
    assert response.status_code == 409
    assert response.json()["error"]["message"] == f"{event.pk} is still healing the task; delete it when that heal has ended"
    HealingEvent.objects.filter(pk=event.pk).update(status=HealingEvent.Status.FAILED)
    Run.objects.create(task=task, version=task.current_version)  # queued: goes with the task, unstarted
    assert api.delete(f"/tasks/{body['id']}").status_code == 204
    assert not Run.objects.filter(task_id=body["id"]).exists()


def test_only_the_owner_or_a_reviewer_may_delete_a_task(api, client, django_user_model):
    body = _create(api)
    _, raw = api_key_create(user=django_user_model.objects.create_user("eve"), name="other member")
    response = Api(client, raw).delete(f"/tasks/{body['id']}")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert Task.objects.filter(pk=body["id"]).exists()

    reviewer = django_user_model.objects.create_user("rev")
    reviewer.groups.add(reviewers_group())
    _, raw = api_key_create(user=reviewer, name="reviewer")
    assert Api(client, raw).delete(f"/tasks/{body['id']}").status_code == 204
    assert not Task.objects.filter(pk=body["id"]).exists()


def test_once_a_task_holds_secrets_only_its_owner_or_a_reviewer_may_change_where_they_go(api, client, django_user_model):
    """Code reads the secrets, and params and prompt say where they go: changing any is as good as reading them."""
    body = _create(api, secrets={"password": "hunter2"}, code="def run(page, params):\n    return {}\n")
    _, raw = api_key_create(user=django_user_model.objects.create_user("eve"), name="other member")
    eve = Api(client, raw)
    leak = "def run(page, params):\n    return {'x': params['secrets']['password'][::-1]}\n"
    changes = (
        {"code": leak}, {"params": {"base_url": "https://evil.test"}}, {"secrets": {"password": "mine"}},
        {"prompt": "Sign in at https://evil.test/sso and check the balance"},  # where the agent types them
    )
    for change in changes:
        response = eve.patch(f"/tasks/{body['id']}", change)
        assert response.status_code == 403, change
        assert response.json()["error"]["message"] == (
            "the task holds secrets: only its owner, a reviewer or staff may change its code, prompt, params or secrets"
        )
    refused = eve.post(f"/tasks/{body['id']}/runs", {"params": {"base_url": "https://evil.test"}})
    assert refused.status_code == 403 and "run it with params of your own" in refused.json()["error"]["message"]
    assert not Run.objects.exists()

    assert eve.patch(f"/tasks/{body['id']}", {"name": "renamed by eve"}).status_code == 200  # the rest stays open
    assert eve.post(f"/tasks/{body['id']}/runs").status_code == 202
    assert api.patch(f"/tasks/{body['id']}", {"code": leak}).status_code == 200  # the owner may
    without_secrets = _create(api)
    assert eve.patch(f"/tasks/{without_secrets['id']}", {"code": leak}).status_code == 200


def test_on_a_task_holding_secrets_only_its_owner_or_a_reviewer_may_switch_review_off(api, client, django_user_model):
    """auto_deploy on, or validation off, lets machine-written code reach the secrets with no person reading it."""
    body = _create(api, secrets={"password": "hunter2"}, self_healing=True)
    _, raw = api_key_create(user=django_user_model.objects.create_user("eve"), name="other member")
    eve = Api(client, raw)
    for change in ({"auto_deploy": True}, {"validation_required": False}):
        response = eve.patch(f"/tasks/{body['id']}", {"self_healing_config": change})
        assert response.status_code == 403, change
        assert response.json()["error"]["message"] == (
            "the task holds secrets: only its owner, a reviewer or staff may let its heals deploy without a reviewer or a "
            "validation run"
        )
    assert Task.objects.get(pk=body["id"]).config["auto_deploy"] is False

    assert eve.patch(f"/tasks/{body['id']}", {"self_healing_config": {"max_attempts": 5}}).status_code == 200
    assert api.patch(f"/tasks/{body['id']}", {"self_healing_config": {"auto_deploy": True}}).status_code == 200
    assert eve.patch(f"/tasks/{body['id']}", {"self_healing_config": {"auto_deploy": False}}).status_code == 200
    without_secrets = _create(api)
    assert eve.patch(f"/tasks/{without_secrets['id']}", {"self_healing_config": {"auto_deploy": True}}).status_code == 200

    # Healing off, auto_deploy left on by the owner: turning healing on is switching review off too.
    dormant = _create(api, secrets={"password": "hunter2"}, self_healing=False, self_healing_config={"auto_deploy": True})
    assert eve.patch(f"/tasks/{dormant['id']}", {"self_healing": True}).status_code == 403
    assert Task.objects.get(pk=dormant["id"]).self_healing is False

    # Nor can review be switched off while healing is off, for the owner to switch healing back on unawares.
    paused = _create(api, secrets={"password": "hunter2"}, self_healing=False)
    for change in ({"auto_deploy": True}, {"validation_required": False}):
        assert eve.patch(f"/tasks/{paused['id']}", {"self_healing_config": change}).status_code == 403, change
    assert Task.objects.get(pk=paused["id"]).config["auto_deploy"] is False


def test_changes_are_audited_under_the_keys_owner(api, owner):
    body = _create(api)
    api.patch(f"/tasks/{body['id']}", {"prompt": "changed"})
    entries = AuditLog.objects.filter(object_id=body["id"]).order_by("created_at")
    assert [e.action for e in entries] == ["task.create", "task.update"]
    assert all(e.actor == owner for e in entries)
    assert all(e.actor_label.startswith("mo via api key key_") for e in entries)


BAD_CONFIG = [
    ({"self_healing_config": {"auto_deploy": True, "retries": 2}}, "self_healing_config.retries"),
    ({"self_healing_config": {"trigger_on": ["timeout", "dom_changed"]}}, "self_healing_config.trigger_on.1"),
    ({"self_healing_config": {"trigger_on": "timeout"}}, "self_healing_config.trigger_on"),
    ({"self_healing_config": {"max_attempts": 0}}, "self_healing_config.max_attempts"),
    ({"self_healing_config": {"max_attempts": 11}}, "self_healing_config.max_attempts"),
    ({"self_healing_config": {"max_attempts": "3"}}, "self_healing_config.max_attempts"),
    ({"self_healing_config": {"max_attempts": 2.5}}, "self_healing_config.max_attempts"),
    ({"self_healing_config": {"auto_deploy": "yes"}}, "self_healing_config.auto_deploy"),
    ({"self_healing_config": {"auto_deploy": None}}, "self_healing_config.auto_deploy"),
    ({"self_healing_config": ["timeout"]}, "self_healing_config"),
    ({"self_healing": "true"}, "self_healing"),
    ({"self_healing": 1}, "self_healing"),
    ({"name": 123}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"prompt": ["a"]}, "prompt"),
    ({"params": [1, 2]}, "params"),
    ({"params": {"secrets": {"a": "b"}}}, "params.secrets"),
    ({"secrets": {"password": 1234}}, "secrets.password"),
    ({"healing_agent": "gpt-9"}, "healing_agent"),
    ({"self_healing_confg": {"auto_deploy": True}}, "self_healing_confg"),
    ({"prompt": "nul \x00 byte"}, "prompt"),
    ({"params": {"k": "nul \x00 byte"}}, "params.k"),
    # Python's JSON parser reads NaN and Infinity, which no JSON column stores.
    ({"params": {"a": float("nan")}}, "params.a"),
    ({"params": {"list": [1, float("inf")]}}, "params.list.1"),
    ({"secrets": {"": "x"}}, "secrets"),
    ({"secrets": {"a b {{}}": "x"}}, "secrets"),
    ({"secrets": {"n" * 65: "x"}}, "secrets"),
    ({"secrets": {f"s{i}": "x" for i in range(51)}}, "secrets"),
    ({"secrets": {"token": "x" * 8193}}, "secrets.token"),
    ({"schedule": "every hour"}, "schedule"),
    ({"schedule": "0 9 30 2 *"}, "schedule"),
    ({"schedule": "* " * 60}, "schedule"),
    ({"monthly_budget_usd": -1}, "monthly_budget_usd"),
    ({"monthly_budget_usd": 1e12}, "monthly_budget_usd"),
    ({"monthly_budget_usd": "lots"}, "monthly_budget_usd"),
    ({"monthly_budget_usd": 999999.99999}, "monthly_budget_usd"),  # in range, but more than 4 places
    ({"monthly_budget_usd": 0.00004}, "monthly_budget_usd"),  # was rounded to a budget of 0
]


@pytest.mark.parametrize("fields, field", BAD_CONFIG)
def test_bad_input_on_create_is_a_400_naming_the_field(api, fields, field):
    response = api.post("/tasks", {"name": "t", **fields})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_input", field)
    assert error["message"]
    assert Task.objects.count() == 0


@pytest.mark.parametrize("fields, field", BAD_CONFIG)
def test_bad_input_on_update_is_a_400_and_changes_nothing(api, fields, field):
    body = _create(api, self_healing=True)
    response = api.patch(f"/tasks/{body['id']}", fields)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field
    assert api.get(f"/tasks/{body['id']}").json() == body


def test_a_task_with_neither_code_nor_a_prompt_is_a_400_on_prompt(api, settings):
    settings.OPENAI_API_KEY = settings.OPENAI_BASE_URL = ""
    for body in ({"name": "t"}, {"name": "t", "prompt": ""}, {"name": "t", "prompt": "   "}):
        response = api.post("/tasks", body)
        assert response.status_code == 400, response.content
        assert response.json()["error"] == {
            "code": "invalid_input", "message": "required when there is no code: the code is written from it", "field": "prompt",
        }
    assert Task.objects.count() == 0
    # A prompt alone is the seed's own way to create a task: it waits for code when no LLM is configured.
    waiting = _create(api, prompt="Extract product prices from the catalog")
    assert waiting["code_status"] == "needs_code"
    response = api.patch(f"/tasks/{waiting['id']}", {"prompt": ""})
    assert (response.status_code, response.json()["error"]["field"]) == (400, "prompt")
    assert api.get(f"/tasks/{waiting['id']}").json() == waiting
    with_code = _create(api, code=CODE_V1)
    assert api.patch(f"/tasks/{with_code['id']}", {"prompt": ""}).json()["prompt"] == ""


def test_params_over_64_kb_are_a_400_on_create_and_update(api):
    """2 MB of params used to be taken, and then made every page of GET /tasks 2 MB."""
    big = {"k": "x" * 2_000_000}
    expected = {"code": "invalid_input", "message": "must be at most 64 KB as JSON (these are 1954 KB)", "field": "params"}
    response = api.post("/tasks", {"name": "t", "code": CODE_V1, "params": big})
    assert (response.status_code, response.json()["error"]) == (400, expected)
    task = _create(api, code=CODE_V1, params={"base_url": "http://127.0.0.1:9"})
    response = api.patch(f"/tasks/{task['id']}", {"params": big})
    assert (response.status_code, response.json()["error"]) == (400, expected)
    assert len(api.get("/tasks").content) < 10_000


def test_a_number_too_big_for_a_float_is_a_400_naming_it(api):
    response = api.post("/tasks", raw='{"name": "t", "params": {"a": 1e999}}')
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == "params.a"
    assert "finite" in response.json()["error"]["message"]


@pytest.mark.parametrize("method, path, raw, field", [
    ("post", "/tasks", '{"name": "t", "params": {"a": "\\ud800"}}', "params.a"),
    ("post", "/tasks", '{"name": "t", "params": {"\\udfff": 1}}', "params.?"),
    ("patch", "/tasks/{id}", '{"params": {"list": ["ok", "\\udfff"]}}', "params.list.1"),
    ("post", "/tasks/{id}/runs", '{"params": {"a": "\\ud800"}}', "params.a"),
])
def test_a_lone_surrogate_in_params_is_a_400_naming_it(api, method, path, raw, field):
    task = _create(api)
    response = api.call(method, path.format(id=task["id"]), raw=raw)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field
    assert "surrogate" in response.json()["error"]["message"]
    assert api.get(f"/tasks/{task['id']}").json() == task


def test_params_nested_deeper_than_any_real_ones_are_a_400_naming_them(api):
    deep = "[" * 90 + "1" + "]" * 90  # within the body's limit, past the params' own
    response = api.post("/tasks", raw='{"name": "t", "params": {"deep": ' + deep + "}}")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"].startswith("params.deep.0.0"), response.content
    assert "nested" in response.json()["error"]["message"]


def test_brackets_in_strings_do_not_count_as_nesting(api):
    text = "[{" * 3000 + '\\"' + "}]" * 3000
    response = api.post("/tasks", raw='{"name": "t", "prompt": "p", "params": {"text": "' + text + '"}}')
    assert response.status_code == 201, response.content
    assert response.json()["params"]["text"].startswith("[{[{")


def test_code_too_deeply_nested_to_parse_is_a_400_naming_the_code(api):
    code = "def run(page, params):\n    return 1\nx = " + "+".join(["1"] * 6000) + "\n"
    response = api.post("/tasks", {"name": "t", "code": code})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == "code"
    assert Task.objects.count() == 0


def _cursor(path: str, value, key) -> str:
    """A cursor for `path`'s list (no filters) at (value, key), made as the API makes one."""
    return _encode_cursor(value, key, _cursor_scope(RequestFactory().get(f"/api/v1{path}")))


def test_a_cursor_whose_key_cannot_be_a_versions_id_is_a_400(api, versioned):
    cursor = _cursor(f"/tasks/{versioned}/versions", 2, "abc")
    response = api.get(f"/tasks/{versioned}/versions?cursor={cursor}")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == "cursor"


@pytest.mark.parametrize("key", ["task_\x00", "task_\ud800"])
@pytest.mark.parametrize("path", ["/tasks", "/healing-events"])
def test_a_cursor_whose_key_the_database_cannot_take_is_a_400(api, key, path):
    cursor = _cursor(path, "2026-11-27T05:53:29+00:00", key)
    response = api.get(f"{path}?cursor={cursor}")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == "cursor"


def test_a_body_over_the_upload_limit_is_a_413_naming_the_body(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = api.post("/tasks", {"name": "big", "params": {"a": "b" * 20_000}})
    assert response.status_code == 413
    assert response.json()["error"] == {
        "code": "body_too_large", "message": "the request body is larger than 10000 bytes", "field": "body"
    }
    assert Task.objects.count() == 0


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_cursor_whose_date_leaves_the_calendar_in_utc_is_a_400(api, stamp):
    cursor = _cursor("/tasks", stamp, "task_x")
    response = api.get(f"/tasks?cursor={cursor}")
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "cursor"


def _events(task_id: str, count: int) -> None:
    for status in ["failed", "rejected"] * count:
        HealingEvent.objects.create(task_id=task_id, error_type="timeout", status=status)


def test_a_cursor_is_refused_by_another_endpoint_rather_than_paging_it(api):
    task = _create(api)["id"]
    _create(api)
    _events(task, 2)
    cursor = api.get("/healing-events?limit=2").json()["next_cursor"]

    for path in ("/tasks", f"/tasks/{task}/healing-events", f"/tasks/{task}/runs"):
        response = api.get(f"{path}?cursor={cursor}")
        assert response.status_code == 400, (path, response.content)
        assert response.json()["error"] == {
            "code": "invalid_input", "field": "cursor",
            "message": "belongs to another list; pass back the next_cursor of this list's previous page",
        }


def test_a_cursor_is_refused_for_another_tasks_list(api):
    first, second = _create(api, code=CODE_V1)["id"], _create(api, code=CODE_V1)["id"]
    for task in (first, second):
        api.patch(f"/tasks/{task}", {"code": CODE_V2})
    cursor = api.get(f"/tasks/{first}/versions?limit=1").json()["next_cursor"]

    assert api.get(f"/tasks/{first}/versions?cursor={cursor}").status_code == 200
    response = api.get(f"/tasks/{second}/versions?cursor={cursor}")
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "cursor"


def test_a_cursor_is_refused_under_other_filters_but_a_new_page_size_is_fine(api):
    task = _create(api)["id"]
    _events(task, 3)
    cursor = api.get("/healing-events?status=failed&limit=1").json()["next_cursor"]

    response = api.get(f"/healing-events?status=rejected&cursor={cursor}")
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid_input", "field": "cursor",
        "message": "was made with other filters; send the same filters with every page of a list",
    }
    assert api.get(f"/healing-events?cursor={cursor}").status_code == 400
    rest = api.get(f"/healing-events?limit=5&cursor={cursor}&status=failed")
    assert rest.status_code == 200
    assert [event["status"] for event in rest.json()["data"]] == ["failed", "failed"]


def test_an_update_that_changes_nothing_is_not_audited_and_params_are_audited_by_name(api):
    body = _create(api)
    assert api.patch(f"/tasks/{body['id']}", {}).status_code == 200
    assert not AuditLog.objects.filter(action="task.update", object_id=body["id"]).exists()
    api.patch(f"/tasks/{body['id']}", {"params": {"email": "ada@example.com", "base_url": "http://x"}})
    entry = AuditLog.objects.get(action="task.update", object_id=body["id"])
    assert entry.data == {"params": ["base_url", "email"]}


def test_code_that_does_not_parse_is_a_400_naming_the_line(api):
    response = api.post("/tasks", {"name": "t", "code": "def run(page, params):\n    page.click('#a'\n"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "code"
    assert "line 2" in error["message"] or "line 3" in error["message"]


def test_code_without_a_run_function_is_a_400(api):
    response = api.post("/tasks", {"name": "t", "code": "print('hello')\n"})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "code"


@pytest.mark.parametrize(
    "raw, field", [("{not json", "body"), ("[1, 2]", "body"), ('"a string"', "body"), ("{}", "name")]
)
def test_malformed_bodies_are_a_400(api, raw, field):
    response = api.post("/tasks", raw=raw)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field


@pytest.mark.parametrize("method, path, raw, field", [
    ("post", "/tasks", '{"name": "a", "name": "b"}', "name"),
    ("post", "/tasks", '{"name": "a", "self_healing_config": {"max_attempts": 2, "max_attempts": 5}}',
     "self_healing_config.max_attempts"),
    ("post", "/tasks", '{"name": "a", "params": {"list": [{"x": 1}, {"y": 1, "x": 1, "y": 2}]}}', "params.list.1.y"),
    # The inner object is dropped by the outer repeat: still the outer key is named.
    ("post", "/tasks", '{"name": "a", "params": {"p": {"x": {"k": 1, "k": 2}, "x": 3}}}', "params.p.x"),
    ("patch", "/tasks/{id}", '{"params": {"k": 1, "k": 1}}', "params.k"),
    ("post", "/tasks/{id}/runs", '{"params": {}, "params": {"k": 1}}', "params"),
])
def test_a_key_given_twice_in_a_body_is_a_400_naming_it(api, method, path, raw, field):
    task = _create(api)
    response = api.call(method, path.format(id=task["id"]), raw=raw)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == {"code": "invalid_input", "message": "is given more than once", "field": field}
    assert api.get(f"/tasks/{task['id']}").json() == task
    assert (Task.objects.count(), Run.objects.count()) == (1, 0)


def test_the_same_key_in_two_objects_of_a_body_is_fine(api):
    body = _create(api, params={"a": {"k": 1}, "b": [{"k": 2}, {"k": 3}]})
    assert body["params"] == {"a": {"k": 1}, "b": [{"k": 2}, {"k": 3}]}


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("raw, message", [
    ('{"name": "t", "params": {"n": ' + "7" * 5000 + "}}", "a number has too many digits"),
    ('{"name": "t", "params": {"n": -' + "7" * 5000 + "}}", "a number has too many digits"),
    ('{"name": "t", "params": ' + "[" * 2000 + "]" * 2000 + "}", "the body is nested more than 100 levels deep"),
    ('{"name": "t", "params": ' + '{"a": ' * 2000 + "1" + "}" * 2000 + "}", "the body is nested more than 100 levels deep"),
])
def test_a_body_past_pythons_own_limits_is_a_400_in_plain_words(api, settings, debug, raw, message):
    settings.DEBUG = debug  # which used to add the interpreter's own message, naming sys.set_int_max_str_digits()
    response = api.post("/tasks", raw=raw)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == {"code": "invalid_input", "message": message, "field": "body"}
    assert Task.objects.count() == 0


def test_a_body_that_is_not_utf8_is_still_a_plain_parse_error(api):
    response = api.client.post("/api/v1/tasks", b'{"name": "\xff"}', content_type="application/json", headers=api.headers)
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "invalid_input", "message": "Cannot parse request body", "field": "body"}


def test_a_missing_name_is_a_400_naming_it(api):
    response = api.post("/tasks", {"prompt": "no name"})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid_input",
        "message": "is required",
        "field": "name",
        "details": [{"field": "name", "message": "is required"}],
    }


# -- versions ------------------------------------------------------------------------------------------


@pytest.fixture
def versioned(api):
    body = _create(api, code=CODE_V1)
    api.patch(f"/tasks/{body['id']}", {"code": CODE_V2})
    return body["id"]


def test_versions_are_listed_newest_first(api, versioned):
    page = api.get(f"/tasks/{versioned}/versions").json()
    assert [(v["number"], v["source"], v["is_current"]) for v in page["data"]] == [(2, "manual", True), (1, "initial", False)]
    assert page["next_cursor"] is None
    assert page["data"][0]["parent_version"] == 1
    assert page["data"][0]["author"] == "mo"


def test_a_version_comes_with_its_code(api, versioned):
    body = api.get(f"/tasks/{versioned}/versions/1").json()
    assert (body["number"], body["code"]) == (1, CODE_V1)
    assert api.get(f"/tasks/{versioned}/versions/9").status_code == 404
    assert api.get(f"/tasks/{versioned}/versions/0").status_code == 400


def test_a_diff_compares_a_version_with_its_parent_by_default(api, versioned):
    body = api.get(f"/tasks/{versioned}/versions/2/diff").json()
    assert (body["from_version"], body["to_version"], body["added"], body["removed"]) == (1, 2, 1, 1)
    assert '-    page.click("#submit")' in body["unified"]
    assert '+    page.click("button[data-test=send]")' in body["unified"]
    assert "diff-side" in body["side_by_side_html"]
    assert api.get(f"/tasks/{versioned}/versions/1/diff?against=2").json()["from_version"] == 2


def test_a_first_versions_diff_shows_all_its_code_as_added(api, versioned):
    body = api.get(f"/tasks/{versioned}/versions/1/diff").json()
    assert (body["from_version"], body["to_version"], body["added"], body["removed"]) == (None, 1, 4, 0)
    assert body["unified"].startswith("--- /dev/null\n+++ v1\n")


@pytest.fixture
def reviewer_api(client, owner):
    owner.groups.add(reviewers_group())
    _, raw = api_key_create(user=owner, name="reviewer")
    return Api(client, raw)


def test_deploying_an_older_version_rolls_back_without_new_code(reviewer_api, versioned, owner):
    response = reviewer_api.post(f"/tasks/{versioned}/versions/1/deploy")
    assert response.status_code == 200, response.content
    assert response.json()["current_version"] == 1
    assert CodeVersion.objects.filter(task_id=versioned).count() == 2
    entry = AuditLog.objects.filter(action="version.deploy", object_id=versioned).latest("created_at")
    assert entry.actor == owner and (entry.data["version"], entry.data["previous_version"]) == (1, 2)


def test_a_deploy_may_say_why_and_anything_else_in_its_body_is_refused_by_name(reviewer_api, versioned):
    refused = reviewer_api.post(f"/tasks/{versioned}/versions/1/deploy", {"version": 1})
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "version"
    assert Task.objects.get(pk=versioned).current_version.number == 2
    response = reviewer_api.post(f"/tasks/{versioned}/versions/1/deploy", {"reason": "v2 broke checkout"})
    assert response.status_code == 200 and response.json()["current_version"] == 1
    assert AuditLog.objects.get(action="version.deploy", object_id=versioned).data["reason"] == "v2 broke checkout"


def test_deploying_the_current_version_changes_nothing_and_is_not_audited(reviewer_api, versioned):
    response = reviewer_api.post(f"/tasks/{versioned}/versions/2/deploy")
    assert response.status_code == 200 and response.json()["current_version"] == 2
    assert not AuditLog.objects.filter(action="version.deploy", object_id=versioned).exists()


def test_deploying_is_for_reviewers_only(api, versioned):
    response = api.post(f"/tasks/{versioned}/versions/1/deploy")
    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "permission_denied", "message": "only reviewers can deploy a version", "field": None
    }
    assert Task.objects.get(pk=versioned).current_version.number == 2


def test_a_healed_draft_waiting_for_review_is_deployed_by_approving_it_not_by_hand(reviewer_api, versioned):
    event_id = scenario.event_pending_make(versioned)
    draft = HealingEvent.objects.get(pk=event_id).new_version.number
    response = reviewer_api.post(f"/tasks/{versioned}/versions/{draft}/deploy")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "awaiting_review" and response.json()["error"]["event"] == event_id
    assert Task.objects.get(pk=versioned).current_version.number == 2
    # Approving it deploys it and records the review.
    response = reviewer_api.post(f"/healing-events/{event_id}/approve", {"comment": "looks right"})
    assert response.status_code == 200, response.content
    assert Task.objects.get(pk=versioned).current_version.number == draft
    assert HealingEvent.objects.get(pk=event_id).reviews.get().decision == "approved"


def test_a_patch_repeating_the_current_code_adds_no_version_and_keeps_a_pending_heal(reviewer_api, versioned):
    """The SDKs retry a PATCH that timed out: sent twice, the same code must not become a new version, which
    would supersede every heal waiting for review."""
    event_id = scenario.event_pending_make(versioned)
    current = Task.objects.get(pk=versioned).current_version
    response = reviewer_api.patch(f"/tasks/{versioned}", {"code": current.code})
    assert response.status_code == 200, response.content
    assert Task.objects.get(pk=versioned).current_version == current
    assert not AuditLog.objects.filter(action="task.update", object_id=versioned, data__has_key="new_version")\
        .exclude(data__new_version=2).exists()
    assert reviewer_api.post(f"/healing-events/{event_id}/approve").status_code == 200
