"""Token prices, monthly spend per task and in total, and the budget checks."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.test import override_settings
from django.utils import timezone

from healing_app import costs
from healing_app.models import HealingEvent
from tasks_app.audit import audit_log
from tasks_app.models import Task


def test_cost_uses_the_price_table_per_million_tokens():
    # gpt-4o-mini: $0.15 per 1M prompt tokens, $0.60 per 1M completion tokens
    assert costs.cost_usd(prompt_tokens=1_000_000, completion_tokens=0, model="gpt-4o-mini") == Decimal("0.150000")
    assert costs.cost_usd(prompt_tokens=10_000, completion_tokens=1_000, model="gpt-4o") == Decimal("0.035000")


def test_dated_model_names_price_like_their_base_model_and_unknown_ones_use_default():
    assert costs.prices_for("gpt-4o-mini-2024-07-18") == costs.prices_for("gpt-4o-mini")
    assert costs.prices_for("gpt-4.1-mini-2025-04-14") == costs.prices_for("gpt-4.1-mini")
    assert costs.prices_for("llama3.1:8b") == costs.prices_for("default")


def test_a_model_is_priced_by_its_own_name_not_by_a_look_alike_it_starts_with():
    assert costs.prices_for("gpt-4.1-nano") == costs.prices_for("default") != costs.prices_for("gpt-4.1")
    assert costs.prices_for("gpt-4o-realtime-preview") == costs.prices_for("default") != costs.prices_for("gpt-4o")
    assert costs.prices_for("gpt-4o-2024-08-06") == costs.prices_for("gpt-4o")
    assert costs.prices_for("gpt-4o-mini-2024-07") == costs.prices_for("default")  # not a date


@override_settings(OPENAI_MODEL="gpt-4o")
def test_cost_defaults_to_the_configured_model():
    assert costs.cost_usd(prompt_tokens=1_000_000, completion_tokens=0) == Decimal("2.500000")


def event(task, *, usd="0", prompt=0, completion=0, when=None) -> HealingEvent:
    row = HealingEvent.objects.create(
        task=task,
        error_type="element_not_found",
        status="failed",
        cost_usd=Decimal(usd),
        prompt_tokens=prompt,
        completion_tokens=completion,
    )
    if when is not None:
        HealingEvent.objects.filter(pk=row.pk).update(created_at=when)
    return row


@pytest.mark.django_db
def test_spend_sums_this_months_events_of_the_task():
    task, other = Task.objects.create(name="a"), Task.objects.create(name="b")
    event(task, usd="0.10", prompt=1000, completion=100)
    event(task, usd="0.05")
    event(other, usd="1.00")
    event(task, usd="9.00", when=costs.month_start() - dt.timedelta(days=1))  # last month

    assert costs.task_month_spend(task) == Decimal("0.15")
    assert costs.global_month_spend() == Decimal("1.15")
    assert costs.spend(task_id=task.pk).usd == Decimal("9.15")


@pytest.mark.django_db
@override_settings(OPENAI_MODEL="gpt-4o-mini")
def test_events_without_a_priced_cost_count_by_their_tokens():
    task = Task.objects.create(name="a")
    event(task, prompt=1_000_000, completion=1_000_000)  # tokens recorded, USD not

    assert costs.task_month_spend(task) == Decimal("0.75")


@pytest.mark.django_db
def test_generation_spend_counts_towards_the_task():
    task = Task.objects.create(name="a")
    audit_log(
        actor=None,
        action=costs.GENERATION_ACTION,
        obj=task,
        data={"prompt_tokens": 10, "completion_tokens": 5, "cost_usd": "0.25"},
    )

    assert costs.task_month_spend(task) == Decimal("0.25")
    assert costs.summary(task)["this_month"] == {"prompt_tokens": 10, "completion_tokens": 5, "usd": "0.250000"}


@pytest.mark.django_db
def test_a_task_over_its_budget_is_stopped_with_a_reason():
    task = Task.objects.create(name="a", monthly_budget_usd=Decimal("0.10"))
    assert costs.budget_exceeded(task) is None
    event(task, usd="0.10")

    reason = costs.budget_exceeded(task)

    assert reason.startswith("LLM budget exceeded") and task.pk in reason and "heuristic" in reason


@pytest.mark.django_db
def test_the_global_budget_stops_every_task():
    task, other = Task.objects.create(name="a"), Task.objects.create(name="b")
    event(other, usd="2.00")
    with override_settings(LLM_MONTHLY_BUDGET_USD=Decimal("5")):
        assert costs.budget_exceeded(task) is None
    with override_settings(LLM_MONTHLY_BUDGET_USD=Decimal("2")):
        assert "LLM_MONTHLY_BUDGET_USD" in costs.budget_exceeded(task)


@pytest.mark.django_db
def test_summary_shows_month_all_time_and_budgets():
    task = Task.objects.create(name="a", monthly_budget_usd=Decimal("3"))
    event(task, usd="0.5", prompt=100, completion=10)

    summary = costs.summary(task)

    assert summary["month"] == timezone.localtime().strftime("%Y-%m")
    assert summary["this_month"]["usd"] == "0.500000"
    assert Decimal(summary["monthly_budget_usd"]) == 3
    assert costs.summary()["all_time"]["prompt_tokens"] == 100
