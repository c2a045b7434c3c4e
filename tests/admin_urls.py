"""Admin URLs for one object, built as the admin builds its own links."""

from django.contrib.admin.utils import quote
from django.urls import reverse


def admin_object_url(obj, page: str = "change") -> str:
    """The admin's `page` ("change", "delete", "history") for `obj`.

    The pk is quoted as the admin quotes it: the admin unquotes the URL's id, so a raw `key_22…` would reach it
    as `key"…` and the page would redirect to "doesn't exist" (about one random id in 170)."""
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{page}", args=[quote(obj.pk)])
