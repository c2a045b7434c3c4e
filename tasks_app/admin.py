"""The operator's admin. Edits go through the same services as the API, so they are validated and audited alike."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET

from healing_app.diffing import DIFF_STYLESHEETS, render_diff
from healing_app.models import HealingEvent, Review, WebhookDelivery
from tasks_app import services
from tasks_app.audit import admin_actor, audit_log
from tasks_app.forms import TaskForm
from tasks_app.ids import could_be_id
from tasks_app.models import ApiKey, AuditLog, CodeVersion, ElementFingerprint, Run, Task
from tasks_app.shown_once import stash_secrets, take_secrets, uncached


class IdCheckedAdmin(admin.ModelAdmin):
    """The base of every ModelAdmin in the product: a selected id that cannot name a row does nothing.

    PostgreSQL refuses a NUL in a text parameter with an error, so a forged action selection answered 500. A NUL
    in an admin URL (`/admin/tasks_app/task/%00/change/`) never gets here: NulInUrlMiddleware answers 404.
    """

    def response_action(self, request, queryset):
        if not all(could_be_id(pk) for pk in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)):
            self.message_user(request, "No such item: nothing was done.", level=messages.WARNING)
            return None  # the changelist redirects back to itself
        return super().response_action(request, queryset)


def shown_once_url(model_admin: admin.ModelAdmin, view) -> URLPattern:
    """The admin page a POST that made new secrets redirects to (see tasks_app.shown_once): GET only, since
    whatever asks first takes the secrets; named like the admin's own, `<app>_<model>_shown_once`."""
    opts = model_admin.model._meta
    name = f"{opts.app_label}_{opts.model_name}_shown_once"
    return path("shown-once/", model_admin.admin_site.admin_view(require_GET(view)), name=name)


def shown_once_page(model_admin: admin.ModelAdmin, request, template: str, context: dict) -> TemplateResponse:
    context = {**model_admin.admin_site.each_context(request), "opts": model_admin.model._meta, **context}
    return uncached(TemplateResponse(request, template, context))


class CodeVersionInline(admin.TabularInline):
    model = CodeVersion
    fk_name = "task"
    extra = 0
    can_delete = False
    ordering = ["-number"]
    fields = ["number", "source", "author", "created_at", "diff_to_parent"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="Change from its parent")
    def diff_to_parent(self, version: CodeVersion) -> str:
        if version.parent is None:
            return "—"
        return mark_safe(render_diff(version.parent.code, version.code).inline_html)


@admin.register(Task)
class TaskAdmin(IdCheckedAdmin):
    class Media:
        css = {"all": DIFF_STYLESHEETS}  # its diffs are coloured as on the dashboard

    form = TaskForm
    list_display = ["name", "id", "self_healing", "current_version_number", "code_status", "updated_at"]
    list_filter = ["self_healing", "code_status", "healing_agent", "created_at"]
    search_fields = ["id", "name", "prompt"]
    readonly_fields = ["id", "current_version", "code_status", "secret_names", "created_at", "updated_at"]
    inlines = [CodeVersionInline]
    list_select_related = ["current_version"]
    fieldsets = [
        (None, {"fields": ["id", "name", "prompt", "params", "code", "current_version", "code_status"]}),
        ("Self-healing", {"fields": [
            "self_healing", "auto_deploy", "validation_required", "trigger_on", "max_attempts", "healing_agent",
            "monthly_budget_usd",
        ]}),
        ("Secrets", {"fields": ["secret_names", "new_secrets"]}),
        ("Schedule", {"fields": ["schedule", "created_at", "updated_at"]}),
    ]

    def get_fieldsets(self, request, obj=None):
        if obj is not None:
            return self.fieldsets
        # A task being added has no id, version or code status yet (the model's defaults would say "Ready").
        unsaved = {"id", "current_version", "code_status", "secret_names", "created_at", "updated_at"}
        return [(name, {**options, "fields": [f for f in options["fields"] if f not in unsaved]})
                for name, options in self.fieldsets]

    @admin.display(description="version")
    def current_version_number(self, task: Task):
        return task.current_version.number if task.current_version else None

    @admin.display(description="Secrets stored")
    def secret_names(self, task: Task) -> str:
        names = task.secret_keys if task.pk else []
        return ", ".join(names) if names else "none"

    def save_model(self, request, obj, form, change):
        actor = admin_actor(request)
        changes = form.service_changes()
        if change:
            saved = services.task_update(task=Task.objects.get(pk=obj.pk), actor=actor, **changes)
        else:
            saved = services.task_create(actor=actor, **changes)
        obj.pk = saved.pk

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.base_fields["params"].required = False
        return form

    def delete_model(self, request, obj):
        services.task_delete(task=obj, actor=admin_actor(request))

    def delete_queryset(self, request, queryset):
        # "Delete selected" too goes through the service, so each task's deletion is audited.
        for task in queryset:
            self.delete_model(request, task)

    def get_deleted_objects(self, objs, request):
        # A task's history goes with it, as through the API (audited once, as task.delete). Its admins refuse
        # deleting history piece by piece, which is no reason to refuse deleting the whole task.
        to_delete, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        history = {
            model._meta.verbose_name
            for model in (CodeVersion, Run, ElementFingerprint, HealingEvent, Review, WebhookDelivery)
        }
        # A task that runs or heals right now waits (the admin lists why, as it lists protected objects).
        busy = [f"{task}: {reason}" for task in objs if (reason := services.task_busy_reason(task))]
        return to_delete, model_count, perms_needed - history, [*protected, *busy]


