"""The bundled demo site and the dashboard's "Change the demo site" control."""

import io
from pathlib import Path

import pytest
from django.core.management import call_command

from tasks_app.demo.seed import demo_seed
from tasks_app.demo.site import demo_site_version
from tasks_app.models import AuditLog, Run

pytestmark = pytest.mark.django_db


def test_the_demo_site_serves_two_versions(client):
    demo_seed()
    assert b'id="submit"' in client.get("/demo-site/contact").content
    assert client.get("/demo-site/catalog").status_code == 200
    from tasks_app.demo.site import demo_site_set_version

    demo_site_set_version(2)
    page = client.get("/demo-site/contact").content
    assert b'id="submit"' not in page and b'data-testid="send"' in page
    moved = client.get("/demo-site/catalog")
    assert moved.status_code == 404 and b"<h1>Page not found</h1>" in moved.content  # the site's own 404 page
    assert client.get("/demo-site/products").status_code == 200
    assert b'href="/demo-site/products"' in client.get("/demo-site/").content


def test_seeding_twice_makes_the_demo_tasks_once():
    first = demo_seed()
    again = demo_seed()
    assert [t.pk for t in first] == [t.pk for t in again]
    assert {t.config["auto_deploy"] for t in first} == {True, False}
    assert all(t.self_healing for t in first)


def test_the_queue_shows_the_control_and_it_switches_the_site_and_starts_runs(client, member, queues):
    demo_seed()
    client.force_login(member)
    assert b"Change the demo site to version 2" in client.get("/").content
    response = client.post("/demo-site/control/", {"version": "2", "next": "/"})
    assert response.status_code == 302
    assert demo_site_version() == 2
    assert Run.objects.filter(status=Run.Status.QUEUED).count() == 2
    switches = AuditLog.objects.filter(action="demo.switch").exclude(actor_label="system via demo")  # the seed's reset
    assert [(log.actor_label, log.actor, log.data["version"]) for log in switches] == [
        (f"{member.username} via dashboard", member, 2)
    ] * 3  # the site, and each demo task
    assert switches.filter(object_type="demo_site", object_id="2").count() == 1


def test_switching_the_demo_site_is_audited_even_with_no_demo_task(client, member):
    client.force_login(member)
    assert client.post("/demo-site/control/", {"version": "2", "next": "/"}).status_code == 302
    [switch] = AuditLog.objects.filter(action="demo.switch")
    assert (switch.object_type, switch.object_id, switch.actor) == ("demo_site", "2", member)


def test_the_command_switches_the_site_and_audits_it_like_the_dashboard(queues):
    tasks = demo_seed()
    out = io.StringIO()
    call_command("demo_site", "2", stdout=out)
    assert "now on version 2" in out.getvalue() and demo_site_version() == 2
    switches = AuditLog.objects.filter(action="demo.switch", data__version=2)
    assert sorted(log.object_id for log in switches) == sorted([*(task.pk for task in tasks), "2"])
    assert {(log.actor_label, log.data["version"]) for log in switches} == {("system via demo", 2)}
    assert not Run.objects.exists()  # without --run nothing starts


def test_the_control_refuses_bad_versions_and_anonymous_users(client, member):
    demo_seed()
    assert client.post("/demo-site/control/", {"version": "2"}).status_code == 302  # to the login page
    assert demo_site_version() == 1
    client.force_login(member)
    assert client.post("/demo-site/control/", {"version": "7"}).status_code == 400
    assert client.post("/demo-site/control/", {"version": "x"}).status_code == 400
    assert demo_site_version() == 1


def test_the_control_is_a_live_part_that_re_renders_for_the_page_it_is_on(client, member):
    demo_seed()
    client.force_login(member)
    page = client.get("/", {"status": "pending_review"}).content.decode()
    assert 'id="demo-control" data-live-src="/demo-site/panel/?next=/%3Fstatus%3Dpending_review" data-live-on="demo."' in page
    from tasks_app.demo.site import demo_site_set_version

    demo_site_set_version(2)
    panel = client.get("/demo-site/panel/", {"next": "/?status=pending_review"}).content.decode()
    assert "on <strong>version 2</strong>" in panel and "Change the demo site to version 1" in panel
    assert 'name="next" value="/?status=pending_review"' in panel
    assert 'name="next" value="/"' in client.get("/demo-site/panel/", {"next": "https://evil.example/"}).content.decode()


def test_browsers_asking_for_favicon_ico_get_the_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"] == "/static/favicon.svg"
    from django.contrib.staticfiles import finders

    assert "<svg" in Path(finders.find("favicon.svg")).read_text()
