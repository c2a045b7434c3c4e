import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v2/tasks", "/api/"])
def test_unknown_api_paths_answer_json_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_api_docs_are_served_without_a_cdn(client, django_user_model):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    page = response.content.decode()
    assert "cdn" not in page.lower()
    assert "/static/ninja/" in page


@pytest.mark.parametrize("method, path, allowed", [
    ("put", "/api/v1/tasks", "GET, POST"),
    ("delete", "/api/v1/tasks", "GET, POST"),
    ("get", "/api/v1/healing-events/heal_x/approve", "POST"),
])
def test_a_method_an_endpoint_does_not_take_is_a_json_405_with_allow(client, method, path, allowed):
    response = getattr(client, method)(path)
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert sorted(response["Allow"].split(", ")) == sorted(allowed.split(", "))
