"""Admin for healing events and reviews. Approve and reject go through the same services as the dashboard."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.utils.safestring import mark_safe

from healing_app import services
from healing_app.diffing import DIFF_STYLESHEETS, render_diff
from healing_app.models import HealingEvent, Review
from tasks_app.admin import IdCheckedAdmin
from tasks_app.audit import admin_actor


class ReviewInline(admin.TabularInline):
    model = Review
    extra = 0
    can_delete = False
    fields = ["decision", "reviewer", "comment", "superseded", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(HealingEvent)
class HealingEventAdmin(IdCheckedAdmin):
    class Media:
        css = {"all": DIFF_STYLESHEETS}  # its diffs are coloured as on the dashboard

    list_display = ["id", "task", "status", "error_type", "agent_kind", "new_version", "created_at"]
    list_filter = ["status", "error_type", "agent_kind", "created_at"]
    search_fields = ["id", "task__id", "task__name", "root_cause", "error_message"]
    list_select_related = ["task", "new_version"]
    date_hierarchy = "created_at"
    inlines = [ReviewInline]
    actions = ["approve_selected", "reject_selected"]
    exclude = ["screenshot"]
    readonly_fields = [
        "id", "task", "run", "status", "error_type", "error_message", "failing_step", "step_key", "attempt",
        "agent_kind", "root_cause", "reason", "original_version", "new_version", "validation_run", "diff",
        "candidate_scores", "chosen_element", "recovery", "agent_trace", "prompt_tokens", "completion_tokens",
        "cost_usd", "timings", "timeline", "reviewer", "review_comment", "created_at", "decided_at",
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # Every field is read-only: approving and rejecting are actions (through the services). A Save would write
        # the whole row back as loaded, undoing a decision or a pipeline step made meanwhile, unaudited.
        return False

    def has_delete_permission(self, request, obj=None):
        # Heals are history, and deleting one waiting for review would free its draft to be deployed by hand.
        return False

    @admin.display(description="Diff")
    def diff(self, event: HealingEvent) -> str:
        if not (event.original_version and event.new_version):
            return "—"
        return mark_safe(render_diff(event.original_version.code, event.new_version.code).side_by_side_html)

    @admin.action(description="Approve and deploy selected (reviewers)")
    def approve_selected(self, request, queryset):
        self._review(request, queryset, approve=True)

    @admin.action(description="Reject selected (reviewers)")
    def reject_selected(self, request, queryset):
        self._review(request, queryset, approve=False)

    def _review(self, request, queryset, *, approve: bool) -> None:
        actor = admin_actor(request)
        done = 0
        for event in queryset:
            try:
                if approve:
                    services.healing_approve(event=event, reviewer=actor, comment="approved in the admin")
                else:
                    services.healing_reject(event=event, reviewer=actor, comment="rejected in the admin")
                done += 1
            except PermissionDenied as exc:
                self.message_user(request, str(exc), level=messages.ERROR)
                return
            except (services.AlreadyDecided, services.Superseded) as exc:
                self.message_user(request, str(exc), level=messages.WARNING)
        self.message_user(request, f"{done} event(s) {'approved' if approve else 'rejected'}.")


@admin.register(Review)
class ReviewAdmin(IdCheckedAdmin):
    list_display = ["event", "decision", "superseded", "reviewer", "created_at"]
    list_filter = ["decision", "superseded"]
    readonly_fields = ["event", "decision", "reviewer", "comment", "superseded", "created_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # who approved or rejected a heal is history


# Webhook endpoints and deliveries: see healing_app/webhooks_admin.py (registered below).
from healing_app import webhooks_admin  # noqa: E402,F401