@admin.register(CodeVersion)
class CodeVersionAdmin(IdCheckedAdmin):
    class Media:
        css = {"all": DIFF_STYLESHEETS}  # its diffs are coloured as on the dashboard

    list_display = ["__str__", "task", "number", "source", "author", "created_at"]
    list_filter = ["source", "created_at"]
    search_fields = ["task__id", "task__name", "code"]
    list_select_related = ["task", "author"]
    readonly_fields = ["task", "number", "source", "parent", "author", "note", "created_at", "code_block", "diff_block"]
    exclude = ["code"]
    actions = ["deploy_selected"]

    def has_add_permission(self, request):
        return False

    # Versions are history: read-only pages (no Save), and never deleted, which would break the task's
    # current version, its heals' diffs and the numbering. Immutability is also enforced by the model.
    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Code")
    def code_block(self, version: CodeVersion) -> str:
        return format_html("<pre>{}</pre>", version.code)

    @admin.display(description="Diff from parent")
    def diff_block(self, version: CodeVersion) -> str:
        if version.parent is None:
            return "—"
        return mark_safe(render_diff(version.parent.code, version.code).side_by_side_html)

    @admin.action(description="Deploy (make current) — rollback")
    def deploy_selected(self, request, queryset):
        deployed = 0
        for version in queryset.select_related("task"):
            try:
                services.version_deploy(
                    task=version.task, version=version, actor=admin_actor(request), reason="admin"
                )
            except (PermissionDenied, services.DraftNotDeployable) as exc:
                self.message_user(request, f"Not deployed: {version}: {exc}", level=messages.ERROR)
            else:
                deployed += 1
        self.message_user(request, f"Deployed {deployed} version(s).")


