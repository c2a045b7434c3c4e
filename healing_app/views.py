"""Dashboard pages for healing events: the review queue, one event, approve/reject, the overview.

Views stay thin: they read through healing_app.queries, act through healing_app.services, and
render. Live pages re-fetch the small fragment views below when the websocket says something changed,
so every piece of HTML comes from these templates.
"""

from __future__ import annotations

import datetime as dt
import json

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from healing_app import charts, queries, services
from healing_app.diffing import render_diff
from healing_app.models import HealingEvent, Review
from tasks_app.audit import dashboard_actor
from tasks_app.config import InputError
from tasks_app.ids import object_or_404

EVENT_PARTS = {"summary": "healing/_event_summary.html", "evidence": "healing/_event_evidence.html"}


class CommentField(forms.CharField):
    def to_python(self, value):
        # Browsers count a textarea's line break as one character against maxlength but send it as CRLF.
        return super().to_python(value).replace("\r\n", "\n")


class DecisionForm(forms.Form):
    """A reviewer's comment. Too long is refused, as the API refuses it; an empty reject comment is the service's call."""

    comment = CommentField(required=False, max_length=Review.COMMENT_MAX)


@require_GET
@login_required
def queue(request: HttpRequest) -> HttpResponse:
    return render(request, "healing/queue.html", _queue_context(request))


@require_GET
@login_required
def queue_rows(request: HttpRequest) -> HttpResponse:
    """What live queues fetch when an event changes: with ?only=<event> that one row, with ?newer=<cursor>
    the rows above the page's top; otherwise the whole first page. Always the pending count."""
    only, newer = request.GET.get("only", ""), request.GET.get("newer", "")
    if not (only or newer):
        return render(request, "healing/_queue_rows.html", _queue_context(request))
    form = queries.QueueFilterForm(request.GET)
    rows, more = queries.queue_rows_changed(form.cleaned_data if form.is_valid() else {}, only=only, newer=newer)
    context = {"rows": rows, "more": more, "pending_count": queries.pending_review_count()}
    return render(request, "healing/_queue_rows_changed.html", context)


@require_GET
@login_required
def event_detail(request: HttpRequest, event_id: str) -> HttpResponse:
    return render(request, "healing/event.html", _event_context(request, event_id))


@require_GET
@login_required
def event_part(request: HttpRequest, event_id: str, part: str) -> HttpResponse:
    if part not in EVENT_PARTS:
        raise Http404("no such part")
    return render(request, EVENT_PARTS[part], _event_context(request, event_id))


@require_GET
@login_required
def event_screenshot(request: HttpRequest, event_id: str) -> HttpResponse:
    png = queries.event_screenshot(event_id)
    if png is None:
        raise Http404("no screenshot")
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"  # a failure's screenshot never changes
    return response


@require_POST
@login_required
def event_approve(request: HttpRequest, event_id: str) -> HttpResponse:
    event = _event_or_404(event_id)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        return _comment_refused(request, event_id, "approve", form)
    try:
        event = services.healing_approve(event=event, reviewer=dashboard_actor(request), comment=form.cleaned_data["comment"])
    except services.AlreadyDecided as exc:
        return _refused(request, event_id, decided_message(exc.event))
    except services.Superseded as exc:
        return _refused(request, event_id, f"Not deployed: {exc}. Nothing changed.")
    number = event.new_version.number if event.new_version_id else "?"
    messages.success(request, f"Approved. Version {number} is now the task's current version.")
    return redirect("event-detail", event_id=event.pk)


@require_POST
@login_required
def event_reject(request: HttpRequest, event_id: str) -> HttpResponse:
    event = _event_or_404(event_id)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        return _comment_refused(request, event_id, "reject", form)
    try:
        services.healing_reject(event=event, reviewer=dashboard_actor(request), comment=form.cleaned_data["comment"])
    except InputError as exc:
        context = _event_context(request, event_id)
        context["reject_error"] = exc.message
        return render(request, "healing/event.html", context, status=400)
    except services.AlreadyDecided as exc:
        return _refused(request, event_id, decided_message(exc.event))
    messages.success(request, "Rejected. The healed version stays an undeployed draft.")
    return redirect("event-detail", event_id=event_id)


