"""Shared fixtures for the whole suite."""

from __future__ import annotations

import pytest


@pytest.fixture
def reviewer(django_user_model):
    from healing_app.permissions import reviewers_group

    user = django_user_model.objects.create_user("rita", password="pw-rita-123!")
    user.groups.add(reviewers_group())
    return user


@pytest.fixture
def member(django_user_model):
    return django_user_model.objects.create_user("mo", password="pw-mo-123!")
