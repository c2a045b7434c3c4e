"""Admin for webhook endpoints and their delivery log. Every change goes through healing_app.webhook_services."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect
from django.urls import reverse

from healing_app import webhook_services as services
from healing_app.models import WebhookDelivery, WebhookEndpoint
from tasks_app.admin import IdCheckedAdmin, shown_once_page, shown_once_url
from tasks_app.audit import admin_actor
from tasks_app.config import InputError
from tasks_app.shown_once import stash_secrets, take_secrets

EVENT_TYPE_CHOICES = [(t, t) for t in WebhookEndpoint.EVENT_TYPES]


class WebhookEndpointForm(forms.ModelForm):
    url = forms.CharField(label="URL", max_length=services.URL_MAX, help_text=services.URL_RULE)
    event_types = forms.MultipleChoiceField(
        choices=EVENT_TYPE_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every event type.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "description", "event_types", "task", "enabled"]

    def clean_url(self):
        # The same check the service makes, early, so a refused URL is an error on the field rather than a crash.
        try:
            return services.clean_url(self.cleaned_data["url"])
        except InputError as exc:
            raise ValidationError(exc.message) from None


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(IdCheckedAdmin):
    form = WebhookEndpointForm
    list_display = ["id", "url", "enabled", "disabled_reason", "consecutive_failures", "task", "owner", "created_at"]
    list_filter = ["enabled", "created_at"]
    search_fields = ["id", "url", "description", "disabled_reason", "owner__username"]
    list_select_related = ["task", "owner"]
    actions = ["send_test", "rotate_secret", "enable", "disable"]
    readonly_fields = [
        "id", "secret_masked", "previous_secret_expires_at", "disabled_reason", "disabled_at",
        "consecutive_failures", "failing_since", "owner", "created_at",
    ]

    def get_fields(self, request, obj=None):
        fields = ["url", "description", "event_types", "task"]
        if obj is None:
            return fields  # new endpoints start enabled; the secret is made on save and shown once
        return [*fields, "enabled", *self.readonly_fields]

    @admin.display(description="Secret")
    def secret_masked(self, endpoint: WebhookEndpoint) -> str:
        return endpoint.secret_masked

    def save_model(self, request, obj, form, change):
        data = {name: form.cleaned_data[name] for name in ("url", "description", "event_types", "task")}
        if change:
            if "enabled" in form.cleaned_data:
                data["enabled"] = form.cleaned_data["enabled"]
            changed = {name: value for name, value in data.items() if name in form.changed_data}
            services.webhook_endpoint_update(endpoint=obj, actor=admin_actor(request), **changed)
            return
        endpoint, secret = services.webhook_endpoint_create(actor=admin_actor(request), **data)
        obj.pk = endpoint.pk
        request._webhook_secrets = {endpoint.pk: secret}

    def response_add(self, request, obj, post_url_continue=None):
        return self._redirect_to_secrets(request)

    def delete_model(self, request, obj):
        services.webhook_endpoint_delete(endpoint=obj, actor=admin_actor(request))

    def delete_queryset(self, request, queryset):
        for endpoint in queryset:
            services.webhook_endpoint_delete(endpoint=endpoint, actor=admin_actor(request))

    def get_deleted_objects(self, objs, request):
        # An endpoint's delivery log goes with it (as through the API, audited once as webhook.delete). Its admin
        # refuses deleting deliveries one by one, which is no reason to refuse deleting the endpoint.
        to_delete, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        return to_delete, model_count, perms_needed - {WebhookDelivery._meta.verbose_name}, protected

    # Each action changes the endpoint (a rotation even shows its new secret), so it needs the change permission;
    # the service also checks that the user owns the endpoint or may change every endpoint.
    @admin.action(description="Send a test event", permissions=["change"])
    def send_test(self, request, queryset):
        for endpoint in queryset:
            services.webhook_send_test(endpoint=endpoint, actor=admin_actor(request))
        self.message_user(request, f"Test event queued for {queryset.count()} endpoint(s); see the delivery log.")

    @admin.action(description="Rotate secret (old one keeps signing for 24 hours)", permissions=["change"])
    def rotate_secret(self, request, queryset):
        request._webhook_secrets = {
            endpoint.pk: services.webhook_secret_rotate(endpoint=endpoint, actor=admin_actor(request)) for endpoint in queryset
        }
        return self._redirect_to_secrets(request)

    @admin.action(description="Enable", permissions=["change"])
    def enable(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable", permissions=["change"])
    def disable(self, request, queryset):
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request, queryset, enabled: bool) -> None:
        for endpoint in queryset:
            try:
                services.webhook_endpoint_update(endpoint=endpoint, actor=admin_actor(request), enabled=enabled)
            except PermissionDenied as exc:
                self.message_user(request, str(exc), level=messages.ERROR)
                return
        self.message_user(request, f"{queryset.count()} endpoint(s) {'enabled' if enabled else 'disabled'}.")

    def get_urls(self):
        return [shown_once_url(self, self.secrets_view), *super().get_urls()]  # before "<path:object_id>/"

    def _redirect_to_secrets(self, request):
        stash_secrets(request, "admin.webhook_secrets", request._webhook_secrets)
        return redirect("admin:healing_app_webhookendpoint_shown_once")

    def secrets_view(self, request):
        """The new secrets, on the first GET after a create or a rotation; later GETs (F5) say how to get new ones."""
        stashed = take_secrets(request, "admin.webhook_secrets")
        endpoints = self.get_queryset(request).filter(pk__in=stashed).order_by("url")
        rows = [
            {"endpoint": endpoint, "secret": stashed[endpoint.pk],
             "url": reverse("admin:healing_app_webhookendpoint_change", args=[quote(endpoint.pk)])}
            for endpoint in endpoints
            # Replaced before it was shown (a rotation in another tab): showing it would mislead.
            if stashed[endpoint.pk] == endpoint.current_secret
        ]
        title = "New webhook signing secrets" if rows else "Webhook signing secrets"
        return shown_once_page(self, request, "webhooks/admin_secret.html", {"title": title, "rows": rows})


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(IdCheckedAdmin):
    list_display = [
        "id", "endpoint", "event_type", "message_id", "attempt", "trigger", "status", "response_code",
        "duration_ms", "created_at",
    ]
    list_filter = ["status", "trigger", "event_type", "created_at"]
    search_fields = ["message_id", "endpoint__id", "endpoint__url", "error"]
    list_select_related = ["endpoint"]
    date_hierarchy = "created_at"
    actions = ["redeliver"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_redeliver_permission(self, request) -> bool:
        return request.user.has_perm("healing_app.change_webhookendpoint")

    @admin.action(description="Redeliver (same webhook-id)", permissions=["redeliver"])
    def redeliver(self, request, queryset):
        for delivery in queryset.select_related("endpoint"):
            services.webhook_redeliver(delivery=delivery, actor=admin_actor(request))
        self.message_user(request, f"{queryset.count()} redelivery(ies) queued.")