@require_GET
@login_required
def overview(request: HttpRequest) -> HttpResponse:
    stats = queries.overview_stats_cached(days=30)
    status = HealingEvent.Status
    css = {status.DEPLOYED: "s-ok", status.PENDING_REVIEW: "s-wait", status.REJECTED: "s-bad", status.FAILED: "s-bad"}
    status_css = {value.label: css.get(value, "s-open") for value in status}  # the stats name statuses by label
    context = {
        "stats": stats,
        "runs_chart": charts.stacked_bars(
            title="Runs and failures per day",
            labels=stats.days,
            series=[("succeeded or healed", "s-ok", stats.runs_ok), ("failed", "s-bad", stats.runs_failed)],
            unit="runs",
        ),
        "outcome_chart": charts.horizontal_bars(
            title="Heals by outcome", items=[(label, n, status_css.get(label, "s-open")) for label, n in stats.heals_by_status]
        ),
        "type_chart": charts.horizontal_bars(
            title="Heals by error type", items=[(label.replace("_", " "), n, "s-type") for label, n in stats.heals_by_type]
        ),
        "heal_time_chart": charts.line(
            title="Average time to heal (trigger to deploy), minutes", labels=stats.days, values=stats.heal_minutes, unit=" min"
        ),
        "cost_chart": charts.line(
            title="LLM cost per day, USD", labels=stats.days, values=stats.cost_usd, unit=" USD", css="s-cost"
        ),
        "totals": {
            "runs": sum(stats.runs_ok) + sum(stats.runs_failed),
            "failed": sum(stats.runs_failed),
            "heals": sum(n for _, n in stats.heals_by_status),
            "deployed": dict(stats.heals_by_status).get(HealingEvent.Status.DEPLOYED.label, 0),
        },
        "rows": list(zip(stats.days, stats.runs_ok, stats.runs_failed, stats.heal_minutes, stats.cost_usd)),
    }
    return render(request, "healing/overview.html", context)


def decided_message(event: HealingEvent) -> str:
    """What a second reviewer needs to know: who got there first, and that their click changed nothing."""
    when = timezone.localtime(event.decided_at).strftime("%Y-%m-%d %H:%M UTC") if event.decided_at else ""
    who = event.decided_by or "automatic deployment"
    if event.status == HealingEvent.Status.DEPLOYED:
        return f"Already deployed by {who} {when}; nothing changed.".replace("  ", " ")
    if event.status == HealingEvent.Status.REJECTED:
        return f"Already rejected by {who} {when}; nothing changed.".replace("  ", " ")
    if event.status == HealingEvent.Status.FAILED:
        return "This heal failed, so there is nothing to decide; nothing changed."
    return f"This event is {event.get_status_display().lower()}, not waiting for review yet; nothing changed."


# -- helpers -------------------------------------------------------------------------------------


def _queue_context(request: HttpRequest) -> dict:
    form = queries.QueueFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    page = queries.queue_page(filters, after=request.GET.get("after", ""), before=request.GET.get("before", ""))
    base = request.GET.copy()
    for key in ("after", "before"):
        base.pop(key, None)
    return {
        "form": form,
        "page": page,
        "pending_count": queries.pending_review_count(),
        "page_size": queries.PAGE_SIZE,
        "filter_query": base.urlencode(),
        "filtered": any(filters.values()) if filters else False,
    }


def _event_or_404(event_id: str) -> HealingEvent:
    return object_or_404(HealingEvent.objects.only("id", "task_id", "status"), event_id, what="healing event")


