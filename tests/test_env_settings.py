"""Settings read from the environment: a value that cannot be used stops start-up with its name."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured

from anchor_site.env import env_decimal, env_float, env_int


@pytest.mark.parametrize("raw", ["abc", "NaN", "inf", "-Infinity"])
def test_money_that_is_not_a_finite_number_is_refused_by_name(monkeypatch, raw):
    monkeypatch.setenv("LLM_MONTHLY_BUDGET_USD", raw)
    with pytest.raises(ImproperlyConfigured, match="LLM_MONTHLY_BUDGET_USD"):
        env_decimal("LLM_MONTHLY_BUDGET_USD", Decimal(50), minimum=Decimal(0))


def test_a_negative_budget_is_refused_and_a_decimal_one_kept_exactly(monkeypatch):
    monkeypatch.setenv("LLM_MONTHLY_BUDGET_USD", "-5")
    with pytest.raises(ImproperlyConfigured, match="below 0"):
        env_decimal("LLM_MONTHLY_BUDGET_USD", Decimal(50), minimum=Decimal(0))
    monkeypatch.setenv("LLM_MONTHLY_BUDGET_USD", " 12.10 ")
    assert env_decimal("LLM_MONTHLY_BUDGET_USD", Decimal(50), minimum=Decimal(0)) == Decimal("12.10")
    monkeypatch.delenv("LLM_MONTHLY_BUDGET_USD")
    assert env_decimal("LLM_MONTHLY_BUDGET_USD", Decimal(50), minimum=Decimal(0)) == Decimal(50)


@pytest.mark.parametrize("raw", ["nan", "inf", "soon", "1e999"])
def test_seconds_must_be_a_finite_number(monkeypatch, raw):
    monkeypatch.setenv("OPENAI_TIMEOUT_S", raw)
    with pytest.raises(ImproperlyConfigured, match="OPENAI_TIMEOUT_S"):
        env_float("OPENAI_TIMEOUT_S", 30.0, minimum=1.0)


def test_numbers_in_range_are_read(monkeypatch):
    monkeypatch.setenv("OPENAI_TIMEOUT_S", "2.5")
    monkeypatch.setenv("LLM_MAX_STEPS", "7")
    assert env_float("OPENAI_TIMEOUT_S", 30.0, minimum=1.0) == 2.5
    assert env_int("LLM_MAX_STEPS", 12, minimum=1, maximum=100) == 7
    monkeypatch.setenv("LLM_MAX_STEPS", "0")
    with pytest.raises(ImproperlyConfigured, match="LLM_MAX_STEPS=0 is outside 1..100"):
        env_int("LLM_MAX_STEPS", 12, minimum=1, maximum=100)
