import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v2/tasks", "/api/", "/api/v1/"])
def test_unknown_api_paths_answer_json_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("method, path", [
    ("post", "/api/v1/webhooks/"), ("patch", "/api/v1/webhooks/wh_x/"), ("delete", "/api/v1/tasks/task_x/"),
    ("post", "/api/v2/tasks"),
])
def test_unknown_api_paths_answer_json_404_to_writes_too_not_a_csrf_page(method, path):
    """API clients send no CSRF token; a mistyped path (a trailing slash) must still get the API's JSON error."""
    response = getattr(Client(enforce_csrf_checks=True), method)(path, "{}", content_type="application/json")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_found"
    if path.endswith("/"):
        assert f"try {path.rstrip('/')}" in error["message"]


def test_api_docs_are_served_without_a_cdn(client, django_user_model):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    page = response.content.decode()
    assert "cdn" not in page.lower()
    assert "/static/ninja/" in page


@pytest.mark.parametrize("method, path, allowed", [
    ("put", "/api/v1/tasks", "GET, HEAD, POST"),
    ("delete", "/api/v1/tasks", "GET, HEAD, POST"),
    ("get", "/api/v1/healing-events/heal_x/approve", "POST"),
])
def test_a_method_an_endpoint_does_not_take_is_a_json_405_with_allow(client, method, path, allowed):
    response = getattr(client, method)(path)
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert sorted(response["Allow"].split(", ")) == sorted(allowed.split(", "))


@pytest.mark.parametrize("query, field", [
    ("message_id=%00", "message_id"),
    ("limit=5&cursor=ab%00cd", "cursor"),
    ("na%00me=1", "name"),
])
def test_a_nul_in_a_query_parameter_is_a_json_400_naming_it(client, query, field):
    response = client.get(f"/api/v1/webhooks/wh_x/deliveries?{query}")
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "invalid_input", "message": "must not contain NUL characters", "field": field}


def test_a_nul_in_a_pages_query_parameter_is_a_400_not_a_500(client):
    response = client.get("/tasks/?status=%00")
    assert response.status_code == 400
    assert b"status must not contain NUL" in response.content
