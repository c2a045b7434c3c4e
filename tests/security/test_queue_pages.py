"""django-rq's queue pages empty queues and stop running jobs, unaudited: superusers only, not every staff member."""

from __future__ import annotations

import django_rq
import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.django_db(transaction=True)  # django-rq enqueues when the transaction commits
def test_staff_without_superuser_rights_cannot_empty_a_queue(client, django_user_model, queues):
    staff = django_user_model.objects.create_user("stan", is_staff=True)
    queue = django_rq.get_queue("runs")
    queue.enqueue("tasks_app.jobs.run_task", "run_x", job_id="run-run_x")
    client.force_login(staff)

    response = client.post("/django-rq/queues/0/empty/")

    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert queue.job_ids == ["run-run_x"]
    assert client.get("/django-rq/").status_code == 302


def test_a_superuser_sees_the_queues(client, boss, queues):
    client.force_login(boss)
    response = client.get("/django-rq/")
    assert response.status_code == 200 and b"runs" in response.content