@admin.register(Run)
class RunAdmin(IdCheckedAdmin):
    list_display = ["id", "task", "status", "purpose", "error_type", "created_at", "finished_at"]
    list_filter = ["status", "purpose", "error_type", "created_at"]
    search_fields = ["id", "task__id", "task__name", "error_message"]
    list_select_related = ["task"]
    readonly_fields = [f.name for f in Run._meta.fields if f.name != "screenshots"]
    exclude = ["screenshots"]
    actions = ["cancel_selected"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # every field is read-only, and a Save would write back the row as loaded over newer changes

    def has_delete_permission(self, request, obj=None):
        return False  # runs are history: heals, costs and the audit log point at them; they go only with their task

    @admin.action(description="Cancel (queued runs at once, running ones within seconds)")
    def cancel_selected(self, request, queryset):
        cancelled = 0
        for run in queryset.select_related("task"):
            try:
                services.run_cancel(run=run, actor=admin_actor(request))
            except (PermissionDenied, services.RunNotCancellable) as exc:
                self.message_user(request, f"Not cancelled: {run.pk}: {exc}", level=messages.ERROR)
            else:
                cancelled += 1
        self.message_user(request, f"Cancelled {cancelled} run(s).")


@admin.register(ElementFingerprint)
class ElementFingerprintAdmin(IdCheckedAdmin):
    list_display = ["task", "step_key", "line", "updated_at"]
    search_fields = ["task__id", "step_key", "selector"]
    readonly_fields = ["task", "step_key", "line", "selector", "properties", "version", "updated_at"]

    def has_add_permission(self, request):
        return False  # recorded by successful runs; deleting one makes the step heal from its selector alone

    def has_change_permission(self, request, obj=None):
        return False  # read-only; a Save would put back the fingerprint as loaded over a newer run's

    # Deleting ("forget this element") is allowed, and audited: it changes how the task's next heal chooses.
    def delete_model(self, request, obj):
        with transaction.atomic():
            data = {"task": obj.task_id, "step_key": obj.step_key}
            audit_log(actor=admin_actor(request), action="fingerprint.delete", obj=obj, data=data)
            obj.delete()

    def delete_queryset(self, request, queryset):
        for fingerprint in queryset:
            self.delete_model(request, fingerprint)


@admin.register(ApiKey)
class ApiKeyAdmin(IdCheckedAdmin):
    list_display = ["name", "id", "user", "hint", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "id", "user__username"]
    readonly_fields = ["id", "hint", "created_at", "last_used_at", "revoked_at"]
    fields = ["id", "user", "name", "hint", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_selected"]

    def get_readonly_fields(self, request, obj=None):
        # A key acts as its user: moving one to another user would let whoever holds it act as them.
        return self.readonly_fields if obj is None else [*self.readonly_fields, "user"]

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if obj is None and not request.user.is_superuser:
            # Only a superuser may mint a key that acts as someone else; staff make keys for themselves.
            users = form.base_fields["user"]
            users.queryset = users.queryset.filter(pk=request.user.pk)
            users.initial = request.user.pk
        return form

    def has_delete_permission(self, request, obj=None):
        return False  # a key is revoked, which keeps its row for the audit log and its user's key list

    def save_model(self, request, obj, form, change):
        from tasks_app.api_keys import api_key_create

        if change:
            with transaction.atomic():
                super().save_model(request, obj, form, change)
                if form.changed_data:
                    data = {"changed": form.changed_data, "name": obj.name}
                    audit_log(actor=admin_actor(request), action="api_key.update", obj=obj, data=data)
            return
        # The service refuses a key for someone else unless a superuser asks (a PermissionDenied: 403).
        key, raw = api_key_create(user=obj.user, name=obj.name, actor=admin_actor(request))
        obj.pk = key.pk
        request._api_key_raw = raw

    def response_add(self, request, obj, post_url_continue=None):
        stash_secrets(request, "admin.api_key", {"id": obj.pk, "raw": request._api_key_raw})
        return redirect("admin:tasks_app_apikey_shown_once")

    def get_urls(self):
        return [shown_once_url(self, self.created_view), *super().get_urls()]  # before "<path:object_id>/"

    def created_view(self, request):
        """The new key, on the first GET after it was made; later GETs (F5) say it is not shown again."""
        from tasks_app.api_keys import api_key_still_showable

        key, raw = api_key_still_showable(ApiKey.objects.all(), take_secrets(request, "admin.api_key"))
        context = {"title": "API key created" if raw else "API key", "key": key, "raw": raw}
        return shown_once_page(self, request, "admin/tasks_app/apikey/created.html", context)

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request, queryset):
        from tasks_app.api_keys import api_key_revoke

        for key in queryset:
            api_key_revoke(key=key, actor=admin_actor(request))
        self.message_user(request, "The selected keys are revoked.")


@admin.register(AuditLog)
class AuditLogAdmin(IdCheckedAdmin):
    list_display = ["created_at", "actor_label", "action", "object_type", "object_id"]
    list_filter = ["action", "object_type"]
    search_fields = ["actor_label", "object_id", "action"]
    readonly_fields = ["created_at", "actor", "actor_label", "action", "object_type", "object_id", "data"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# -- people ---------------------------------------------------------------------------------------------------
# Users and groups have no services of their own; who may review, who is staff, whose password changed are state
# changes all the same. What the admin writes to its own history goes to the product's audit log too: field names
# only, as the admin's change messages name them (never a password).


class AuditedHistoryAdmin(admin.ModelAdmin):
    def log_addition(self, request, obj, message):
        self._audit(request, obj, "create", {"name": str(obj)})
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        self._audit(request, obj, "update", {"changes": message})
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        for obj in queryset:
            self._audit(request, obj, "delete", {"name": str(obj)})
        return super().log_deletions(request, queryset)

    def _audit(self, request, obj, verb: str, data: dict) -> None:
        audit_log(actor=admin_actor(request), action=f"{obj._meta.model_name}.{verb}", obj=obj, data=data)


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(AuditedHistoryAdmin, UserAdmin):
    pass


@admin.register(Group)
class AuditedGroupAdmin(AuditedHistoryAdmin, GroupAdmin):
    pass


_admin_password_change = admin.site.password_change


def _audited_password_change(request, extra_context=None):
    """A staff member changing their own password: the admin's own page, outside the user admin's history."""
    response = _admin_password_change(request, extra_context)
    if request.method == "POST" and response.status_code == 302:  # changed (a refused form is shown again)
        audit_log(actor=admin_actor(request), action="user.update", obj=request.user, data={"changes": ["password"]})
    return response


admin.site.password_change = _audited_password_change
