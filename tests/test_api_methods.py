"""HEAD works wherever GET does; a method a path does not take (OPTIONS included) is the API's JSON 405."""

import json

import pytest
from django.http import JsonResponse
from django.test import RequestFactory

from anchor_site.middleware import ApiMethodsMiddleware
from tasks_app import services
from tasks_app.api_keys import api_key_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def auth(django_user_model):
    key = api_key_create(user=django_user_model.objects.create_user("mo"), name="mo")[1]
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("path, status", [
    ("/api/v1/tasks", 200),
    ("/api/v1/tasks/{task}", 200),
    ("/api/v1/tasks/{task}/versions?limit=1", 200),
    ("/api/v1/healing-events?stauts=x", 400),
    ("/api/v1/tasks/task_doesnotexist", 404),
    ("/api/v1/tasks?limit=%00", 400),
    ("/api/v1/openapi.json", 200),
])
def test_head_answers_as_get_does_without_the_body(client, auth, path, status):
    task = services.task_create(name="t", code="def run(page, params):\n    return {}\n")
    path = path.format(task=task.pk)

    get, head = client.get(path, headers=auth), client.head(path, headers=auth)

    assert get.status_code == head.status_code == status, head
    assert head.headers == get.headers  # Content-Length too, where GET's answer has one
    assert get.content and head.content == b""


def test_head_without_a_key_is_the_same_401_as_get(client):
    get, head = client.get("/api/v1/tasks"), client.head("/api/v1/tasks")
    assert get.status_code == head.status_code == 401
    assert head.headers == get.headers
    assert head["WWW-Authenticate"] == 'Bearer realm="anchor"'


def test_head_where_get_is_not_taken_is_a_405_allowing_what_is(client, auth):
    response = client.head("/api/v1/healing-events/heal_x/approve", headers=auth)
    assert response.status_code == 405
    assert response["Allow"] == "POST"


@pytest.mark.parametrize("path, allowed", [
    ("/api/v1/tasks", {"GET", "HEAD", "POST"}),
    ("/api/v1/tasks/task_x", {"GET", "HEAD", "PATCH", "DELETE"}),
    ("/api/v1/runs/run_x/cancel", {"POST"}),
])
def test_options_is_a_json_405_whose_allow_lists_head_with_get(client, auth, path, allowed):
    response = client.options(path, headers=auth)
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert set(response["Allow"].split(", ")) == allowed


def test_the_head_body_is_dropped_by_the_app_not_left_to_the_server():
    # The test client drops a HEAD body itself, so the middleware is called directly here.
    seen = []

    def view(request):
        seen.append(request.method)
        response = JsonResponse({"data": []})
        response["Content-Length"] = str(len(response.content))
        return response

    response = ApiMethodsMiddleware(view)(RequestFactory().head("/api/v1/tasks"))
    assert seen == ["GET"]
    assert response.content == b""
    assert response["Content-Length"] == str(len(json.dumps({"data": []})))
