"""Runtime agents that take over a failing run. See base.py for the protocol."""

from __future__ import annotations

from django.conf import settings


def llm_configured() -> bool:
    return bool(settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL)


def agent_kind_for(task) -> str:
    """'llm' or 'heuristic': the task's override wins over the deployment's HEALING_AGENT."""
    wanted = task.healing_agent or settings.HEALING_AGENT
    if wanted == "auto":
        return "llm" if llm_configured() else "heuristic"
    return wanted


def agent_for(task):
    from healing_app.agents.heuristic import HeuristicAgent

    if agent_kind_for(task) == "llm" and llm_configured():
        from healing_app.agents.llm import LLMAgent

        return LLMAgent.for_task(task, fallback=HeuristicAgent())
    return HeuristicAgent()
