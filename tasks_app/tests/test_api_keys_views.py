"""The dashboard's API keys page at /api-keys/: one's own keys only, a new key shown once, revoking with a
confirmation, someone else's key a 404."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tasks_app.api_keys import api_key_create
from tasks_app.models import ApiKey, AuditLog

pytestmark = pytest.mark.django_db


@pytest.fixture
def sam(django_user_model):
    return django_user_model.objects.create_user("sam", password="pw-sam-123!")


@pytest.fixture
def signed_in(client, member):
    client.force_login(member)
    return client


def _api(client, raw: str):
    return client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {raw}"})


def _create(signed_in, name: str = "CI"):
    return signed_in.post(reverse("api_keys:create"), {"name": name})


def test_the_pages_need_a_login_and_an_anonymous_post_makes_no_key(client, member):
    key, _ = api_key_create(user=member, name="mine")
    for url in (reverse("api_keys:list"), reverse("api_keys:created"), reverse("api_keys:revoke", args=[key.pk])):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/"), url
    for url in (reverse("api_keys:create"), reverse("api_keys:revoke", args=[key.pk])):
        assert client.post(url, {"name": "anon"})["Location"].startswith("/accounts/login/")
    key.refresh_from_db()
    assert ApiKey.objects.count() == 1 and key.is_active
    assert not AuditLog.objects.exclude(action="api_key.create", actor=member).exists()


def test_the_dashboard_links_to_the_page(signed_in):
    assert f'href="{reverse("api_keys:list")}"' in signed_in.get(reverse("queue")).content.decode()
    page = signed_in.get(reverse("api_keys:list")).content.decode()
    assert f'href="{reverse("api_keys:list")}" aria-current="page"' in page


def test_the_list_shows_only_ones_own_keys_and_never_a_whole_key(client, signed_in, member, sam, admin_user):
    mine, my_raw = api_key_create(user=member, name="my laptop")
    theirs, _ = api_key_create(user=sam, name="sams ci")
    page = signed_in.get(reverse("api_keys:list")).content.decode()
    assert "my laptop" in page and f"{mine.hint}…" in page
    assert "sams ci" not in page and theirs.hint not in page and theirs.pk not in page
    assert my_raw not in page

    client.force_login(admin_user)  # staff too: others' keys are the admin's business
    staff_page = client.get(reverse("api_keys:list")).content.decode()
    assert "my laptop" not in staff_page and "sams ci" not in staff_page


def test_the_list_shows_when_a_key_was_last_used_and_that_it_was_revoked(client, signed_in, member):
    used, raw = api_key_create(user=member, name="used")
    assert _api(client, raw).status_code == 200
    page = signed_in.get(reverse("api_keys:list")).content.decode()
    used.refresh_from_db()
    assert f'datetime="{used.last_used_at.isoformat()}"' in page
    signed_in.post(reverse("api_keys:revoke", args=[used.pk]))
    assert "revoked" in signed_in.get(reverse("api_keys:list")).content.decode()


def test_a_new_key_is_shown_once_on_an_uncached_page_and_works_against_the_api(client, signed_in, member):
    posted = _create(signed_in, "CI")
    assert posted.status_code == 302  # Post/Redirect/Get
    assert posted["Location"] == reverse("api_keys:created")
    shown = signed_in.get(posted["Location"])
    assert shown.status_code == 200 and "no-store" in shown["Cache-Control"]
    raw = shown.context["raw"]
    assert raw.startswith(ApiKey.PREFIX) and raw in shown.content.decode()
    for response in (posted, shown):  # never in a cookie (a message's) nor in an address
        assert all(raw not in morsel.value for morsel in response.cookies.values())
    assert raw not in posted["Location"]

    key = ApiKey.objects.get()
    assert (key.user, key.name, key.hashed) == (member, "CI", ApiKey.hash(raw))
    assert _api(client, raw).status_code == 200
    log = AuditLog.objects.get(action="api_key.create")
    assert (log.actor, log.actor_label, log.object_id, log.data) == (member, "mo via dashboard", key.pk, {"name": "CI"})
    assert raw not in str(log.data)


def test_reloading_the_new_keys_page_makes_no_second_key_and_does_not_show_it_again(signed_in):
    posted = _create(signed_in)
    raw = signed_in.get(posted["Location"]).context["raw"]
    reloaded = signed_in.get(posted["Location"])
    assert reloaded.status_code == 200
    assert raw not in reloaded.content.decode() and 'id="key-shown-once"' in reloaded.content.decode()
    assert ApiKey.objects.count() == 1
    assert AuditLog.objects.filter(action="api_key.create").count() == 1
    assert raw not in signed_in.get(reverse("api_keys:list")).content.decode()


def test_the_new_keys_page_takes_only_get_so_nothing_else_takes_the_key(signed_in):
    posted = _create(signed_in)
    assert signed_in.head(posted["Location"]).status_code == 405
    assert signed_in.post(posted["Location"]).status_code == 405
    assert signed_in.get(posted["Location"]).context["raw"]


def test_a_key_revoked_before_its_page_was_shown_is_not_shown(signed_in):
    posted = _create(signed_in)
    signed_in.post(reverse("api_keys:revoke", args=[ApiKey.objects.get().pk]))
    page = signed_in.get(posted["Location"])
    assert page.context["raw"] == "" and 'id="key-shown-once"' in page.content.decode()


def test_the_create_address_visited_with_get_leads_to_the_page_its_form_is_on(signed_in):
    response = signed_in.get(reverse("api_keys:create"))
    assert (response.status_code, response["Location"]) == (302, reverse("api_keys:list"))
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_a_bad_name_is_a_form_error_on_the_name_field_and_makes_no_key(signed_in, name):
    response = _create(signed_in, name)
    assert response.status_code == 400
    assert list(response.context["form"].errors) == ["name"]
    assert 'id="id_name_error"' in response.content.decode()
    assert not ApiKey.objects.exists()
    assert not AuditLog.objects.exists()


def test_revoking_asks_first_then_the_key_gets_401_and_is_audited(client, signed_in, member):
    key, raw = api_key_create(user=member, name="old laptop")
    url = reverse("api_keys:revoke", args=[key.pk])
    confirm = signed_in.get(url)
    assert confirm.status_code == 200 and "Revoke this API key?" in confirm.content.decode()
    key.refresh_from_db()
    assert key.is_active  # a GET only asks

    response = signed_in.post(url)
    assert (response.status_code, response["Location"]) == (302, reverse("api_keys:list"))
    key.refresh_from_db()
    assert not key.is_active
    assert _api(client, raw).status_code == 401
    log = AuditLog.objects.get(action="api_key.revoke")
    assert (log.actor, log.actor_label, log.object_id) == (member, "mo via dashboard", key.pk)

    signed_in.post(url)  # again: nothing more to do, nothing more to audit
    assert AuditLog.objects.filter(action="api_key.revoke").count() == 1


def test_someone_elses_key_is_a_404_whoever_asks_and_nothing_is_audited(client, signed_in, sam, admin_user):
    key, raw = api_key_create(user=sam, name="sams ci")
    url = reverse("api_keys:revoke", args=[key.pk])
    before = AuditLog.objects.count()
    assert signed_in.get(url).status_code == 404
    assert signed_in.post(url).status_code == 404
    client.force_login(admin_user)  # staff revoke others' keys in the admin, not here
    assert client.post(url).status_code == 404
    key.refresh_from_db()
    assert key.is_active
    assert AuditLog.objects.count() == before
    assert _api(client, raw).status_code == 200
