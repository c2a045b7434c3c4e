"""Query strings: a parameter an endpoint does not take, or one given twice, is refused and named."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from anchor_site.api import refuse_unknown_query_params
from tasks_app import services
from tasks_app.api_keys import api_key_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def key(django_user_model):
    return api_key_create(user=django_user_model.objects.create_user("mo"), name="mo")[1]


def _get(client, key, path):
    return client.get(f"/api/v1{path}", headers={"Authorization": f"Bearer {key}"})


def test_a_misspelt_filter_is_refused_instead_of_listing_everything(client, key):
    response = _get(client, key, "/healing-events?stauts=pending_review")

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_input", "stauts")
    assert error["message"] == (
        "is not a query parameter of this endpoint (it takes: cursor, error_type, limit, status, task)"
    )


def test_a_parameter_given_twice_is_refused_rather_than_one_of_them_used(client, key):
    response = _get(client, key, "/tasks?limit=5&limit=50")

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid_input", "message": "is given more than once", "field": "limit",
    }


def test_an_action_that_takes_no_query_parameters_says_so(client, key):
    task = services.task_create(name="t", code='def run(page, params):\n    return {}\n')

    response = client.post(
        f"/api/v1/tasks/{task.pk}/runs?dry_run=1", "{}", content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "dry_run"
    assert "(it takes: none)" in response.json()["error"]["message"]
    assert not task.runs.exists()


def test_known_parameters_still_work_and_a_missing_key_is_still_401(client, key):
    assert _get(client, key, "/healing-events?status=pending_review&limit=5").status_code == 200
    assert client.get("/api/v1/healing-events?stauts=x").status_code == 401


def test_an_endpoint_declaring_a_query_parameter_without_query_fails_at_start_up():
    def listing(request, status: str | None = None):
        return []

    with pytest.raises(ImproperlyConfigured, match=r"listing: declare status with Query\(\.\.\.\)"):
        refuse_unknown_query_params(listing)
