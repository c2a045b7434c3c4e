"""Dashboard pages for webhook endpoints under /webhooks/. Thin: every change calls healing_app.webhook_services.

People see and change their own endpoints (staff: all). Someone else's endpoint is a 404.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from healing_app import webhook_services as services
from healing_app import webhooks
from healing_app.models import WebhookEndpoint
from tasks_app.audit import dashboard_actor
from tasks_app.config import InputError
from tasks_app.ids import object_or_404
from tasks_app.models import Task
from tasks_app.shown_once import stash_secrets, take_secrets, uncached

DELIVERIES_PER_PAGE = 50


class WebhookEndpointForm(forms.Form):
    url = forms.CharField(label="URL", max_length=services.URL_MAX, help_text=services.URL_RULE)
    description = forms.CharField(max_length=services.DESCRIPTION_MAX, required=False)
    event_types = forms.MultipleChoiceField(
        choices=[(t, t) for t in WebhookEndpoint.EVENT_TYPES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every event type.",
    )
    task = forms.ModelChoiceField(
        queryset=Task.objects.order_by("name"), required=False, empty_label="Every task", help_text="Only this task's events."
    )

    @classmethod
    def for_endpoint(cls, endpoint: WebhookEndpoint, data=None) -> WebhookEndpointForm:
        return cls(data, initial={
            "url": endpoint.url,
            "description": endpoint.description,
            "event_types": endpoint.event_types,
            "task": endpoint.task_id,
        })

    def add_input_error(self, exc: InputError) -> None:
        self.add_error(exc.field if exc.field in self.fields else None, exc.message)


def _endpoint(request: HttpRequest, endpoint_id: str) -> WebhookEndpoint:
    return object_or_404(services.webhook_endpoints_for(user=request.user), endpoint_id, what="webhook endpoint")


@login_required
@require_GET
def endpoint_list(request: HttpRequest) -> HttpResponse:
    endpoints = services.webhook_endpoints_for(user=request.user)
    return render(request, "webhooks/list.html", {"endpoints": endpoints})


@login_required
@require_http_methods(["GET", "POST"])
def endpoint_create(request: HttpRequest) -> HttpResponse:
    form = WebhookEndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            endpoint, secret = services.webhook_endpoint_create(actor=dashboard_actor(request), **form.cleaned_data)
        except InputError as exc:
            form.add_input_error(exc)
        else:
            return _redirect_to_secret(request, endpoint, secret, created=True)
    return _form_page(request, form, endpoint=None)


@login_required
@require_GET
def endpoint_detail(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    return render(request, "webhooks/detail.html", _detail_context(request, endpoint_id))


@login_required
@require_GET
def endpoint_detail_part(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    """The endpoint's state and delivery log, fetched again by the page when a delivery changes."""
    return render(request, "webhooks/_detail_live.html", _detail_context(request, endpoint_id))


def _detail_context(request: HttpRequest, endpoint_id: str) -> dict:
    endpoint = _endpoint(request, endpoint_id)
    deliveries = Paginator(endpoint.deliveries.all(), DELIVERIES_PER_PAGE).get_page(request.GET.get("page"))
    return {"endpoint": endpoint, "deliveries": deliveries}


@login_required
@require_http_methods(["GET", "POST"])
def endpoint_edit(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    form = WebhookEndpointForm.for_endpoint(endpoint, request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        # Only what was changed: an endpoint saved before today's URL rules keeps its URL until someone edits it.
        changes = {field: form.cleaned_data[field] for field in form.changed_data}
        try:
            services.webhook_endpoint_update(endpoint=endpoint, actor=dashboard_actor(request), **changes)
        except InputError as exc:
            form.add_input_error(exc)
        else:
            messages.success(request, "Webhook endpoint saved.")
            return redirect("webhooks:detail", endpoint_id=endpoint.pk)
    return _form_page(request, form, endpoint=endpoint)


@login_required
@require_http_methods(["GET", "POST"])
def endpoint_delete(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    if request.method == "POST":
        services.webhook_endpoint_delete(endpoint=endpoint, actor=dashboard_actor(request))
        messages.success(request, f"Webhook endpoint {endpoint_id} deleted.")
        return redirect("webhooks:list")
    return render(request, "webhooks/confirm_delete.html", {"endpoint": endpoint})


@login_required
@require_POST
def endpoint_send_test(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    delivery = services.webhook_send_test(endpoint=endpoint, actor=dashboard_actor(request))
    messages.success(request, f"Test event {delivery.message_id} queued; its attempt appears below.")
    return redirect("webhooks:detail", endpoint_id=endpoint.pk)


@login_required
@require_POST
def endpoint_rotate_secret(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    grace = timedelta(0) if request.POST.get("immediately") else webhooks.SECRET_GRACE
    secret = services.webhook_secret_rotate(endpoint=endpoint, actor=dashboard_actor(request), grace=grace)
    return _redirect_to_secret(request, endpoint, secret, created=False)


@login_required
@require_GET  # not HEAD either: whatever asks first takes the secret
def endpoint_secret(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    """The new secret, on the first GET after a create or a rotation; later GETs (F5) say how to get a new one."""
    endpoint = _endpoint(request, endpoint_id)
    secret, created = _take_secret(request, endpoint)
    return uncached(render(request, "webhooks/secret.html", {"endpoint": endpoint, "secret": secret, "created": created}))


@login_required
@require_POST
def endpoint_set_enabled(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    enabled = request.POST.get("enabled") == "1"
    services.webhook_endpoint_update(endpoint=endpoint, actor=dashboard_actor(request), enabled=enabled)
    messages.success(request, f"Webhook endpoint {'enabled' if enabled else 'disabled'}.")
    return redirect("webhooks:detail", endpoint_id=endpoint.pk)


@login_required
@require_POST
def delivery_redeliver(request: HttpRequest, endpoint_id: str, delivery_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    delivery = endpoint.deliveries.filter(pk=delivery_id).first()
    if delivery is None:
        raise Http404("no such delivery")
    attempt = services.webhook_redeliver(delivery=delivery, actor=dashboard_actor(request))
    messages.success(request, f"Redelivery of {attempt.message_id} queued as attempt {attempt.attempt}.")
    return redirect("webhooks:detail", endpoint_id=endpoint.pk)


def _form_page(request: HttpRequest, form: WebhookEndpointForm, *, endpoint: WebhookEndpoint | None) -> HttpResponse:
    # A POST that reaches here was refused: 400, like every other dashboard form, so scripts and tests can tell.
    status = 400 if request.method == "POST" else 200
    return render(request, "webhooks/form.html", {"form": form, "endpoint": endpoint}, status=status)


def _secret_slot(endpoint: WebhookEndpoint) -> str:
    return f"webhook.{endpoint.pk}"


def _redirect_to_secret(request: HttpRequest, endpoint: WebhookEndpoint, secret: str, *, created: bool) -> HttpResponse:
    # Post/Redirect/Get (see tasks_app.shown_once): a reload must not create a twin or rotate again.
    stash_secrets(request, _secret_slot(endpoint), {"secret": secret, "created": "yes" if created else ""})
    return redirect("webhooks:secret", endpoint_id=endpoint.pk)


def _take_secret(request: HttpRequest, endpoint: WebhookEndpoint) -> tuple[str, bool]:
    """The secret stashed by _redirect_to_secret, once: ("", False) when there is none."""
    stashed = take_secrets(request, _secret_slot(endpoint))
    # Replaced before it was shown (a rotation in another tab, or by staff): showing it would mislead.
    if not stashed or stashed["secret"] != endpoint.current_secret:
        return "", False
    return stashed["secret"], bool(stashed["created"])
