"""The dashboard's API keys page under /api-keys/: each person lists, creates and revokes their own keys.

Thin: every change calls tasks_app.api_keys, which checks who may and audits. Someone else's key is a 404 (not a
403), so key ids do not leak; staff see and revoke others' keys in the admin.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from tasks_app.api_keys import NAME_MAX, api_key_create, api_key_revoke, api_key_still_showable, api_keys_for
from tasks_app.audit import dashboard_actor
from tasks_app.config import InputError
from tasks_app.ids import object_or_404
from tasks_app.shown_once import stash_secrets, take_secrets, uncached

SHOWN_ONCE_SLOT = "dashboard.api_key"


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=NAME_MAX, help_text="To tell your keys apart, e.g. “CI” or “laptop”.")


@login_required
@require_GET
def key_list(request: HttpRequest) -> HttpResponse:
    return _list_page(request, ApiKeyForm())


@login_required
@require_POST  # a GET here is sent to the list, where the form is (FormAddressVisitedMiddleware)
def key_create(request: HttpRequest) -> HttpResponse:
    form = ApiKeyForm(request.POST)
    if form.is_valid():
        try:
            key, raw = api_key_create(user=request.user, name=form.cleaned_data["name"], actor=dashboard_actor(request))
        except InputError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            # Post/Redirect/Get (see tasks_app.shown_once): a reload of the key's page must not make a second key.
            stash_secrets(request, SHOWN_ONCE_SLOT, {"id": key.pk, "raw": raw})
            return redirect("api_keys:created")
    return _list_page(request, form)


@login_required
@require_GET  # not HEAD either: whatever asks first takes the key
def key_created(request: HttpRequest) -> HttpResponse:
    """The new key, on the first GET after it was made; later GETs (F5) say it is not shown again."""
    key, raw = api_key_still_showable(api_keys_for(user=request.user), take_secrets(request, SHOWN_ONCE_SLOT))
    return uncached(render(request, "api_keys/created.html", {"key": key, "raw": raw}))


@login_required
@require_http_methods(["GET", "POST"])
def key_revoke(request: HttpRequest, key_id: str) -> HttpResponse:
    """GET asks to confirm; POST revokes."""
    key = object_or_404(api_keys_for(user=request.user), key_id, what="API key")
    if request.method == "POST":
        if api_key_revoke(key=key, actor=dashboard_actor(request)):
            messages.success(request, f"API key {key.name} ({key.hint}…) revoked: it no longer works.")
        else:
            messages.info(request, f"API key {key.name} ({key.hint}…) was already revoked.")
        return redirect("api_keys:list")
    return render(request, "api_keys/confirm_revoke.html", {"key": key})


def _list_page(request: HttpRequest, form: ApiKeyForm) -> HttpResponse:
    # A bound form shown again was refused: 400, like every other dashboard form, so scripts and tests can tell.
    status = 400 if form.is_bound else 200
    keys = api_keys_for(user=request.user)
    return render(request, "api_keys/list.html", {"keys": keys, "form": form}, status=status)
