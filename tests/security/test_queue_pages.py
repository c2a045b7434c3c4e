"""django-rq's queue pages empty queues and stop running jobs: superusers only, not every staff member, at
/django-rq/ and nowhere else (django-rq would also serve them inside the admin), and what they change is audited."""

from __future__ import annotations

import django_rq
import pytest
from django_rq.settings import get_queues_list

pytestmark = pytest.mark.django_db


def _index_of(name: str) -> int:
    return next(i for i, queue in enumerate(get_queues_list()) if queue["name"] == name)


@pytest.mark.django_db(transaction=True)  # django-rq enqueues when the transaction commits
@pytest.mark.parametrize("prefix", ["/django-rq/", "/admin/django_rq/dashboard/"])
def test_staff_without_superuser_rights_cannot_empty_a_queue(client, django_user_model, queues, prefix):
    staff = django_user_model.objects.create_user("stan", is_staff=True)
    queue = django_rq.get_queue("runs")
    queue.enqueue("tasks_app.jobs.run_task", "run_x", job_id="run-run_x")
    client.force_login(staff)

    response = client.post(f"{prefix}queues/{_index_of('runs')}/empty/")

    assert response.status_code in (302, 404)
    assert queue.job_ids == ["run-run_x"]
    assert client.get(prefix).status_code in (302, 404)


def test_a_superuser_sees_the_queues(client, boss, queues):
    client.force_login(boss)
    response = client.get("/django-rq/")
    assert response.status_code == 200 and b"runs" in response.content


@pytest.mark.django_db(transaction=True)
def test_what_a_superuser_changes_on_the_queue_pages_is_audited(client, boss, queues):
    from tasks_app.models import AuditLog

    queue = django_rq.get_queue("runs")
    queue.enqueue("tasks_app.jobs.run_task", "run_x", job_id="run-run_x")
    client.force_login(boss)
    index = _index_of("runs")
    assert client.get(f"/django-rq/queues/{index}/empty/").status_code == 200  # the confirmation page: no change
    assert not AuditLog.objects.exists()

    assert client.post(f"/django-rq/queues/{index}/empty/").status_code == 302
    assert queue.job_ids == []
    entry = AuditLog.objects.get()
    assert (entry.action, entry.actor, entry.actor_label) == ("rq.clear_queue", boss, "boss via django-rq")
    assert (entry.object_type, entry.object_id) == ("rq_queue", str(index))
