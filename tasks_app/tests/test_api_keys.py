"""The API key services: who may create and revoke which key, and what a name may be."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied

from tasks_app.api_keys import api_key_create, api_key_revoke, api_keys_for
from tasks_app.audit import Actor
from tasks_app.config import InputError
from tasks_app.models import ApiKey, AuditLog

pytestmark = pytest.mark.django_db


@pytest.fixture
def sam(django_user_model):
    return django_user_model.objects.create_user("sam")


def test_a_user_cannot_create_a_key_acting_as_someone_else(member, sam):
    with pytest.raises(PermissionDenied):
        api_key_create(user=sam, name="as sam", actor=Actor(user=member, via="dashboard"))
    assert not ApiKey.objects.exists() and not AuditLog.objects.exists()


def test_a_superuser_and_the_system_may_create_a_key_for_someone_else(admin_user, sam):
    api_key_create(user=sam, name="from root", actor=Actor(user=admin_user, via="admin"))
    api_key_create(user=sam, name="from the command", actor=Actor(via="create_api_key command"))
    assert list(api_keys_for(user=sam).values_list("name", flat=True)) == ["from the command", "from root"]


def test_a_name_longer_than_the_column_is_refused_naming_the_field(member):
    with pytest.raises(InputError) as refused:
        api_key_create(user=member, name="x" * 101)
    assert refused.value.field == "name"
    assert not ApiKey.objects.exists()


def test_a_user_cannot_revoke_someone_elses_key(member, sam):
    key, _ = api_key_create(user=sam, name="sams")
    with pytest.raises(PermissionDenied):
        api_key_revoke(key=key, actor=Actor(user=member, via="dashboard"))
    key.refresh_from_db()
    assert key.is_active
    assert not AuditLog.objects.filter(action="api_key.revoke").exists()


def test_staff_allowed_to_change_keys_may_revoke_anyones(django_user_model, sam):
    staff = django_user_model.objects.create_user("viv", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="change_apikey"))
    key, _ = api_key_create(user=sam, name="sams")
    assert api_key_revoke(key=key, actor=Actor(user=staff, via="admin")) is True
    assert api_key_revoke(key=key, actor=Actor(user=staff, via="admin")) is False  # already: audited once
    assert AuditLog.objects.get(action="api_key.revoke").actor_label == "viv via admin"
