"""A URL whose id could not be an id (a NUL, 10 kB) is a 404 on every page and endpoint, never a 500."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def api_headers(admin_user):
    from tasks_app.api_keys import api_key_create

    return {"Authorization": f"Bearer {api_key_create(user=admin_user, name='ids')[1]}"}

NOT_IDS = ["%00", "task_%00x", "x" * 41, "a%20b"]
PAGES = ["/tasks/{}/", "/tasks/{}/config/", "/tasks/{}/part/runs/", "/events/{}/", "/events/{}/screenshot.png",
         "/events/{}/part/diff/", "/webhooks/{}/", "/webhooks/{}/edit/",
         "/webhooks/{}/secret/", "/api-keys/{}/revoke/"]


def test_dashboard_pages(client, admin_user):
    client.force_login(admin_user)
    answers = {page.format(bad): client.get(page.format(bad)).status_code for page in PAGES for bad in NOT_IDS}
    assert answers == dict.fromkeys(answers, 404)


ENDPOINTS = ["/api/v1/tasks/{}", "/api/v1/tasks/{}/healing-events", "/api/v1/runs/{}", "/api/v1/healing-events/{}",
             "/api/v1/webhooks/{}"]


def test_api_endpoints(client, api_headers):
    answers = {}
    for endpoint in ENDPOINTS:
        for bad in NOT_IDS:
            response = client.get(endpoint.format(bad), headers=api_headers)
            answers[endpoint.format(bad)] = (response.status_code, response.json()["error"]["code"])
    assert answers == dict.fromkeys(answers, (404, "not_found"))


def test_a_real_id_still_resolves(client, admin_user, api_headers):
    from tasks_app import services

    task = services.task_create(name="t", prompt="p", code="def run(page, params):\n    return {}\n")
    client.force_login(admin_user)
    assert client.get(f"/tasks/{task.pk}/").status_code == 200
    assert client.get(f"/api/v1/tasks/{task.pk}", headers=api_headers).json()["id"] == task.pk


def test_a_nul_anywhere_in_a_path_is_a_404_even_on_routes_the_product_does_not_own(client, admin_user):
    client.force_login(admin_user)
    from django.contrib.contenttypes.models import ContentType

    task_type = ContentType.objects.get(app_label="tasks_app", model="task").pk
    for path in [f"/admin/r/{task_type}/%00/", "/admin/tasks_app/task/%00/history/", "/demo-site/%00"]:
        assert client.get(path).status_code == 404, path
    api = client.get("/api/v1/tasks/%00")
    assert (api.status_code, api.json()["error"]["code"]) == (404, "not_found")
