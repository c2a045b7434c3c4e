"""What the LLM costs: tokens → USD, spend this month per task and in total, and the budget checks.

Prices come from `settings.LLM_PRICES` (USD per 1M prompt and completion tokens), by exact model name or a
dated snapshot of one (`-YYYY-MM-DD`); unknown models use "default". Spend is read from the rows that carry
it: healing events (`cost_usd`, or, for an event whose cost was never priced, its tokens at today's price)
and generation audit entries (tasks whose version 1 the LLM wrote from the prompt).

Budgets: a task's `monthly_budget_usd` (None: no per-task limit) and `LLM_MONTHLY_BUDGET_USD` for
the whole deployment (0 stops LLM use altogether). When either is used up, the LLM agent hands the
heal to the heuristic agent and says why in the event's trace.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db.models import Q, Sum
from django.utils import timezone

MILLION = Decimal(1_000_000)
USD_PLACES = Decimal("0.000001")  # HealingEvent.cost_usd has six decimal places
GENERATION_ACTION = "task.generate"


# A dated snapshot of a model ("gpt-4o-mini-2024-07-18") is priced like the model.
_DATED = re.compile(r"^(?P<name>.+)-\d{4}-\d{2}-\d{2}$")


def prices_for(model: str | None) -> tuple[Decimal, Decimal]:
    """(prompt, completion) USD per 1M tokens for `model`: its own row, or its undated name's; else "default".

    Only the exact name or a dated snapshot of it counts: "gpt-4.1-nano" is not "gpt-4.1" (which costs many times
    more), and a model the table does not know is priced at "default" rather than like a look-alike."""
    table = settings.LLM_PRICES
    model = model or ""
    if model in table:
        return table[model]
    dated = _DATED.match(model)
    if dated and dated.group("name") in table:
        return table[dated.group("name")]
    return table["default"]


def cost_usd(*, prompt_tokens: int, completion_tokens: int, model: str | None = None) -> Decimal:
    prompt_price, completion_price = prices_for(model or settings.OPENAI_MODEL)
    cost = (Decimal(prompt_tokens) * prompt_price + Decimal(completion_tokens) * completion_price) / MILLION
    return cost.quantize(USD_PLACES, rounding=ROUND_HALF_UP)


def month_start(now: dt.datetime | None = None) -> dt.datetime:
    now = timezone.localtime(now or timezone.now())
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Spend:
    prompt_tokens: int
    completion_tokens: int
    usd: Decimal

    def to_dict(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "usd": str(self.usd)}


def _healing_spend(*, task_id: str | None, since: dt.datetime | None) -> Spend:
    from healing_app.models import HealingEvent

    events = HealingEvent.objects.all()
    if task_id is not None:
        events = events.filter(task_id=task_id)
    if since is not None:
        events = events.filter(created_at__gte=since)
    totals = events.aggregate(
        prompt=Sum("prompt_tokens"),
        completion=Sum("completion_tokens"),
        usd=Sum("cost_usd"),
        unpriced_prompt=Sum("prompt_tokens", filter=Q(cost_usd=0)),
        unpriced_completion=Sum("completion_tokens", filter=Q(cost_usd=0)),
    )
    usd = (totals["usd"] or Decimal(0)) + cost_usd(
        prompt_tokens=totals["unpriced_prompt"] or 0, completion_tokens=totals["unpriced_completion"] or 0
    )
    return Spend(totals["prompt"] or 0, totals["completion"] or 0, usd)


def _generation_spend(*, task_id: str | None, since: dt.datetime | None) -> Spend:
    from tasks_app.models import AuditLog

    rows = AuditLog.objects.filter(action=GENERATION_ACTION, object_type="task")
    if task_id is not None:
        rows = rows.filter(object_id=task_id)
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    prompt = completion = 0
    usd = Decimal(0)
    for data in rows.values_list("data", flat=True):  # a few rows a month: summed here, portable across databases
        prompt += int(data.get("prompt_tokens") or 0)
        completion += int(data.get("completion_tokens") or 0)
        usd += Decimal(str(data.get("cost_usd") or "0"))
    return Spend(prompt, completion, usd)


def spend(*, task_id: str | None = None, since: dt.datetime | None = None) -> Spend:
    """LLM spend of one task (or of all tasks) since `since` (None: ever)."""
    heal = _healing_spend(task_id=task_id, since=since)
    gen = _generation_spend(task_id=task_id, since=since)
    return Spend(
        heal.prompt_tokens + gen.prompt_tokens, heal.completion_tokens + gen.completion_tokens, heal.usd + gen.usd
    )


def task_month_spend(task) -> Decimal:
    return spend(task_id=task.pk, since=month_start()).usd


def global_month_spend() -> Decimal:
    return spend(since=month_start()).usd


def budget_exceeded(task) -> str | None:
    """Why the LLM may not be used for `task` this month, or None when it may."""
    if task is not None and task.monthly_budget_usd is not None:
        used = task_month_spend(task)
        if used >= task.monthly_budget_usd:
            return (
                f"LLM budget exceeded: task {task.pk} spent ${used:.4f} of its ${task.monthly_budget_usd:.2f} "
                "monthly budget; the heuristic agent is used instead"
            )
    limit = settings.LLM_MONTHLY_BUDGET_USD
    used = global_month_spend()
    if used >= limit:
        return (
            f"LLM budget exceeded: this deployment spent ${used:.4f} of its ${limit:.2f} monthly LLM budget "
            "(LLM_MONTHLY_BUDGET_USD); the heuristic agent is used instead"
        )
    return None


def summary(task=None) -> dict:
    """Spend for a page or API response: this month and all time, for one task or for everything."""
    since = month_start()
    task_id = task.pk if task is not None else None
    out = {
        "month": since.strftime("%Y-%m"),
        "this_month": spend(task_id=task_id, since=since).to_dict(),
        "all_time": spend(task_id=task_id).to_dict(),
        "global_monthly_budget_usd": str(settings.LLM_MONTHLY_BUDGET_USD),
    }
    if task is not None:
        out["monthly_budget_usd"] = str(task.monthly_budget_usd) if task.monthly_budget_usd is not None else None
    return out