def _event_context(request: HttpRequest, event_id: str) -> dict:
    try:
        event = queries.event_detail(event_id)
    except HealingEvent.DoesNotExist:
        raise Http404("no such healing event") from None
    diff = None
    if event.original_version_id and event.new_version_id:
        diff = render_diff(event.original_version.code, event.new_version.code, context=6)
    return {
        "event": event,
        "task": event.task,
        "diff": diff,
        "can_review": services.can_review(request.user),
        "is_pending": event.status == HealingEvent.Status.PENDING_REVIEW,
        "timings": _timing_rows(event),
        "trace": _trace_rows(event.agent_trace),
        "candidates": _candidate_rows(event.candidate_scores),
        "tokens": event.prompt_tokens + event.completion_tokens,
        "validation_output": event.validation_run.output_json if event.validation_run else None,
    }


def _refused(request: HttpRequest, event_id: str, message: str) -> HttpResponse:
    """Show the event as it is now, with why the click changed nothing (409: the state had moved on)."""
    context = _event_context(request, event_id)
    context["refusal"] = message
    return render(request, "healing/event.html", context, status=409)


def _comment_refused(request: HttpRequest, event_id: str, decision: str, form: DecisionForm) -> HttpResponse:
    """Show the comment's error under its field, with the text kept so it can be shortened rather than retyped."""
    context = _event_context(request, event_id)
    context[f"{decision}_error"] = " ".join(form.errors["comment"])
    context[f"{decision}_comment"] = form.data.get("comment", "")
    return render(request, "healing/event.html", context, status=400)


def _trace_rows(agent_trace: list) -> list[dict]:
    """Flatten the takeovers (one per failure in a run) into numbered steps with their details."""
    rows = []
    for takeover in agent_trace or []:
        if not isinstance(takeover, dict):
            continue
        for step in takeover.get("steps") or []:
            if not isinstance(step, dict):
                continue
            details = [(k, _plain(v)) for k, v in step.items() if k not in ("action", "at")]
            at = step.get("at")
            rows.append({
                "action": str(step.get("action", "?")),
                "at": dt.datetime.fromtimestamp(at, tz=dt.UTC) if isinstance(at, (int, float)) else None,
                "details": details,
            })
    return rows


def _timing_rows(event: HealingEvent) -> list[tuple[str, int]]:
    """How long each stage took, in the order they happen; stages that did not happen are left out."""
    timings = event.timings or {}
    rows = [(label, timings[key]) for key, label in (("takeover_ms", "takeover"), ("generate_ms", "code generation"))
            if isinstance(timings.get(key), (int, float))]
    validation = event.validation_run.duration_ms if event.validation_run_id else None
    if validation is not None:
        rows.append(("validation run", validation))
    return [(label, int(ms)) for label, ms in rows]


def _candidate_rows(candidates: list) -> list[dict]:
    """Each ranked element as score, a CSS-like name (button#send), its text and its other properties.

    Scores are the locator's own scale (about 0 to 15); the bar shows each as a share of the best."""
    rows = []
    for c in candidates or []:
        if not isinstance(c, dict):
            continue
        tag = str(c.get("tag") or "?").lower()
        element = tag + (f"#{c['id']}" if c.get("id") else "")
        text = c.get("text") or c.get("visible_text") or c.get("aria_label") or "—"
        shown = {"score", "tag", "id", "text", "visible_text"}
        try:
            score = float(c.get("score") or 0)
        except (TypeError, ValueError):
            score = 0.0
        rows.append({
            "score": score,
            "element": element,
            "text": str(text),
            "attrs": [(k, _plain(v)) for k, v in c.items() if k not in shown and v not in (None, "")],
        })
    best = max((row["score"] for row in rows), default=0.0)
    for row in rows:
        row["share"] = round(max(row["score"], 0.0) / best, 3) if best > 0 else 0.0
    return rows


def _plain(value) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)[:2000]
